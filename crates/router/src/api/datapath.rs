//! `/expose`, `/hide`, `/reset`: the host on the overlay, and removing everything.

use axum::extract::State;
use axum::routing::post;
use axum::Json;

use super::ApiFailure;
use crate::datapath::expose::{self, AddrsResponse, ExposeRequest, HideRequest, ResetRequest};
use crate::state::Router;

/// The data-path routes.
pub fn routes() -> axum::Router<Router> {
    axum::Router::new()
        .route("/expose", post(expose_h))
        .route("/hide", post(hide_h))
        .route("/reset", post(reset_h))
}

async fn expose_h(
    State(router): State<Router>,
    Json(req): Json<ExposeRequest>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    expose::expose(&router, req).await.map(Json)
}

async fn hide_h(
    State(router): State<Router>,
    Json(req): Json<HideRequest>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    expose::hide(&router, req).await.map(Json)
}

async fn reset_h(
    State(router): State<Router>,
    Json(req): Json<ResetRequest>,
) -> Result<Json<()>, ApiFailure> {
    expose::reset(&router, req).await.map(Json)
}
