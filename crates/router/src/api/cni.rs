//! `/cni/...`: the routes the `weft` binary calls when a runtime runs it as a CNI plugin.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use weft_api::{
    CniAddRequest, CniAttachment, CniCheckRequest, CniDelRequest, CniGcRequest, CniGcResponse,
    CniStatus,
};

use super::failure::detached;
use super::{ApiFailure, AppState};

/// The CNI routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/cni/add", post(add))
        .route("/cni/del", post(del))
        .route("/cni/check", post(check))
        .route("/cni/gc", post(gc))
        .route("/cni/status", get(status))
}

async fn add(
    State(router): State<AppState>,
    Json(req): Json<CniAddRequest>,
) -> Result<Json<CniAttachment>, ApiFailure> {
    let cni = router.cni.clone();
    let add = async move { cni.add(req).await };
    Ok(Json(
        router.metrics.time("cni_add").of(detached(add)).await?,
    ))
}

async fn del(
    State(router): State<AppState>,
    Json(req): Json<CniDelRequest>,
) -> Result<Json<()>, ApiFailure> {
    let cni = router.cni.clone();
    detached(async move { cni.del(req).await }).await?;
    Ok(Json(()))
}

async fn check(
    State(router): State<AppState>,
    Json(req): Json<CniCheckRequest>,
) -> Result<Json<()>, ApiFailure> {
    router.cni.check(req).await?;
    Ok(Json(()))
}

async fn gc(
    State(router): State<AppState>,
    Json(req): Json<CniGcRequest>,
) -> Result<Json<CniGcResponse>, ApiFailure> {
    let cni = router.cni.clone();
    detached(async move { cni.gc(req).await }).await.map(Json)
}

async fn status(State(router): State<AppState>) -> Result<Json<CniStatus>, ApiFailure> {
    Ok(Json(router.cni.status()?))
}
