//! The router's HTTP API. The 0600 unix socket serves every route ([`routes`]); the TCP
//! listener on 127.0.0.1:6784 serves only [`public_routes`]: GET of what any local user and
//! any web page may read, and only to a loopback `Host` (no DNS rebinding). Handlers call
//! the domain handles in [`AppState`]; only this folder turns their errors into HTTP
//! statuses (`failure.rs`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use weft_api::{ConnectRequest, ForgetRequest, Report};

mod app;
mod cni;
mod containers;
mod datapath;
mod dns;
mod failure;
mod ipam;
mod public;
mod report;
mod services;
mod ui;

pub use app::{AppState, Handles};
pub use failure::ApiFailure;

/// The read-only routes: safe for any local user and any web page.
fn read_only() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/status", get(report))
        .route("/report", get(report))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .merge(services::read_routes())
        .merge(pages())
}

/// Web pages served to a browser (GET only); the topology page goes here.
fn pages() -> axum::Router<AppState> {
    ui::routes()
}

/// What 127.0.0.1:6784 serves: the read-only routes, GET (and HEAD) only, to loopback
/// `Host`s only. Every change of state goes through the 0600 unix socket.
pub fn public_routes(router: AppState) -> axum::Router {
    read_only()
        .fallback(not_found)
        .layer(middleware::from_fn(public::guard))
        .layer(middleware::from_fn_with_state(router.clone(), count))
        .with_state(router)
}

/// Every route of the API (served on the unix socket only).
pub fn routes(router: AppState) -> axum::Router {
    read_only()
        .route("/stop", post(stop))
        .route("/connect", post(connect))
        .route("/forget", post(forget))
        .merge(containers::routes())
        .merge(cni::routes())
        .merge(datapath::routes())
        .merge(ipam::routes())
        .merge(dns::routes())
        .merge(services::write_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(router.clone(), count))
        .with_state(router)
}

async fn count(State(router): State<AppState>, req: Request, next: Next) -> Response {
    router.metrics.count_request();
    next.run(req).await
}

async fn report(State(router): State<AppState>) -> Json<Report> {
    let mut r = report::report(&router);
    match router.containers.services.list().await {
        Ok(s) => r.services = s,
        Err(e) => tracing::debug!("report without services: {e}"),
    }
    Json(r)
}

async fn version() -> Json<String> {
    Json(weft_api::VERSION.to_string())
}

async fn metrics(
    State(router): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    // Prometheus asks for OpenMetrics; other clients get the classic text format.
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let c = &router.containers;
    let text = crate::metrics::render(
        &report::report(&router),
        router.uptime_secs(),
        &router.metrics,
        c.ipam.status().map(|s| s.pending as u64),
        &c.dns.query_counts(),
    );
    if accept.contains("application/openmetrics-text") {
        (
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            crate::metrics::to_prometheus_text(&text),
        )
    }
}

async fn stop(State(router): State<AppState>) -> Json<()> {
    tracing::info!("stop requested through the API");
    router.shutdown.trigger();
    Json(())
}

async fn connect(
    State(router): State<AppState>,
    Json(req): Json<ConnectRequest>,
) -> Result<Json<()>, ApiFailure> {
    router.mesh.connect(&req.peers, req.replace)?;
    Ok(Json(()))
}

async fn forget(
    State(router): State<AppState>,
    Json(req): Json<ForgetRequest>,
) -> Result<Json<()>, ApiFailure> {
    let unknown = router.mesh.forget(&req.peers).await?;
    if !unknown.is_empty() {
        return Err(ApiFailure::bad_request(format!(
            "not a target: {} (see `weft status targets`); the others were forgotten",
            unknown.join(", ")
        )));
    }
    Ok(Json(()))
}

async fn not_found(req: Request) -> ApiFailure {
    ApiFailure {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no such API endpoint: {} {}",
            req.method(),
            req.uri().path()
        ),
    }
}
