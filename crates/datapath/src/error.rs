//! Typed errors of the data path: each names the input that failed and why.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// Everything that can go wrong in the data path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The network namespace file could not be opened.
    #[error("network namespace {path}: cannot open ({source}); check the path or pid names a live namespace")]
    NetnsOpen {
        /// The path that was tried.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file opened is not a network namespace.
    #[error("{path} is not a network namespace; pass a /run/netns/NAME or /proc/PID/ns/net path")]
    NotNetns {
        /// The path that was tried.
        path: PathBuf,
    },
    /// Entering a network namespace failed.
    #[error("cannot enter network namespace {what}: {source}")]
    Setns {
        /// Which namespace.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The worker thread running inside a namespace panicked or could not start.
    #[error("worker thread for network namespace {what} failed: {reason}")]
    NetnsThread {
        /// Which namespace.
        what: String,
        /// Why.
        reason: String,
    },
    /// An interface name the kernel would refuse.
    #[error("interface name {name:?} is invalid: {reason}")]
    InvalidIfname {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An address outside the overlay range.
    #[error("address {addr} is outside the overlay range {range}; pick an address inside it")]
    AddressOutsideRange {
        /// The address given.
        addr: Ipv4Net,
        /// The overlay range.
        range: Ipv4Net,
    },
    /// A parameter out of its allowed range (MTU, VNI, ...).
    #[error("{what} = {value} is invalid: {reason}")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A link that must exist does not.
    #[error("link {name} not found in {netns}")]
    LinkNotFound {
        /// Link name.
        name: String,
        /// The namespace searched.
        netns: String,
    },
    /// A link exists under the name but is not what weft would have made.
    #[error("link {name} in {netns} already exists and is a {kind}, not a {wanted}; choose another name")]
    LinkKindMismatch {
        /// Link name.
        name: String,
        /// The namespace.
        netns: String,
        /// Its actual kind.
        kind: String,
        /// The kind weft wanted.
        wanted: &'static str,
    },
    /// No route towards a peer.
    #[error("no route to peer {peer}: {source}")]
    NoRoute {
        /// The peer address.
        peer: Ipv4Addr,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("{op}: kernel said {source}")]
    Kernel {
        /// What was being done, with its inputs.
        op: String,
        /// errno from the kernel.
        source: io::Error,
    },
    /// A socket operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel sent a reply we could not decode.
    #[error("{op}: cannot decode kernel reply: {reason}")]
    Decode {
        /// What was being done.
        op: String,
        /// The decoder's message.
        reason: String,
    },
}

/// Result alias for the data path.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The errno behind a kernel or I/O error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. }
            | Error::Io { source, .. }
            | Error::Setns { source, .. }
            | Error::NoRoute { source, .. }
            | Error::NetnsOpen { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Maps a netlink failure to [`Error::Kernel`] doing `op` (what, and in which namespace).
pub(crate) fn kernel(op: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Kernel { op, source }
}
