//! Sleeve benchmark (not a test): single-stream TCP throughput (iperf3) and ping RTT
//! container to container through the sleeve, plain and encrypted, next to the underlay
//! veth and the kernel VXLAN path measured in the same run, plus the sleeve threads' CPU.
//!
//! Run: `cargo bench -p weft-datapath --bench sleeve` as root (needs iperf3, ip, ping).
//! `SLEEVE_BENCH_SECS` sets the iperf3 duration (default 10), `SLEEVE_BENCH_ROUNDS` how
//! many interleaved rounds to run (default 1).

// The namespace harness shared by every test and bench that makes namespaces.
use weft_testkit::netns::{self, bridge, in_netns, run, Namespaces};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_datapath::sleeve::{CipherKind, PeerConfig, PeerId, Sleeve, SleeveConfig};

fn output(args: &[&str]) -> String {
    String::from_utf8_lossy(&netns::output(args).stdout).to_string()
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

/// Median ping RTT in milliseconds (the median, because a busy 2-core machine gives
/// occasional multi-millisecond outliers that swamp a mean).
fn ping_ms(from: &str, ip: &str) -> f64 {
    let text = output(&[
        "ip", "netns", "exec", from, "ping", "-c", "20", "-i", "0.05", ip,
    ]);
    let mut t: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|v| v.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    if t.is_empty() {
        return f64::NAN;
    }
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
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

fn peer(id: u32, addr: &str, key: Option<[u8; 32]>, cipher: CipherKind) -> PeerConfig {
    PeerConfig {
        id: PeerId(id),
        name: format!("peer{id}"),
        addr: Some(addr.parse().expect("peer addr")),
        key,
        cipher,
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
    gbps: Vec<f64>,
    rtt_ms: Vec<f64>,
    cpu: Vec<(f64, f64)>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("SLEEVE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rounds: usize = std::env::var("SLEEVE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut lab = Namespaces::new();
    // Underlay: h1 and h2 joined through a bridge in namespace u (like a lab).
    let u = lab.add("u");
    bridge(&u, "ub");
    let h1 = lab.add("h1");
    let h2 = lab.add("h2");
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
    bridge(&h1, "weft");
    bridge(&h2, "weft");
    let c1 = lab.container_on(&h1, "weft", "c1", "10.40.0.1/24", Some("1500"));
    let c2 = lab.container_on(&h2, "weft", "c2", "10.40.0.2/24", Some("1500"));
    // Kernel VXLAN (what fastdp uses): bridge fdp + vxlan, containers f1/f2 with MTU 1450.
    for (h, local, remote) in [
        (&h1, "10.99.0.1", "10.99.0.2"),
        (&h2, "10.99.0.2", "10.99.0.1"),
    ] {
        bridge(h, "fdp");
        run(&[
            "ip", "-n", h, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local,
            "remote", remote, "dstport", "4789",
        ]);
        run(&["ip", "-n", h, "link", "set", "vx0", "master", "fdp", "up"]);
    }
    let f1 = lab.container_on(&h1, "fdp", "f1", "10.42.0.1/24", Some("1450"));
    let f2 = lab.container_on(&h2, "fdp", "f2", "10.42.0.2/24", Some("1450"));

    let s1 = start(&h1, 1, "10.99.0.1:6783");
    let s2 = start(&h2, 2, "10.99.0.2:6783");
    let set_keys = |key: Option<[u8; 32]>, cipher: CipherKind| {
        let t = Instant::now();
        s1.add_peer(peer(2, "10.99.0.2:6783", key, cipher))
            .expect("add peer");
        s2.add_peer(peer(1, "10.99.0.1:6783", key, cipher))
            .expect("add peer");
        wait_heard(&s1, 2, t);
        wait_heard(&s2, 1, t);
    };
    let (chacha, aes) = (CipherKind::ChaCha20Poly1305, CipherKind::Aes256Gcm);
    set_keys(None, chacha);
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("/proc/loadavg at start: {}", load().trim());
    println!("sleeve TAP offloads: {:?}", s1.stats().offloads);

    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let measure_sleeve = |row: &mut Row| {
        let tx0 = thread_ticks("sleeve-tx");
        let rx0 = thread_ticks("sleeve-rx");
        let start = Instant::now();
        row.gbps.push(iperf(&c1, &c2, "10.40.0.2", secs));
        let el = start.elapsed().as_secs_f64();
        let tx = (thread_ticks("sleeve-tx") - tx0) as f64 / hz / el;
        let rx = (thread_ticks("sleeve-rx") - rx0) as f64 / hz / el;
        row.cpu.push((tx, rx));
    };
    let mut rows: Vec<Row> = [
        "underlay veth (host to host)",
        "kernel VXLAN (fastdp-like)",
        "sleeve plain",
        "sleeve ChaCha20-Poly1305",
        "sleeve AES-256-GCM",
    ]
    .into_iter()
    .map(|path| Row {
        path,
        gbps: Vec::new(),
        rtt_ms: Vec::new(),
        cpu: Vec::new(),
    })
    .collect();
    // Rounds interleave the paths so that load from elsewhere on the machine spreads evenly.
    for _ in 0..rounds {
        // Latency first, on an idle machine: right after a bulk transfer RTTs are noisier.
        rows[0].rtt_ms.push(ping_ms(&h1, "10.99.0.2"));
        rows[1].rtt_ms.push(ping_ms(&f1, "10.42.0.2"));
        set_keys(None, chacha);
        rows[2].rtt_ms.push(ping_ms(&c1, "10.40.0.2"));
        set_keys(Some([0x5a; 32]), chacha);
        rows[3].rtt_ms.push(ping_ms(&c1, "10.40.0.2"));
        set_keys(Some([0x5c; 32]), aes);
        rows[4].rtt_ms.push(ping_ms(&c1, "10.40.0.2"));
        rows[0].gbps.push(iperf(&h1, &h2, "10.99.0.2", secs));
        rows[1].gbps.push(iperf(&f1, &f2, "10.42.0.2", secs));
        set_keys(None, chacha);
        measure_sleeve(&mut rows[2]);
        set_keys(Some([0x5b; 32]), chacha);
        measure_sleeve(&mut rows[3]);
        set_keys(Some([0x5d; 32]), aes);
        measure_sleeve(&mut rows[4]);
    }
    let st = s1.stats();
    println!(
        "sleeve on h1: {} datagrams in {} sendmmsg calls ({:.1} per call)",
        st.udp_datagrams_sent,
        st.udp_send_calls,
        st.udp_datagrams_sent as f64 / st.udp_send_calls.max(1) as f64
    );

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let base = mean(&rows[0].gbps);
    let vx = mean(&rows[1].gbps);
    println!();
    println!(
        "{rounds} round(s) of {secs} s; Gbit/s is the mean, range in brackets; CPU is sleeve-tx on h1 + sleeve-rx on h2; *median of 20 pings"
    );
    println!(
        "{:<30} {:>8} {:>15} {:>10} {:>8} {:>8} {:>22}",
        "path (single TCP stream)",
        "Gbit/s",
        "(min-max)",
        "/underlay",
        "/VXLAN",
        "RTT ms*",
        "sleeve CPU"
    );
    for r in &rows {
        let g = mean(&r.gbps);
        let lo = r.gbps.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = r.gbps.iter().cloned().fold(0.0, f64::max);
        let cpu = if r.cpu.is_empty() {
            String::new()
        } else {
            let t = mean(&r.cpu.iter().map(|c| c.0).collect::<Vec<_>>());
            let x = mean(&r.cpu.iter().map(|c| c.1).collect::<Vec<_>>());
            format!("{:.0}% + {:.0}% of a core", t * 100.0, x * 100.0)
        };
        println!(
            "{:<30} {:>8.2} {:>15} {:>10.2} {:>8.2} {:>8.3} {:>22}",
            r.path,
            g,
            format!("({lo:.2}-{hi:.2})"),
            g / base,
            g / vx,
            mean(&r.rtt_ms),
            cpu
        );
    }
    let plain = mean(&rows[2].gbps);
    println!(
        "ratios: sleeve plain / kernel VXLAN {:.2}; ChaCha20-Poly1305 / plain {:.2}; AES-256-GCM / plain {:.2}",
        plain / vx,
        mean(&rows[3].gbps) / plain,
        mean(&rows[4].gbps) / plain
    );
    println!("/proc/loadavg at end: {}", load().trim());
    drop((s1, s2));
}
