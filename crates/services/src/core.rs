//! The services core of one router: local requests, and what it asks its driver to do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use weft_mesh::{GossipPeers, Millis};
use weft_types::port::Proto;

use crate::error::ServiceError;
use crate::limits::{
    MAX_CONTAINER_LEN, MAX_ENTRIES_PER_NAME, MAX_NAMES, MAX_SERVICES, MAX_TASKS_PER_HOST,
};
use crate::names::{Entry, NameChange, NameState, Names};
use crate::plan::{planned, Claims, Plan};
use crate::saved::Saved;
use crate::spec::{check_name, Definition, ServiceSpec};
use crate::tasks::{Task, TaskKey, Tasks};
use crate::wire::Message;
use crate::CHANNEL;

/// What the core asks its driver to carry out besides sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEffect {
    /// The plan changed: read [`ServicesCore::plan`] and program it.
    PlanChanged,
    /// Write services.json atomically (the whole state to persist).
    Persist(Saved),
    /// A VIP this host allocated is no longer used (the service was removed, or our
    /// create of it lost): release it.
    ReleaseVip {
        /// Service name.
        name: String,
        /// The address.
        vip: Ipv4Addr,
    },
    /// Our concurrent create of `name` lost to `winner`'s.
    Lost {
        /// Service name.
        name: String,
        /// The peer whose create won.
        winner: String,
    },
}

/// How often a digest of what we hold is broadcast by default, ms.
pub const DIGEST_INTERVAL: Millis = 5_000;

/// The services core of one router.
#[derive(Debug, Clone)]
pub struct ServicesCore {
    pub(crate) digest_interval: Millis,
    /// Lamport clock of creates and removals.
    pub(crate) clock: u64,
    pub(crate) names: Names,
    pub(crate) tasks: Tasks,
    claims: Claims,
    plan: Plan,
    /// Who we gossip with, and what is queued for the mesh.
    pub(crate) peers: GossipPeers,
    /// When we last asked a peer for its state (at most once per digest interval).
    pub(crate) asked: BTreeMap<String, Millis>,
    /// The last (their, our) names hash that differed, per peer: asked for only when a
    /// difference outlasts a digest interval (not while changes are in flight).
    pub(crate) mismatch: BTreeMap<String, (u64, u64)>,
    /// Since when each peer that went away is unreachable.
    pub(crate) down_since: BTreeMap<String, Millis>,
    pub(crate) next_digest: Millis,
    effects: VecDeque<ServiceEffect>,
    plan_changed: bool,
    /// What is saved changed since the last [`ServiceEffect::Persist`].
    dirty: bool,
}

impl ServicesCore {
    /// A core for peer `me`, from what it saved before a restart (entries of `saved` that
    /// are not valid are left out).
    pub fn new(me: &str, saved: Option<Saved>, now: Millis) -> Self {
        let mut core = ServicesCore {
            digest_interval: DIGEST_INTERVAL,
            clock: 0,
            names: Names::default(),
            tasks: Tasks::default(),
            claims: Claims::default(),
            plan: Plan::default(),
            peers: GossipPeers::new(me, CHANNEL),
            asked: BTreeMap::new(),
            mismatch: BTreeMap::new(),
            down_since: BTreeMap::new(),
            next_digest: now.saturating_add(DIGEST_INTERVAL),
            effects: VecDeque::new(),
            plan_changed: false,
            dirty: false,
        };
        core.tasks.host_mut(me).up = true;
        let Some(saved) = saved else {
            return core;
        };
        for st in saved.names {
            if let Some(st) = valid_state(st) {
                if let Some(ch) = core.names.merge(st) {
                    if let Some(def) = ch.after {
                        core.claims.add(&def);
                    }
                }
            }
        }
        core.names.forget_oldest_dead();
        core.clock = saved.clock.max(core.names.max_version());
        let own = core.tasks.host_mut(me);
        own.seq = saved.task_seq;
        for mut t in saved.tasks {
            t.host = me.to_string();
            let ok = check_name(&t.service).is_ok()
                && !t.container.is_empty()
                && t.container.len() <= MAX_CONTAINER_LEN;
            let room = core.tasks.host(me).map_or(0, |h| h.len()) < MAX_TASKS_PER_HOST;
            if ok && room {
                core.tasks.upsert(&t);
            }
        }
        let names: Vec<String> = core.names.live_all().map(|d| d.spec.name.clone()).collect();
        for name in names {
            core.replan(&name);
        }
        core.plan_changed = false;
        core
    }

