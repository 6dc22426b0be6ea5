//! The services core of one router: local requests, and what it asks its driver to do.

use std::net::Ipv4Addr;

use weft_mesh::{MeshApp, Millis, TopologyView, Transmit};
use weft_types::port::Proto;

use crate::error::ServiceError;
use crate::plan::Plan;
use crate::saved::Saved;
use crate::spec::{Definition, ServiceSpec};
use crate::tasks::Task;

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

/// The services core of one router.
#[derive(Debug, Clone)]
pub struct ServicesCore {
    me: String,
    plan: Plan,
}

impl ServicesCore {
    /// A core for peer `me`, from what it saved before a restart.
    pub fn new(me: &str, saved: Option<Saved>, now: Millis) -> Self {
        let _ = (saved, now);
        ServicesCore {
            me: me.to_string(),
            plan: Plan::default(),
        }
    }

    /// Creates a service; refuses a live name, a host port another service publishes and
    /// a VIP another service has.
    pub fn create(&mut self, now: Millis, spec: ServiceSpec) -> Result<Definition, ServiceError> {
        let _ = (now, spec);
        unimplemented!()
    }

    /// Removes a live service (a tombstone, gossiped); returns what it was.
    pub fn remove(&mut self, now: Millis, name: &str) -> Result<Definition, ServiceError> {
        let _ = (now, name);
        unimplemented!()
    }

    /// Adds a task of ours: `addr` of local `container` serves `service`.
    pub fn add_task(
        &mut self,
        now: Millis,
        service: &str,
        addr: Ipv4Addr,
        container: &str,
    ) -> Result<(), ServiceError> {
        let _ = (now, service, addr, container);
        unimplemented!()
    }

    /// Removes a task of ours; whether there was one.
    pub fn remove_task(&mut self, now: Millis, service: &str, addr: Ipv4Addr) -> bool {
        let _ = (now, service, addr);
        unimplemented!()
    }

    /// Removes every task of a local container; how many.
    pub fn remove_container(&mut self, now: Millis, container: &str) -> usize {
        let _ = (now, container);
        unimplemented!()
    }

    /// Records the health of a task of ours; whether it changed.
    pub fn set_health(
        &mut self,
        now: Millis,
        service: &str,
        addr: Ipv4Addr,
        healthy: bool,
    ) -> bool {
        let _ = (now, service, addr, healthy);
        unimplemented!()
    }

    /// The live definition of `name`.
    pub fn definition(&self, name: &str) -> Option<&Definition> {
        let _ = name;
        unimplemented!()
    }

    /// The live definitions, sorted by name.
    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        std::iter::empty()
    }

    /// Every host's tasks of `name`, with `healthy` meaning in rotation.
    pub fn tasks(&self, name: &str) -> Vec<Task> {
        let _ = name;
        unimplemented!()
    }

    /// Our own tasks (the router health-checks these).
    pub fn local_tasks(&self) -> Vec<Task> {
        unimplemented!()
    }

    /// What every host programs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Host ports published by live services.
    pub fn used_host_ports(&self) -> Vec<(Proto, u16)> {
        unimplemented!()
    }

    /// This router's peer name.
    pub fn me(&self) -> &str {
        &self.me
    }
}

impl MeshApp for ServicesCore {
    type Effect = ServiceEffect;

    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        let _ = (now, channel, from, payload);
    }

    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        let _ = (now, topology);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    fn poll_effect(&mut self) -> Option<ServiceEffect> {
        None
    }
}
