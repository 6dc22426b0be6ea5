//! The contract between the `weft` command line and the router daemon: where the router
//! lives (paths from the environment), the JSON types of its HTTP API, and a small client.

pub mod client;
pub mod cni;
pub mod paths;
pub mod services;
pub mod types;
pub mod unix_http;

pub use client::{ApiClient, ApiError};
pub use cni::*;
pub use paths::Paths;
pub use services::{ServiceCreateRequest, ServiceInfo, ServiceTask};
pub use types::*;

/// The version of weft, shown by `weft version` and in reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
