//! The DNS server: UDP and TCP on sockets the caller made (possibly in another netns).
//!
//! Local answers are computed inline on the socket's task; forwarded queries run as
//! tasks (at most [`MAX_FORWARDS`] at once per socket) so a slow upstream never delays
//! container names. Dropping the `serve` future stops everything it started and closes
//! the sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::answer::{servfail, Answerer, Outcome, Transport};
use crate::forward::Forwarder;
use crate::DnsError;

/// Forwarded queries in flight per socket; more are answered SERVFAIL.
pub const MAX_FORWARDS: usize = 256;
/// TCP connections per listener; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection idle this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Consecutive socket errors after which `serve` gives up.
const MAX_ERRORS_IN_A_ROW: u32 = 100;

/// Everything a server needs: the answerer (store, domain, TTL) and the forwarder.
#[derive(Debug)]
pub struct DnsHandle {
    answerer: Answerer,
    forwarder: Forwarder,
    /// Queries handled, by result (for /metrics).
    pub stats: crate::stats::QueryCounts,
}

impl DnsHandle {
    /// A handle shared by every socket the router serves.
    pub fn new(answerer: Answerer, forwarder: Forwarder) -> Arc<Self> {
        Arc::new(DnsHandle {
            answerer,
            forwarder,
            stats: Default::default(),
        })
    }

    /// The local answerer.
    pub fn answerer(&self) -> &Answerer {
        &self.answerer
    }

    /// The upstream forwarder.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The `dns` section of `weft report` / `weft status dns`.
    pub fn report(&self) -> weft_api::DnsReport {
        let mut entries = crate::read_records(self.answerer.records()).report();
        entries.sort_by(|a, b| {
            (&a.hostname, &a.address, &a.origin).cmp(&(&b.hostname, &b.address, &b.origin))
        });
        weft_api::DnsReport {
            domain: self.answerer.domain().to_string(),
            address: format!(
                "{}:{} and {}:{} in each container",
                crate::CONTAINER_DNS_ADDR,
                crate::DNS_PORT,
                crate::DOCKER_DNS_ADDR,
                crate::DNS_PORT
            ),
            upstream: self
                .forwarder
                .servers()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ttl: self.answerer.ttl(),
            entries,
        }
    }

    /// Answers a query given as bytes, forwarding if needed (for `weft dns-lookup`).
    /// Returns `None` when the bytes are not a query worth an answer.
    pub async fn resolve(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        use crate::stats::Source::{Local, Upstream};
        let (source, reply) = match self.answerer.answer(query, transport) {
            Outcome::Reply(b) => (Local, Some(b)),
            Outcome::Drop => (Local, None),
            Outcome::Forward => match self.forwarder.forward(query, transport).await {
                Ok(b) => (Upstream, Some(b)),
                Err(e) => {
                    tracing::debug!(error = %e, "forwarding failed");
                    (Upstream, servfail(query))
                }
            },
        };
        self.stats.count(source, reply.as_deref());
        reply
    }
}

/// Serves DNS on pre-bound sockets until an unrecoverable socket error.
///
/// The sockets may come from another network namespace: they stay bound there. Must be
/// called inside a tokio runtime.
pub async fn serve(
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    handle: Arc<DnsHandle>,
) -> Result<(), DnsError> {
    let what = |s: &str, a: std::io::Result<std::net::SocketAddr>| match a {
        Ok(a) => format!("{s} {a}"),
        Err(_) => s.to_string(),
    };
    let udp_name = what("udp", udp.local_addr());
    let sock_err = |what: String| move |source| DnsError::Socket { what, source };
    udp.set_nonblocking(true)
        .map_err(sock_err(udp_name.clone()))?;
    let udp = Arc::new(UdpSocket::from_std(udp).map_err(sock_err(udp_name.clone()))?);
    let tcp = match tcp {
        Some(l) => {
            let name = what("tcp", l.local_addr());
            l.set_nonblocking(true).map_err(sock_err(name.clone()))?;
            Some((
                TcpListener::from_std(l).map_err(sock_err(name.clone()))?,
                name,
            ))
        }
        None => None,
    };
    match tcp {
        Some((listener, name)) => {
            tokio::select! {
                r = serve_udp(udp, udp_name, Arc::clone(&handle)) => r,
                r = serve_tcp(listener, name, handle) => r,
            }
        }
        None => serve_udp(udp, udp_name, handle).await,
    }
}

