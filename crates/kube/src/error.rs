//! What can go wrong reading the Kubernetes API.

use std::path::PathBuf;

/// Why a node list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The answer is not a node list.
    #[error("the Kubernetes API's node list cannot be read: {why}")]
    BadNodeList {
        /// What is wrong with it.
        why: String,
    },
    /// The API's address is not usable.
    #[error("invalid Kubernetes API address {value:?}: {why}")]
    BadAddress {
        /// The address given.
        value: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// A service-account file (token or CA) could not be read.
    #[error("cannot read {}: {why}; does the pod run with its service account mounted (automountServiceAccountToken)?", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Cause.
        why: String,
    },
    /// No connection, TLS failure, or the connection broke.
    #[error("cannot reach the Kubernetes API at {url}: {why}")]
    Unreachable {
        /// The API's address.
        url: String,
        /// Cause.
        why: String,
    },
    /// The API answered with an error status.
    #[error("the Kubernetes API answered {status} to GET {path}: {message}{hint}")]
    Status {
        /// The request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The API's message (from its `Status` object, or the body's start).
        message: String,
        /// What to do, if known.
        hint: String,
    },
    /// The answer is larger than the client takes.
    #[error("the Kubernetes API's answer to GET {path} is larger than {limit} bytes; weft reads node lists up to that size")]
    TooLarge {
        /// The request path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The request took too long.
    #[error("the Kubernetes API at {url} did not answer within {secs} s")]
    Timeout {
        /// The API's address.
        url: String,
        /// The time allowed.
        secs: u64,
    },
}
