//! /metrics: the router's series in Prometheus conventions (units in names, `_total`
//! counters, labels), encoded by the prometheus-client crate. docs/metrics.md lists them.
//!
//! Two kinds of source. Values the router can read when scraped (the report, the sleeve's
//! counters, DNS counts, IPAM status) are copied into a registry built for each scrape.
//! Events that leave no trace elsewhere (path switches, fastdp heartbeats, attach and
//! detach durations) are counted by one-line hooks at their call sites into [`Metrics`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use weft_datapath::sleeve::SleeveStats;

/// A label set: (name, value) pairs.
type Labels = Vec<(String, String)>;
type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A path as a label value: `fastdp`, `sleeve`, or `relayed` (for `sleeve via NAME`: the
/// relay's name would make a new series each time the route changes).
fn path_label(path: &str) -> &str {
    if path.starts_with("sleeve via ") {
        "relayed"
    } else {
        path
    }
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~10 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Counters the router keeps; each subsystem adds its own.
#[derive(Debug)]
pub struct Metrics {
    /// API requests served.
    pub api_requests: AtomicU64,
    /// Bytes written on mesh control connections.
    pub mesh_bytes_sent: AtomicU64,
    /// Bytes read from mesh control connections.
    pub mesh_bytes_received: AtomicU64,
    /// Mesh messages sent.
    pub mesh_messages_sent: AtomicU64,
    /// Mesh messages received.
    pub mesh_messages_received: AtomicU64,
    /// Gossip messages sent.
    pub mesh_gossip_sent: AtomicU64,
    path_switches: CounterFamily,
    heartbeats_sent: CounterFamily,
    heartbeats_lost: CounterFamily,
    operations: HistogramFamily,
    /// The path each peer was on at the last publish.
    paths: Mutex<BTreeMap<String, String>>,
    /// Peers sent a fastdp heartbeat that has not been answered yet.
    awaiting: Mutex<BTreeSet<String>>,
    /// The sleeve's counters, as of its last sample.
    sleeve: Mutex<Option<SleeveStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            api_requests: AtomicU64::new(0),
            mesh_bytes_sent: AtomicU64::new(0),
            mesh_bytes_received: AtomicU64::new(0),
            mesh_messages_sent: AtomicU64::new(0),
            mesh_messages_received: AtomicU64::new(0),
            mesh_gossip_sent: AtomicU64::new(0),
            path_switches: Family::default(),
            heartbeats_sent: Family::default(),
            heartbeats_lost: Family::default(),
            operations: Family::new_with_constructor(duration_histogram),
            paths: Mutex::new(BTreeMap::new()),
            awaiting: Mutex::new(BTreeSet::new()),
            sleeve: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts one API request.
    pub fn count_request(&self) {
        self.api_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Hook: the data path published its paths (peer, path); counts each peer whose
    /// path changed.
    pub fn paths_published<'a>(&self, now: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut old = lock(&self.paths);
        let mut seen = BTreeMap::new();
        for (peer, path) in now {
            if let Some(before) = old.get(peer).filter(|b| path_label(b) != path_label(path)) {
                let (from, to) = (path_label(before), path_label(path));
                let l = labels(&[("peer", peer), ("from", from), ("to", to)]);
                self.path_switches.get_or_create(&l).inc();
            }
            seen.insert(peer.to_string(), path.to_string());
        }
        *old = seen;
    }

    /// Hook: a fastdp heartbeat was sent to `peer`; the previous one, if unanswered, is lost.
    pub fn fastdp_heartbeat_sent(&self, peer: &str) {
        let l = labels(&[("peer", peer), ("path", "fastdp")]);
        self.heartbeats_sent.get_or_create(&l).inc();
        if !lock(&self.awaiting).insert(peer.to_string()) {
            self.heartbeats_lost.get_or_create(&l).inc();
        }
    }

    /// Hook: `peer` answered a fastdp heartbeat.
    pub fn fastdp_heartbeat_answered(&self, peer: &str) {
        lock(&self.awaiting).remove(peer);
    }

    /// Hook: a sample of the sleeve's counters (taken by the data-path driver's tick).
    pub fn sleeve_sampled(&self, stats: Option<SleeveStats>) {
        *lock(&self.sleeve) = stats;
    }

    /// Hook: times an attach or detach until the returned guard is dropped; `ok` marks
    /// success (a guard dropped without it records `result="error"`).
    pub fn time(&self, operation: &'static str) -> OperationTimer<'_> {
        OperationTimer {
            metrics: self,
            operation,
            start: Instant::now(),
            ok: false,
        }
    }
}

/// Records an operation's duration when dropped.
#[derive(Debug)]
pub struct OperationTimer<'a> {
    metrics: &'a Metrics,
    operation: &'static str,
    start: Instant,
    ok: bool,
}

impl OperationTimer<'_> {
    /// Marks the operation as successful; returns its argument (to wrap a result).
    pub fn ok<T, E>(mut self, r: Result<T, E>) -> Result<T, E> {
        self.ok = r.is_ok();
        r
    }

    /// Awaits `f` and records how it ended (timed from [`Metrics::time`]).
    pub async fn of<T, E>(
        self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.ok(f.await)
    }
}

impl Drop for OperationTimer<'_> {
    fn drop(&mut self) {
        let result = if self.ok { "ok" } else { "error" };
        let l = labels(&[("operation", self.operation), ("result", result)]);
        self.metrics
            .operations
            .get_or_create(&l)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Free addresses per subnet, sampled by the IPAM driver (it owns the core, which the
/// scrape cannot reach). Process-wide: one router per process.
static IPAM_FREE: Mutex<IpamSample> = Mutex::new(IpamSample {
    at: None,
    free: Vec::new(),
});

/// When IPAM was last sampled, and this peer's free addresses per subnet then.
struct IpamSample {
    at: Option<Instant>,
    free: Vec<(String, u64)>,
}
/// How often the IPAM sample is refreshed at most (the driver calls on every event).
const IPAM_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Hook: samples this peer's free addresses in the default subnet and in every subnet it
/// has allocations in (at most once a second).
pub fn ipam_sampled(core: &weft_ipam::Allocator) {
    let mut g = lock(&IPAM_FREE);
    if g.at.is_some_and(|t| t.elapsed() < IPAM_SAMPLE_EVERY) {
        return;
    }
    g.at = Some(Instant::now());
    let Some(ring) = core.ring() else {
        g.free.clear();
        return;
    };
    let mut subnets = BTreeSet::new();
    subnets.insert(core.config().default_subnet.unwrap_or(core.config().range));
    for a in core.persisted_state().allocations {
        if let Some(c) = weft_ipam::Cidr::new(a.addr, a.prefix) {
            subnets.insert(c.subnet());
        }
    }
    g.free = subnets
        .iter()
        .map(|s| (s.to_string(), ring.advertised_free(core.name(), s)))
        .collect();
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads a counter of the VXLAN device (fastdp carries traffic in the kernel: the device
/// counts it per host, not per peer).
fn vxlan_stat(what: &str) -> Option<u64> {
    let dev = weft_datapath::fastdp::VXLAN_NAME;
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{what}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition, for clients
/// that do not ask for OpenMetrics (curl, `promtool check metrics`): a counter family's
/// HELP and TYPE name its `_total` samples, and the `# UNIT`/`# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for l in openmetrics.lines() {
        if l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| l.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, t)| (p, n, t))) {
            Some((p, name, tail)) if counters.contains(name) => {
                out.push_str(&format!("{p}{name}_total {tail}\n"));
            }
            _ => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// The /metrics page for a router, in the OpenMetrics text format.
pub fn render(
    report: &weft_api::Report,
    uptime_secs: u64,
    m: &Metrics,
    ipam_pending: Option<u64>,
    dns_queries: &[(&'static str, &'static str, u64)],
) -> String {
    let mut reg = Registry::default();

    let build: GaugeFamily = Family::default();
    build
        .get_or_create(&labels(&[
            ("version", weft_api::VERSION),
            ("peer", &report.router.name),
            ("nickname", &report.router.nickname),
        ]))
        .set(1);
    reg.register(
        "weft_build_info",
        "weft version, peer name and nickname of this router",
        build,
    );
    gauge(
        &mut reg,
        "weft_uptime_seconds",
        "Seconds since the router started",
        i(uptime_secs),
    );
    let relaxed = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut reg,
        "weft_api_requests",
        "API requests served",
        relaxed(&m.api_requests),
    );
    for (name, help, v) in [
        (
            "weft_mesh_sent_bytes",
            "Bytes written on mesh control connections",
            &m.mesh_bytes_sent,
        ),
        (
            "weft_mesh_received_bytes",
            "Bytes read from mesh control connections",
            &m.mesh_bytes_received,
        ),
        (
            "weft_mesh_sent_messages",
            "Mesh messages sent",
            &m.mesh_messages_sent,
        ),
        (
            "weft_mesh_received_messages",
            "Mesh messages received",
            &m.mesh_messages_received,
        ),
        (
            "weft_mesh_gossip_sent_messages",
            "Mesh gossip messages sent",
            &m.mesh_gossip_sent,
        ),
    ] {
        counter(&mut reg, name, help, relaxed(v));
    }

    // Peers and connections.
    let peers: GaugeFamily = Family::default();
    for p in &report.router.peers {
        peers
            .get_or_create(&labels(&[("peer", &p.name), ("nickname", &p.nickname)]))
            .set(1);
    }
    reg.register(
        "weft_peer_info",
        "Every peer in the topology (this one included), with its nickname",
        peers,
    );
    gauge(
        &mut reg,
        "weft_peers",
        "Peers in the topology, this one included",
        i(report.router.peers.len() as u64),
    );
    let established = report
        .router
        .connections
        .iter()
        .filter(|c| c.state == "established")
        .count();
    gauge(
        &mut reg,
        "weft_connections_established",
        "Established connections of this router",
        i(established as u64),
    );
    let mtu: GaugeFamily = Family::default();
    for c in &report.router.connections {
        let (Some(m), false) = (c.mtu, c.path.is_empty()) else {
            continue;
        };
        // `peer` reads `name(nickname)`; the label is the name, as on the other series.
        let peer = c.peer.split('(').next().unwrap_or_default();
        mtu.get_or_create(&labels(&[("peer", peer), ("path", path_label(&c.path))]))
            .set(i(u64::from(m)));
    }
    reg.register(
        "weft_connection_mtu_bytes",
        "Overlay MTU towards each peer, labelled with the path in use",
        mtu,
    );
    let info: GaugeFamily = Family::default();
    let pmtu: GaugeFamily = Family::default();
    for c in report
        .router
        .connections
        .iter()
        .filter(|c| !c.path.is_empty())
    {
        let peer = c.peer.split('(').next().unwrap_or_default();
        let path = path_label(&c.path);
        let encryption = if c.encrypted { "encrypted" } else { "none" };
        let cipher = c.cipher.as_deref().unwrap_or("none");
        info.get_or_create(&labels(&[
            ("peer", peer),
            ("path", path),
            ("encryption", encryption),
            ("cipher", cipher),
        ]))
        .set(1);
        if let Some(p) = c.pmtu {
            pmtu.get_or_create(&labels(&[("peer", peer), ("path", path)]))
                .set(i(u64::from(p)));
        }
    }
    reg.register(
        "weft_connection_info",
        "Each connection's path, whether it is encrypted and the sleeve cipher sealing it",
        info,
    );
    reg.register(
        "weft_connection_path_mtu_bytes",
        "Largest underlay datagram the path to each peer carries, as probed",
        pmtu,
    );
    reg.register(
        "weft_connection_path_switches",
        "Changes of the path to a peer (from, to)",
        m.path_switches.clone(),
    );
    reg.register(
        "weft_connection_heartbeats_sent",
        "Heartbeats sent to each peer, by path",
        m.heartbeats_sent.clone(),
    );

    // The sleeve: per-peer traffic, heartbeats, drops, decrypt failures.
    let bytes: CounterFamily = Family::default();
    let packets: CounterFamily = Family::default();
    let rejected: CounterFamily = Family::default();
    let drops: CounterFamily = Family::default();
    if let Some(s) = lock(&m.sleeve).as_ref() {
        for p in &s.peers {
            let path = if p.encrypted {
                "sleeve-encrypted"
            } else {
                "sleeve"
            };
            for (dir, b, n) in [
                ("tx", p.tx_bytes, p.tx_frames),
                ("rx", p.rx_bytes, p.rx_frames),
            ] {
                let l = labels(&[("peer", &p.name), ("path", path), ("direction", dir)]);
                bytes.get_or_create(&l).inc_by(b);
                packets.get_or_create(&l).inc_by(n);
            }
            let l = labels(&[("peer", &p.name), ("path", "sleeve")]);
            let sent = m.heartbeats_sent.get_or_create(&l).get();
            if sent < p.pings_sent {
                m.heartbeats_sent
                    .get_or_create(&l)
                    .inc_by(p.pings_sent - sent);
            }
            // At most one heartbeat is in flight; the rest of the unanswered ones are lost.
            let lost = p
                .pings_sent
                .saturating_sub(p.pongs_received)
                .saturating_sub(1);
            let h = m.heartbeats_lost.get_or_create(&l);
            if h.get() < lost {
                h.inc_by(lost - h.get());
            }
            rejected
                .get_or_create(&labels(&[("peer", &p.name)]))
                .inc_by(p.rx_rejected);
        }
        for (reason, v) in [
            ("malformed", s.rx_malformed),
            ("unknown_peer", s.rx_unknown_peer),
            ("unreachable", s.tx_unreachable),
            ("tap_write_error", s.tap_write_errors),
            ("udp_send_error", s.udp_send_errors),
        ] {
            drops
                .get_or_create(&labels(&[("reason", reason)]))
                .inc_by(v);
        }
        counter(
            &mut reg,
            "weft_sleeve_decrypt_failures",
            "Sleeve datagrams that failed authentication or decryption, or were replays (all peers)",
            s.rx_rejected,
        );
    }
    for (dir, file_b, file_p) in [
        ("tx", "tx_bytes", "tx_packets"),
        ("rx", "rx_bytes", "rx_packets"),
    ] {
        if let (Some(b), Some(n)) = (vxlan_stat(file_b), vxlan_stat(file_p)) {
            let l = labels(&[("peer", ""), ("path", "fastdp"), ("direction", dir)]);
            bytes.get_or_create(&l).inc_by(b);
            packets.get_or_create(&l).inc_by(n);
        }
    }
    reg.register(
        "weft_connection_bytes",
        "Overlay bytes per peer and path (fastdp: all peers together, peer=\"\")",
        bytes,
    );
    reg.register(
        "weft_connection_packets",
        "Overlay frames per peer and path (fastdp: all peers together, peer=\"\")",
        packets,
    );
    reg.register(
        "weft_connection_heartbeats_lost",
        "Heartbeats to a peer that got no answer, by path",
        m.heartbeats_lost.clone(),
    );
    reg.register(
        "weft_sleeve_peer_rejected_packets",
        "Sleeve datagrams claiming to be from a peer that failed authentication or were replays",
        rejected,
    );
    reg.register(
        "weft_sleeve_dropped_packets",
        "Sleeve datagrams or frames dropped, by reason",
        drops,
    );

    // IPAM.
    let free: GaugeFamily = Family::default();
    for (subnet, n) in &lock(&IPAM_FREE).free {
        free.get_or_create(&labels(&[("subnet", subnet)]))
            .set(i(*n));
    }
    reg.register(
        "weft_ipam_free_addresses",
        "Free addresses this peer owns in each subnet it serves",
        free,
    );
    let owned: GaugeFamily = Family::default();
    if let Some(r) = &report.ipam {
        for e in &r.entries {
            owned
                .get_or_create(&labels(&[("peer", &e.peer)]))
                .set(i(e.size));
        }
    }
    reg.register(
        "weft_ipam_owned_addresses",
        "Addresses of the range each peer owns",
        owned,
    );
    if let Some(pending) = ipam_pending {
        gauge(
            &mut reg,
            "weft_ipam_pending_requests",
            "Address requests waiting (for space, the ring or consensus)",
            i(pending),
        );
    }

    // DNS.
    let dns: CounterFamily = Family::default();
    for &(source, result, n) in dns_queries {
        dns.get_or_create(&labels(&[("source", source), ("result", result)]))
            .inc_by(n);
    }
    reg.register("weft_dns_queries", "DNS queries answered, by result (rcode, or dropped) and source (local records or upstream)", dns);

    reg.register(
        "weft_container_operation_duration_seconds",
        "Duration of attach and detach requests",
        m.operations.clone(),
    );
    // Services do not exist yet: the family is declared and has no series until they land.
    let backends: GaugeFamily = Family::default();
    reg.register(
        "weft_service_backends_healthy",
        "Healthy backends of each service",
        backends,
    );

    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> String {
        p.to_string()
    }

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, reg).unwrap();
        s
    }

    /// The exposition of a registry holding only `metric`, as `name`.
    fn text_of(name: &str, metric: impl prometheus_client::registry::Metric) -> String {
        let mut reg = Registry::default();
        reg.register(name, "x", metric);
        text(&reg)
    }

    #[test]
    fn prometheus_text_names_counters_by_their_samples() {
        let om = "# HELP a_bytes A.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\na_bytes_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_bytes_total A.\n# TYPE a_bytes_total counter\na_bytes_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn connections_say_their_encryption_cipher_and_path_mtu() {
        let mut r = weft_api::Report::default();
        r.router.connections = vec![
            weft_api::ConnectionReport {
                path: "sleeve".into(),
                encrypted: true,
                cipher: Some("aes-256-gcm".into()),
                peer: "aa:bb(h2)".into(),
                mtu: Some(1102),
                pmtu: Some(1200),
                ..Default::default()
            },
            weft_api::ConnectionReport {
                path: "fastdp".into(),
                peer: "cc:dd(h3)".into(),
                mtu: Some(1450),
                pmtu: Some(1500),
                ..Default::default()
            },
        ];
        let t = render(&r, 1, &Metrics::default(), None, &[]);
        assert!(t.contains("weft_connection_info{peer=\"aa:bb\",path=\"sleeve\",encryption=\"encrypted\",cipher=\"aes-256-gcm\"} 1\n"), "{t}");
        assert!(t.contains("weft_connection_info{peer=\"cc:dd\",path=\"fastdp\",encryption=\"none\",cipher=\"none\"} 1\n"), "{t}");
        assert!(
            t.contains("weft_connection_path_mtu_bytes{peer=\"aa:bb\",path=\"sleeve\"} 1200\n"),
            "{t}"
        );
    }

    #[test]
    fn path_switches_count_changes_only() {
        let m = Metrics::default();
        let mut now = BTreeMap::new();
        now.insert("a".to_string(), path("fastdp"));
        m.paths_published(now.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        m.paths_published(now.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        now.insert("a".to_string(), path("sleeve"));
        m.paths_published(now.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let t = text_of("weft_connection_path_switches", m.path_switches.clone());
        assert!(
            t.contains(
                "weft_connection_path_switches_total{peer=\"a\",from=\"fastdp\",to=\"sleeve\"} 1\n"
            ),
            "{t}"
        );
        assert_eq!(t.matches("_total{").count(), 1, "{t}");
    }

    #[test]
    fn an_unanswered_heartbeat_is_lost_at_the_next() {
        let m = Metrics::default();
        m.fastdp_heartbeat_sent("a");
        m.fastdp_heartbeat_answered("a");
        m.fastdp_heartbeat_sent("a");
        m.fastdp_heartbeat_sent("a");
        m.fastdp_heartbeat_sent("a");
        let l = labels(&[("peer", "a"), ("path", "fastdp")]);
        assert_eq!(m.heartbeats_sent.get_or_create(&l).get(), 4);
        assert_eq!(m.heartbeats_lost.get_or_create(&l).get(), 2);
    }

    #[test]
    fn operations_are_timed_with_their_result() {
        let m = Metrics::default();
        let _ = m.time("attach").ok::<(), ()>(Ok(()));
        drop(m.time("detach"));
        let t = text_of(
            "weft_container_operation_duration_seconds",
            m.operations.clone(),
        );
        assert!(t.contains("weft_container_operation_duration_seconds_count{operation=\"attach\",result=\"ok\"} 1"), "{t}");
        assert!(t.contains("weft_container_operation_duration_seconds_count{operation=\"detach\",result=\"error\"} 1"), "{t}");
    }
}
