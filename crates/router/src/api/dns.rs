//! `/dns/add`, `/dns/remove`, `/dns/lookup`: names in weft's DNS over HTTP.

use std::net::Ipv4Addr;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::Json;
use weft_api::{DnsEditRequest, DnsEditResponse, DnsLookupQuery};

use super::{ApiFailure, AppState};
use crate::dns::{DnsHandle, DnsHandleError, Removal, EXTERN};

/// The DNS routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/dns/add", post(add))
        .route("/dns/remove", post(remove))
        .route("/dns/lookup", get(lookup))
}

/// A container of the registry, found by id, by hostname or by the first label of it.
struct Found {
    id: String,
    addrs: Vec<Ipv4Addr>,
    hostname: Option<String>,
}

async fn find_container(router: &AppState, name: &str) -> Result<Found, ApiFailure> {
    let reg = router.containers.registry.lock().await;
    let short = |h: &str| h.split('.').next().unwrap_or_default().to_ascii_lowercase();
    let hit = reg.iter().find(|(id, _)| id.as_str() == name).or_else(|| {
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        reg.iter().find(|(_, e)| {
            e.hostname.as_deref().is_some_and(|h| {
                h.trim_end_matches('.').eq_ignore_ascii_case(&want) || short(h) == want
            })
        })
    });
    let Some((id, e)) = hit else {
        return Err(ApiFailure::bad_request(format!(
            "no attached container {name:?}; `weft ps` lists them (by id or hostname)"
        )));
    };
    Ok(Found {
        id: id.clone(),
        addrs: e
            .addrs
            .iter()
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect(),
        hostname: e.hostname.clone(),
    })
}

fn parse_ips(ips: &[String]) -> Result<Vec<Ipv4Addr>, ApiFailure> {
    ips.iter()
        .map(|s| {
            let ip = s.split('/').next().unwrap_or_default();
            ip.parse::<Ipv4Addr>().map_err(|_| {
                ApiFailure::bad_request(format!(
                    "{s:?} is not an IPv4 address; give addresses like 10.32.0.5"
                ))
            })
        })
        .collect()
}

async fn add(
    State(router): State<AppState>,
    Json(req): Json<DnsEditRequest>,
) -> Result<Json<DnsEditResponse>, ApiFailure> {
    let dns = running(&router)?;
    let mut ips = parse_ips(&req.ips)?;
    let (container, fqdn) = match &req.container {
        Some(c) => {
            let found = find_container(&router, c).await?;
            if ips.is_empty() {
                ips = found.addrs;
            }
            let fqdn = req.fqdn.clone().or(found.hostname).ok_or_else(|| {
                ApiFailure::bad_request(format!(
                    "container {c} has no hostname; give one with -h FQDN"
                ))
            })?;
            (found.id, fqdn)
        }
        None => {
            let fqdn = req.fqdn.clone().ok_or_else(|| {
                ApiFailure::bad_request(
                    "no name given: use dns-add IP... -h FQDN or name a container",
                )
            })?;
            (EXTERN.to_string(), fqdn)
        }
    };
    if ips.is_empty() {
        return Err(ApiFailure::bad_request(format!(
            "no address to register for {fqdn}; give IP addresses"
        )));
    }
    let fqdn = dns.qualify(&fqdn);
    let count = dns.add(&container, &fqdn, &ips).await?;
    tracing::info!(%container, %fqdn, ?ips, "DNS names added");
    Ok(Json(DnsEditResponse { count }))
}

async fn remove(
    State(router): State<AppState>,
    Json(req): Json<DnsEditRequest>,
) -> Result<Json<DnsEditResponse>, ApiFailure> {
    let dns = running(&router)?;
    let addrs = parse_ips(&req.ips)?;
    let container = match &req.container {
        Some(c) => Some(find_container(&router, c).await?.id),
        None => None,
    };
    if container.is_none() && req.fqdn.is_none() && addrs.is_empty() {
        return Err(ApiFailure::bad_request(
            "nothing to remove: name a container, IP addresses or -h FQDN",
        ));
    }
    let count = dns
        .remove(&Removal {
            container,
            hostname: req.fqdn.clone(),
            addrs,
        })
        .await?;
    if count == 0 {
        return Err(ApiFailure::bad_request(
            "no such DNS record on this host (records are removed on the host that added them; see `weft status dns`)",
        ));
    }
    Ok(Json(DnsEditResponse { count }))
}

async fn lookup(
    State(router): State<AppState>,
    Query(q): Query<DnsLookupQuery>,
) -> Result<Json<Vec<String>>, ApiFailure> {
    let dns = &router.containers.dns;
    let addrs = dns.lookup(&q.name)?;
    Ok(Json(addrs.iter().map(|a| a.to_string()).collect()))
}

/// The DNS handle, when DNS runs on this router (an error saying it is off otherwise).
fn running(router: &AppState) -> Result<&DnsHandle, ApiFailure> {
    let dns = &router.containers.dns;
    dns.report().ok_or(DnsHandleError::Off)?;
    Ok(dns)
}
