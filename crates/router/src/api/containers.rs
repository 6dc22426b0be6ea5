//! `/attach`, `/detach`, `/containers`: the container pipeline over HTTP.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};

use super::{ApiFailure, AppState};

/// The container routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/attach", post(attach))
        .route("/detach", post(detach))
        .route("/containers", get(list))
}

async fn attach(
    State(router): State<AppState>,
    Json(req): Json<AttachRequest>,
) -> Result<Json<AttachResponse>, ApiFailure> {
    let timer = router.metrics.time("attach");
    // Run to the end even when the client goes away (a CLI killed mid-way): the pipeline
    // undoes its own failures, but not if it is dropped half-way.
    let containers = router.containers.clone();
    let done = tokio::spawn(async move { crate::containers::attach(&containers, req).await })
        .await
        .map_err(stopped)?;
    Ok(Json(timer.ok(done)?))
}

fn stopped(e: tokio::task::JoinError) -> ApiFailure {
    ApiFailure {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        message: format!(
            "the operation stopped half-way ({e}); the router undoes it at its next start"
        ),
    }
}

async fn detach(
    State(router): State<AppState>,
    Json(req): Json<DetachRequest>,
) -> Result<Json<DetachResponse>, ApiFailure> {
    let timer = router.metrics.time("detach");
    let containers = router.containers.clone();
    let done = tokio::spawn(async move { crate::containers::detach(&containers, req).await })
        .await
        .map_err(stopped)?;
    Ok(Json(timer.ok(done)?))
}

/// Containers attached by weft and those on Docker's weft networks.
async fn list(State(router): State<AppState>) -> Result<Json<Vec<ContainerReport>>, ApiFailure> {
    let mut out = crate::containers::list(&router.containers).await;
    if let Some(d) = &router.docker {
        d.add_endpoints(&mut out).await;
    }
    Ok(Json(out))
}
