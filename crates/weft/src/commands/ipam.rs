//! `weft rmpeer` and `weft prime`: address management commands.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{block_on, client};

#[derive(Serialize)]
struct RmPeerBody {
    names: Vec<String>,
}

#[derive(Deserialize)]
struct RemovedPeer {
    name: String,
    addresses: u64,
}

/// `weft rmpeer NAME...`: take over the space of dead peers; prints how much per peer.
pub fn rmpeer(names: Vec<String>) -> Result<()> {
    let removed: Vec<RemovedPeer> = block_on(client().post("/ipam/rmpeer", &RmPeerBody { names }))?;
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
