//! The topology page in a real browser: headless Chromium, run inside a lab host's network
//! namespace, renders `http://127.0.0.1:6784/` of that host's router. A screenshot is kept
//! in target/test-artifacts/topology.png.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const PAGE: &str = "http://127.0.0.1:6784/";

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Headless Chromium in `host`'s namespace, given `what` (`--dump-dom` or
/// `--screenshot=...`); bounded by `timeout` so a hung browser fails the test. Returns stdout.
fn chromium(lab: &Lab, host: &str, what: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "weft-chromium-{}-{}",
        std::process::id(),
        lab.name()
    ));
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let out = lab.exec(
        host,
        &[
            "timeout",
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &profile_arg,
            "--window-size=1200,1150",
            // Let the page fetch /report and draw (it polls once a second).
            "--virtual-time-budget=3000",
            what,
            PAGE,
        ],
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium {what} in {host} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_peers_their_connections_and_a_switch_to_sleeve_in_chromium() {
    require_root_and_tools(&["ip", "nft", "chromium", "timeout"]);
    let lab = Lab::up(WEFT, 3);
    lab.launch_full_mesh(&[]);
    let mut names = std::collections::BTreeMap::new();
    for h in ["h1", "h2", "h3"] {
        let r = wait_for(&format!("{h}'s report"), Duration::from_secs(10), || {
            lab.report(h)
        });
        names.insert(h, r.router.name);
    }
    // Every pair on fastdp, as h1 sees its own two connections.
    lab.wait_paths("h1", "fastdp", Duration::from_secs(20));
    for (h, c) in [("h1", "a1"), ("h2", "b2")] {
        lab.container_ok(h, c, &[]);
    }

    // The page shows the 3 peers by name and nickname, the 3 edges, h1's connections on
    // fastdp with their MTU, and containers: a1 on h1, b2 (known by DNS) on h2.
    let dom = wait_for(
        "the page to show the whole mesh",
        Duration::from_secs(30),
        || {
            let dom = chromium(&lab, "h1", "--dump-dom");
            observe(&dom);
            let mut ok = true;
            for (h, n) in &names {
                ok &= dom.contains(&format!("data-peer=\"{n}\" data-nickname=\"{h}\""));
            }
            for (a, b) in [("h1", "h2"), ("h1", "h3"), ("h2", "h3")] {
                let mut pair = [names[a].as_str(), names[b].as_str()];
                pair.sort();
                ok &= dom.contains(&format!("data-edge=\"{} {}\"", pair[0], pair[1]));
            }
            for h in ["h2", "h3"] {
                ok &= dom.contains(&format!("data-conn=\"{}\" data-path=\"fastdp\"", names[h]));
            }
            ok &= dom.contains("a1.weft.local") && dom.contains("b2.weft.local");
            ok.then_some(dom)
        },
    );
    assert!(dom.contains("MTU 1450"), "fastdp MTU on the edges");
    assert!(
        dom.contains("IPAM share") && dom.contains("% of 10.32.0.0/12"),
        "IPAM shares shown"
    );

    // fastdp between h1 and h3 blocked in h3's namespace: the page on h1 shows that
    // connection on the sleeve within seconds.
    lab.block_fastdp("h3");
    let blocked = Instant::now();
    wait_for(
        "the page on h1 to show h3 on the sleeve",
        Duration::from_secs(30),
        || {
            let dom = chromium(&lab, "h1", "--dump-dom");
            observe(&dom);
            dom.contains(&format!(
                "data-conn=\"{}\" data-path=\"sleeve\"",
                names["h3"]
            ))
            .then_some(())
        },
    );
    eprintln!(
        "the page showed h1-h3 on the sleeve {:.1} s after fastdp was blocked (each Chromium run takes a few seconds)",
        blocked.elapsed().as_secs_f64()
    );

    // `weft ui` on a lab host prints the address and how to reach it from the machine.
    let ui = lab.weft_ok("h1", &["ui"]);
    assert!(
        ui.starts_with(PAGE) && ui.contains(&format!("ip netns exec {}-h1 chromium", lab.name())),
        "weft ui: {ui}"
    );

    let png = artifacts().join("topology.png");
    let _ = std::fs::remove_file(&png);
    chromium(&lab, "h1", &format!("--screenshot={}", png.display()));
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot in {} ({} bytes)",
        png.display(),
        bytes.len()
    );
}
