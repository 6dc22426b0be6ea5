//! The one driver of mesh applications ([`weft_mesh::MeshApp`]): it hands a core the
//! payloads of its channel, the topology when it changes and the time when the core asked
//! for it, sends what the core transmits (in order, through one queue), drops the peers it
//! asks to drop, and gives back its effects for the caller to carry out against the
//! kernel, the disk or its clients.
//!
//! A module's task owns an [`AppDriver`] and loops: `select!` over [`AppDriver::next`] and
//! its own inputs (which call the core's own methods), then [`AppDriver::flush`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use weft_mesh::{MeshApp, Millis, TopologyView, Transmit};

use super::{Delivery, MeshHandle, MeshSnapshot};

/// Runs one core against the real mesh and clock.
pub struct AppDriver<C: MeshApp> {
    /// The core (its own inputs are called on it directly).
    pub core: C,
    deliveries: Option<mpsc::UnboundedReceiver<Delivery>>,
    topology: Option<watch::Receiver<Arc<MeshSnapshot>>>,
    seen: Option<Arc<TopologyView>>,
    sends: Option<mpsc::UnboundedSender<Transmit>>,
    mesh: Option<MeshHandle>,
    epoch: Instant,
}

impl<C: MeshApp> AppDriver<C> {
    /// Drives `core` on `channel` of `mesh` (without a mesh: only its timers).
    pub fn new(core: C, mesh: Option<&MeshHandle>, channel: u16) -> Self {
        let sends = mesh.map(|m| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_loop(m.clone(), rx));
            tx
        });
        AppDriver {
            core,
            deliveries: mesh.map(|m| m.subscribe(channel)),
            topology: mesh.map(|m| m.watch()),
            seen: None,
            sends,
            mesh: mesh.cloned(),
            epoch: aligned_epoch(1_000),
        }
    }

    /// Milliseconds since the driver started: the core's clock.
    pub fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    /// Hands the core the current topology if it is not the one it saw last.
    pub fn topology_now(&mut self) {
        let Some(rx) = &self.topology else { return };
        let view = rx.borrow().view.clone();
        if self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &view)) {
            return;
        }
        self.seen = Some(view.clone());
        let now = self.now();
        self.core.handle_topology(now, &view);
    }

    /// Waits for the next input from the mesh or the core's timer and hands it to the
    /// core; false when the mesh is gone (the timers still run after).
    pub async fn next(&mut self) -> bool {
        let wake = self.core.poll_timeout().map(|at| {
            let ms = at.saturating_sub(self.now());
            tokio::time::Instant::now() + Duration::from_millis(ms)
        });
        tokio::select! {
            d = recv(&mut self.deliveries) => match d {
                Some(d) => {
                    let now = self.now();
                    self.core.handle_message(now, d.channel, &d.from, &d.payload);
                    true
                }
                None => self.detach(),
            },
            ok = changed(&mut self.topology) => {
                if !ok {
                    return self.detach();
                }
                self.topology_now();
                true
            }
            _ = sleep_until(wake) => {
                let now = self.now();
                self.core.handle_timeout(now);
                true
            }
        }
    }

    /// The mesh stopped: only the core's timers are left.
    fn detach(&mut self) -> bool {
        self.deliveries = None;
        self.topology = None;
        false
    }

    /// Sends what the core transmits, drops the peers it asks to, and returns its effects,
    /// in order.
    pub fn flush(&mut self) -> Vec<C::Effect> {
        while let Some(t) = self.core.poll_transmit() {
            if let Some(tx) = &self.sends {
                let _ = tx.send(t);
            }
        }
        while let Some(d) = self.core.poll_disconnect() {
            tracing::warn!(peer = %d.peer, "disconnecting a peer: {}", d.reason);
            if let Some(mesh) = &self.mesh {
                let _ = mesh.disconnect(d);
            }
        }
        std::iter::from_fn(|| self.core.poll_effect()).collect()
    }
}

