//! Sleeve benchmark (not a test): single-stream TCP throughput (iperf3) and ping RTT
//! container to container through the sleeve, plain and encrypted, next to the underlay
//! veth and the kernel VXLAN path measured in the same run, plus the sleeve threads' CPU.
//!
//! Run: `cargo bench -p weft-datapath --bench sleeve` as root (needs iperf3, ip, ping).
//! `SLEEVE_BENCH_SECS` sets the iperf3 duration (default 10).

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_datapath::sleeve::{PeerConfig, PeerId, Sleeve, SleeveConfig};

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).to_string()
}

struct Lab {
    prefix: String,
    names: Vec<String>,
}

impl Lab {
    fn ns(&mut self, short: &str) -> String {
        let name = format!("{}-{}", self.prefix, short);
        run(&["ip", "netns", "add", &name]);
        self.names.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }
    fn bridge(&self, ns: &str, br: &str) {
        run(&["ip", "-n", ns, "link", "add", br, "type", "bridge"]);
        run(&["ip", "-n", ns, "link", "set", br, "up"]);
    }
    fn container(&mut self, host: &str, br: &str, short: &str, cidr: &str, mtu: &str) -> String {
        let c = self.ns(short);
        let hv = format!("v{short}");
        run(&[
            "ip", "-n", host, "link", "add", &hv, "mtu", mtu, "type", "veth", "peer", "name",
            "eth0", "mtu", mtu, "netns", &c,
        ]);
        run(&["ip", "-n", host, "link", "set", &hv, "master", br, "up"]);
        run(&["ip", "-n", &c, "addr", "add", cidr, "dev", "eth0"]);
        run(&["ip", "-n", &c, "link", "set", "eth0", "up"]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on this dedicated thread with a valid namespace descriptor.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

/// Kills and reaps a child by its pid on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf(client_ns: &str, server_ns: &str, server_ip: &str, secs: u64) -> f64 {
    let server = Proc(
        Command::new("ip")
            .args([
                "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 server"),
    );
    // iperf3 has no readiness signal we can wait on: retry the client (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                client_ns,
                "iperf3",
                "-c",
                server_ip,
                "-t",
                &secs.to_string(),
                "-J",
            ])
            .output()
            .expect("run iperf3 client");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let bps = received_bps(&text);
        if out.status.success() && bps > 0.0 {
            drop(server);
            return bps / 1e9;
        }
        if Instant::now() > deadline {
            eprintln!("iperf3 to {server_ip} failed: {text}");
            return 0.0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Extracts end.sum_received.bits_per_second from iperf3's JSON.
fn received_bps(json: &str) -> f64 {
    let Some(at) = json.rfind("\"sum_received\"") else {
        return 0.0;
    };
    let rest = &json[at..];
    let Some(b) = rest.find("\"bits_per_second\"") else {
        return 0.0;
    };
    rest[b + 17..]
        .trim_start_matches([':', ' '])
        .split([',', '\n', '}'])
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Average ping RTT in milliseconds.
fn ping_ms(from: &str, ip: &str) -> f64 {
    let text = output(&[
        "ip", "netns", "exec", from, "ping", "-c", "20", "-i", "0.05", "-q", ip,
    ]);
    text.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU ticks (user+system) of this process's threads whose name starts with `prefix`.
fn thread_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the command name: utime is 14th, stime 15th overall.
        if let Some(rest) = stat.rsplit(')').next() {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            total += ut + st;
        }
    }
    total
}

fn start(ns: &str, id: u32, listen: &str) -> Sleeve {
    let mut cfg = SleeveConfig::new(PeerId(id), "sleeve0");
    cfg.listen = listen.parse().expect("listen addr");
    cfg.bridge = Some("weft".into());
    cfg.heartbeat_interval = Duration::from_millis(200);
    in_netns(ns, move || Sleeve::start(cfg)).expect("sleeve starts")
}

fn peer(id: u32, addr: &str, key: Option<[u8; 32]>) -> PeerConfig {
    PeerConfig {
        id: PeerId(id),
        name: format!("peer{id}"),
        addr: Some(addr.parse().expect("peer addr")),
        key,
    }
}

fn wait_heard(s: &Sleeve, id: u32, key_epoch: Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s
        .peer_stats(PeerId(id))
        .and_then(|p| p.last_heard)
        .is_none_or(|t| t < key_epoch)
    {
        assert!(Instant::now() < deadline, "no heartbeat from peer {id}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Row {
    path: &'static str,
    gbps: f64,
    rtt_ms: f64,
    cpu: Option<(f64, f64)>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("SLEEVE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut lab = Lab {
        prefix: format!("wsb{}", std::process::id()),
        names: Vec::new(),
    };
    // Underlay: h1 and h2 joined through a bridge in namespace u (like a lab).
    let u = lab.ns("u");
    lab.bridge(&u, "ub");
    let h1 = lab.ns("h1");
    let h2 = lab.ns("h2");
    for (h, ip) in [(&h1, "10.99.0.1/24"), (&h2, "10.99.0.2/24")] {
        let leg = format!("u{}", &h[h.len() - 1..]);
        run(&[
            "ip", "-n", &u, "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns", h,
        ]);
        run(&["ip", "-n", &u, "link", "set", &leg, "master", "ub", "up"]);
        run(&["ip", "-n", h, "addr", "add", ip, "dev", "eth0"]);
        run(&["ip", "-n", h, "link", "set", "eth0", "up"]);
    }
    // Sleeve: bridge weft + TAP, containers c1/c2.
    lab.bridge(&h1, "weft");
    lab.bridge(&h2, "weft");
    let c1 = lab.container(&h1, "weft", "c1", "10.40.0.1/24", "1500");
    let c2 = lab.container(&h2, "weft", "c2", "10.40.0.2/24", "1500");
    // Kernel VXLAN (what fastdp uses): bridge fdp + vxlan, containers f1/f2 with MTU 1450.
    for (h, local, remote) in [
        (&h1, "10.99.0.1", "10.99.0.2"),
        (&h2, "10.99.0.2", "10.99.0.1"),
    ] {
        lab.bridge(h, "fdp");
        run(&[
            "ip", "-n", h, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local,
            "remote", remote, "dstport", "4789",
        ]);
        run(&["ip", "-n", h, "link", "set", "vx0", "master", "fdp", "up"]);
    }
    let f1 = lab.container(&h1, "fdp", "f1", "10.42.0.1/24", "1450");
    let f2 = lab.container(&h2, "fdp", "f2", "10.42.0.2/24", "1450");

    let s1 = start(&h1, 1, "10.99.0.1:6783");
    let s2 = start(&h2, 2, "10.99.0.2:6783");
    let t0 = Instant::now();
    s1.add_peer(peer(2, "10.99.0.2:6783", None))
        .expect("add peer");
    s2.add_peer(peer(1, "10.99.0.1:6783", None))
        .expect("add peer");
    wait_heard(&s1, 2, t0);
    wait_heard(&s2, 1, t0);
    println!("sleeve TAP offloads: {:?}", s1.stats().offloads);

    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut rows = Vec::new();
    let measure_sleeve = |path: &'static str, rows: &mut Vec<Row>| {
        let rtt_ms = ping_ms(&c1, "10.40.0.2");
        let tx0 = thread_ticks("sleeve-tx");
        let rx0 = thread_ticks("sleeve-rx");
        let start = Instant::now();
        let gbps = iperf(&c1, &c2, "10.40.0.2", secs);
        let el = start.elapsed().as_secs_f64();
        let tx = (thread_ticks("sleeve-tx") - tx0) as f64 / hz / el;
        let rx = (thread_ticks("sleeve-rx") - rx0) as f64 / hz / el;
        rows.push(Row {
            path,
            gbps,
            rtt_ms,
            cpu: Some((tx, rx)),
        });
    };

    rows.push(Row {
        path: "underlay veth (host to host)",
        rtt_ms: ping_ms(&h1, "10.99.0.2"),
        gbps: iperf(&h1, &h2, "10.99.0.2", secs),
        cpu: None,
    });
    rows.push(Row {
        path: "kernel VXLAN (fastdp-like)",
        rtt_ms: ping_ms(&f1, "10.42.0.2"),
        gbps: iperf(&f1, &f2, "10.42.0.2", secs),
        cpu: None,
    });
    measure_sleeve("sleeve plain", &mut rows);
    let st = s1.stats();
    println!(
        "sleeve plain: {} datagrams in {} sendmmsg calls on h1",
        st.udp_datagrams_sent, st.udp_send_calls
    );
    let key = [0x5au8; 32];
    let t1 = Instant::now();
    s1.add_peer(peer(2, "10.99.0.2:6783", Some(key)))
        .expect("add peer");
    s2.add_peer(peer(1, "10.99.0.1:6783", Some(key)))
        .expect("add peer");
    wait_heard(&s1, 2, t1);
    wait_heard(&s2, 1, t1);
    measure_sleeve("sleeve ChaCha20-Poly1305", &mut rows);

    let base = rows[0].gbps;
    let vx = rows[1].gbps;
    println!();
    println!(
        "{:<30} {:>8} {:>10} {:>10} {:>9} {:>24}",
        "path (single TCP stream)",
        "Gbit/s",
        "/underlay",
        "/VXLAN",
        "RTT ms",
        "sleeve CPU (tx h1, rx h2)"
    );
    for r in &rows {
        let cpu = r
            .cpu
            .map(|(t, x)| format!("{:.0}% + {:.0}% of a core", t * 100.0, x * 100.0))
            .unwrap_or_default();
        println!(
            "{:<30} {:>8.2} {:>10.2} {:>10.2} {:>9.3} {:>24}",
            r.path,
            r.gbps,
            r.gbps / base,
            r.gbps / vx,
            r.rtt_ms,
            cpu
        );
    }
    drop((s1, s2));
}
