//! Health checks of this host's tasks, for services that ask for one: a TCP connect, or an
//! HTTP GET of a path expecting 2xx or 3xx, from the host's namespace to the task's
//! address (reached through the host's address in the service's subnet), every interval.
//! Two failures in a row take a task out of rotation, one success brings it back; the
//! result goes to the core (`set_health`), which gossips it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use weft_services::{HealthKind, ServicesCore};
use weft_types::Proto;

use super::task::Cmd;

/// Failures in a row that take a task out of rotation.
const FAILURES: u32 = 2;
/// Longest a single check may take.
const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 1024;

/// One task to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Check {
    /// The service.
    pub service: String,
    /// The task's address.
    pub addr: Ipv4Addr,
    /// The TCP port checked (the service's first TCP port).
    pub port: u16,
    /// What the check does.
    pub kind: HealthKind,
    /// Between two checks.
    pub interval: Duration,
}

/// The checks of this host's tasks (services with a health check and a TCP port).
pub(super) fn checks(core: &ServicesCore) -> Vec<Check> {
    let mut out = Vec::new();
    for t in core.local_tasks() {
        let Some(d) = core.definition(&t.service) else {
            continue;
        };
        let Some(h) = &d.spec.health else { continue };
        let port = d
            .spec
            .ports
            .iter()
            .find(|p| p.proto == Proto::Tcp)
            .map(|p| p.port)
            .or_else(|| {
                d.spec
                    .published
                    .iter()
                    .find(|p| p.proto == Proto::Tcp)
                    .map(|p| p.port)
            });
        let Some(port) = port else { continue };
        out.push(Check {
            service: t.service,
            addr: t.addr,
            port,
            kind: h.kind.clone(),
            interval: Duration::from_millis(h.interval_ms),
        });
    }
    out
}

/// What is known of one task.
struct State {
    next: Instant,
    failures: u32,
    healthy: Option<bool>,
    running: bool,
}

/// Runs the checks in `rx` until the services task goes.
pub(super) async fn run(mut rx: watch::Receiver<Vec<Check>>, cmds: mpsc::UnboundedSender<Cmd>) {
    let mut state: HashMap<(String, Ipv4Addr), State> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<((String, Ipv4Addr), bool)>();
    loop {
        let checks = rx.borrow_and_update().clone();
        state.retain(|k, _| checks.iter().any(|c| (&c.service, c.addr) == (&k.0, k.1)));
        let now = Instant::now();
        let mut wake = None::<Instant>;
        for c in &checks {
            let key = (c.service.clone(), c.addr);
            let s = state.entry(key.clone()).or_insert(State {
                next: now,
                failures: 0,
                healthy: None,
                running: false,
            });
            if !s.running && s.next <= now {
                s.running = true;
                let (c, tx) = (c.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let ok = probe(&c).await;
                    let _ = tx.send((key, ok));
                });
            } else if !s.running {
                wake = Some(wake.map_or(s.next, |w| w.min(s.next)));
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            Some((key, ok)) = done_rx.recv() => {
                let interval = checks
                    .iter()
                    .find(|c| (&c.service, c.addr) == (&key.0, key.1))
                    .map(|c| c.interval);
                if let (Some(s), Some(interval)) = (state.get_mut(&key), interval) {
                    s.running = false;
                    s.next = Instant::now() + interval;
                    if let Some(h) = verdict(s, ok) {
                        tracing::info!(service = %key.0, task = %key.1, healthy = h, "task health changed");
                        let job: super::task::Job = Box::new(move |core, now| {
                            core.set_health(now, &key.0, key.1, h);
                            Box::new(|| {})
                        });
                        if cmds.send(Cmd::Job(job)).is_err() {
                            break;
                        }
                    }
                }
            }
            _ = sleep_until(wake) => {}
        }
    }
}

/// Counts one result; the new health when it changes.
fn verdict(s: &mut State, ok: bool) -> Option<bool> {
    let now = if ok {
        s.failures = 0;
        true
    } else {
        s.failures += 1;
        if s.failures < FAILURES {
            return None;
        }
        false
    };
    (s.healthy != Some(now)).then(|| {
        s.healthy = Some(now);
        now
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One check; whether it passed.
async fn probe(c: &Check) -> bool {
    let limit = c.interval.min(MAX_TIMEOUT);
    tokio::time::timeout(limit, attempt(c))
        .await
        .unwrap_or(false)
}

async fn attempt(c: &Check) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect((c.addr, c.port)).await else {
        return false;
    };
    let HealthKind::Http { path } = &c.kind else {
        return true;
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: weft-health\r\nConnection: close\r\n\r\n",
        c.addr, c.port
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while buf.len() < STATUS_LINE_MAX && !buf.contains(&b'\n') {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    status_ok(&buf)
}

/// Whether an HTTP answer starts with a 2xx or 3xx status line.
fn status_ok(answer: &[u8]) -> bool {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let proto_ok = words.next().is_some_and(|p| p.starts_with("HTTP/"));
    let code = words.next().and_then(|c| c.parse::<u16>().ok());
    proto_ok && matches!(code, Some(200..=399))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failures_take_a_task_out_and_one_success_brings_it_back() {
        let mut s = State {
            next: Instant::now(),
            failures: 0,
            healthy: None,
            running: false,
        };
        assert_eq!(verdict(&mut s, true), Some(true));
        assert_eq!(verdict(&mut s, true), None);
        assert_eq!(verdict(&mut s, false), None);
        assert_eq!(verdict(&mut s, false), Some(false));
        assert_eq!(verdict(&mut s, false), None);
        assert_eq!(verdict(&mut s, true), Some(true));
    }

    #[test]
    fn status_lines_are_read() {
        assert!(status_ok(b"HTTP/1.0 200 OK\r\n"));
        assert!(status_ok(b"HTTP/1.1 302 Found\r\nLocation: /"));
        assert!(!status_ok(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_ok(b"HTTP/1.1 500 x\r\n"));
        assert!(!status_ok(b"SSH-2.0-x\r\n"));
        assert!(!status_ok(b""));
    }

    #[tokio::test]
    async fn a_listening_port_passes_tcp_and_http_checks() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"HTTP/1.0 204 No Content\r\n\r\n").await;
            }
        });
        let check = |kind| Check {
            service: "s".into(),
            addr: Ipv4Addr::LOCALHOST,
            port,
            kind,
            interval: Duration::from_secs(1),
        };
        assert!(probe(&check(HealthKind::Tcp)).await);
        assert!(
            probe(&check(HealthKind::Http {
                path: "/health".into()
            }))
            .await
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(
            !probe(&Check {
                port: closed_port,
                ..check(HealthKind::Tcp)
            })
            .await
        );
    }
}
