//! Helpers for the end-to-end tests: namespaces with a unique prefix that always go away,
//! a "host" with a `weft` bridge and containers on it, an "other host" on an underlay
//! link, and small TCP/UDP servers and clients run inside a namespace.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use weft_firewall::{CommandRunner, Nftables};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long a client waits for an answer before calling the port unreachable.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Namespaces made by one test, deleted on drop (also when the test panics).
pub struct Namespaces {
    prefix: String,
    made: Vec<String>,
}

impl Namespaces {
    /// A fresh prefix (`wfw<pid>-<n>`).
    pub fn new() -> Self {
        assert!(
            is_root(),
            "this test needs root (network namespaces and nftables)"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Namespaces {
            prefix: format!("wfw{}-{n}", std::process::id()),
            made: Vec::new(),
        }
    }

    /// Makes namespace `<prefix>-<name>` with loopback up.
    pub fn add(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &ns]);
        self.made.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.made {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command that must succeed; returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n NS ARGS...` (ARGS split on spaces), which must succeed.
pub fn ip(ns: &str, args: &str) -> String {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend(args.split_whitespace());
    sh(&argv)
}

/// Runs `cmd` inside `ns`, which must succeed; returns its stdout.
pub fn ns_exec(ns: &str, cmd: &[&str]) -> String {
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend_from_slice(cmd);
    sh(&argv)
}

/// Whether one ping from `ns` to `addr` is answered within a second.
pub fn pings(ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Commands run inside `ns`.
pub fn runner(ns: &str) -> CommandRunner {
    CommandRunner::with_prefix(&["ip", "netns", "exec", ns])
}

/// weft's nftables firewall of namespace `ns`.
pub fn firewall(ns: &str) -> Nftables<CommandRunner> {
    Nftables::new(runner(ns))
}

/// Enters `ns` on the calling thread (which must be one the caller made for it).
fn enter(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}")).unwrap_or_else(|e| panic!("open {ns}: {e}"));
    // SAFETY: a valid namespace fd; only this thread's network namespace changes.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread of its own inside `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("thread in {ns} panicked"))
    })
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
        Self::start(ns, move |stop, ready| {
            let l = TcpListener::bind(("0.0.0.0", port));
            let l = match l {
                Ok(l) => l,
                Err(e) => return ready.send(Err(e.to_string())).unwrap_or(()),
            };
            l.set_nonblocking(true).expect("nonblocking listener");
            let _ = ready.send(Ok(()));
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, peer)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = write!(c, "hello {}", peer.ip());
                    }
                    // Polled, so that the thread notices `stop`.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    }

    /// A UDP server on `0.0.0.0:port` in `ns`, bound when this returns.
    pub fn udp(ns: &str, port: u16) -> Server {
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
                    let _ = s.send_to(format!("hello {}", peer.ip()).as_bytes(), peer);
                }
            }
        })
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

/// What a TCP connection from `ns` to `to` is answered with (`None`: no answer).
pub fn tcp_get(ns: &str, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().expect("socket address");
    in_netns(ns, || {
        let mut c = TcpStream::connect_timeout(&to, CLIENT_TIMEOUT).ok()?;
        c.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
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
    let host = nss.add("host");
    ip(&host, "link add weft type bridge");
    ip(&host, "addr add 10.32.0.1/12 dev weft");
    ip(&host, "link set weft up");
    ns_exec(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    host
}

/// A container namespace on the host's `weft` bridge with `addr` (a /24 in the range, the
/// whole range on-link, the host's 10.32.0.1 as default gateway), the way weft sets one up.
pub fn container(nss: &mut Namespaces, host: &str, name: &str, addr: &str) -> String {
    let c = nss.add(name);
    let hostside = format!("v{name}");
    sh(&[
        "ip", "-n", host, "link", "add", &hostside, "type", "veth", "peer", "name", "eth0",
        "netns", &c,
    ]);
    ip(host, &format!("link set {hostside} master weft up"));
    ip(&c, &format!("addr add {addr} dev eth0"));
    ip(&c, "link set eth0 up");
    ip(&c, "route add 10.32.0.0/12 dev eth0");
    ip(&c, "route add default via 10.32.0.1 dev eth0");
    c
}

/// Another host, linked to `host` by a veth: host 192.168.77.1/24, other 192.168.77.2/24.
pub fn other_host(nss: &mut Namespaces, host: &str) -> String {
    let other = nss.add("other");
    sh(&[
        "ip", "-n", host, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns",
        &other,
    ]);
    ip(host, "addr add 192.168.77.1/24 dev uplink");
    ip(host, "link set uplink up");
    ip(&other, "addr add 192.168.77.2/24 dev eth0");
    ip(&other, "link set eth0 up");
    other
}
