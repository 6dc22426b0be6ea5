//! The weft router: one per host. It owns the API socket, runs the mesh, IPAM, DNS and the
//! data path. The cores it drives are sans-IO crates; this crate is where they meet
//! sockets, timers and the kernel.
//!
//! Layers point one way (docs/architecture.md): `daemon` builds every handle once and
//! gives them to `api`, which alone turns domain errors into HTTP statuses; the domain
//! handles (`docker` → `containers` → `datapath`/`dns` → `ipam` → `mesh`) return typed
//! errors. The `weft` binary uses this crate only through [`entry`].

pub mod api;
pub mod channels;
pub mod cni;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod entry;
pub mod identity;
pub mod intents;
pub mod ipam;
pub mod ipam_owners;
pub mod kube;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod owners;
pub mod persist;
pub mod reconciliation;
pub mod registry;
pub mod reset;
pub mod services;
pub mod shutdown;

#[cfg(test)]
mod layering;

pub use config::{Config, LaunchFlags};
pub use daemon::{run, ReadySignal};
