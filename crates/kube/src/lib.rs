//! Kubernetes peers for weft: read the cluster's nodes from the API, dial their routers,
//! and take over the address space of nodes deleted from the API.
//!
//! [`nodes`] parses the API's node list; [`core`] is the sans-IO decision (which targets,
//! which reclaims, and who reclaims); [`client`] is a small in-cluster API client (HTTPS
//! with the pod's service account, or plain HTTP to a loopback proxy). The router drives
//! them (crates/router/src/kube.rs); docs/kubernetes.md describes the whole.

pub mod client;
pub mod core;
pub mod error;
pub mod nodes;

pub use crate::core::{peer_name_for_node, Core, CoreConfig, Decisions, MeshView, ReclaimOutcome};
pub use client::{ApiClient, ApiEndpoint, NodeWatch, SERVICE_ACCOUNT_DIR};
pub use error::KubeError;
pub use nodes::{Node, NodeEvent, NodeList};
