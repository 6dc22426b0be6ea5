//! The task that owns the services core: it runs the core on the mesh with the app
//! driver, hands it the handle's requests, and carries out its effects in order before it
//! answers them (so an acknowledged create is in services.json and programmed).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use weft_api::ServiceInfo;
use weft_mesh::Millis;
use weft_services::{Saved, ServiceEffect, ServicesCore};

use super::health::Check;
use super::program::Programmer;
use crate::datapath::ingress::Keeper;
use crate::dns::DnsHandle;
use crate::ipam::IpamHandle;
use crate::mesh::app_driver::AppDriver;

/// What a request sends back once the effects it caused are carried out.
pub(super) type Reply = Box<dyn FnOnce() + Send>;
/// A request: runs on the core, returns how to answer.
pub(super) type Job = Box<dyn FnOnce(&mut ServicesCore, Millis) -> Reply + Send>;

/// A request for the task.
pub(super) enum Cmd {
    /// Run this on the core.
    Job(Job),
}

/// Version of services.json.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    core: Saved,
}

/// Reads services.json (none: a first start).
pub(super) fn load(path: &Path) -> anyhow::Result<Option<Saved>> {
    let Some(f) = crate::persist::load_json::<File>(path, "start with no services")? else {
        return Ok(None);
    };
    crate::persist::check_format(path, f.format, FORMAT)?;
    Ok(Some(f.core))
}

/// Where the task carries the core's effects out.
pub(super) struct Ctx {
    /// services.json.
    pub path: PathBuf,
    /// VIPs go back here.
    pub ipam: IpamHandle,
    /// Service names.
    pub dns: DnsHandle,
    /// The host's and the containers' tables.
    pub programmer: Programmer,
    /// This host's tasks to health-check.
    pub checks: watch::Sender<Vec<Check>>,
    /// The host's addresses in the service subnets.
    pub ingress: Keeper,
    /// Creates of ours that lost a race, for the user.
    pub lost: Losses,
}

/// Names whose create on this host lost to another peer's made at the same time, with
/// the winner: `weft service ls` and `inspect` tell the user while the winner's
/// definition stands (bounded by the number of names created here).
#[derive(Clone, Default)]
pub(super) struct Losses(Arc<std::sync::Mutex<BTreeMap<String, String>>>);

impl Losses {
    fn lost(&self, name: &str, winner: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_string(), winner.to_string());
        }
    }

    /// A new create of `name` here: an older loss no longer applies.
    pub fn forget(&self, name: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(name);
        }
    }

    /// Notes on `info` that our create of its name lost, while the winner's stands.
    pub fn tell(&self, info: &mut ServiceInfo) {
        let Ok(m) = self.0.lock() else { return };
        if let Some(winner) = m.get(&info.name).filter(|w| **w == info.origin) {
            info.lost_race = Some(format!(
                "this host created service {} at the same time as peer {winner}; {winner}'s \
                 definition won everywhere and this host's was withdrawn (its VIP released)",
                info.name
            ));
        }
    }
}

/// Runs the core until the handle is dropped.
pub(super) async fn run(
    mut app: AppDriver<ServicesCore>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ctx: Ctx,
) {
    app.topology_now();
    // The state of the last run is programmed whole at start.
    let mut replies: Vec<Reply> = Vec::new();
    let mut first = true;
    loop {
        let effects = app.flush();
        carry_out(&ctx, &app.core, effects, std::mem::take(&mut first)).await;
        for r in replies.drain(..) {
            r();
        }
        tokio::select! {
            c = cmds.recv() => {
                let Some(Cmd::Job(job)) = c else { break };
                let now = app.now();
                replies.push(job(&mut app.core, now));
                // Requests queued meanwhile go in the same round.
                while let Ok(Cmd::Job(job)) = cmds.try_recv() {
                    let now = app.now();
                    replies.push(job(&mut app.core, now));
                }
            }
            _ = app.next() => {}
        }
    }
    tracing::debug!("services task stopped");
}

/// Carries out one round of effects: persist (the last state only), release VIPs, and
/// when the plan changed, program it, name it and check it.
async fn carry_out(ctx: &Ctx, core: &ServicesCore, effects: Vec<ServiceEffect>, first: bool) {
    let mut plan_changed = first;
    let mut saved = None;
    let mut release = Vec::new();
    for e in effects {
        match e {
            ServiceEffect::PlanChanged => plan_changed = true,
            ServiceEffect::Persist(s) => saved = Some(s),
            ServiceEffect::ReleaseVip { name, vip } => release.push((name, vip)),
            ServiceEffect::Lost { name, winner } => {
                tracing::warn!(
                    service = %name,
                    %winner,
                    "another peer created service {name} at the same time and won; ours is withdrawn"
                );
                ctx.lost.lost(&name, &winner);
            }
        }
    }
    if let Some(s) = saved {
        let path = ctx.path.clone();
        let file = File {
            format: FORMAT,
            core: s,
        };
        let res =
            tokio::task::spawn_blocking(move || crate::persist::store_json(&path, &file)).await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot write {}: {e}", ctx.path.display()),
            Err(e) => tracing::warn!("cannot write {}: {e}", ctx.path.display()),
        }
    }
    for (name, vip) in release {
        release_vip(&ctx.ipam, &name, vip).await;
    }
    if plan_changed {
        ctx.programmer
            .want(Arc::new(super::program::rules(core.plan())));
        super::names::update(&ctx.dns, core.plan());
        ctx.ingress.want(super::spec::ingress(core));
    }
    // Local tasks can change without the plan (a task out of rotation from the start).
    let checks = super::health::checks(core);
    ctx.checks.send_if_modified(|c| {
        let changed = *c != checks;
        if changed {
            *c = checks;
        }
        changed
    });
}

async fn release_vip(ipam: &IpamHandle, name: &str, vip: Ipv4Addr) {
    match ipam
        .release(&super::vip_owner(name), Some(Ipv4Net::from(vip)))
        .await
    {
        Ok(()) => tracing::info!(service = %name, %vip, "VIP released"),
        Err(e) => tracing::warn!(service = %name, %vip, "VIP not released: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, origin: &str) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            origin: origin.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_lost_create_is_told_while_the_winner_stands_and_forgotten_on_a_new_create() {
        let losses = Losses::default();
        losses.lost("web", "h1");
        let mut won = info("web", "h1");
        losses.tell(&mut won);
        let note = won.lost_race.expect("the loss is told");
        assert!(
            note.contains("peer h1") && note.contains("withdrawn"),
            "{note}"
        );

        // A later definition of the name from elsewhere is not the one we lost to.
        let mut other = info("web", "h3");
        losses.tell(&mut other);
        assert_eq!(other.lost_race, None);
        let mut unrelated = info("db", "h1");
        losses.tell(&mut unrelated);
        assert_eq!(unrelated.lost_race, None);

        losses.forget("web");
        let mut again = info("web", "h1");
        losses.tell(&mut again);
        assert_eq!(again.lost_race, None);
    }
}
