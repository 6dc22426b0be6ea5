//! `weft expose` / `weft hide` (the host's address on the bridge, IPv4 forwarding,
//! masquerading through nftables), the firewall rules for the subnets in use, and the
//! kernel side of `weft reset`.
//!
//! Crash safety: `expose.json` records the exposed addresses the API acknowledged. Expose
//! records its intent, changes IPAM and the kernel, then adds its addresses to the record;
//! hide records its intent, takes its addresses off the record, then changes the kernel
//! and IPAM. At start, [`reconcile`] makes the bridge and IPAM agree with the record, which
//! undoes a cut-short expose and finishes a cut-short hide.

use std::path::Path;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use weft_api::{AddrsResponse, ExposeRequest, HideRequest};
use weft_firewall::{CommandRunner, DockerForward, Firewall, Masquerade, Nftables, Ruleset};

use super::{lock, DatapathHandle};
use crate::intents::{Intent, Intents, Op};
use crate::ipam::{IpamHandle, IpamHandleError};
use crate::owners::{Claim, Owned, Owner};

/// The IPAM owner of the host's overlay addresses.
pub const EXPOSE_OWNER: &str = "weft:expose";
/// File in the state dir that remembers whether exposed addresses are masqueraded.
pub const EXPOSE_FILE: &str = "expose.json";

