//! The Docker remote network driver + IPAM driver protocol (served on a unix socket).

mod backend;

pub use backend::*;
