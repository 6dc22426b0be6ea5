//! Tasks: the addresses of containers that serve a service, each owned by its host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::hash::stable_hash;

/// Which task: a service and an address in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    /// Service name.
    pub service: String,
    /// The task's address.
    pub addr: Ipv4Addr,
}

/// A task as the core reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Task {
    /// Service name.
    pub service: String,
    /// The task's address.
    pub addr: Ipv4Addr,
    /// The peer whose container it is.
    pub host: String,
    /// The container (id or name).
    pub container: String,
    /// In rotation: its last health check passed (or it has none) and its host is reachable.
    pub healthy: bool,
}

/// What is held of one task besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskState {
    container: String,
    healthy: bool,
}

/// One host's announced tasks, by service then address (a service's name is held once
/// per host, not per task).
#[derive(Debug, Clone, Default)]
pub(crate) struct HostTasks {
    /// Sequence number of the set, raised by its host on every change.
    pub seq: u64,
    /// In rotation: the host is us, or reachable and has announced its set since.
    pub up: bool,
    services: BTreeMap<String, BTreeMap<Ipv4Addr, TaskState>>,
    len: usize,
    /// Sum of the tasks' hashes: equal sets have equal sums.
    pub hash: u64,
}

impl HostTasks {
    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds the task.
    pub fn contains(&self, service: &str, addr: Ipv4Addr) -> bool {
        self.state(service, addr).is_some()
    }

    fn state(&self, service: &str, addr: Ipv4Addr) -> Option<&TaskState> {
        self.services.get(service)?.get(&addr)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, Ipv4Addr, &TaskState)> {
        self.services
            .iter()
            .flat_map(|(s, m)| m.iter().map(move |(a, t)| (s, *a, t)))
    }

    /// Sets a task; whether it changed.
    fn insert(&mut self, service: &str, addr: Ipv4Addr, state: TaskState) -> bool {
        if self.state(service, addr) == Some(&state) {
            return false;
        }
        self.hash = self.hash.wrapping_add(task_hash(service, addr, &state));
        let by_addr = self.services.entry(service.to_string()).or_default();
        match by_addr.insert(addr, state) {
            Some(old) => self.hash = self.hash.wrapping_sub(task_hash(service, addr, &old)),
            None => self.len += 1,
        }
        true
    }

    /// Removes a task; whether it was there.
    fn remove(&mut self, service: &str, addr: Ipv4Addr) -> bool {
        let Some(by_addr) = self.services.get_mut(service) else {
            return false;
        };
        let Some(old) = by_addr.remove(&addr) else {
            return false;
        };
        if by_addr.is_empty() {
            self.services.remove(service);
        }
        self.len -= 1;
        self.hash = self.hash.wrapping_sub(task_hash(service, addr, &old));
        true
    }

    fn task(&self, host: &str, service: &str, addr: Ipv4Addr, s: &TaskState) -> Task {
        Task {
            service: service.to_string(),
            addr,
            host: host.to_string(),
            container: s.container.clone(),
            healthy: s.healthy,
        }
    }
}

fn task_hash(service: &str, addr: Ipv4Addr, s: &TaskState) -> u64 {
    stable_hash(&[
        service.as_bytes(),
        &addr.octets(),
        s.container.as_bytes(),
        &[u8::from(s.healthy)],
    ])
}

/// Every host's tasks, indexed by service. Hosts have small integer slots, so that the
/// index holds an address and a number per task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks {
    slots: BTreeMap<String, u32>,
    /// By slot: the host's name and tasks (a slot stays once given).
    hosts: Vec<(String, HostTasks)>,
    by_service: BTreeMap<String, BTreeSet<(Ipv4Addr, u32)>>,
}

impl Tasks {
    /// What is held of `host`.
    pub fn host(&self, host: &str) -> Option<&HostTasks> {
        let slot = *self.slots.get(host)?;
        Some(&self.hosts[slot as usize].1)
    }

    /// What is held of `host`, created empty (and down) if nothing was.
    pub fn host_mut(&mut self, host: &str) -> &mut HostTasks {
        let slot = self.slot(host);
        &mut self.hosts[slot as usize].1
    }

