//! The CNI protocol (CNI 1.1, and the 0.3.0 … 1.0.0 results older runtimes ask for) as
//! weft speaks it, as pure functions: the environment a runtime sets ([`env`]), the
//! network configuration on stdin ([`conf`]), what to ask the router for in its API's own
//! types ([`plan`]), the result per requested version ([`result`]) and the error JSON with the spec's codes
//! ([`error`]). No I/O: the `weft` binary reads stdin and the environment, talks to the
//! router and prints what these functions return.

pub mod conf;
pub mod env;
pub mod error;
pub mod plan;
pub mod result;
pub mod version;

pub use conf::{NetConf, PortMapping, MAX_STDIN};
pub use env::{Args, Command, Env};
pub use error::{code, CniError};
pub use plan::{add_request, add_result, attachment_key, dns_name};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{supported_versions_json, CniVersion, SUPPORTED};

/// The network `type` that names weft's plugin in a configuration.
pub const PLUGIN_TYPE: &str = "weft";