/// A start for a clock of milliseconds that is on the wall clock's grid of `period_ms`:
/// the clock starts at the wall clock's milliseconds within the current period (the cores'
/// clocks under one second, nothing they notice), so timers on whole multiples of their
/// period (the path core's heartbeats, the mesh's digests) fire at the same moment on
/// every router whose clock is in sync, and each router gets its peers' periodic messages
/// in one burst instead of one wake-up per peer. Nothing depends on it: clocks out of
/// sync only spread the bursts.
pub fn aligned_epoch(period_ms: u64) -> Instant {
    let now = Instant::now();
    let within = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % u128::from(period_ms.max(1)))
        .unwrap_or(0) as u64;
    now.checked_sub(Duration::from_millis(within))
        .unwrap_or(now)
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn changed(rx: &mut Option<watch::Receiver<Arc<MeshSnapshot>>>) -> bool {
    match rx {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends in the order the core emitted; a peer that went away is normal (the cores
/// retry what matters).
async fn send_loop(mesh: MeshHandle, mut rx: mpsc::UnboundedReceiver<Transmit>) {
    while let Some(t) = rx.recv().await {
        if let Err(e) = mesh.transmit(t).await {
            tracing::debug!("mesh send: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_dns::{DnsGossip, GossipConfig};

    use super::*;
    use crate::config::PeerAddr;
    use crate::mesh::{start, DriverConfig};
    use crate::metrics::Metrics;

    const DNS: u16 = crate::channels::DNS;

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
        l.local_addr().expect("its address").port()
    }

    async fn mesh(name: &str, port: u16, peers: Vec<PeerAddr>) -> MeshHandle {
        let config = DriverConfig {
            name: name.into(),
            nickname: name.into(),
            port,
            password: None,
            conn_limit: 10,
            discovery: false,
            peers,
        };
        let metrics = Arc::new(Metrics::default());
        start(config, metrics, std::future::pending())
            .await
            .expect("mesh on loopback")
    }

    fn connected(m: &MeshHandle, peer: &str) -> bool {
        m.snapshot().neighbours.iter().any(|n| n.name == peer)
    }

    /// The whole path of a core's refusal: the DNS core refuses gossip that does not
    /// decode, the driver hands the mesh its Disconnect, and the mesh closes the
    /// connection with the reason, which the peer is told.
    #[tokio::test]
    async fn a_peer_the_core_refuses_is_disconnected_with_the_reason() {
        let (pa, pb) = (free_port(), free_port());
        let a = mesh("a", pa, Vec::new()).await;
        let target = PeerAddr::parse(&format!("127.0.0.1:{pa}"), pa).unwrap();
        let b = mesh("b", pb, vec![target]).await;
        let within = tokio::time::Instant::now() + Duration::from_secs(10);
        while !connected(&a, "b") {
            assert!(
                tokio::time::Instant::now() < within,
                "a and b never connected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let core = DnsGossip::new("a", DNS, GossipConfig::default(), 0).unwrap();
        let mut app = AppDriver::new(core, Some(&a), DNS);
        app.topology_now();
        let _ = app.flush();
        let junk = Transmit::To {
            channel: DNS,
            dst: "a".into(),
            payload: vec![weft_dns::wire::VERSION, 1, 0],
        };
        b.transmit(junk).await.unwrap();
        // b dials a again after its backoff (a second or more): look before.
        let within = tokio::time::Instant::now() + Duration::from_secs(1);
        while connected(&a, "b") {
            assert!(
                tokio::time::Instant::now() < within,
                "a is still connected to b"
            );
            tokio::select! {
                _ = app.next() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            let _ = app.flush();
        }
        let told = |b: &MeshHandle| {
            b.snapshot().targets.iter().any(|t| {
                let e = t.last_error.to_lowercase();
                e.contains("peer b dropped") && e.contains("dns gossip")
            })
        };
        let within = tokio::time::Instant::now() + Duration::from_millis(700);
        while !told(&b) && tokio::time::Instant::now() < within {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let told = told(&b);
        assert!(told, "b was not told why: {:?}", b.snapshot().targets);
    }
}
