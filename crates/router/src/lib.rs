//! The weft router: one per host. It owns the API socket, runs the mesh, and (as later
//! capabilities land) IPAM, DNS and the data path. The cores it drives are sans-IO crates;
//! this crate is where they meet sockets, timers and the kernel.

pub mod api;
pub mod channels;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod identity;
pub mod ipam;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod persist;
pub mod state;

pub use config::Config;
pub use daemon::{run, ReadySignal};
