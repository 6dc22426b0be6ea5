//! Helpers for the end-to-end tests, on testkit's namespaces (unique prefix, always removed):
//! a "host" with a `weft` bridge and containers on it, an "other host" on an underlay
//! link, and small TCP/UDP servers and clients run inside a namespace.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use weft_firewall::{CommandRunner, Nftables, Proto, Published};
#[allow(unused_imports)] // each test file uses a part
pub use weft_testkit::netns::{enter, in_netns, ip, ns_exec, pings, run, Namespaces};

/// How long a client waits for an answer before calling the port unreachable.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Commands run inside `ns`.
pub fn runner(ns: &str) -> CommandRunner {
    CommandRunner::with_prefix(&["ip", "netns", "exec", ns])
}

/// weft's nftables firewall of namespace `ns`.
pub fn firewall(ns: &str) -> Nftables<CommandRunner> {
    Nftables::new(runner(ns))
}

/// A server in a namespace that answers every TCP connection or UDP datagram on one port
/// with `hello <the client address it saw>`; stopped on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A TCP server on `0.0.0.0:port` in `ns`, listening when this returns.
    pub fn tcp(ns: &str, port: u16) -> Server {
        Self::tcp_with(ns, port, |mut c, peer, _| {
            let _ = c.set_nonblocking(false);
            let _ = write!(c, "hello {}", peer.ip());
        })
    }

    /// A TCP server on `0.0.0.0:port` in `ns` that greets every connection with
    /// `<name> <client address>\n`, then answers each line `l` with `<name> l\n` until the
    /// client closes (so a test can hold a connection open); listening when this returns.
    pub fn tcp_named(ns: &str, port: u16, name: &str) -> Server {
        let name = name.to_string();
        Self::tcp_with(ns, port, move |c, peer, stop| {
            let (name, stop) = (name.clone(), stop.clone());
            std::thread::spawn(move || echo_lines(c, peer, &name, &stop));
        })
    }

    /// A TCP server on `0.0.0.0:port` in `ns` that hands each connection to `serve`.
    fn tcp_with(
        ns: &str,
        port: u16,
        serve: impl Fn(TcpStream, SocketAddr, &Arc<AtomicBool>) + Send + 'static,
    ) -> Server {
        Self::start(ns, move |stop, ready| {
            let l = match TcpListener::bind(("0.0.0.0", port)) {
                Ok(l) => l,
                Err(e) => return ready.send(Err(e.to_string())).unwrap_or(()),
            };
            l.set_nonblocking(true).expect("nonblocking listener");
            let _ = ready.send(Ok(()));
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, peer)) => serve(c, peer, &stop),
                    // Polled, so that the thread notices `stop`.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    }

    /// A UDP server on `0.0.0.0:port` in `ns` that answers `<name> <client address>`.
    pub fn udp_named(ns: &str, port: u16, name: &str) -> Server {
        let name = name.to_string();
        Self::start(ns, move |stop, ready| {
            let s = match UdpSocket::bind(("0.0.0.0", port)) {
                Ok(s) => s,
                Err(e) => return ready.send(Err(e.to_string())).unwrap_or(()),
            };
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("read timeout");
            let _ = ready.send(Ok(()));
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(format!("{name} {}", peer.ip()).as_bytes(), peer);
                }
            }
        })
    }

    /// A UDP server on `0.0.0.0:port` in `ns` that answers `hello <client address>`,
    /// bound when this returns.
    pub fn udp(ns: &str, port: u16) -> Server {
        Self::udp_named(ns, port, "hello")
    }

    fn start(
        ns: &str,
        serve: impl FnOnce(Arc<AtomicBool>, mpsc::Sender<Result<(), String>>) + Send + 'static,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let ns2 = ns.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&ns2);
            serve(stop2, tx);
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("server in {ns} did not start: {e}"),
            Err(_) => panic!("server thread in {ns} died"),
        }
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection of [`Server::tcp_named`]: the greeting, then an echo of each line.
fn echo_lines(c: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool) {
    use std::io::BufRead;
    let mut w = match c.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    if writeln!(w, "{name} {}", peer.ip()).is_err() {
        return;
    }
    let mut r = std::io::BufReader::new(c);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if writeln!(w, "{name} {}", line.trim_end()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// What a TCP connection from `ns` to `to` is answered with, up to the server's close
/// (`None`: no answer). The client sends nothing and closes its side at once, which ends
/// a [`Server::tcp_named`] connection after its greeting.
pub fn tcp_get(ns: &str, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().expect("socket address");
    in_netns(ns, || {
        let mut c = TcpStream::connect_timeout(&to, CLIENT_TIMEOUT).ok()?;
        c.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        c.shutdown(std::net::Shutdown::Write).ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s.trim_end().to_string())
    })
}

/// What a UDP datagram from `ns` to `to` is answered with (`None`: no answer).
pub fn udp_get(ns: &str, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().expect("socket address");
    in_netns(ns, || {
        // A new socket each time: a new flow, not one conntrack already knows.
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect(to).ok()?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        s.send(b"hi").ok()?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// A host namespace with a `weft` bridge holding 10.32.0.1/12 and IPv4 forwarding on.
pub fn host_with_bridge(nss: &mut Namespaces) -> String {
    let host = nss.host("host");
    ip(&host, "addr add 10.32.0.1/12 dev weft");
    ns_exec(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    host
}

/// A container namespace on the host's `weft` bridge with `addr` (a /24 in the range, the
/// whole range on-link, the host's 10.32.0.1 as default gateway), the way weft sets one up.
pub fn container(nss: &mut Namespaces, host: &str, name: &str, addr: &str) -> String {
    let c = nss.container(host, name, addr);
    ip(&c, "route add 10.32.0.0/12 dev eth0");
    ip(&c, "route add default via 10.32.0.1 dev eth0");
    c
}

/// Another host, linked to `host` by a veth: host 192.168.77.1/24, other 192.168.77.2/24.
pub fn other_host(nss: &mut Namespaces, host: &str) -> String {
    let other = nss.add("other");
    run(&[
        "ip", "-n", host, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns",
        &other,
    ]);
    ip(host, "addr add 192.168.77.1/24 dev uplink");
    ip(host, "link set uplink up");
    ip(&other, "addr add 192.168.77.2/24 dev eth0");
    ip(&other, "link set eth0 up");
    other
}

/// A port of every host address forwarded to 10.32.2.2 (the first container's address).
pub fn published(proto: Proto, host_port: u16, port: u16) -> Published {
    Published {
        proto,
        host_ip: None,
        host_port,
        addr: "10.32.2.2".parse().unwrap(),
        port,
    }
}
