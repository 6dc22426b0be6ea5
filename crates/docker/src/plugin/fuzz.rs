//! Fuzzing entry point for the plugin's request decoders (see the `weft-fuzz` crate).

use super::wire;

/// Every call whose body the plugin decodes.
const CALLS: [&str; 9] = [
    "NetworkDriver.CreateNetwork",
    "NetworkDriver.DeleteNetwork",
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.Join",
    "NetworkDriver.Leave",
    "IpamDriver.RequestPool",
    "IpamDriver.ReleasePool",
    "IpamDriver.RequestAddress",
    "IpamDriver.ReleaseAddress",
];

/// Decodes `data` as the body of every plugin call; must never panic.
pub fn decode_bodies(data: &[u8]) {
    let _ = wire::create_network(CALLS[0], data);
    let _ = wire::network_id(CALLS[1], data);
    let _ = wire::create_endpoint(CALLS[2], data);
    let _ = wire::join(CALLS[3], data);
    let _ = wire::endpoint_ids(CALLS[4], data);
    let _ = wire::request_pool(CALLS[5], data);
    let _ = wire::pool_id(CALLS[6], data);
    let _ = wire::request_address(CALLS[7], data);
    let _ = wire::release_address(CALLS[8], data);
}
