//! `/services`: create, remove, list and inspect services over HTTP. Reading is also
//! served on the read-only TCP port; creating and removing only on the unix socket.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::Json;
use weft_api::{ServiceCreateRequest, ServiceInfo};

use super::{ApiFailure, AppState};

/// The read-only service routes.
pub fn read_routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/services", get(list))
        .route("/services/{name}", get(inspect))
}

/// The service routes that change state.
pub fn write_routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/services", axum::routing::post(create))
        .route("/services/{name}", delete(remove))
}

async fn list(State(router): State<AppState>) -> Result<Json<Vec<ServiceInfo>>, ApiFailure> {
    Ok(Json(router.containers.services.list().await?))
}

async fn inspect(
    State(router): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceInfo>, ApiFailure> {
    Ok(Json(router.containers.services.inspect(&name).await?))
}

async fn create(
    State(router): State<AppState>,
    Json(req): Json<ServiceCreateRequest>,
) -> Result<Json<ServiceInfo>, ApiFailure> {
    router.containers.ready.wait().await;
    let services = router.containers.services.clone();
    // To the end even when the client goes away: a VIP taken is given back on refusal.
    let done = tokio::spawn(async move { services.create(req).await })
        .await
        .map_err(super::containers::stopped)?;
    Ok(Json(done?))
}

async fn remove(
    State(router): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceInfo>, ApiFailure> {
    router.containers.ready.wait().await;
    Ok(Json(router.containers.services.remove(&name).await?))
}