/// Why expose or hide failed.
#[derive(Debug, thiserror::Error)]
pub enum ExposeError {
    /// An address form is not `net:default`, `net:CIDR`, `ip:CIDR` or `CIDR`.
    #[error(transparent)]
    Spec(#[from] weft_ipam::AddrError),
    /// IPAM did not give (or take back) the address.
    #[error(transparent)]
    Ipam(#[from] IpamHandleError),
    /// The kernel refused the address on the bridge or the forwarding switch.
    #[error("cannot expose: {0}")]
    Expose(String),
    /// The addresses are on the bridge but the firewall refused the rules.
    #[error("exposed, but the firewall rules failed: {0}")]
    Firewall(String),
    /// The kernel refused to list or remove the bridge's addresses.
    #[error("{0}")]
    Hide(String),
    /// The intent or the record of exposed addresses could not be written.
    #[error("{0}")]
    Record(String),
}

#[derive(Serialize, Deserialize)]
struct Saved {
    masquerade: bool,
    /// IPv4 forwarding was off and weft turned it on: turn it off again when the last
    /// exposed address goes (a host that forwarded before weft keeps forwarding).
    #[serde(default)]
    forwarding_enabled_by_weft: bool,
    /// `route_localnet` of every interface was off and weft turned it on for published
    /// service ports on 127.0.0.1 (`datapath::ingress`): turned off again with forwarding.
    #[serde(default)]
    localnet_enabled_by_weft: bool,
    /// The exposed addresses the API acknowledged (`None`: written by a version that did
    /// not record them; the bridge's addresses IPAM holds for expose are adopted).
    #[serde(default)]
    addrs: Option<Vec<Ipv4Net>>,
}

/// One read-modify-write of `expose.json` at a time (parallel exposes and hides).
static SAVED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn saved_turn() -> std::sync::MutexGuard<'static, ()> {
    SAVED.lock().unwrap_or_else(|p| p.into_inner())
}

fn load_saved(state_dir: &Path) -> Saved {
    std::fs::read(state_dir.join(EXPOSE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
        .unwrap_or(Saved {
            masquerade: true,
            forwarding_enabled_by_weft: false,
            localnet_enabled_by_weft: false,
            addrs: None,
        })
}

/// The exposed addresses acknowledged so far (`None` before the first record).
fn recorded(state_dir: &Path) -> Option<Vec<Ipv4Net>> {
    let _turn = saved_turn();
    load_saved(state_dir).addrs
}

/// Adds `add` to the record and takes `remove` off it, durably.
fn record(state_dir: &Path, add: &[Ipv4Net], remove: &[Ipv4Net]) -> Result<(), String> {
    let _turn = saved_turn();
    let mut saved = load_saved(state_dir);
    let mut addrs = saved.addrs.take().unwrap_or_default();
    addrs.retain(|a| !remove.iter().any(|r| r.addr() == a.addr()));
    for a in add {
        if !addrs.iter().any(|x| x.addr() == a.addr()) {
            addrs.push(*a);
        }
    }
    saved.addrs = Some(addrs);
    save(state_dir, &saved).map_err(|e| format!("cannot record the exposed addresses: {e}"))
}

fn save(state_dir: &Path, saved: &Saved) -> Result<(), String> {
    let bytes = serde_json::to_vec(saved).map_err(|e| e.to_string())?;
    crate::identity::write_atomic(&state_dir.join(EXPOSE_FILE), &bytes).map_err(|e| e.to_string())
}

/// Whether an earlier run masqueraded its exposed addresses (default yes).
pub fn load_masquerade(state_dir: &Path) -> bool {
    load_saved(state_dir).masquerade
}

fn save_masquerade(state_dir: &Path, on: bool) {
    let _turn = saved_turn();
    let mut saved = load_saved(state_dir);
    saved.masquerade = on;
    if let Err(e) = save(state_dir, &saved) {
        tracing::warn!("cannot save the masquerade setting: {e}");
    }
}

/// Turns IPv4 forwarding on in the host's namespace (containers reach the outside
/// through the exposed host) and remembers when it was weft that turned it on.
pub(super) fn enable_forwarding(state_dir: &Path) -> Result<(), String> {
    let turned_on = weft_datapath::sysctl::enable_ipv4_forwarding().map_err(|e| e.to_string())?;
    if turned_on {
        let _turn = saved_turn();
        let mut saved = load_saved(state_dir);
        saved.forwarding_enabled_by_weft = true;
        if let Err(e) = save(state_dir, &saved) {
            // Unrecorded, it could never be undone: undo it now.
            let _ = weft_datapath::sysctl::disable_ipv4_forwarding();
            return Err(format!(
                "cannot record that IPv4 forwarding was turned on: {e}"
            ));
        }
        tracing::info!("IPv4 forwarding turned on");
    }
    Ok(())
}

/// Turns `route_localnet` on for every interface (published service ports answer on
/// 127.0.0.1, DNATed out of the bridge, as kube-proxy does) and remembers when it was
/// weft that turned it on (or, with `on` false, turns it off again if weft did).
pub(super) fn set_localnet(state_dir: &Path, on: bool) -> Result<(), String> {
    let _turn = saved_turn();
    let mut saved = load_saved(state_dir);
    if on && !saved.localnet_enabled_by_weft {
        let turned_on =
            weft_datapath::sysctl::enable_route_localnet("all").map_err(|e| e.to_string())?;
        if turned_on {
            saved.localnet_enabled_by_weft = true;
            if let Err(e) = save(state_dir, &saved) {
                let _ = weft_datapath::sysctl::disable_route_localnet("all");
                return Err(format!(
                    "cannot record that route_localnet was turned on: {e}"
                ));
            }
            tracing::info!("route_localnet turned on");
        }
    } else if !on && saved.localnet_enabled_by_weft {
        weft_datapath::sysctl::disable_route_localnet("all").map_err(|e| e.to_string())?;
        saved.localnet_enabled_by_weft = false;
        save(state_dir, &saved)?;
        tracing::info!("route_localnet turned off again");
    }
    Ok(())
}

/// Turns IPv4 forwarding (and `route_localnet`) off again if weft turned it on (recorded
/// in the state dir); returns whether it did. Blocking; used by hide, the router's reset
/// and `weft reset`.
pub fn restore_forwarding(state_dir: &Path) -> Result<bool, String> {
    let _turn = saved_turn();
    let mut saved = load_saved(state_dir);
    if saved.localnet_enabled_by_weft {
        weft_datapath::sysctl::disable_route_localnet("all").map_err(|e| e.to_string())?;
        saved.localnet_enabled_by_weft = false;
        if state_dir.join(EXPOSE_FILE).exists() {
            save(state_dir, &saved)?;
        }
        tracing::info!("route_localnet turned off again");
    }
    if !saved.forwarding_enabled_by_weft {
        return Ok(false);
    }
    weft_datapath::sysctl::disable_ipv4_forwarding().map_err(|e| e.to_string())?;
    saved.forwarding_enabled_by_weft = false;
    if state_dir.join(EXPOSE_FILE).exists() {
        save(state_dir, &saved)?;
    }
    tracing::info!("IPv4 forwarding turned off again");
    Ok(true)
}

/// The rules for the current state: subnets of local containers kept apart, exposed host
/// addresses allowed everywhere, masquerade when exposed and asked for.
pub fn ruleset(h: &DatapathHandle, range: Ipv4Net, exposed: &[Ipv4Net]) -> Ruleset {
    let mut r = Ruleset {
        range: Some(range),
        bridge: Some(h.bridge().to_string()),
        ..Default::default()
    };
    for s in h.local_subnets() {
        if range.contains(&s) {
            r.isolated_subnets.insert(s);
        }
    }
    r.exposed.extend(exposed.iter().copied());
    r.published.extend(h.published());
    if !exposed.is_empty() && *lock(&h.inner.masquerade) {
        r.masquerade = Some(Masquerade {
            range,
            bridge: h.bridge().to_string(),
        });
    }
    r
}

/// Applies the rules for the current state; a failure is logged and returned.
pub async fn apply_firewall(h: &DatapathHandle) -> Option<String> {
    let h = h.clone();
    let res = tokio::task::spawn_blocking(move || {
        // One update at a time: iptables' check-then-insert and nft's replace race
        // otherwise (two updates at once left duplicate DOCKER-USER rules).
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let exposed = weft_datapath::expose::exposed(h.bridge()).unwrap_or_default();
        let rules = ruleset(&h, h.inner.range, &exposed);
        // A dockerd started after weft drops forwarded overlay traffic unless weft's
        // accepts are in its DOCKER-USER chain (a no-op without Docker).
        if let Err(e) = DockerForward::new(CommandRunner::new()).ensure(h.bridge()) {
            tracing::warn!("Docker's FORWARD chain: {e}");
        }
        let mut fw = Nftables::new(CommandRunner::new());
        // No rule would match: keep no tables at all, so the host's traffic (VXLAN
        // included) does not pay for a NAT hook and connection tracking.
        if rules.masquerade.is_none()
            && rules.published.is_empty()
            && rules.isolated_subnets.iter().all(|s| *s == h.inner.range)
        {
            fw.clear()
        } else {
            fw.apply(&rules)
        }
    })
    .await;
    let err = match res {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!("firewall not updated: {err}");
    Some(err)
}

/// `weft expose`: addresses for the host on the bridge, masquerading unless told not to.
pub async fn expose(
    dp: &DatapathHandle,
    ipam: &IpamHandle,
    intents: &Arc<Intents>,
    req: ExposeRequest,
) -> Result<AddrsResponse, ExposeError> {
    let words = if req.addrs.is_empty() {
        vec!["net:default".to_string()]
    } else {
        req.addrs.clone()
    };
    let specs = weft_ipam::parse_addr_specs(&words)?;
    // Recorded before anything changes: a kill -9 from here on is undone at the next start.
    let _pending = intents
        .begin(Intent::host(Op::Expose, EXPOSE_OWNER, Vec::new()))
        .map_err(ExposeError::Record)?;
    let state_dir = dp.inner.state_dir.clone();
    // Exposed before (IPAM gives an owner one address per subnet, so it may answer with
    // one of these): a failure here must not take them away.
    let before = {
        let dir = state_dir.clone();
        tokio::task::spawn_blocking(move || recorded(&dir).unwrap_or_default())
            .await
            .unwrap_or_default()
    };
    let was_before = |n: &Ipv4Net| before.iter().any(|b| b.addr() == n.addr());
    let mut nets = Vec::new();
    for spec in &specs {
        match ipam.allocate(EXPOSE_OWNER, spec).await {
            Ok(net) => nets.push(net),
            Err(e) => {
                for n in nets.iter().filter(|n| !was_before(n)) {
                    let _ = ipam.release(EXPOSE_OWNER, Some(*n)).await;
                }
                return Err(e.into());
            }
        }
    }
    let todo = nets.clone();
    let dp_task = dp.clone();
    let keep = before.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let dp = dp_task;
        let mut done = Vec::new();
        let res = todo
            .iter()
            .try_for_each(|n| {
                weft_datapath::expose(dp.bridge(), *n).map_err(|e| e.to_string())?;
                done.push(*n);
                Ok(())
            })
            .and_then(|()| enable_forwarding(&dp.inner.state_dir))
            // The commit: from here on the addresses are exposed, also after a crash.
            .and_then(|()| record(&dp.inner.state_dir, &todo, &[]));
        if res.is_err() {
            // Roll back what this call added; addresses exposed before stay.
            for n in done
                .iter()
                .filter(|n| !keep.iter().any(|k| k.addr() == n.addr()))
            {
                let _ = weft_datapath::hide(dp.bridge(), *n);
            }
        }
        res
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = res {
        for n in nets.iter().filter(|n| !was_before(n)) {
            let _ = ipam.release(EXPOSE_OWNER, Some(*n)).await;
        }
        return Err(ExposeError::Expose(e));
    }
    *lock(&dp.inner.masquerade) = !req.without_masquerade;
    save_masquerade(&dp.inner.state_dir, !req.without_masquerade);
    if let Some(e) = apply_firewall(dp).await {
        return Err(ExposeError::Firewall(e));
    }
    tracing::info!(addrs = ?nets, masquerade = !req.without_masquerade, "exposed");
    Ok(AddrsResponse {
        addrs: nets.iter().map(|n| n.to_string()).collect(),
    })
}

/// `weft hide`: takes the host's overlay addresses (all, or those named) away.
pub async fn hide(
    dp: &DatapathHandle,
    ipam: &IpamHandle,
    intents: &Arc<Intents>,
    req: HideRequest,
) -> Result<AddrsResponse, ExposeError> {
    let dp = dp.clone();
    let bridge = dp.bridge().to_string();
    let exposed = tokio::task::spawn_blocking(move || weft_datapath::expose::exposed(&bridge))
        .await
        .map_err(|e| ExposeError::Hide(e.to_string()))?
        .map_err(|e| ExposeError::Hide(e.to_string()))?;
    let specs = weft_ipam::parse_addr_specs(&req.addrs)?;
    // The services' addresses are not the user's to hide (`datapath::ingress`).
    let ingress = ipam.lookup(super::ingress::INGRESS_OWNER).await?;
    let chosen: Vec<Ipv4Net> = exposed
        .iter()
        .copied()
        .filter(|a| !ingress.iter().any(|i| i.addr() == a.addr()))
        .filter(|a| {
            specs.is_empty()
                || specs.iter().any(|s| match s {
                    weft_ipam::AddrSpec::Claim(c) => {
                        crate::ipam::cidr_to_net(c).is_ok_and(|n| n.addr() == a.addr())
                    }
                    weft_ipam::AddrSpec::Subnet(c) => {
                        crate::ipam::cidr_to_net(c).is_ok_and(|n| n.contains(&a.addr()))
                    }
                    weft_ipam::AddrSpec::DefaultSubnet => ipam.default_subnet().contains(&a.addr()),
                })
        })
        .collect();
    if chosen.is_empty() {
        return Ok(AddrsResponse { addrs: Vec::new() });
    }
    let _pending = intents
        .begin(Intent::host(
            Op::Hide,
            EXPOSE_OWNER,
            chosen.iter().map(|n| n.to_string()).collect(),
        ))
        .map_err(ExposeError::Record)?;
    // The commit first: a kill -9 from here on is carried through at the next start.
    let dir = dp.inner.state_dir.clone();
    let off = chosen.clone();
    tokio::task::spawn_blocking(move || record(&dir, &[], &off))
        .await
        .map_err(|e| ExposeError::Record(e.to_string()))?
        .map_err(ExposeError::Record)?;
    take_away(&dp, ipam, &chosen)
        .await
        .map_err(ExposeError::Hide)?;
    Ok(AddrsResponse {
        addrs: chosen.iter().map(|n| n.to_string()).collect(),
    })
}

/// Takes `addrs` off the bridge and gives them back to IPAM; forwarding goes with the last.
async fn take_away(
    dp: &DatapathHandle,
    ipam: &IpamHandle,
    addrs: &[Ipv4Net],
) -> Result<(), String> {
    let todo = addrs.to_vec();
    let bridge = dp.bridge().to_string();
    let state_dir = dp.inner.state_dir.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        for n in &todo {
            weft_datapath::hide(&bridge, *n).map_err(|e| e.to_string())?;
        }
        // The last exposed address gone: nothing routes through this host any more.
        if weft_datapath::expose::exposed(&bridge).is_ok_and(|left| left.is_empty()) {
            restore_forwarding(&state_dir)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    for n in addrs {
        if let Err(e) = ipam.release(EXPOSE_OWNER, Some(*n)).await {
            tracing::debug!(addr = %n, "release of an exposed address: {e}");
        }
    }
    apply_firewall(dp).await;
    Ok(())
}

/// At start: the bridge and IPAM agree with the record of exposed addresses again. What is
/// on the bridge or held by IPAM for expose but not recorded (an expose a crash cut short,
/// a hide it cut short) is taken away; a recorded address missing from the bridge comes
/// back. A record from a version without one adopts what is on the bridge and in IPAM.
///
/// `in_flight` says whether an expose or hide of this run is under way (the Docker
/// plugin's gateways do not wait for reconciliation): asked after the bridge and IPAM
/// were read, so an expose that allocated before that is seen; then nothing unrecorded is
/// taken away (its intent owns every address of expose until the next start).
pub async fn reconcile(
    dp: &DatapathHandle,
    ipam: &IpamHandle,
    in_flight: impl Fn() -> bool,
) -> Result<(), String> {
    let bridge = dp.bridge().to_string();
    let on_bridge = tokio::task::spawn_blocking(move || weft_datapath::expose::exposed(&bridge))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let held = ipam.lookup(EXPOSE_OWNER).await.map_err(|e| e.to_string())?;
    let ingress = ipam
        .lookup(super::ingress::INGRESS_OWNER)
        .await
        .map_err(|e| e.to_string())?;
    let dir = dp.inner.state_dir.clone();
    let record_now = tokio::task::spawn_blocking(move || recorded(&dir))
        .await
        .map_err(|e| e.to_string())?;
    let record_now = match record_now {
        Some(r) => r,
        None => {
            let adopted: Vec<Ipv4Net> = on_bridge
                .iter()
                .copied()
                .filter(|a| held.iter().any(|h| h.addr() == a.addr()))
                .collect();
            let dir = dp.inner.state_dir.clone();
            let a = adopted.clone();
            tokio::task::spawn_blocking(move || record(&dir, &a, &[]))
                .await
                .map_err(|e| e.to_string())??;
            adopted
        }
    };
    let in_record = |n: &Ipv4Net| record_now.iter().any(|r| r.addr() == n.addr());
    let range = dp.inner.range;
    // Only addresses in weft's range are weft's to take away, and the services' are theirs.
    let mut stray: Vec<Ipv4Net> = on_bridge
        .iter()
        .copied()
        .filter(|a| range.contains(&a.addr()) && !in_record(a))
        .filter(|a| !ingress.iter().any(|i| i.addr() == a.addr()))
        .collect();
    for h in &held {
        if !in_record(h) && !stray.iter().any(|s| s.addr() == h.addr()) {
            stray.push(*h);
        }
    }
    let missing: Vec<Ipv4Net> = record_now
        .iter()
        .copied()
        .filter(|r| !on_bridge.iter().any(|b| b.addr() == r.addr()))
        .collect();
    for r in &record_now {
        if !held.iter().any(|h| h.addr() == r.addr()) {
            tracing::warn!(addr = %r, "an exposed address IPAM does not hold for expose; hide it and expose it again");
        }
    }
    if !stray.is_empty() && in_flight() {
        tracing::info!(addrs = ?stray, "exposed addresses not recorded, but an expose is under way: left as they are");
        stray.clear();
    }
    if !stray.is_empty() {
        tracing::info!(addrs = ?stray, "exposed addresses no acknowledged expose made: hidden and released");
        take_away(dp, ipam, &stray).await?;
    }
    if !missing.is_empty() {
        let b = dp.bridge().to_string();
        let m = missing.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            for n in &m {
                weft_datapath::expose(&b, *n).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())??;
        tracing::info!(addrs = ?missing, "exposed addresses put back on the bridge");
        apply_firewall(dp).await;
    }
    Ok(())
}

/// The host's exposed addresses as an owner of IPAM addresses (the record, and every
/// address of expose while one is in flight).
pub struct ExposeOwner {
    /// Where the record lives.
    pub state_dir: std::path::PathBuf,
}

impl Owner for ExposeOwner {
    fn kind(&self) -> &'static str {
        "expose"
    }

    fn owned(&self) -> futures::future::BoxFuture<'_, Owned> {
        Box::pin(async move {
            let dir = self.state_dir.clone();
            let rec = tokio::task::spawn_blocking(move || recorded(&dir))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            Owned {
                addrs: rec
                    .iter()
                    .map(|a| Claim::addr(EXPOSE_OWNER, a.addr()))
                    .collect(),
                ports: Vec::new(),
            }
        })
    }
}

/// The addresses `weft ps` lists for the host (`weft:expose`), as recorded.
pub fn listed(state_dir: &Path) -> Vec<Ipv4Net> {
    recorded(state_dir).unwrap_or_default()
}

/// Removes every link, FDB entry, address, route and nftables rule weft made on this
/// host (the kernel side of `weft reset`); keeps going past failures and reports them.
pub fn reset_host(bridge: &str) -> Result<Vec<String>, String> {
    let mut errors = Vec::new();
    let mut removed = Vec::new();
    match weft_datapath::fastdp::teardown(weft_datapath::fastdp::VXLAN_NAME) {
        Ok(true) => removed.push(weft_datapath::fastdp::VXLAN_NAME.to_string()),
        Ok(false) => {}
        Err(e) => errors.push(e.to_string()),
    }
    match weft_datapath::reset(bridge) {
        Ok(names) => removed.extend(names),
        Err(e) => errors.push(e.to_string()),
    }
    if let Err(e) = Nftables::new(CommandRunner::new()).reset() {
        errors.push(e.to_string());
    }
    // The host's service table (containers' tables go with their namespaces).
    if let Err(e) = weft_firewall::Runner::run(
        &mut CommandRunner::new(),
        &weft_firewall::render_svc_reset(),
    ) {
        errors.push(e.to_string());
    }
    if let Err(e) = DockerForward::new(CommandRunner::new()).remove(bridge) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(errors.join("; "))
    }
}