    /// The same core with another digest interval (ms): how soon lost gossip is repaired.
    pub fn with_digest_interval(mut self, interval: Millis) -> Self {
        self.next_digest = self
            .next_digest
            .saturating_sub(self.digest_interval)
            .saturating_add(interval.max(1));
        self.digest_interval = interval.max(1);
        self
    }

    /// Creates a service; refuses a live name, a host port another service publishes and
    /// a VIP another service has.
    pub fn create(&mut self, now: Millis, spec: ServiceSpec) -> Result<Definition, ServiceError> {
        let _ = now;
        let spec = self.check_create(&spec, false)?;
        let name = spec.name.clone();
        let version = self.next_version();
        let st = NameState {
            name: name.clone(),
            removed: 0,
            entries: vec![Entry {
                origin: self.peers.me().to_string(),
                version,
                spec: Some(spec.clone()),
            }],
        };
        if self.names.entries_after_merge(&st) > MAX_ENTRIES_PER_NAME {
            return Err(too_many(
                &format!("concurrent creates of {name}"),
                MAX_ENTRIES_PER_NAME,
            ));
        }
        if !self.names.holds(&name) && self.names.len() >= MAX_NAMES {
            return Err(too_many("service names held", MAX_NAMES));
        }
        self.merge_names(vec![st]);
        self.broadcast_names(&[name]);
        Ok(Definition {
            spec,
            origin: self.peers.me().to_string(),
            version,
        })
    }

    /// What [`ServicesCore::create`] would refuse of `spec` now, checked before its VIP
    /// is allocated (mode vip without a VIP passes; a VIP given is checked).
    pub fn precheck(&self, spec: &ServiceSpec) -> Result<(), ServiceError> {
        self.check_create(spec, true).map(drop)
    }

    /// `spec` in normal form if it can be created now.
    fn check_create(
        &self,
        spec: &ServiceSpec,
        vip_pending: bool,
    ) -> Result<ServiceSpec, ServiceError> {
        let spec = spec.normal_form(vip_pending)?;
        if self.names.live(&spec.name).is_some() {
            return Err(ServiceError::Exists(spec.name));
        }
        if self.names.live_count() >= MAX_SERVICES {
            return Err(too_many("services", MAX_SERVICES));
        }
        if let Some(vip) = spec.vip {
            if let Some(holder) = self.claims.vip_holder(vip) {
                return Err(ServiceError::VipInUse {
                    vip,
                    service: holder.to_string(),
                });
            }
        }
        for p in &spec.published {
            if let Some(holder) = self.claims.port_holder(p.proto, p.host_port) {
                return Err(ServiceError::PortInUse {
                    proto: p.proto,
                    port: p.host_port,
                    service: holder.to_string(),
                });
            }
        }
        Ok(spec)
    }

    /// Removes a live service (a tombstone, gossiped); returns what it was. Our own tasks
    /// of it go with it, and every host drops its own as the removal reaches it.
    pub fn remove(&mut self, now: Millis, name: &str) -> Result<Definition, ServiceError> {
        let _ = now;
        let Some(def) = self.names.live(name).cloned() else {
            return Err(ServiceError::Unknown(name.to_string()));
        };
        let removed = self.next_version();
        self.merge_names(vec![NameState {
            name: name.to_string(),
            removed,
            entries: Vec::new(),
        }]);
        self.broadcast_names(&[name.to_string()]);
        Ok(def)
    }

    /// Adds a task of ours: `addr` of local `container` serves `service`. A task of a
    /// service with a health check starts out of rotation, until its first check passes.
    pub fn add_task(
        &mut self,
        now: Millis,
        service: &str,
        addr: Ipv4Addr,
        container: &str,
    ) -> Result<(), ServiceError> {
        let _ = now;
        let Some(def) = self.names.live(service) else {
            return Err(ServiceError::Unknown(service.to_string()));
        };
        let invalid = |why: String| ServiceError::Invalid {
            name: service.to_string(),
            why,
        };
        if container.is_empty() || container.len() > MAX_CONTAINER_LEN {
            return Err(invalid(format!(
                "a container id must be 1 to {MAX_CONTAINER_LEN} bytes long"
            )));
        }
        let subnet = def.spec.subnet;
        if !subnet.contains(&addr) || def.spec.vip == Some(addr) {
            return Err(invalid(format!(
                "task address {addr} is not a task address of its subnet {subnet}: attach the \
                 container to {subnet}"
            )));
        }
        let healthy = def.spec.health.is_none();
        let own = self.tasks.host(self.peers.me());
        let held = own.is_some_and(|h| h.contains(service, addr));
        let mut task = Task {
            service: service.to_string(),
            addr,
            host: self.peers.me().to_string(),
            container: container.to_string(),
            healthy,
        };
        if held {
            let old = self.own_task(service, addr);
            if old.as_ref().is_some_and(|t| t.container == container) {
                return Ok(());
            }
            task.healthy = old.is_some_and(|t| t.healthy);
        } else if own.map_or(0, |h| h.len()) >= MAX_TASKS_PER_HOST {
            return Err(too_many("tasks on this host", MAX_TASKS_PER_HOST));
        }
        self.change_own(vec![task], Vec::new());
        Ok(())
    }

