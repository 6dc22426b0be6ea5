//! The services core of weft (sans-IO, no tokio, no kernel): service definitions, their
//! tasks and the tasks' health, gossiped between routers as a mesh application
//! ([`weft_mesh::MeshApp`], channel [`CHANNEL`]), and the [`Plan`] every host programs
//! into its service table.
//!
//! - A definition is created by one peer and then known to all; removal leaves a
//!   tombstone. Of two concurrent creates of one name the lower `(version, origin)` wins
//!   on every peer; the loser's host withdraws its own and is told ([`ServiceEffect::Lost`],
//!   [`ServiceEffect::ReleaseVip`]).
//! - A task (a container's address in a service) belongs to the host that runs it: only
//!   that host announces it, with its health. Tasks of an unreachable host leave the
//!   rotation until it is reachable again and announces them afresh.
//! - See docs/services.md, "The services core".

mod core;
mod error;
mod gossip;
mod hash;
pub mod limits;
mod names;
mod plan;
mod saved;
mod spec;
mod tasks;
pub mod wire;

pub use crate::core::{ServiceEffect, ServicesCore, DIGEST_INTERVAL};
pub use crate::error::ServiceError;
pub use crate::gossip::FORGET_AFTER;
pub use crate::names::{Entry, NameState};
pub use crate::plan::{Plan, PlannedService};
pub use crate::saved::Saved;
pub use crate::spec::{
    Definition, EndpointMode, HealthCheck, HealthKind, PortSpec, Publish, ServiceSpec,
};
pub use crate::tasks::{Task, TaskKey};

/// The mesh channel of the services gossip (the router's `channels::SERVICES`).
pub const CHANNEL: u16 = 4;
