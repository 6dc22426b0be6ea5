#![warn(missing_docs)]
//! Sans-IO path choice for the data path: per peer, fastdp (kernel VXLAN), the sleeve
//! (userspace UDP) or a relay through the mesh's next hop, and what the VXLAN FDB and the
//! sleeve's tables must hold for that. It runs on the mesh as a
//! [`weft_mesh::MeshApp`]: the router's driver only carries out its [`PathEffect`]s
//! against the kernel, and the seeded simulation runs it without root.
//!
//! Rules:
//! - A directly connected peer uses fastdp when its heartbeats through the VXLAN device
//!   answer, heartbeats padded to the overlay MTU too (and fastdp is on, and without a
//!   password or towards `--trusted-subnets`); otherwise the sleeve, directly, whose own
//!   path-MTU search and chunking serve a path smaller than the overlay MTU. Heartbeats go every second; fastdp is broken after
//!   2.5 s without an answer and healed after 1.5 s of answers.
//! - A peer without a direct connection is reached through the sleeve, relayed by the
//!   mesh's next hop.
//! - Broadcasts follow the mesh's tree per origin ([`weft_mesh::Reachable::children`]). A
//!   direct child that must pass our broadcasts on gets them through the sleeve only (no
//!   VXLAN flood entry): each peer receives every broadcast exactly once.
//! - A fastdp peer whose router left keeps its VXLAN entries for 10 minutes (its kernel
//!   still carries its containers); back within that time, fastdp is assumed to work
//!   until its heartbeats say otherwise.
//!
//! - [`core`]: the state machine. [`plan`]: modes and operations. [`health`]: heartbeat
//!   hysteresis. [`wire`]: the state gossip.

pub mod core;
pub mod health;
pub mod plan;
pub mod wire;

pub use crate::core::{
    is_heartbeat, PathConfig, PathCore, DEPARTED_GRACE_MS, PING_MS, REANNOUNCE_MS, REPLY_MIN_MS,
    TICK_MS, TOKEN_BEAT, TOKEN_PROBE,
};
pub use health::{Health, FASTDP_DEAD_MS, FASTDP_HEAL_MS};
pub use plan::{Mode, Op, PathEffect, SleeveKey};
pub use wire::StateMsg;
