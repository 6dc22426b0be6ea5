//! Programming the service tables: the host's (`SvcScope::Host`) and one in every
//! attached container's namespace (`SvcScope::Container`), all from the same plan.
//!
//! One thread does it (`weft-svc-program`): nft is a blocking child process, and one
//! thread keeps the order of plans without locks. It drains what is queued, then brings
//! every table to the latest plan (a table already at it is skipped; `SvcTable` sends
//! only the differences), so a burst of plan changes costs one sync per table. A table
//! whose sync failed is tried again at the next change or after [`RETRY`].

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use weft_datapath::Netns;
use weft_firewall::{CommandRunner, FirewallError, Runner, SvcRule, SvcScope, SvcTable};
use weft_services::{EndpointMode, Plan};

/// How soon a failed sync is tried again without a new plan.
const RETRY: Duration = Duration::from_secs(5);

/// The rules of a plan; a published target port is a VIP port too.
pub(super) fn rules(plan: &Plan) -> Vec<SvcRule> {
    plan.services
        .iter()
        .map(|s| {
            let vip = match s.mode {
                EndpointMode::Vip => s.vip,
                EndpointMode::Dnsrr => None,
            };
            let mut ports: Vec<_> = s.ports.iter().map(|p| (p.proto, p.port)).collect();
            if vip.is_some() {
                for p in &s.published {
                    if !ports.contains(&(p.proto, p.port)) {
                        ports.push((p.proto, p.port));
                    }
                }
            }
            SvcRule {
                name: s.name.clone(),
                vip,
                ports,
                published: s
                    .published
                    .iter()
                    .map(|p| (p.proto, p.host_port, p.port))
                    .collect(),
                backends: s.backends.clone(),
            }
        })
        .collect()
}

/// Runs `nft -f -` inside a container's namespace (a thread that enters it spawns nft,
/// which inherits the namespace).
pub struct NetnsRunner(pub Arc<Netns>);

