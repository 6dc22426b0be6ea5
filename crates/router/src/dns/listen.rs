//! DNS listeners inside a container's network namespace: UDP and TCP on 127.0.0.11:53 and
//! 127.0.0.12:53 (docs/dns.md says why both), served from the router's runtime.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;

use weft_datapath::link::{self, LinkChange};
use weft_datapath::nl::Handle;
use weft_datapath::Netns;

/// Sockets bound in one namespace, not yet served.
pub struct Bound {
    /// UDP socket and, where TCP could listen too, its listener, per address.
    pub sockets: Vec<(UdpSocket, Option<TcpListener>)>,
    /// Addresses that could not be bound, with why (logged by the caller).
    pub failed: Vec<String>,
}

/// Brings `lo` up in `ns` if it is down (a fresh `ip netns add` has it down) and binds
/// every weft DNS address there. Blocking: call inside `spawn_blocking`.
pub fn bind_in(ns: &Netns) -> Result<Bound, String> {
    let mut h = Handle::in_netns(ns).map_err(|e| e.to_string())?;
    let lo = link::require(&mut h, "lo").map_err(|e| e.to_string())?;
    if !lo.up {
        link::set(
            &mut h,
            lo.index,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
    }
    let mut bound = Bound {
        sockets: Vec::new(),
        failed: Vec::new(),
    };
    for ip in weft_dns::LISTEN_ADDRS {
        let addr = SocketAddr::new(ip, weft_dns::DNS_PORT);
        let udp = match ns.udp_bind(addr) {
            Ok(s) => s,
            Err(e) => {
                bound.failed.push(e.to_string());
                continue;
            }
        };
        let tcp = match ns.tcp_listen(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                bound.failed.push(e.to_string());
                None
            }
        };
        bound.sockets.push((udp, tcp));
    }
    Ok(bound)
}

/// Serving tasks of one container; dropping this stops them and closes the sockets.
#[derive(Debug, Default)]
pub struct Served {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Served {
    /// Serves every bound socket with `handle` on the current runtime.
    pub fn start(bound: Bound, handle: &Arc<weft_dns::DnsHandle>, container: &str) -> Served {
        let mut tasks = Vec::new();
        for (udp, tcp) in bound.sockets {
            let handle = Arc::clone(handle);
            let container = container.to_string();
            let task = tokio::spawn(async move {
                if let Err(e) = weft_dns::serve(udp, tcp, handle).await {
                    tracing::warn!(%container, "DNS listener stopped: {e}");
                }
            });
            tasks.push(task.abort_handle());
        }
        Served { tasks }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
