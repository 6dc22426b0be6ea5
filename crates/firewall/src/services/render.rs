//! The nft scripts of the service table.

/// Name of the service table (family `ip`), in the host's and in containers' namespaces.
pub const SVC_TABLE: &str = "weft_svc";

/// The packet mark bit that asks for masquerading a published-port connection as it
/// leaves (kube-proxy's 0x4000, moved next to [`crate::DNAT_MARK`]).
pub const MASQ_MARK: u32 = 0x0020_0000;

/// The Host-scope chain that sets [`crate::DNAT_MARK`] on DNATed connections.
pub const DNAT_MARK_CHAIN: &str = "mark_dnat";

/// `route_localnet` for every interface of a namespace (kube-proxy's choice).
pub const ROUTE_LOCALNET_ALL: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// The `route_localnet` switch of one interface (e.g. the weft bridge).
pub fn route_localnet_sysctl(ifname: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/route_localnet")
}

/// The script that removes the service table (a no-op when it does not exist).
pub fn render_svc_reset() -> String {
    format!("table ip {SVC_TABLE}\ndelete table ip {SVC_TABLE}\n")
}