impl Runner for NetnsRunner {
    fn run(&mut self, script: &str) -> Result<(), FirewallError> {
        let ns = self.0.clone();
        ns.run(|| CommandRunner::new().run(script))
            .map_err(|e| FirewallError::Spawn {
                program: format!("nft in {}", ns.describe()),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

type Done = Option<oneshot::Sender<()>>;

enum Job {
    Want(Arc<Vec<SvcRule>>),
    Attach {
        id: String,
        ns: Arc<Netns>,
        done: Done,
    },
    Detach {
        id: String,
        done: Done,
    },
    /// `weft reset`: every table goes, and nothing is programmed after.
    Clear {
        done: Done,
    },
}

/// The handle of the programming thread.
#[derive(Clone)]
pub(super) struct Programmer {
    tx: mpsc::Sender<Job>,
}

impl Programmer {
    /// Starts the thread; it ends when every handle is dropped.
    pub fn start() -> Programmer {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("weft-svc-program".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!("cannot start the service programming thread: {e}");
        }
        Programmer { tx }
    }

    /// Every table should hold `rules`.
    pub fn want(&self, rules: Arc<Vec<SvcRule>>) {
        let _ = self.tx.send(Job::Want(rules));
    }

    /// A container to program; `done` is told once its table holds the current plan.
    pub fn attach(&self, id: &str, ns: Arc<Netns>, done: Done) {
        let _ = self.tx.send(Job::Attach {
            id: id.to_string(),
            ns,
            done,
        });
    }

    /// Every table goes (the containers' and the host's), and later plans and attaches
    /// are ignored: the router is being reset and stops; `done` is told once they are gone.
    pub fn clear(&self, done: Done) {
        let _ = self.tx.send(Job::Clear { done });
    }

    /// A container whose table goes (its namespace is let go).
    pub fn detach(&self, id: &str, done: Done) {
        let _ = self.tx.send(Job::Detach {
            id: id.to_string(),
            done,
        });
    }
}

/// One table and what it was last brought to.
struct Slot<R: Runner> {
    table: SvcTable<R>,
    synced: Option<Arc<Vec<SvcRule>>>,
    /// Whether a table may exist (one from the last run, or one we programmed).
    exists: bool,
}

impl<R: Runner> Slot<R> {
    fn new(runner: R, scope: SvcScope, exists: bool) -> Self {
        Slot {
            table: SvcTable::new(runner, scope),
            synced: None,
            exists,
        }
    }

    /// Brings the table to `wanted` (no services: no table); false on failure.
    fn sync(&mut self, wanted: &Arc<Vec<SvcRule>>, what: &str) -> bool {
        if self.synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, wanted)) {
            return true;
        }
        let res = if wanted.is_empty() {
            if self.exists {
                self.table.delete()
            } else {
                Ok(())
            }
        } else {
            self.table.sync(wanted).map(|stats| {
                tracing::debug!(table = what, ?stats, "service table synced");
            })
        };
        match res {
            Ok(()) => {
                self.synced = Some(wanted.clone());
                self.exists = !wanted.is_empty();
                true
            }
            Err(e) => {
                tracing::warn!(table = what, "service table not programmed: {e}");
                self.synced = None;
                self.exists = true;
                false
            }
        }
    }
}

fn run(rx: mpsc::Receiver<Job>) {
    let mut wanted: Arc<Vec<SvcRule>> = Arc::new(Vec::new());
    // A table of the last run is replaced (or deleted) at the first sync.
    let mut host = Slot::new(CommandRunner::new(), SvcScope::Host, true);
    let mut containers: BTreeMap<String, Slot<NetnsRunner>> = BTreeMap::new();
    let mut failed = false;
    let mut started = false;
    let mut cleared = false;
    loop {
        let first = if failed {
            match rx.recv_timeout(RETRY) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        };
        let mut dones = Vec::new();
        for job in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match job {
                // After a reset's clear nothing is programmed any more.
                Job::Want(_) if cleared => {}
                Job::Attach { done, .. } if cleared => dones.extend(done),
                Job::Want(w) => {
                    wanted = w;
                    started = true;
                }
                Job::Clear { done } => {
                    for (id, mut slot) in std::mem::take(&mut containers) {
                        if slot.exists {
                            if let Err(e) = slot.table.delete() {
                                tracing::warn!(container = %id, "service table not deleted: {e}");
                            }
                        }
                    }
                    wanted = Arc::new(Vec::new());
                    started = true;
                    cleared = true;
                    dones.extend(done);
                }
                Job::Attach { id, ns, done } => {
                    // A namespace of the last run (before the first plan) may hold a table.
                    let restored = !started;
                    containers.entry(id).or_insert_with(|| {
                        Slot::new(NetnsRunner(ns), SvcScope::Container, restored)
                    });
                    dones.extend(done);
                }
                Job::Detach { id, done } => {
                    if let Some(mut slot) = containers.remove(&id) {
                        if slot.exists {
                            if let Err(e) = slot.table.delete() {
                                tracing::debug!(container = %id, "service table not deleted: {e}");
                            }
                        }
                    }
                    dones.extend(done);
                }
            }
        }
        // Nothing is programmed before the core's first plan (it may hold the last run's).
        failed = false;
        if started {
            failed |= !host.sync(&wanted, "host");
            for (id, slot) in containers.iter_mut() {
                failed |= !slot.sync(&wanted, id);
            }
        }
        for d in dones {
            let _ = d.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use weft_services::{PlannedService, PortSpec, Publish};
    use weft_types::Proto;

    #[test]
    fn a_published_target_port_is_a_vip_port_too_and_dnsrr_has_no_vip() {
        let vip = Ipv4Addr::new(10, 32, 0, 2);
        let plan = Plan {
            services: vec![
                PlannedService {
                    name: "web".into(),
                    mode: EndpointMode::Vip,
                    vip: Some(vip),
                    ports: vec![PortSpec {
                        proto: Proto::Udp,
                        port: 53,
                    }],
                    published: vec![Publish {
                        proto: Proto::Tcp,
                        host_port: 8000,
                        port: 80,
                    }],
                    backends: vec![Ipv4Addr::new(10, 32, 0, 9)],
                },
                PlannedService {
                    name: "db".into(),
                    mode: EndpointMode::Dnsrr,
                    vip: Some(vip),
                    ports: Vec::new(),
                    published: Vec::new(),
                    backends: Vec::new(),
                },
            ],
        };
        let r = rules(&plan);
        assert_eq!(r[0].ports, vec![(Proto::Udp, 53), (Proto::Tcp, 80)]);
        assert_eq!(r[0].published, vec![(Proto::Tcp, 8000, 80)]);
        assert_eq!(r[0].vip, Some(vip));
        assert_eq!(r[1].vip, None);
    }

    /// Records the scripts a table would run.
    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl Runner for Recorder {
        fn run(&mut self, script: &str) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push(script.to_string());
            Ok(())
        }
    }

    #[test]
    fn a_table_that_never_existed_is_not_deleted_and_one_that_did_is() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let empty = Arc::new(Vec::new());
        let mut fresh = Slot::new(Recorder(log.clone()), SvcScope::Container, false);
        assert!(fresh.sync(&empty, "fresh"));
        assert!(log.lock().unwrap().is_empty());
        let mut old = Slot::new(Recorder(log.clone()), SvcScope::Container, true);
        assert!(old.sync(&empty, "old"));
        assert_eq!(log.lock().unwrap().len(), 1);
        // Already at this plan: nothing is run again.
        assert!(old.sync(&empty, "old"));
        assert_eq!(log.lock().unwrap().len(), 1);
    }
}
