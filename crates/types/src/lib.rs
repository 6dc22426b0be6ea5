#![warn(missing_docs)]
//! Small value types shared across layers: the Docker plugin, the router and the firewall
//! each speak of them, and none of those may depend on another for it.

pub mod port;

pub use port::Proto;
