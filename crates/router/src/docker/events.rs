//! Docker events keep weft's view true: a started container's names go into DNS (with a
//! listener in its namespace), its addresses are announced, it gets the services' VIP
//! rules and joins the services its `weft.service` label names; a container that dies
//! leaves them and is detached. At start, and whenever the event stream comes back, what changed meanwhile
//! is reconciled: endpoints and addresses of containers that are gone are released.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use weft_api::DetachRequest;
use weft_docker::engine::Network;

use super::DockerHandle;

/// Longest wait before the event stream is opened again after it broke.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether `id` looks like a Docker container id (64 hex digits).
pub fn is_docker_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Follows Docker's events until the router stops; reconnects with backoff.
pub async fn run(handle: DockerHandle) {
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        let mut filters = std::collections::BTreeMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        filters.insert(
            "event".to_string(),
            ["start", "die", "destroy"].map(String::from).to_vec(),
        );
        let stream = match handle.engine.events(&filters).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("Docker events: {e}");
                tokio::select! {
                    _ = handle.shutdown.stopped() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // Once the stream is open, what changed before it is looked at: a container that
        // started between start-up's reconciliation and now (one whose `docker run` was
        // in flight across a restart of the router) is seen either way.
        if first {
            register_running(&handle).await;
        } else {
            reconcile(&handle, false).await;
        }
        first = false;
        tokio::pin!(stream);
        loop {
            tokio::select! {
                _ = handle.shutdown.stopped() => return,
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => {
                        backoff = Duration::from_secs(1);
                        let id = ev.actor.id.clone();
                        match ev.action.as_str() {
                            "start" => container_started(&handle, &id).await,
                            "die" | "destroy" => container_died(&handle, &id).await,
                            _ => {}
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!("Docker events: {e}");
                        break;
                    }
                    None => {
                        tracing::info!("Docker's event stream ended");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = handle.shutdown.stopped() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Docker's networks of weft's driver, as listed (without their containers); `None`, after
/// a warning saying what the list was `for`, when Docker does not answer.
async fn weft_networks(handle: &DockerHandle, why: &str) -> Option<Vec<Network>> {
    match handle.engine.list_networks().await {
        Ok(listed) => Some(
            listed
                .into_iter()
                .filter(|n| n.driver == super::DRIVER)
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("cannot list Docker's networks{why}: {e}");
            None
        }
    }
}

/// The running containers on Docker's weft networks: their endpoints learn their
/// container, names and listeners are (re)registered ([`container_started`] each).
async fn register_running(handle: &DockerHandle) {
    let Some(listed) = weft_networks(handle, "").await else {
        return;
    };
    let mut running = BTreeSet::new();
    for n in listed {
        if let Ok(Some(full)) = handle.engine.inspect_network(&n.id).await {
            running.extend(full.containers.keys().cloned());
        }
    }
    for id in running {
        container_started(handle, &id).await;
    }
}

/// A container started: its weft endpoints learn their container, its names go into DNS
/// with a listener in its namespace, and its addresses are announced by gratuitous ARP.
pub async fn container_started(handle: &DockerHandle, id: &str) {
    let c = match handle.engine.inspect_container(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(container = %id, "inspect: {e}");
            return;
        }
    };
    if !c.state.running || c.state.pid <= 0 {
        return;
    }
    let mut addrs: Vec<Ipv4Net> = Vec::new();
    let mut macs = Vec::new();
    {
        let mut s = handle.backend.state().lock().await;
        let mut changed = false;
        for net in c.network_settings.networks.values() {
            let Some(e) = s.endpoints.get_mut(&net.endpoint_id) else {
                continue;
            };
            if e.container.as_deref() != Some(&c.id) {
                e.container = Some(c.id.clone());
                changed = true;
            }
            if let Some(a) = e.addr {
                addrs.push(a);
                if let Some(m) = crate::datapath::wire::parse_mac(&e.mac) {
                    macs.push((m, a.addr()));
                }
            }
        }
        if changed {
            if let Err(e) = handle.backend.persist(&s) {
                tracing::warn!(container = %id, "{e}");
            }
        }
    }
    if addrs.is_empty() {
        return;
    }
    let parts = handle.backend.containers();
    let path = format!("/proc/{}/ns/net", c.state.pid);
    let netns = match weft_datapath::Netns::open_path(std::path::Path::new(&path)) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(container = %id, "cannot open its namespace: {e}");
            return;
        }
    };
    let netns = std::sync::Arc::new(netns);
    let ns = netns.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (mac, ip) in macs {
            if let Err(e) = weft_datapath::endpoint::announce(&ns, mac, &[ip]) {
                tracing::debug!("gratuitous ARP: {e}");
            }
        }
    })
    .await;
    let names = container_names(&c, parts.dns.domain().as_deref());
    let first = names.first().map(String::as_str);
    if let Err(e) = parts
        .dns
        .container_attached(&c.id, first, &addrs, &netns)
        .await
    {
        tracing::warn!(container = %id, "DNS: {e}");
    }
    for extra in names.iter().skip(1) {
        let ips: Vec<_> = addrs.iter().map(|a| a.addr()).collect();
        if let Err(e) = parts.dns.add(&c.id, &parts.dns.qualify(extra), &ips).await {
            tracing::warn!(container = %id, "DNS: {e}");
        }
    }
    join_services(handle, &c, &addrs, netns).await;
    tracing::info!(container = %c.id, names = ?names, addrs = ?addrs, "Docker container on weft");
}

/// A running container on weft: its namespace gets the services' VIP rules (it may be a
/// client of any service), and it joins the services its label names (again after a
/// restart of the router: joining is idempotent). An unknown service is logged: Docker
/// has started the container already.
async fn join_services(
    handle: &DockerHandle,
    c: &weft_docker::engine::Container,
    addrs: &[Ipv4Net],
    netns: std::sync::Arc<weft_datapath::Netns>,
) {
    let services = handle.backend.containers().services.clone();
    services.container_attached(&c.id, netns).await;
    let wanted = super::labels::services(&c.config.labels);
    if wanted.is_empty() {
        return;
    }
    let ips: Vec<std::net::Ipv4Addr> = addrs.iter().map(|a| a.addr()).collect();
    if let Err(e) = services.join(&c.id, &ips, &wanted).await {
        tracing::warn!(
            container = %c.id,
            label = %super::labels::SERVICE_LABEL,
            "not a task of {wanted:?}: {e}"
        );
    }
}

/// The names a container registers: its name, and its hostname when that is in weft's
/// domain and differs.
pub fn container_names(c: &weft_docker::engine::Container, domain: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    let name = c.name.trim_start_matches('/');
    if !name.is_empty() {
        names.push(name.to_string());
    }
    if let Some(domain) = domain {
        let domain = domain.trim_end_matches('.');
        let host = c.config.hostname.as_str();
        let dn = c.config.domainname.trim_end_matches('.');
        if !host.is_empty() && dn == domain && host != name {
            names.push(host.to_string());
        }
    }
    names
}

/// A container died or was removed: names and listeners go; containers attached with
/// `weft attach` are detached (Docker's own calls release plugin endpoints).
pub async fn container_died(handle: &DockerHandle, id: &str) {
    let parts = handle.backend.containers();
    let addrs: Vec<Ipv4Net> = {
        let s = handle.backend.state().lock().await;
        s.endpoints
            .values()
            .filter(|e| e.container.as_deref() == Some(id))
            .filter_map(|e| e.addr)
            .collect()
    };
    if !addrs.is_empty() {
        parts.dns.container_detached(id, &addrs).await;
        // Its tasks leave rotation everywhere, and its VIP table goes.
        parts.services.container_detached(id).await;
    }
    let attached = parts.registry.lock().await.get(id).is_some();
    if attached {
        let req = DetachRequest {
            netns: String::new(),
            addrs: Vec::new(),
            container: Some(id.to_string()),
        };
        match crate::containers::detach(parts, req).await {
            Ok(r) => {
                tracing::info!(container = %id, removed = ?r.removed, "detached: the container stopped")
            }
            Err(e) => tracing::warn!(container = %id, "detach: {e}"),
        }
    }
}

/// Brings weft in line with Docker: detaches attached containers that no longer run,
/// drops endpoints Docker no longer has and releases their addresses, and re-registers
/// running containers (names, listeners) after a restart of the router. Addresses without
/// an endpoint are released only `at_start`: later, one may belong to a container Docker
/// is creating right now (between RequestAddress and CreateEndpoint).
pub async fn reconcile(handle: &DockerHandle, at_start: bool) {
    if at_start {
        handle.backend.undo_pending_gateways().await;
    }
    let parts = handle.backend.containers();
    // Containers attached with `weft attach CONTAINER`.
    let attached: Vec<String> = parts
        .registry
        .lock()
        .await
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| is_docker_id(id))
        .collect();
    for id in attached {
        match handle.engine.inspect_container(&id).await {
            Ok(Some(c)) if c.state.running => {}
            Ok(_) => container_died(handle, &id).await,
            Err(e) => tracing::warn!(container = %id, "inspect: {e}"),
        }
    }

    // Plugin endpoints: Docker lists the endpoints of running containers per network.
    let Some(listed) = weft_networks(handle, " to reconcile").await else {
        return;
    };
    // The list leaves out each network's containers; inspecting a network gives them.
    let mut networks = Vec::new();
    for n in listed {
        match handle.engine.inspect_network(&n.id).await {
            Ok(Some(full)) => networks.push(full),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(network = %n.name, "cannot inspect it to reconcile: {e}");
                return;
            }
        }
    }
    let live_networks: BTreeSet<String> = networks.iter().map(|n| n.id.clone()).collect();
    let live_endpoints: BTreeSet<String> = networks
        .iter()
        .flat_map(|n| n.containers.values().map(|c| c.endpoint_id.clone()))
        .collect();
    let mut running: BTreeSet<String> = BTreeSet::new();
    for n in &networks {
        running.extend(n.containers.keys().cloned());
    }
    let gone = {
        let mut s = handle.backend.state().lock().await;
        let gone: Vec<(String, super::saved::EndpointEntry)> = s
            .endpoints
            .iter()
            .filter(|(id, _)| !live_endpoints.contains(*id))
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        for (id, _) in &gone {
            s.endpoints.remove(id);
        }
        s.networks.retain(|id, _| live_networks.contains(id));
        if let Err(e) = handle.backend.persist(&s) {
            tracing::warn!("{e}");
        }
        gone
    };
    for (id, e) in &gone {
        tracing::info!(endpoint = %id, addr = ?e.addr, "Docker no longer has this endpoint: released");
        handle.backend.forget_endpoint(id, e).await;
    }
    // Addresses no live endpoint uses: their containers went while the router was down,
    // before Docker could release them (or the router died between IPAM and Docker).
    let (held, allocations) = {
        let s = handle.backend.state().lock().await;
        let held: BTreeSet<std::net::Ipv4Addr> = s
            .endpoints
            .values()
            .filter_map(|e| e.addr.map(|a| a.addr()))
            .collect();
        (held, s.allocations.clone())
    };
    for (owner, addr) in allocations.into_iter().filter(|_| at_start) {
        match addr {
            Some(a) if held.contains(&a.addr()) => {}
            Some(a) => {
                tracing::info!(addr = %a, "address of a container that is gone: released");
                handle
                    .backend
                    .release_allocation(&owner, Some(a.addr()))
                    .await;
            }
            None => handle.backend.release_allocation(&owner, None).await,
        }
    }
    // Running containers: names and listeners again (the router may have restarted).
    for id in running {
        container_started(handle, &id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_ids_are_64_hex_digits() {
        assert!(is_docker_id(&"ab12".repeat(16)));
        assert!(!is_docker_id("c1"));
        assert!(!is_docker_id(&"xy12".repeat(16)));
    }
}
