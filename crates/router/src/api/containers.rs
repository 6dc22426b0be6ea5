//! `/attach`, `/detach`, `/containers`: the container pipeline over HTTP.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};

use super::ApiFailure;
use crate::state::Router;

/// The container routes.
pub fn routes() -> axum::Router<Router> {
    axum::Router::new()
        .route("/attach", post(attach))
        .route("/detach", post(detach))
        .route("/containers", get(list))
}

async fn attach(
    State(router): State<Router>,
    Json(req): Json<AttachRequest>,
) -> Result<Json<AttachResponse>, ApiFailure> {
    let timer = router.metrics().time("attach");
    timer
        .ok(crate::containers::attach(&router, req).await)
        .map(Json)
}

async fn detach(
    State(router): State<Router>,
    Json(req): Json<DetachRequest>,
) -> Result<Json<DetachResponse>, ApiFailure> {
    let timer = router.metrics().time("detach");
    timer
        .ok(crate::containers::detach(&router, req).await)
        .map(Json)
}

async fn list(State(router): State<Router>) -> Result<Json<Vec<ContainerReport>>, ApiFailure> {
    crate::containers::list(&router).await.map(Json)
}
