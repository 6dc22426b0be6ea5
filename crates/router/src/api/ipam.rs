//! `/ipam/*`: address management over HTTP, for `weft rmpeer`/`prime` and for the Docker
//! and CNI plugins (allocate, claim, release, lookup without attaching anything).

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Json;
use weft_api::{
    AddrAnswer, AddrsResponse, AllocateRequest, ClaimRequest, IpamPeerShare, IpamStatus,
    OwnerQuery, ReleaseRequest, RemovedPeer, RmPeerRequest,
};
use weft_ipam::{AddrSpec, Reply};

use super::{ApiFailure, AppState};
use crate::ipam::{IpamHandle, Request};

/// The IPAM routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ipam/allocate", post(allocate))
        .route("/ipam/claim", post(claim))
        .route("/ipam/release", post(release))
        .route("/ipam/lookup", get(lookup))
        .route("/ipam/prime", post(prime))
        .route("/ipam/rmpeer", post(rmpeer))
        .route("/ipam/status", get(status))
}

fn ipam(router: &AppState) -> Result<&IpamHandle, ApiFailure> {
    Ok(&router.containers.ipam)
}

/// Records the owner before IPAM is asked, so the owner audit at start keeps its addresses.
fn record_owner(router: &AppState, owner: &str) -> Result<(), ApiFailure> {
    router
        .ipam_owners
        .add(owner)
        .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))
}

fn check_owner(owner: &str) -> Result<(), ApiFailure> {
    if owner.trim().is_empty() || owner.len() > 255 {
        return Err(ApiFailure::bad_request(
            "owner must be a container id of 1 to 255 characters",
        ));
    }
    Ok(())
}

async fn allocate(
    State(router): State<AppState>,
    Json(b): Json<AllocateRequest>,
) -> Result<Json<AddrAnswer>, ApiFailure> {
    check_owner(&b.owner)?;
    let spec: AddrSpec = match b.addr.as_deref().map(str::trim) {
        None | Some("") => AddrSpec::DefaultSubnet,
        Some(s) => s
            .parse()
            .map_err(|e| ApiFailure::bad_request(format!("{e}")))?,
    };
    allocate_for(&router, &b.owner, &spec).await
}

async fn claim(
    State(router): State<AppState>,
    Json(b): Json<ClaimRequest>,
) -> Result<Json<AddrAnswer>, ApiFailure> {
    check_owner(&b.owner)?;
    let c: weft_ipam::Cidr = b.addr.trim().parse().map_err(|e| {
        ApiFailure::bad_request(format!(
            "{e} (expected an address with a prefix, e.g. 10.32.0.9/12)"
        ))
    })?;
    allocate_for(&router, &b.owner, &AddrSpec::Claim(c)).await
}

/// Records `owner` (so the owner audit at start keeps what it holds), then allocates
/// `spec` for it.
async fn allocate_for(
    router: &AppState,
    owner: &str,
    spec: &AddrSpec,
) -> Result<Json<AddrAnswer>, ApiFailure> {
    record_owner(router, owner)?;
    let net = ipam(router)?.allocate(owner, spec).await?;
    Ok(Json(AddrAnswer {
        addr: net.to_string(),
    }))
}

async fn release(
    State(router): State<AppState>,
    Json(b): Json<ReleaseRequest>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    check_owner(&b.owner)?;
    let addr = match b.addr.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => {
            let ip = s.split('/').next().unwrap_or(s);
            let ip: std::net::Ipv4Addr = ip
                .parse()
                .map_err(|_| ApiFailure::bad_request(format!("{s:?} is not an IPv4 address")))?;
            Some(ipnet::Ipv4Net::from(ip))
        }
    };
    let v = ipam(&router)?.release_addrs(&b.owner, addr).await?;
    // An owner that holds nothing more is forgotten (the owner audit at start then has
    // nothing of it to keep); when in doubt it is kept, which only keeps its addresses.
    let left = match addr {
        None => Some(Vec::new()),
        Some(_) => ipam(&router)?.lookup(&b.owner).await.ok(),
    };
    if left.is_some_and(|l| l.is_empty()) {
        if let Err(e) = router.ipam_owners.remove(&b.owner) {
            tracing::warn!(owner = %b.owner, "{e}");
        }
    }
    Ok(Json(AddrsResponse {
        addrs: v.iter().map(|n| n.to_string()).collect(),
    }))
}

async fn lookup(
    State(router): State<AppState>,
    Query(q): Query<OwnerQuery>,
) -> Result<Json<AddrsResponse>, ApiFailure> {
    check_owner(&q.owner)?;
    let v = ipam(&router)?.lookup(&q.owner).await?;
    Ok(Json(AddrsResponse {
        addrs: v.iter().map(|n| n.to_string()).collect(),
    }))
}

async fn prime(State(router): State<AppState>) -> Result<Json<()>, ApiFailure> {
    ipam(&router)?.request(Request::Prime).await?;
    Ok(Json(()))
}

async fn rmpeer(
    State(router): State<AppState>,
    Json(b): Json<RmPeerRequest>,
) -> Result<Json<Vec<RemovedPeer>>, ApiFailure> {
    if b.names.is_empty() {
        return Err(ApiFailure::bad_request("name at least one peer to remove"));
    }
    let ipam = ipam(&router)?;
    let mut out = Vec::new();
    for name in b.names {
        match ipam.request(Request::RmPeer { name }).await? {
            Reply::RemovedPeer { name, addresses } => out.push(RemovedPeer { name, addresses }),
            other => {
                return Err(ApiFailure::bad_request(format!(
                    "unexpected answer {other:?}"
                )))
            }
        }
    }
    Ok(Json(out))
}

async fn status(State(router): State<AppState>) -> Result<Json<IpamStatus>, ApiFailure> {
    let st = ipam(&router)?
        .status()
        .ok_or_else(|| ApiFailure::not_available("IPAM status"))?;
    Ok(Json(status_of(st)))
}

/// The API form of the core's status (the same JSON).
fn status_of(st: weft_ipam::Status) -> IpamStatus {
    IpamStatus {
        name: st.name,
        range: st.range.to_string(),
        default_subnet: st.default_subnet.to_string(),
        init: st.init,
        line: st.line,
        peers: st
            .peers
            .into_iter()
            .map(|p| IpamPeerShare {
                name: p.name,
                owned: p.owned,
                percent: p.percent,
                free: p.free,
                reachable: p.reachable,
            })
            .collect(),
        allocated: st.allocated,
        pending: st.pending,
        notes: st.notes,
        bad_messages: st.bad_messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_answer_is_the_cores_json() {
        let config = weft_ipam::IpamConfig::new(
            "10.32.0.0/12".parse().unwrap(),
            weft_ipam::InitMode::Seed(vec!["solo".into()]),
        );
        let core = weft_ipam::Allocator::new("solo".into(), config, None).unwrap();
        let st = core.status();
        let want = serde_json::to_value(&st).unwrap();
        assert_eq!(serde_json::to_value(status_of(st)).unwrap(), want);
    }
}
