//! `weft rmpeer` and `weft prime`: address management commands.

use anyhow::Result;
use weft_api::{RemovedPeer, RmPeerRequest};

use super::{block_on, client};

/// `weft rmpeer NAME...`: take over the space of dead peers; prints how much per peer.
pub fn rmpeer(names: Vec<String>) -> Result<()> {
    let removed: Vec<RemovedPeer> =
        block_on(client().post("/ipam/rmpeer", &RmPeerRequest { names }))?;
    for r in removed {
        println!("{} IPs taken over from {}", r.addresses, r.name);
    }
    Ok(())
}

/// `weft prime`: initialise address management now; returns once the ring exists.
pub fn prime() -> Result<()> {
    let _: () = block_on(client().post("/ipam/prime", &()))?;
    Ok(())
}
