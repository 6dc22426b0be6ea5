//! The one narrow entry point of the router for the `weft` binary: run the daemon
//! (`weft launch --foreground`), parse its flags, and the few host-level pieces the CLI
//! runs without a router (`weft reset` when none runs, the lab's atomic writes). Every
//! request and response type lives in `weft-api`; the CLI uses nothing else from here.

pub use crate::config::{Config, ConfigError, LaunchFlags};
pub use crate::daemon::{run, ReadySignal, READY_FD_ENV};
pub use crate::datapath::expose::{reset_host, restore_forwarding};
pub use crate::datapath::BRIDGE;
pub use crate::persist::write_atomic;
