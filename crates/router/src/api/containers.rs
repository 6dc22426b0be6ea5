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
    Ok(Json(
        crate::containers::attach(&router.containers, req).await?,
    ))
}

async fn detach(
    State(router): State<AppState>,
    Json(req): Json<DetachRequest>,
) -> Result<Json<DetachResponse>, ApiFailure> {
    Ok(Json(
        crate::containers::detach(&router.containers, req).await?,
    ))
}

/// Containers attached by weft and those on Docker's weft networks.
async fn list(State(router): State<AppState>) -> Result<Json<Vec<ContainerReport>>, ApiFailure> {
    let mut out = crate::containers::list(&router.containers).await;
    if let Some(d) = &router.docker {
        d.add_endpoints(&mut out).await;
    }
    Ok(Json(out))
}
