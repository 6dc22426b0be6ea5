//! A weft DNS server on 127.0.0.1 for bench/dns: `bench.weft.local` plus `--names N` more.
//!
//! Prints `ready PORT` once it serves, then runs until killed (the bench stops it by pid).

use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use weft_dns::{
    serve, AnswerConfig, Answerer, DnsGossip, DnsHandle, ForwardConfig, Forwarder, GossipConfig,
};

fn main() -> anyhow::Result<()> {
    let mut names = 1000u32;
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--names" => {
                names = value
                    .parse()
                    .with_context(|| format!("--names {value}: not a number"))?
            }
            "--port" => {
                port = value
                    .parse()
                    .with_context(|| format!("--port {value}: not a port"))?
            }
            other => bail!("unknown argument {other}; use --names N --port P"),
        }
    }
    let wall = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    // Channel 2 as in the router; this server has no mesh.
    let mut gossip = DnsGossip::new("bench", 2, GossipConfig::default(), wall)?;
    gossip.add(0, "bench", "bench.weft.local", Ipv4Addr::new(10, 32, 0, 1))?;
    for i in 0..names {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 33, 0, 0)) + i);
        gossip.add(0, &format!("c{i}"), &format!("c{i}.weft.local"), addr)?;
    }
    let answerer = Answerer::new(gossip.records(), AnswerConfig::default())?;
    let handle = DnsHandle::new(answerer, Forwarder::new(vec![], ForwardConfig::default()));
    let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).context("binding UDP")?;
    // TCP on the same port when free; the bench itself only uses UDP.
    let tcp = std::net::TcpListener::bind(udp.local_addr()?).ok();
    println!("ready {}", udp.local_addr()?.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(udp, tcp, handle))?;
    Ok(())
}