    /// Removes a task of ours; whether there was one.
    pub fn remove_task(&mut self, now: Millis, service: &str, addr: Ipv4Addr) -> bool {
        let _ = now;
        if self.own_task(service, addr).is_none() {
            return false;
        }
        let key = TaskKey {
            service: service.to_string(),
            addr,
        };
        self.change_own(Vec::new(), vec![key]);
        true
    }

    /// Removes every task of a local container; how many.
    pub fn remove_container(&mut self, now: Millis, container: &str) -> usize {
        let _ = now;
        self.remove_own_where(|t| t.container == container)
    }

    /// Records the health of a task of ours; whether it changed.
    pub fn set_health(
        &mut self,
        now: Millis,
        service: &str,
        addr: Ipv4Addr,
        healthy: bool,
    ) -> bool {
        let _ = now;
        match self.own_task(service, addr) {
            Some(mut t) if t.healthy != healthy => {
                t.healthy = healthy;
                self.change_own(vec![t], Vec::new());
                true
            }
            _ => false,
        }
    }

    /// The live definition of `name`.
    pub fn definition(&self, name: &str) -> Option<&Definition> {
        self.names.live(name)
    }

    /// The live definitions, sorted by name.
    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.names.live_all()
    }

    /// Every host's tasks of `name`, with `healthy` meaning in rotation.
    pub fn tasks(&self, name: &str) -> Vec<Task> {
        self.tasks.of_service(name)
    }

    /// Our own tasks (the router health-checks these), with their health as checked.
    pub fn local_tasks(&self) -> Vec<Task> {
        self.tasks.of_host(self.peers.me())
    }

    /// What every host programs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Host ports published by live services, sorted.
    pub fn used_host_ports(&self) -> Vec<(Proto, u16)> {
        self.claims.host_ports()
    }

    /// This router's peer name.
    pub fn me(&self) -> &str {
        self.peers.me()
    }

    /// What to persist now (also emitted as [`ServiceEffect::Persist`] on every change).
    pub fn saved(&self) -> Saved {
        Saved {
            clock: self.clock,
            names: self.names.states(),
            task_seq: self.tasks.host(self.peers.me()).map_or(0, |h| h.seq),
            tasks: self.local_tasks(),
        }
    }

    fn own_task(&self, service: &str, addr: Ipv4Addr) -> Option<Task> {
        self.tasks.get(self.peers.me(), service, addr)
    }

    /// Removes our own tasks that match; how many.
    fn remove_own_where(&mut self, matches: impl Fn(&Task) -> bool) -> usize {
        let keys: Vec<TaskKey> = self
            .local_tasks()
            .into_iter()
            .filter(|t| matches(t))
            .map(|t| TaskKey {
                service: t.service,
                addr: t.addr,
            })
            .collect();
        let n = keys.len();
        if n > 0 {
            self.change_own(Vec::new(), keys);
        }
        n
    }

    /// A Lamport time above every create and removal we have seen.
    fn next_version(&mut self) -> u64 {
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    /// Changes our own task set (removes first) and broadcasts the change.
    fn change_own(&mut self, mut upserts: Vec<Task>, mut removes: Vec<TaskKey>) {
        upserts.sort();
        removes.sort();
        let me = self.peers.me().to_string();
        let mut touched = BTreeSet::new();
        for k in &removes {
            if self.tasks.remove(&me, &k.service, k.addr) {
                touched.insert(k.service.clone());
            }
        }
        for t in &upserts {
            if self.tasks.upsert(t) {
                touched.insert(t.service.clone());
            }
        }
        let own = self.tasks.host_mut(&me);
        let base = own.seq;
        own.seq = base.saturating_add(1);
        let seq = own.seq;
        for s in touched {
            self.replan(&s);
        }
        self.dirty = true;
        if !self.peers.reachable().is_empty() {
            let msg = Message::TaskDelta {
                base,
                seq,
                upserts,
                removes,
            };
            self.peers.broadcast(msg.encode());
        }
    }

    /// Merges names (ours or a peer's) and carries out what changed: claims, the plan,
    /// our own tasks of services gone, releases of our VIPs and withdrawals of our
    /// creates that lost (broadcast).
    pub(crate) fn merge_names(&mut self, states: Vec<NameState>) {
        let mut withdrawn = Vec::new();
        for st in states {
            let name = st.name.clone();
            let Some(ch) = self.names.merge(st) else {
                continue;
            };
            self.name_changed(&name, ch);
            for (version, winner, vip) in self.names.losers_of(&name, self.peers.me()) {
                self.names.withdraw(&name, version, self.peers.me());
                self.effects.push_back(ServiceEffect::Lost {
                    name: name.clone(),
                    winner,
                });
                if let Some(vip) = vip {
                    self.release(&name, vip);
                }
                withdrawn.push(name.clone());
            }
        }
        self.names.forget_oldest_dead();
        withdrawn.dedup();
        self.broadcast_names(&withdrawn);
    }

    /// Asks to release a VIP we allocated, unless a live service has it (a forged create
    /// in our name must not free the VIP of a live one).
    fn release(&mut self, name: &str, vip: Ipv4Addr) {
        if self.claims.vip_holder(vip).is_none() {
            self.effects.push_back(ServiceEffect::ReleaseVip {
                name: name.to_string(),
                vip,
            });
        }
    }

    fn name_changed(&mut self, name: &str, ch: NameChange) {
        self.dirty = true;
        if ch.before != ch.after {
            self.definition_changed(name, &ch);
        }
        for d in &ch.covered {
            if let (true, Some(vip)) = (d.origin == self.peers.me(), d.spec.vip) {
                self.release(name, vip);
            }
        }
    }

    /// Claims, plans and our own tasks after the live definition of `name` changed.
    fn definition_changed(&mut self, name: &str, ch: &NameChange) {
        let mut affected = BTreeSet::from([name.to_string()]);
        if let Some(b) = &ch.before {
            self.claims.remove(b);
            affected.extend(self.claims.sharing(b));
        }
        if let Some(a) = &ch.after {
            self.claims.add(a);
            affected.extend(self.claims.sharing(a));
        }
        for n in &affected {
            self.replan(n);
        }
        if ch.after.is_none() {
            // Removed: our tasks of it go, as on every host.
            self.remove_own_where(|t| t.service == name);
        }
    }

    /// Recomputes the plan of `name`.
    pub(crate) fn replan(&mut self, name: &str) {
        let p = self
            .names
            .live(name)
            .map(|d| planned(d, &self.claims, self.tasks.backends(name)));
        if self.plan.put(name, p) {
            self.plan_changed = true;
        }
    }

    /// Broadcasts what we hold of `names`.
    pub(crate) fn broadcast_names(&mut self, names: &[String]) {
        if self.peers.reachable().is_empty() || names.is_empty() {
            return;
        }
        let names: Vec<NameState> = names.iter().filter_map(|n| self.names.state(n)).collect();
        let msg = Message::Names { full: false, names };
        self.peers.broadcast(msg.encode());
    }

    /// The next effect: those queued, then one plan change and one persist per batch.
    pub(crate) fn next_effect(&mut self) -> Option<ServiceEffect> {
        if let Some(e) = self.effects.pop_front() {
            return Some(e);
        }
        if std::mem::take(&mut self.plan_changed) {
            return Some(ServiceEffect::PlanChanged);
        }
        if std::mem::take(&mut self.dirty) {
            return Some(ServiceEffect::Persist(self.saved()));
        }
        None
    }
}

fn too_many(what: &str, limit: usize) -> ServiceError {
    ServiceError::TooMany {
        what: what.to_string(),
        limit,
    }
}

/// A saved name as it should be, or None (a hand-edited or damaged file).
fn valid_state(mut st: NameState) -> Option<NameState> {
    check_name(&st.name).ok()?;
    st.entries.retain_mut(|e| match &e.spec {
        None => true,
        Some(spec) => match spec.normalized() {
            Ok(n) if n.name == st.name => {
                e.spec = Some(n);
                true
            }
            _ => false,
        },
    });
    st.entries.truncate(MAX_ENTRIES_PER_NAME);
    Some(st)
}

#[cfg(test)]
mod tests;
