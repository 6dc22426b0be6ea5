//! Prometheus text exposition of the router's counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the router keeps; each subsystem adds its own.
#[derive(Debug, Default)]
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
}

impl Metrics {
    /// Counts one API request.
    pub fn count_request(&self) {
        self.api_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// A Prometheus text-format writer that keeps HELP/TYPE lines next to their samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Adds a metric with one unlabelled sample.
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help, &[(&[], value)])
    }

    /// Adds a metric family with labelled samples.
    pub fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(",");
            if labels.is_empty() {
                let _ = writeln!(self.out, "{name} {value}");
            } else {
                let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
            }
        }
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The /metrics page for a router.
pub fn render(router: &crate::state::Router) -> String {
    let report = router.report();
    let mut e = Exposition::default();
    e.family(
        "weft_build_info",
        "gauge",
        "weft version and peer name.",
        &[(
            &[("version", weft_api::VERSION), ("peer", router.name())],
            1.0,
        )],
    )
    .metric(
        "weft_uptime_seconds",
        "gauge",
        "Seconds since the router started.",
        router.uptime_secs() as f64,
    )
    .metric(
        "weft_api_requests_total",
        "counter",
        "API requests served.",
        router.metrics().api_requests.load(Ordering::Relaxed) as f64,
    )
    .metric(
        "weft_peers",
        "gauge",
        "Peers in the topology, this one included.",
        report.router.peers.len() as f64,
    );
    let established = report
        .router
        .connections
        .iter()
        .filter(|c| c.state == "established")
        .count();
    e.metric(
        "weft_connections_established",
        "gauge",
        "Established connections of this router.",
        established as f64,
    );
    let m = router.metrics();
    for (name, help, v) in [
        (
            "weft_mesh_bytes_sent_total",
            "Bytes written on mesh control connections.",
            &m.mesh_bytes_sent,
        ),
        (
            "weft_mesh_bytes_received_total",
            "Bytes read from mesh control connections.",
            &m.mesh_bytes_received,
        ),
        (
            "weft_mesh_messages_sent_total",
            "Mesh messages sent.",
            &m.mesh_messages_sent,
        ),
        (
            "weft_mesh_messages_received_total",
            "Mesh messages received.",
            &m.mesh_messages_received,
        ),
        (
            "weft_mesh_gossip_sent_total",
            "Mesh gossip messages sent.",
            &m.mesh_gossip_sent,
        ),
    ] {
        e.metric(name, "counter", help, v.load(Ordering::Relaxed) as f64);
    }
    // Per connection: what carries it and whether it is encrypted (sleeve owner's hook).
    let conns: Vec<_> = (report.router.connections.iter())
        .filter(|c| !c.encryption.is_empty())
        .map(|c| {
            let cipher = c.cipher.as_deref().unwrap_or("none");
            [
                c.peer.as_str(),
                c.path.as_str(),
                c.encryption.as_str(),
                cipher,
            ]
        })
        .collect();
    let labels: Vec<[(&str, &str); 4]> = (conns.iter())
        .map(|[p, path, enc, ci]| {
            [
                ("peer", *p),
                ("path", *path),
                ("encryption", *enc),
                ("cipher", *ci),
            ]
        })
        .collect();
    let samples: Vec<(&[(&str, &str)], f64)> = labels.iter().map(|l| (&l[..], 1.0)).collect();
    e.family(
        "weft_connection_info",
        "gauge",
        "Path of each connection: encryption is `encrypted sleeve`, `sleeve` or `fastdp`.",
        &samples,
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut e = Exposition::default();
        e.metric("a_total", "counter", "A.", 3.0).family(
            "b",
            "gauge",
            "B.",
            &[(&[("x", "q\"t")], 1.5)],
        );
        assert_eq!(
            e.finish(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n# HELP b B.\n# TYPE b gauge\nb{x=\"q\\\"t\"} 1.5\n"
        );
    }
}
