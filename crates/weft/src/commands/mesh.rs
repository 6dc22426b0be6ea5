//! `weft connect` and `weft forget`: change the addresses the router dials.

use anyhow::Result;
use weft_api::{ConnectRequest, ForgetRequest};

use super::{block_on, client};

/// `weft connect [--replace] PEER...`.
pub fn connect(peers: Vec<String>, replace: bool) -> Result<()> {
    let _: () = block_on(client().post("/connect", &ConnectRequest { peers, replace }))?;
    Ok(())
}

/// `weft forget PEER...`.
pub fn forget(peers: Vec<String>) -> Result<()> {
    let _: () = block_on(client().post("/forget", &ForgetRequest { peers }))?;
    Ok(())
}
