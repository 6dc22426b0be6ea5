#![warn(missing_docs)]
//! Small types shared across layers, with no I/O: the port protocol (the Docker plugin, the
//! router and the firewall each speak of it), the byte cursor of the binary codecs (mesh,
//! DNS and IPAM) and the sleeve's ciphers (the kernel crate seals with them, the path core
//! negotiates them), so that none of those crates depends on another for them; and the
//! environment knobs of their tests and benches.

pub mod cipher;
pub mod cursor;
pub mod knob;
pub mod port;

pub use cipher::CipherKind;
pub use knob::knob;
pub use port::Proto;
