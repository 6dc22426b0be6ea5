//! The topology page on the status port: `GET /` and its assets, built into the binary
//! (plain HTML, CSS and JavaScript written by hand; nothing is fetched from elsewhere).
//! The page polls `/report` and `/containers` once a second.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/topology.js");
const STYLE: &str = include_str!("ui/topology.css");
/// The page loads only its own assets and talks only to this router.
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'";

/// The page's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route("/topology.js", get(|| asset("text/javascript", SCRIPT)))
        .route("/topology.css", get(|| asset("text/css", STYLE)))
}

async fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
