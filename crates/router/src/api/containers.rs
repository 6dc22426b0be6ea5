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
    // Run to the end even when the client goes away (a CLI killed mid-way): the pipeline
    // undoes its own failures, but not if it is dropped half-way.
    tokio::spawn(async move { crate::containers::attach(&router, req).await })
        .await
        .map_err(stopped)?
        .map(Json)
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
    State(router): State<Router>,
    Json(req): Json<DetachRequest>,
) -> Result<Json<DetachResponse>, ApiFailure> {
    tokio::spawn(async move { crate::containers::detach(&router, req).await })
        .await
        .map_err(stopped)?
        .map(Json)
}

async fn list(State(router): State<Router>) -> Result<Json<Vec<ContainerReport>>, ApiFailure> {
    crate::containers::list(&router).await.map(Json)
}
