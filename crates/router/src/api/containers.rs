//! `/attach`, `/detach`, `/containers`: the container pipeline over HTTP.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use weft_api::{AttachRequest, AttachResponse, ContainerReport, DetachRequest, DetachResponse};

use super::failure::detached;
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
    let containers = router.containers.clone();
    containers.ready.wait().await;
    let attach = async move { crate::containers::attach(&containers, req).await };
    Ok(Json(
        router.metrics.time("attach").of(detached(attach)).await?,
    ))
}

async fn detach(
    State(router): State<AppState>,
    Json(req): Json<DetachRequest>,
) -> Result<Json<DetachResponse>, ApiFailure> {
    let containers = router.containers.clone();
    containers.ready.wait().await;
    let detach = async move { crate::containers::detach(&containers, req).await };
    Ok(Json(
        router.metrics.time("detach").of(detached(detach)).await?,
    ))
}

/// Containers attached by weft, those on Docker's weft networks, and the host's exposed
/// addresses (`weft:expose`, as in Weave).
async fn list(State(router): State<AppState>) -> Result<Json<Vec<ContainerReport>>, ApiFailure> {
    let mut out = crate::containers::list(&router.containers).await;
    if let Some(d) = &router.docker {
        d.add_endpoints(&mut out).await;
    }
    let dir = router.config.paths.state_dir.clone();
    let bridge = router.containers.datapath.bridge().to_string();
    let (exposed, mac) = tokio::task::spawn_blocking(move || {
        let mac = weft_datapath::nl::Handle::current()
            .ok()
            .and_then(|mut h| weft_datapath::link::get(&mut h, &bridge).ok().flatten())
            .and_then(|l| l.mac6())
            .map(|m| crate::datapath::wire::fmt_mac(&m))
            .unwrap_or_else(|| "00:00:00:00:00:00".to_string());
        (crate::datapath::expose::listed(&dir), mac)
    })
    .await
    .unwrap_or_default();
    if !exposed.is_empty() {
        out.push(ContainerReport {
            id: crate::datapath::expose::EXPOSE_OWNER.to_string(),
            netns: String::new(),
            ifname: router.containers.datapath.bridge().to_string(),
            mac,
            addrs: exposed.iter().map(|a| a.to_string()).collect(),
            hostname: None,
        });
    }
    Ok(Json(out))
}
