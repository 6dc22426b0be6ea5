//! `weft ui`: where the topology page is, and in a lab how to reach it from the machine.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Result};
use weft_api::paths::HTTP_ADDR;

/// Prints the page's address; fails if no router answers on the status port here.
pub fn ui() -> Result<()> {
    let url = format!("http://{HTTP_ADDR}/");
    let lab = std::env::var("WEFT_LAB").ok().filter(|s| !s.is_empty());
    let host = std::env::var("WEFT_LAB_HOST")
        .ok()
        .filter(|s| !s.is_empty());
    let answers = HTTP_ADDR
        .parse::<SocketAddr>()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
    if !answers {
        let hint = match (&lab, &host) {
            (Some(lab), Some(h)) => {
                format!("start it with `weft lab exec --name {lab} {h} -- weft launch PEER...`")
            }
            _ => "start it with `weft launch`; in a lab, run `weft lab exec h1 -- weft ui`"
                .to_string(),
        };
        bail!("no router answers on {HTTP_ADDR} in this network namespace, so the topology page is not served: {hint}");
    }
    println!("{url}");
    match (lab, host) {
        (Some(lab), Some(h)) => {
            let ns = format!("{lab}-{h}");
            println!("This router runs in lab {lab}, host {h}: its page is on the loopback of the network namespace {ns}, not the machine's. To reach it:");
            println!("  weft lab exec --name {lab} {h} -- curl -s {url}report     # the data the page shows");
            println!("  ip netns exec {ns} chromium --headless --no-sandbox --screenshot=/tmp/topology.png --window-size=1200,1000 --virtual-time-budget=3000 {url}");
            println!("  socat TCP-LISTEN:16784,bind=127.0.0.1,fork,reuseaddr EXEC:'ip netns exec {ns} socat STDIO TCP\\:{HTTP_ADDR}'");
            println!("      # a forward from the machine's 127.0.0.1:16784 (apt-get install socat), then browse http://127.0.0.1:16784/");
        }
        _ => {
            println!("The page is served on this host's loopback only; from another machine: ssh -L 6784:{HTTP_ADDR} THIS-HOST, then browse {url}");
        }
    }
    Ok(())
}
