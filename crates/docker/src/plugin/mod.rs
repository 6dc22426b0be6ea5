//! The Docker remote network driver + IPAM driver protocol (served on a unix socket).
//!
//! dockerd finds `weft.sock` in its plugin directory and POSTs `/Interface.Method` with a JSON
//! body; [`serve`] answers on that socket, [`answer`] is the same without HTTP. Each call is
//! decoded (module `wire`) into the typed values of [`Backend`] (the router implements it) and the
//! result encoded back. Success is HTTP 200 with the JSON below; a failure is HTTP 500 with
//! `{"Err": message}` (dockerd reads `Err` from any non-200 answer of either driver and shows
//! `Method: message`); an unknown call is 404 with `{"Err"}` (dockerd treats a 404 on
//! Program/RevokeExternalConnectivity as "not implemented"). Answers carry
//! `Content-Type: application/vnd.docker.plugins.v1.2+json`. Bodies are never trusted: bad
//! JSON, missing ids, IPv6 or an unsupported protocol get one `{"Err"}` naming the call or the
//! field; unknown fields are ignored.
//!
//! | call | request fields used | backend | answer |
//! |---|---|---|---|
//! | `Plugin.Activate` | — | — | `{"Implements":["NetworkDriver","IpamDriver"]}` |
//! | `NetworkDriver.GetCapabilities` | — | — | `{"Scope":"local","ConnectivityScope":"local"}` |
//! | `NetworkDriver.CreateNetwork` | NetworkID, first IPv4Data Pool/Gateway (CIDR), `-o` options from Options `com.docker.network.generic`; IPv6Data refused | `create_network` | `{}` |
//! | `NetworkDriver.DeleteNetwork` | NetworkID | `delete_network` | `{}` |
//! | `NetworkDriver.CreateEndpoint` | NetworkID, EndpointID, Interface.Address (CIDR)/MacAddress, `-p` from Options `com.docker.network.portmap` (`[{Proto:6,IP,Port,HostIP,HostPort,HostPortEnd}]`); AddressIPv6 refused | `create_endpoint` | `{"Interface":{"MacAddress"}}` only when dockerd gave no MAC, else `{}`; never an address (dockerd refuses a driver that changes the IPAM address) |
//! | `NetworkDriver.DeleteEndpoint` | NetworkID, EndpointID | `delete_endpoint` | `{}` |
//! | `NetworkDriver.EndpointOperInfo` | NetworkID, EndpointID | `endpoint_info` | `{"Value":{"com.docker.network.portmap":[PortBinding...],"com.docker.network.endpoint.macaddress":mac}}` |
//! | `NetworkDriver.Join` | NetworkID, EndpointID, SandboxKey | `join` | `{"InterfaceName":{"SrcName","DstPrefix"},"Gateway","GatewayIPv6":"","StaticRoutes":[],"DisableGatewayService"}` |
//! | `NetworkDriver.Leave` | NetworkID, EndpointID | `leave` | `{}` |
//! | `NetworkDriver.ProgramExternalConnectivity` | NetworkID, EndpointID | `program_external` | `{}` |
//! | `NetworkDriver.RevokeExternalConnectivity` | NetworkID, EndpointID | `revoke_external` | `{}` |
//! | `NetworkDriver.DiscoverNew` / `DiscoverDelete` | ignored (swarm node discovery) | — | `{}` |
//! | `NetworkDriver.AllocateNetwork` / `FreeNetwork` | — (sent only for swarm-scoped networks) | — | error: weft is local scope |
//! | `IpamDriver.GetCapabilities` | — | — | `{"RequiresMACAddress":false,"RequiresRequestReplay":false}` |
//! | `IpamDriver.GetDefaultAddressSpaces` | — | — | `{"LocalDefaultAddressSpace":"weft-local","GlobalDefaultAddressSpace":"weft-global"}` |
//! | `IpamDriver.RequestPool` | Pool (`--subnet`), SubPool (`--ip-range`); V6 refused | `request_pool` | `{"PoolID","Pool":"a.b.c.d/n","Data":{}}` |
//! | `IpamDriver.ReleasePool` | PoolID | `release_pool` | `{}` |
//! | `IpamDriver.RequestAddress` | PoolID, Address, Options{`RequestAddressType`=`com.docker.network.gateway`, `com.docker.network.endpoint.macaddress`} | `request_address` | `{"Address":"a.b.c.d/n","Data":{}}` |
//! | `IpamDriver.ReleaseAddress` | PoolID, Address | `release_address` | `{}` |
//!
//! Decisions:
//! - `RequiresRequestReplay: false`: with `true`, a restarted dockerd calls RequestPool and
//!   RequestAddress again for every network and endpoint it knows, expecting them to succeed
//!   for pools and addresses already handed out. The router persists its allocations, so a
//!   replay would only ask it to double-allocate (and dockerd never releases the pool ids of
//!   the replay); Weave Net's plugin answers `false` too.
//! - Errors are HTTP 500 + `{"Err"}` rather than 200 + error field: the IPAM side reads its
//!   200-answer error from `Error`, the network side from `Err`; a non-200 `Err` is read the
//!   same way by both.
//! - `DisableGatewayService` is the backend's: `true` tells dockerd this endpoint needs no
//!   default gateway from `docker_gwbridge` (it is unrelated to DNS).
//!
//! Seen with a real dockerd 20.10.24 (the end-to-end tests in crates/weft/tests/docker.rs run it):
//! - the request bodies are exactly the samples of `tests/plugin.rs`; a `-p 8080:80` arrives in
//!   CreateEndpoint, Join and ProgramExternalConnectivity Options with `HostIP:""`;
//! - a failed call shows as `Error response from daemon: IpamDriver.RequestPool: <message>`;
//! - when Join returns a Gateway, the container's default route is via it on eth0, and
//!   ProgramExternalConnectivity and EndpointOperInfo come to weft; `docker port` and
//!   `NetworkSettings.Ports` stay empty all the same (dockerd keeps only port data of its own
//!   type, which a remote driver's JSON never is), so weft must publish `-p` itself and can't
//!   show it through Docker;
//! - when Join returns no Gateway (and `DisableGatewayService` is false), dockerd adds
//!   `docker_gwbridge` as eth1 with the default route, publishes `-p` there itself (then
//!   `docker port` shows it), and never sends weft Program/RevokeExternalConnectivity.

mod backend;
#[doc(hidden)]
pub mod fuzz;
mod server;
mod wire;

pub use backend::*;
pub use server::{answer, router, serve, Answer, CONTENT_TYPE};
