//! `/expose`, `/hide`, `/reset`: the host on the overlay, and removing everything.

use axum::extract::State;
use axum::routing::post;
use axum::Json;
use weft_api::{AddrsResponse, ExposeRequest, HideRequest, ResetRequest};

use super::failure::detached;
use super::{ApiFailure, AppState};
use crate::datapath::expose;
use crate::reset::{reset, ResetParts};

/// The data-path routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/expose", post(expose_h))
        .route("/hide", post(hide_h))
        .route("/reset", post(reset_h))
}

async fn expose_h(
    State(router): State<AppState>,
    Json(req): Json<ExposeRequest>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    let c = router.containers.clone();
    c.ready.wait().await;
    let done = detached(async move { expose::expose(&c.datapath, &c.ipam, &c.intents, req).await });
    Ok(Json(done.await?))
}

async fn hide_h(
    State(router): State<AppState>,
    Json(req): Json<HideRequest>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    let c = router.containers.clone();
    c.ready.wait().await;
    let done = detached(async move { expose::hide(&c.datapath, &c.ipam, &c.intents, req).await });
    Ok(Json(done.await?))
}

async fn reset_h(
    State(router): State<AppState>,
    Json(req): Json<ResetRequest>,
) -> Result<Json<()>, ApiFailure> {
    let parts = ResetParts {
        ipam: &router.containers.ipam,
        datapath: &router.containers.datapath,
        docker: router.docker.as_ref(),
        services: &router.containers.services,
        state_dir: &router.config.paths.state_dir,
        shutdown: &router.shutdown,
    };
    reset(parts, req.force).await?;
    Ok(Json(()))
}