    fn slot(&mut self, host: &str) -> u32 {
        if let Some(&slot) = self.slots.get(host) {
            return slot;
        }
        let slot = self.hosts.len() as u32;
        self.hosts.push((host.to_string(), HostTasks::default()));
        self.slots.insert(host.to_string(), slot);
        slot
    }

    /// Adds or updates a task of its host; whether anything changed.
    pub fn upsert(&mut self, t: &Task) -> bool {
        let slot = self.slot(&t.host);
        let state = TaskState {
            container: t.container.clone(),
            healthy: t.healthy,
        };
        if !self.hosts[slot as usize]
            .1
            .insert(&t.service, t.addr, state)
        {
            return false;
        }
        self.by_service
            .entry(t.service.clone())
            .or_default()
            .insert((t.addr, slot));
        true
    }

    /// Removes a task of `host`; whether it was there.
    pub fn remove(&mut self, host: &str, service: &str, addr: Ipv4Addr) -> bool {
        let Some(&slot) = self.slots.get(host) else {
            return false;
        };
        if !self.hosts[slot as usize].1.remove(service, addr) {
            return false;
        }
        if let Some(set) = self.by_service.get_mut(service) {
            set.remove(&(addr, slot));
            if set.is_empty() {
                self.by_service.remove(service);
            }
        }
        true
    }

    /// Replaces `host`'s whole set; the services whose tasks changed.
    pub fn replace(&mut self, host: &str, tasks: &[Task]) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        let keep: BTreeSet<(&str, Ipv4Addr)> =
            tasks.iter().map(|t| (t.service.as_str(), t.addr)).collect();
        let gone: Vec<(String, Ipv4Addr)> = self
            .host(host)
            .into_iter()
            .flat_map(HostTasks::iter)
            .filter(|(s, a, _)| !keep.contains(&(s.as_str(), *a)))
            .map(|(s, a, _)| (s.clone(), a))
            .collect();
        for (service, addr) in gone {
            if self.remove(host, &service, addr) {
                touched.insert(service);
            }
        }
        for t in tasks {
            if self.upsert(t) {
                touched.insert(t.service.clone());
            }
        }
        touched
    }

    /// Puts `host`'s tasks in or out of rotation; the services that changed.
    pub fn set_up(&mut self, host: &str, up: bool) -> BTreeSet<String> {
        let h = self.host_mut(host);
        if h.up == up {
            return BTreeSet::new();
        }
        h.up = up;
        h.services.keys().cloned().collect()
    }

    /// Forgets `host`'s tasks; the services that had some.
    pub fn drop_host(&mut self, host: &str) -> BTreeSet<String> {
        let touched = self.replace(host, &[]);
        *self.host_mut(host) = HostTasks::default();
        touched
    }

    /// Addresses of `service`'s tasks in rotation, sorted.
    pub fn backends(&self, service: &str) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = Vec::new();
        for &(addr, slot) in self.by_service.get(service).into_iter().flatten() {
            let h = &self.hosts[slot as usize].1;
            let healthy = h.state(service, addr).is_some_and(|s| s.healthy);
            if h.up && healthy && out.last() != Some(&addr) {
                out.push(addr);
            }
        }
        out
    }

    /// One task of `host`, with its health as announced.
    pub fn get(&self, host: &str, service: &str, addr: Ipv4Addr) -> Option<Task> {
        let h = self.host(host)?;
        Some(h.task(host, service, addr, h.state(service, addr)?))
    }

    /// Every host's tasks of `service`, with `healthy` meaning in rotation.
    pub fn of_service(&self, service: &str) -> Vec<Task> {
        let mut out = Vec::new();
        for &(addr, slot) in self.by_service.get(service).into_iter().flatten() {
            let (host, h) = &self.hosts[slot as usize];
            if let Some(s) = h.state(service, addr) {
                let mut t = h.task(host, service, addr, s);
                t.healthy &= h.up;
                out.push(t);
            }
        }
        out
    }

    /// `host`'s tasks as it announced them (health as checked, whether up or not).
    pub fn of_host(&self, host: &str) -> Vec<Task> {
        let Some(h) = self.host(host) else {
            return Vec::new();
        };
        h.iter().map(|(s, a, st)| h.task(host, s, a, st)).collect()
    }
}
