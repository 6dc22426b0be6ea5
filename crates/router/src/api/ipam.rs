//! `/ipam/*`: address management over HTTP, for `weft rmpeer`/`prime` and for the Docker
//! and CNI plugins (allocate, claim, release, lookup without attaching anything).

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};
use weft_ipam::{AddrSpec, Reply};

use super::ApiFailure;
use crate::ipam::{IpamHandle, Request};
use crate::state::Router;

/// `POST /ipam/allocate`: an address for `owner`.
#[derive(Debug, Deserialize)]
pub struct AllocateBody {
    /// Container (or endpoint) id.
    pub owner: String,
    /// `net:default`, `net:CIDR`, `ip:CIDR` or `CIDR`; the default subnet when absent.
    #[serde(default)]
    pub addr: Option<String>,
}

/// `POST /ipam/claim`: exactly this address for `owner`.
#[derive(Debug, Deserialize)]
pub struct ClaimBody {
    /// Container id.
    pub owner: String,
    /// The address with its subnet's prefix, e.g. `10.32.0.9/12`.
    pub addr: String,
}

/// `POST /ipam/release`: one address of `owner`, or all of them.
#[derive(Debug, Deserialize)]
pub struct ReleaseBody {
    /// Container id.
    pub owner: String,
    /// The address (with or without prefix); all of `owner`'s when absent.
    #[serde(default)]
    pub addr: Option<String>,
}

/// `POST /ipam/rmpeer`: take over the space of dead peers.
#[derive(Debug, Deserialize)]
pub struct RmPeerBody {
    /// Peer names.
    pub names: Vec<String>,
}

/// Answer to allocate and claim.
#[derive(Debug, Serialize)]
pub struct AddrAnswer {
    /// The address with its subnet's prefix.
    pub addr: String,
}

/// Answer to release and lookup.
#[derive(Debug, Serialize)]
pub struct AddrsAnswer {
    /// Addresses with their prefixes.
    pub addrs: Vec<String>,
}

/// `GET /ipam/lookup?owner=`.
#[derive(Debug, Deserialize)]
pub struct LookupQuery {
    /// Container id.
    pub owner: String,
}

/// One rmpeer result.
#[derive(Debug, Serialize)]
pub struct RemovedPeer {
    /// The peer.
    pub name: String,
    /// Addresses now owned by this peer.
    pub addresses: u64,
}

/// The IPAM routes.
pub fn routes() -> axum::Router<Router> {
    axum::Router::new()
        .route("/ipam/allocate", post(allocate))
        .route("/ipam/claim", post(claim))
        .route("/ipam/release", post(release))
        .route("/ipam/lookup", get(lookup))
        .route("/ipam/prime", post(prime))
        .route("/ipam/rmpeer", post(rmpeer))
        .route("/ipam/status", get(status))
}

fn ipam(router: &Router) -> Result<&IpamHandle, ApiFailure> {
    Ok(&router.parts()?.ipam)
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
    State(router): State<Router>,
    Json(b): Json<AllocateBody>,
) -> Result<Json<AddrAnswer>, ApiFailure> {
    check_owner(&b.owner)?;
    let spec: AddrSpec = match b.addr.as_deref().map(str::trim) {
        None | Some("") => AddrSpec::DefaultSubnet,
        Some(s) => s
            .parse()
            .map_err(|e| ApiFailure::bad_request(format!("{e}")))?,
    };
    let net = ipam(&router)?.allocate(&b.owner, &spec).await?;
    Ok(Json(AddrAnswer {
        addr: net.to_string(),
    }))
}

async fn claim(
    State(router): State<Router>,
    Json(b): Json<ClaimBody>,
) -> Result<Json<AddrAnswer>, ApiFailure> {
    check_owner(&b.owner)?;
    let c: weft_ipam::Cidr = b.addr.trim().parse().map_err(|e| {
        ApiFailure::bad_request(format!(
            "{e} (expected an address with a prefix, e.g. 10.32.0.9/12)"
        ))
    })?;
    let net = ipam(&router)?
        .allocate(&b.owner, &AddrSpec::Claim(c))
        .await?;
    Ok(Json(AddrAnswer {
        addr: net.to_string(),
    }))
}

async fn release(
    State(router): State<Router>,
    Json(b): Json<ReleaseBody>,
) -> Result<Json<AddrsAnswer>, ApiFailure> {
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
    Ok(Json(AddrsAnswer {
        addrs: v.iter().map(|n| n.to_string()).collect(),
    }))
}

async fn lookup(
    State(router): State<Router>,
    Query(q): Query<LookupQuery>,
) -> Result<Json<AddrsAnswer>, ApiFailure> {
    check_owner(&q.owner)?;
    let v = ipam(&router)?.lookup(&q.owner).await?;
    Ok(Json(AddrsAnswer {
        addrs: v.iter().map(|n| n.to_string()).collect(),
    }))
}

async fn prime(State(router): State<Router>) -> Result<Json<()>, ApiFailure> {
    ipam(&router)?.request(Request::Prime).await?;
    Ok(Json(()))
}

async fn rmpeer(
    State(router): State<Router>,
    Json(b): Json<RmPeerBody>,
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

async fn status(State(router): State<Router>) -> Result<Json<weft_ipam::Status>, ApiFailure> {
    ipam(&router)?
        .status()
        .map(Json)
        .ok_or_else(|| ApiFailure::not_available("IPAM status"))
}
