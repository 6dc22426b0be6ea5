#![warn(missing_docs)]
//! Sans-IO address management: the ring of ranges CRDT, space requests, allocations.
//!
//! Drive an [`Allocator`] with [`Event`]s and execute the [`Action`]s it returns in order
//! (see the module docs of `allocator` for how persists gate sends and replies), or run it
//! on the mesh as an [`IpamApp`] (the mesh-application trait).

pub mod addr;
pub mod allocator;
pub mod app;
pub mod codec;
pub mod consensus;
pub mod error;
pub mod events;
pub mod messages;
pub mod persist;
pub mod ring;
pub mod routes;
pub mod space;
pub mod status;

pub use addr::{parse_addr_specs, parse_subnet, Addr, AddrError, AddrSpec, Cidr};
pub use allocator::{Action, Allocator, Event, IpamConfig, IpamEffect, Millis, Reply, RequestId};
pub use app::{IpamApp, TICK_MS};
pub use codec::DecodeError;
pub use consensus::InitMode;
pub use error::IpamError;
pub use messages::Message;
pub use persist::PersistedState;
pub use ring::Ring;
pub use routes::{check_range, HostRoute, RangeOverlapsRoute};
pub use status::{PeerShare, Status};
