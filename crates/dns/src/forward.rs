//! Upstream servers (from resolv.conf) and forwarding queries to them.
//!
//! Queries go over UDP to each server in turn (for `attempts` rounds, `timeout` per try);
//! a truncated UDP answer is fetched again over TCP. The reply is passed back verbatim.
//! Sockets are made in the network namespace of the calling thread: the router's, where
//! the host's resolvers are reachable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use hickory_proto::op::{Header, MessageType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::answer::Transport;
use crate::DnsError;

/// Addresses weft itself answers on inside containers: never used as upstreams (loops).
pub const OWN_ADDRESSES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)),
];

/// What resolv.conf says, minus servers that would loop back to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// Name servers, port 53, in file order.
    pub servers: Vec<SocketAddr>,
    /// Search domains (last `search`/`domain` line wins, as in glibc).
    pub search: Vec<String>,
}

/// Parses resolv.conf text; `exclude` adds addresses to skip besides [`OWN_ADDRESSES`].
pub fn parse_resolv_conf(text: &str, exclude: &[IpAddr]) -> Upstreams {
    let mut up = Upstreams::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // Scoped IPv6 (fe80::1%eth0) cannot be reached from another namespace: skip.
                let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
                    continue;
                };
                if OWN_ADDRESSES.contains(&ip) || exclude.contains(&ip) || ip.is_unspecified() {
                    continue;
                }
                let addr = SocketAddr::new(ip, 53);
                if !up.servers.contains(&addr) {
                    up.servers.push(addr);
                }
            }
            Some("search") | Some("domain") => up.search = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    up
}

/// Reads and parses a resolv.conf file.
pub fn read_resolv_conf(path: &Path, exclude: &[IpAddr]) -> Result<Upstreams, DnsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_resolv_conf(&text, exclude))
}

/// Retry policy of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Wait per try and server.
    pub timeout: Duration,
    /// Rounds over all servers.
    pub attempts: u32,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            timeout: Duration::from_millis(1500),
            attempts: 2,
        }
    }
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// resolv.conf gave no usable server.
    #[error("no upstream DNS server configured (none usable in resolv.conf)")]
    NoServers,
    /// Every server failed or timed out.
    #[error("no upstream DNS server answered ({tried} tries; last error: {last})")]
    AllFailed {
        /// Tries made.
        tried: u32,
        /// The last failure.
        last: String,
    },
}

/// Forwards queries to upstream servers.
#[derive(Debug, Default)]
pub struct Forwarder {
    servers: RwLock<Vec<SocketAddr>>,
    config: ForwardConfig,
}

impl Forwarder {
    /// A forwarder to `servers` with `config`.
    pub fn new(servers: Vec<SocketAddr>, config: ForwardConfig) -> Self {
        Forwarder {
            servers: RwLock::new(servers),
            config,
        }
    }

    /// Replaces the servers (e.g. after resolv.conf changed).
    pub fn set_servers(&self, servers: Vec<SocketAddr>) {
        *self.servers.write().unwrap_or_else(|e| e.into_inner()) = servers;
    }

    /// The current servers.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends `query` upstream and returns the first valid reply.
    pub async fn forward(
        &self,
        query: &[u8],
        transport: Transport,
    ) -> Result<Vec<u8>, ForwardError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ForwardError::NoServers);
        }
        let id = query_id(query);
        let mut tried = 0;
        let mut last = String::new();
        for _ in 0..self.config.attempts.max(1) {
            for &server in &servers {
                tried += 1;
                let deadline = Instant::now() + self.config.timeout;
                let result = match transport {
                    Transport::Udp => match udp_exchange(server, query, id, deadline).await {
                        Ok(reply) if truncated(&reply) => {
                            tcp_exchange(server, query, id, deadline).await
                        }
                        other => other,
                    },
                    Transport::Tcp => tcp_exchange(server, query, id, deadline).await,
                };
                match result {
                    Ok(reply) => return Ok(reply),
                    Err(e) => {
                        tracing::debug!(%server, error = %e, "upstream DNS try failed");
                        last = format!("{server}: {e}");
                    }
                }
            }
        }
        Err(ForwardError::AllFailed { tried, last })
    }
}

fn query_id(query: &[u8]) -> Option<u16> {
    Header::read(&mut BinDecoder::new(query)).ok().map(|h| h.id)
}

/// True when `reply` is a response to query `id`.
fn matches(reply: &[u8], id: Option<u16>) -> bool {
    match Header::read(&mut BinDecoder::new(reply)) {
        Ok(h) => h.message_type == MessageType::Response && Some(h.id) == id,
        Err(_) => false,
    }
}

fn truncated(reply: &[u8]) -> bool {
    Header::read(&mut BinDecoder::new(reply))
        .map(|h| h.truncation)
        .unwrap_or(false)
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: Option<u16>,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // connect() makes the kernel drop datagrams from anyone but the server.
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        let reply = buf.get(..n).unwrap_or_default();
        // Skip stray datagrams (late answers to an earlier try would use another socket).
        if matches(reply, id) {
            return Ok(reply.to_vec());
        }
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: Option<u16>,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(query.len())
            .map_err(|_| std::io::Error::other("query longer than 64 KiB"))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await? as usize;
        let mut reply = vec![0u8; len];
        stream.read_exact(&mut reply).await?;
        if !matches(&reply, id) {
            return Err(std::io::Error::other("reply does not match the query"));
        }
        Ok(reply)
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_servers_without_loops_and_search() {
        let text = "# generated\nnameserver 10.0.0.2\nnameserver 127.0.0.11\nnameserver fe80::1%eth0\n\
                    nameserver 2001:db8::53 ; v6\nnameserver 10.0.0.2\nnameserver 192.168.1.1\n\
                    nameserver bogus\ndomain a.example\nsearch weft.local. example.com\noptions ndots:2\n";
        let up = parse_resolv_conf(text, &["192.168.1.1".parse().unwrap()]);
        assert_eq!(
            up.servers,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            up.search,
            vec!["weft.local.".to_string(), "example.com".to_string()]
        );
        assert_eq!(parse_resolv_conf("", &[]), Upstreams::default());
    }

    #[test]
    fn missing_resolv_conf_names_the_path() {
        let err = read_resolv_conf(Path::new("/nonexistent/weft/resolv.conf"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/weft/resolv.conf"),
            "{err}"
        );
    }
}
