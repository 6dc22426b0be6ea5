//! End-to-end tests of issue 13's hardening on labs of network namespaces: the local API
//! that only root can drive, anti-spoofing on the bridge, and attach across kill -9.

use std::process::Output;
use std::time::Duration;

use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// curl on `host` as the unprivileged user nobody (uid/gid 65534, no groups), printing
/// the body then the status code on the last line.
fn curl_as_nobody(lab: &Lab, host: &str, args: &[&str]) -> String {
    let mut cmd = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "curl",
        "-sS",
        "-m",
        "10",
        "-w",
        "\n%{http_code}",
    ];
    cmd.extend_from_slice(args);
    text(&lab.exec(host, &cmd))
}

fn status_code(out: &str) -> &str {
    out.trim_end().rsplit('\n').next().unwrap_or("")
}

#[test]
fn local_api_is_read_only_on_tcp_and_root_only_on_the_socket() {
    require_root_and_tools(&["ip", "curl", "setpriv"]);
    let lab = Lab::up(WEFT, 1);
    lab.weft_ok("h1", &["launch", "--name", "p1"]);
    let api = "http://127.0.0.1:6784";

    // Anyone may read status, report, metrics and version.
    for path in ["/status", "/report", "/metrics", "/version"] {
        let out = curl_as_nobody(&lab, "h1", &[&format!("{api}{path}")]);
        assert_eq!(status_code(&out), "200", "GET {path} as nobody: {out}");
    }
    let out = curl_as_nobody(
        &lab,
        "h1",
        &["-H", "Host: localhost:6784", &format!("{api}/report")],
    );
    assert_eq!(status_code(&out), "200", "{out}");

    // An unprivileged user cannot change anything over TCP ...
    for (path, body) in [
        ("/stop", ""),
        ("/reset", ""),
        ("/connect", r#"{"peers":["10.9.9.9"],"replace":true}"#),
        ("/attach", r#"{"netns":"/proc/1/ns/net","addrs":[]}"#),
        ("/ipam/allocate", r#"{"owner":"x"}"#),
        ("/expose", "{}"),
    ] {
        let out = curl_as_nobody(
            &lab,
            "h1",
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                body,
                &format!("{api}{path}"),
            ],
        );
        assert_eq!(status_code(&out), "405", "POST {path} as nobody: {out}");
        assert!(out.contains("unix socket"), "POST {path}: {out}");
    }
    // ... nor a browser's cross-site POST without a body.
    let out = curl_as_nobody(
        &lab,
        "h1",
        &[
            "-X",
            "POST",
            "-H",
            "Origin: http://evil.example",
            "-H",
            "content-type: text/plain",
            &format!("{api}/stop"),
        ],
    );
    assert_eq!(status_code(&out), "405", "cross-site POST /stop: {out}");
    // DNS rebinding: a page on another name pointed at 127.0.0.1 reads nothing.
    let out = curl_as_nobody(
        &lab,
        "h1",
        &["-H", "Host: evil.example:6784", &format!("{api}/report")],
    );
    assert_eq!(status_code(&out), "403", "{out}");
    assert!(!out.contains("\"peers\""), "{out}");

    // The unix socket is root's only.
    let out = text(&lab.exec(
        "h1",
        &[
            "sh",
            "-c",
            "setpriv --reuid=65534 --regid=65534 --clear-groups \
             curl -sS -m 10 -X POST --unix-socket \"$WEFT_RUN_DIR/weft.sock\" http://weft/stop; echo rc=$?",
        ],
    ));
    assert!(!out.contains("rc=0"), "nobody reached the socket: {out}");
    let out = lab.weft("h1", &["status"]);
    assert!(out.status.success(), "the router stopped: {}", text(&out));
    let mode = text(&lab.exec(
        "h1",
        &["sh", "-c", "stat -c %a \"$WEFT_RUN_DIR/weft.sock\""],
    ));
    assert_eq!(mode.trim(), "600");

    // Through the socket, root still drives the router (the CLI uses it).
    lab.weft_ok("h1", &["stop"]);
    wait_for("the router to stop", Duration::from_secs(20), || {
        (!lab.weft("h1", &["status"]).status.success()).then_some(())
    });
}
