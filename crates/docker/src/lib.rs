//! Docker integration for weft.
//!
//! - [`plugin`]: the remote network driver and IPAM driver protocol that dockerd speaks to
//!   `weft.sock` in its plugin directory, translated into calls on a [`plugin::Backend`]
//!   that the router implements.
//! - [`engine`]: a small client of the Docker Engine API (inspect, networks, events).
//! - [`proxy`]: the Docker API proxy that attaches containers per their `WEFT_CIDR`.

pub mod engine;
pub mod plugin;
pub mod proxy;
