//! The router's HTTP API, served on the unix socket and on 127.0.0.1:6784.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use weft_api::{ConnectRequest, ErrorBody, ForgetRequest, Report};

use crate::state::Router;

mod containers;
mod datapath;
mod dns;
mod ipam;
mod ui;

/// An API error: an HTTP status and one line for the user.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// What failed, why, what to do.
    pub message: String,
}

impl ApiFailure {
    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 501: the capability is not built yet.
    pub fn not_available(what: &str) -> Self {
        ApiFailure {
            status: StatusCode::NOT_IMPLEMENTED,
            message: format!("{what} is not available yet in this version of weft"),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Every route of the API.
pub fn routes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/status", get(report))
        .route("/report", get(report))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/stop", post(stop))
        .route("/connect", post(connect))
        .route("/forget", post(forget))
        .merge(containers::routes())
        .merge(datapath::routes())
        .merge(ipam::routes())
        .merge(dns::routes())
        .merge(ui::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(router.clone(), count))
        .with_state(router)
}

async fn count(State(router): State<Router>, req: Request, next: Next) -> Response {
    router.metrics().count_request();
    next.run(req).await
}

async fn report(State(router): State<Router>) -> Json<Report> {
    Json(router.report())
}

async fn version() -> Json<String> {
    Json(weft_api::VERSION.to_string())
}

async fn metrics(
    State(router): State<Router>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    // Prometheus asks for OpenMetrics; other clients get the classic text format.
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let text = crate::metrics::render(&router);
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

async fn stop(State(router): State<Router>) -> Json<()> {
    tracing::info!("stop requested through the API");
    router.shutdown();
    Json(())
}

async fn connect(
    State(router): State<Router>,
    Json(req): Json<ConnectRequest>,
) -> Result<Json<()>, ApiFailure> {
    let mesh = router
        .mesh()
        .ok_or_else(|| ApiFailure::not_available("the mesh"))?;
    mesh.connect(&req.peers, req.replace)
        .map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    Ok(Json(()))
}

async fn forget(
    State(router): State<Router>,
    Json(req): Json<ForgetRequest>,
) -> Result<Json<()>, ApiFailure> {
    let mesh = router
        .mesh()
        .ok_or_else(|| ApiFailure::not_available("the mesh"))?;
    let unknown = mesh
        .forget(&req.peers)
        .await
        .map_err(|e| ApiFailure::bad_request(e.to_string()))?;
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
