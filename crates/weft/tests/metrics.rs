//! /metrics in a 3-host lab: every series docs/metrics.md lists appears once the events
//! behind it happened, and `promtool check metrics` accepts the exposition (kept in
//! target/test-artifacts/metrics.txt).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DOC: &str = include_str!("../../../docs/metrics.md");

fn metrics(lab: &Lab, host: &str) -> String {
    let out = lab.exec(
        host,
        &["curl", "-sS", "-m5", "http://127.0.0.1:6784/metrics"],
    );
    assert!(
        out.status.success(),
        "curl /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The series names of the table in docs/metrics.md.
fn documented() -> Vec<String> {
    DOC.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("weft_"))
        .map(str::to_string)
        .collect()
}

fn artifact(name: &str, text: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write artifact");
    p
}

#[test]
fn documented_series_appear_in_a_lab_and_pass_promtool() {
    require_root_and_tools(&["ip", "nft", "ping", "curl", "promtool"]);
    let names = documented();
    assert!(
        names.len() >= 20,
        "the table of docs/metrics.md was not found: {names:?}"
    );
    let lab = Lab::up(WEFT, 3);
    lab.launch_full_mesh(&[]);
    lab.wait_paths("h1", "fastdp", Duration::from_secs(20));
    for (h, c) in [("h1", "a1"), ("h3", "c3")] {
        lab.container_ok(h, c, &[]);
    }
    // fastdp between h1 and h3 blocked: the path switches to the sleeve, which then
    // carries a1's pings to c3 (found by name through weft's DNS).
    lab.block_fastdp("h3");
    wait_for(
        "h1 to reach h3 by the sleeve",
        Duration::from_secs(20),
        || {
            let r = lab.report("h1")?;
            observe(format!("{:?}", r.router.connections));
            r.router
                .connections
                .iter()
                .any(|c| c.peer.ends_with("(h3)") && c.path == "sleeve")
                .then_some(())
        },
    );
    wait_for("a1 to ping c3 by name", Duration::from_secs(20), || {
        let out = lab.exec("a1", &["ping", "-c1", "-W1", "c3.weft.local"]);
        observe(String::from_utf8_lossy(&out.stderr).into_owned());
        out.status.success().then_some(())
    });
    // An unknown name: an nxdomain.
    let _ = lab.exec("a1", &["ping", "-c1", "-W1", "nosuch.weft.local"]);

    let text = wait_for(
        "every documented series on h1",
        Duration::from_secs(20),
        || {
            let text = metrics(&lab, "h1");
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| {
                    if n.as_str() == "weft_service_backends_healthy" {
                        // No services yet: declared, without series.
                        !text.contains(&format!("# TYPE {n} gauge"))
                    } else if text.contains(&format!("# TYPE {n} histogram")) {
                        !text.contains(&format!("{n}_count{{"))
                    } else {
                        !text.lines().any(|l| {
                            l.starts_with(&format!("{n}{{")) || l.starts_with(&format!("{n} "))
                        })
                    }
                })
                .collect();
            observe(format!("missing {missing:?}"));
            missing.is_empty().then_some(text)
        },
    );
    let path = artifact("metrics.txt", &text);
    let h3 = lab
        .report("h1")
        .and_then(|r| r.router.peers.into_iter().find(|p| p.nickname == "h3"))
        .expect("h3 in h1's report")
        .name;
    assert!(
        text.contains(&format!(
            "weft_connection_path_switches_total{{peer=\"{h3}\",from=\"fastdp\",to=\"sleeve\"}}"
        )),
        "the switch to the sleeve is counted: {text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "weft_connection_bytes_total{{peer=\"{h3}\",path=\"sleeve\",direction=\"tx\"}}"
        ))),
        "sleeve bytes to h3: {text}"
    );
    assert!(
        text.contains("weft_dns_queries_total{source=\"local\",result=\"nxdomain\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "weft_container_operation_duration_seconds_count{operation=\"attach\",result=\"ok\"} 1"
        ),
        "one attach on h1: {text}"
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused {} ({}): {}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