/// A socket's errors in a row: one is skipped (a transient failure), a run of
/// [`MAX_ERRORS_IN_A_ROW`] stops the server with the last.
struct Streak(u32);

impl Streak {
    /// The value of `r`, or None for an error to skip.
    fn check<T>(&mut self, r: std::io::Result<T>, what: &str) -> Result<Option<T>, DnsError> {
        match r {
            Ok(x) => {
                self.0 = 0;
                Ok(Some(x))
            }
            Err(source) => {
                self.0 += 1;
                if self.0 >= MAX_ERRORS_IN_A_ROW {
                    return Err(DnsError::Socket {
                        what: what.to_string(),
                        source,
                    });
                }
                Ok(None)
            }
        }
    }
}

async fn serve_udp(
    sock: Arc<UdpSocket>,
    name: String,
    handle: Arc<DnsHandle>,
) -> Result<(), DnsError> {
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    let mut errors = Streak(0);
    loop {
        while tasks.try_join_next().is_some() {}
        let Some((n, peer)) = errors.check(sock.recv_from(&mut buf).await, &name)? else {
            continue;
        };
        let query = buf.get(..n).unwrap_or_default();
        match handle.answerer.answer(query, Transport::Udp) {
            Outcome::Reply(reply) => {
                handle
                    .stats
                    .count(crate::stats::Source::Local, Some(&reply));
                // A lost reply is like a lost datagram: the client retries.
                let _ = sock.send_to(&reply, peer).await;
            }
            Outcome::Drop => handle.stats.count(crate::stats::Source::Local, None),
            Outcome::Forward => match Arc::clone(&forwards).try_acquire_owned() {
                Ok(permit) => {
                    let (sock, handle, query) =
                        (Arc::clone(&sock), Arc::clone(&handle), query.to_vec());
                    tasks.spawn(async move {
                        let reply = match handle.forwarder.forward(&query, Transport::Udp).await {
                            Ok(r) => Some(r),
                            Err(e) => {
                                tracing::debug!(error = %e, "forwarding failed");
                                servfail(&query)
                            }
                        };
                        handle
                            .stats
                            .count(crate::stats::Source::Upstream, reply.as_deref());
                        if let Some(r) = reply {
                            let _ = sock.send_to(&r, peer).await;
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    let r = servfail(query);
                    handle
                        .stats
                        .count(crate::stats::Source::Upstream, r.as_deref());
                    if let Some(r) = r {
                        let _ = sock.send_to(&r, peer).await;
                    }
                }
            },
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    name: String,
    handle: Arc<DnsHandle>,
) -> Result<(), DnsError> {
    let mut conns = JoinSet::new();
    let mut errors = Streak(0);
    loop {
        while conns.try_join_next().is_some() {}
        let Some((stream, _)) = errors.check(listener.accept().await, &name)? else {
            // EMFILE and friends: give the system a moment instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if conns.len() >= MAX_TCP_CONNECTIONS {
            drop(stream);
            continue;
        }
        conns.spawn(serve_connection(stream, Arc::clone(&handle)));
    }
}

/// Answers length-prefixed queries on one connection until EOF, error or idle timeout.
async fn serve_connection(mut stream: TcpStream, handle: Arc<DnsHandle>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; len as usize];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await else {
            return;
        };
        let Some(reply) = handle.resolve(&query, Transport::Tcp).await else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
