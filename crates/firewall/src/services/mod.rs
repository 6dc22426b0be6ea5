//! Service rules (`ip weft_svc`): a VIP or a published port spread over a service's tasks,
//! programmed incrementally in the style of kube-proxy's nftables mode.
//!
//! - [`model`]: what the router asks for ([`SvcRule`], [`SvcScope`]) and its checks;
//! - [`render`]: the nft scripts (the whole table, and the difference between two states);
//! - [`apply`]: [`SvcTable`], which remembers what it programmed and sends only changes.

mod apply;
mod model;
mod render;

pub use apply::{SvcTable, SyncStats};
pub use model::{SvcRule, SvcScope};
pub use render::{render_svc_reset, DNAT_MARK_CHAIN, MASQ_MARK, ROUTE_LOCALNET_ALL, SVC_TABLE};

#[cfg(test)]
mod tests;
