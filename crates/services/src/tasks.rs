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

/// One host's announced tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostTasks {
    /// Sequence number of the set, raised by its host on every change.
    pub seq: u64,
    /// In rotation: the host is us, or reachable and has announced its set since.
    pub up: bool,
    tasks: BTreeMap<(String, Ipv4Addr), TaskState>,
    /// Sum of the tasks' hashes: equal sets have equal sums.
    pub hash: u64,
}

impl HostTasks {
    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether it holds the task.
    pub fn contains(&self, service: &str, addr: Ipv4Addr) -> bool {
        self.tasks.contains_key(&(service.to_string(), addr))
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

/// Every host's tasks, indexed by service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks {
    hosts: BTreeMap<String, HostTasks>,
    by_service: BTreeMap<String, BTreeSet<(Ipv4Addr, String)>>,
}

impl Tasks {
    /// What is held of `host`.
    pub fn host(&self, host: &str) -> Option<&HostTasks> {
        self.hosts.get(host)
    }

    /// What is held of `host`, created empty (and down) if nothing was.
    pub fn host_mut(&mut self, host: &str) -> &mut HostTasks {
        self.hosts.entry(host.to_string()).or_default()
    }

    /// Adds or updates a task of its host; whether anything changed.
    pub fn upsert(&mut self, t: &Task) -> bool {
        let h = self.hosts.entry(t.host.clone()).or_default();
        let state = TaskState {
            container: t.container.clone(),
            healthy: t.healthy,
        };
        let key = (t.service.clone(), t.addr);
        if h.tasks.get(&key) == Some(&state) {
            return false;
        }
        let add = task_hash(&t.service, t.addr, &state);
        if let Some(old) = h.tasks.insert(key, state) {
            h.hash = h.hash.wrapping_sub(task_hash(&t.service, t.addr, &old));
        }
        h.hash = h.hash.wrapping_add(add);
        self.by_service
            .entry(t.service.clone())
            .or_default()
            .insert((t.addr, t.host.clone()));
        true
    }

    /// Removes a task of `host`; whether it was there.
    pub fn remove(&mut self, host: &str, service: &str, addr: Ipv4Addr) -> bool {
        let Some(h) = self.hosts.get_mut(host) else {
            return false;
        };
        let Some(old) = h.tasks.remove(&(service.to_string(), addr)) else {
            return false;
        };
        h.hash = h.hash.wrapping_sub(task_hash(service, addr, &old));
        if let Some(set) = self.by_service.get_mut(service) {
            set.remove(&(addr, host.to_string()));
            if set.is_empty() {
                self.by_service.remove(service);
            }
        }
        true
    }

    /// Replaces `host`'s whole set; the services whose tasks changed.
    pub fn replace(&mut self, host: &str, tasks: &[Task]) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        let old: Vec<(String, Ipv4Addr)> = self
            .hosts
            .get(host)
            .map(|h| h.tasks.keys().cloned().collect())
            .unwrap_or_default();
        let keep: BTreeSet<(&str, Ipv4Addr)> =
            tasks.iter().map(|t| (t.service.as_str(), t.addr)).collect();
        for (service, addr) in old {
            if !keep.contains(&(service.as_str(), addr)) && self.remove(host, &service, addr) {
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
        let h = self.hosts.entry(host.to_string()).or_default();
        if h.up == up {
            return BTreeSet::new();
        }
        h.up = up;
        h.tasks.keys().map(|(s, _)| s.clone()).collect()
    }

    /// Forgets `host`'s tasks; the services that had some.
    pub fn drop_host(&mut self, host: &str) -> BTreeSet<String> {
        let touched = self.replace(host, &[]);
        self.hosts.remove(host);
        touched
    }

    /// Addresses of `service`'s tasks in rotation, sorted.
    pub fn backends(&self, service: &str) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = Vec::new();
        for (addr, host) in self.by_service.get(service).into_iter().flatten() {
            if out.last() == Some(addr) {
                continue;
            }
            if self.in_rotation(host, service, *addr) {
                out.push(*addr);
            }
        }
        out
    }

    fn in_rotation(&self, host: &str, service: &str, addr: Ipv4Addr) -> bool {
        self.hosts.get(host).is_some_and(|h| {
            h.up && h
                .tasks
                .get(&(service.to_string(), addr))
                .is_some_and(|s| s.healthy)
        })
    }

    /// One task of `host`, with its health as announced.
    pub fn get(&self, host: &str, service: &str, addr: Ipv4Addr) -> Option<Task> {
        let s = self
            .hosts
            .get(host)?
            .tasks
            .get(&(service.to_string(), addr))?;
        Some(Task {
            service: service.to_string(),
            addr,
            host: host.to_string(),
            container: s.container.clone(),
            healthy: s.healthy,
        })
    }

    /// Every host's tasks of `service`, with `healthy` meaning in rotation.
    pub fn of_service(&self, service: &str) -> Vec<Task> {
        let mut out = Vec::new();
        for (addr, host) in self.by_service.get(service).into_iter().flatten() {
            let Some(h) = self.hosts.get(host) else {
                continue;
            };
            if let Some(s) = h.tasks.get(&(service.to_string(), *addr)) {
                out.push(Task {
                    service: service.to_string(),
                    addr: *addr,
                    host: host.clone(),
                    container: s.container.clone(),
                    healthy: h.up && s.healthy,
                });
            }
        }
        out
    }

    /// `host`'s tasks as it announced them (health as checked, whether up or not).
    pub fn of_host(&self, host: &str) -> Vec<Task> {
        let Some(h) = self.hosts.get(host) else {
            return Vec::new();
        };
        h.tasks
            .iter()
            .map(|((service, addr), s)| Task {
                service: service.clone(),
                addr: *addr,
                host: host.to_string(),
                container: s.container.clone(),
                healthy: s.healthy,
            })
            .collect()
    }
}
