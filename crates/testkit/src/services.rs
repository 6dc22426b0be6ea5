//! Helpers for end-to-end tests of weft's services: what `weft service inspect` says on a
//! host, HTTP requests with busybox wget (from a host, a lab container or a Docker
//! container) and the tally of which task answered them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use crate::{observe, wait_for, Lab};

/// One task of a service as `weft service inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// The task's address (without a prefix length).
    pub addr: String,
    /// The host (peer nickname or name) that owns it.
    pub host: String,
    /// Whether it is in rotation.
    pub healthy: bool,
}

/// What the tests read of `weft service inspect NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// The VIP (`None` for dnsrr).
    pub vip: Option<String>,
    /// The whole JSON document, to compare definitions across hosts and restarts.
    pub json: serde_json::Value,
    /// Its tasks.
    pub tasks: Vec<TaskView>,
}

impl ServiceView {
    /// The addresses of the tasks in rotation, sorted.
    pub fn healthy(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.healthy)
            .map(|t| t.addr.clone())
            .collect();
        v.sort();
        v
    }

    /// The definition without its tasks (what a restart must keep).
    pub fn definition(&self) -> serde_json::Value {
        let mut d = self.json.clone();
        if let Some(o) = d.as_object_mut() {
            o.remove("tasks");
        }
        d
    }
}

/// `weft service create NAME FLAGS...` on `host`, which must succeed; what it printed
/// (the VIP, or the name in dnsrr mode).
pub fn create(lab: &Lab, host: &str, name: &str, flags: &[&str]) -> String {
    let mut args = vec!["service", "create", name];
    args.extend_from_slice(flags);
    lab.weft_ok(host, &args).trim().to_string()
}

/// `weft service inspect NAME` on `host`, parsed; `None` if it fails (unknown service,
/// router down) or is not the JSON document of the contract.
pub fn inspect(lab: &Lab, host: &str, name: &str) -> Option<ServiceView> {
    let out = lab.weft(host, &["service", "inspect", name]);
    if !out.status.success() {
        observe(format!(
            "weft service inspect {name} on {host}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let str_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let tasks = json
        .get("tasks")?
        .as_array()?
        .iter()
        .map(|t| TaskView {
            addr: str_of(t, "addr")
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            host: str_of(t, "host").unwrap_or_default(),
            healthy: t.get("healthy").and_then(|h| h.as_bool()).unwrap_or(false),
        })
        .collect();
    let vip = str_of(&json, "vip").map(|v| v.split('/').next().unwrap_or_default().to_string());
    Some(ServiceView { vip, json, tasks })
}

/// Waits until every host of `hosts` shows service `name` with exactly the tasks `healthy`
/// in rotation (addresses, any order); returns each host's view.
pub fn wait_healthy(
    lab: &Lab,
    hosts: &[&str],
    name: &str,
    healthy: &[String],
    timeout: Duration,
) -> Vec<ServiceView> {
    let mut want = healthy.to_vec();
    want.sort();
    let what = format!("every host of {hosts:?} to have {name} with tasks {want:?} in rotation");
    wait_for(&what, timeout, || {
        let mut views = Vec::new();
        for h in hosts {
            let v = inspect(lab, h, name)?;
            if v.healthy() != want {
                observe(format!("{h} has {name} with tasks {:?}", v.tasks));
                return None;
            }
            views.push(v);
        }
        Some(views)
    })
}

/// The shell command that makes `count` HTTP GETs of `url` with busybox wget, one new
/// connection each, printing each answer's body or `FAIL` on a line.
pub fn wget_loop(url: &str, count: usize) -> String {
    format!(
        "i=0; while [ $i -lt {count} ]; do timeout 5 busybox wget -q -O- '{url}' || echo FAIL; i=$((i+1)); done"
    )
}

/// `count` requests of `url` run where `run` runs a command (a lab host or container, a
/// Docker container); the answers (or `FAIL`), one per request.
pub fn requests(run: impl FnOnce(&[&str]) -> Output, url: &str, count: usize) -> Vec<String> {
    let script = wget_loop(url, count);
    let out = run(&["sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// How many times each answer came.
pub fn tally(answers: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for a in answers {
        *t.entry(a.clone()).or_insert(0) += 1;
    }
    t
}

/// Fails the test unless the answers are exactly `tasks` (no failure, nothing else), each
/// between `min` and `max` times.
pub fn assert_spread(what: &str, answers: &[String], tasks: &[&str], min: usize, max: usize) {
    let t = tally(answers);
    let others: Vec<&String> = t.keys().filter(|k| !tasks.contains(&k.as_str())).collect();
    assert!(
        others.is_empty(),
        "{what}: answers other than the tasks {tasks:?}: {t:?}"
    );
    for task in tasks {
        let n = t.get(*task).copied().unwrap_or(0);
        assert!(
            (min..=max).contains(&n),
            "{what}: task {task} answered {n} times, not between {min} and {max}: {t:?}"
        );
    }
}

/// Waits until one GET of `url` run by `run` answers with one of `expected` (the VIP's
/// rules and the task are in place), showing the last answer on timeout.
pub fn wait_answer(
    what: &str,
    timeout: Duration,
    mut run: impl FnMut(&[&str]) -> Output,
    url: &str,
    expected: &[&str],
) -> String {
    wait_for(what, timeout, || {
        let a = requests(&mut run, url, 1);
        observe(format!("GET {url}: {a:?}"));
        a.first()
            .filter(|a| expected.contains(&a.as_str()))
            .cloned()
    })
}

/// The VIP all `views` (one service on several hosts) agree on; fails the test if they
/// disagree or it is not an IPv4 address.
pub fn agreed_vip(views: &[ServiceView]) -> String {
    let vips: BTreeSet<Option<String>> = views.iter().map(|v| v.vip.clone()).collect();
    assert_eq!(vips.len(), 1, "hosts disagree on the VIP: {vips:?}");
    let vip = views
        .first()
        .and_then(|v| v.vip.clone())
        .expect("a vip-mode service has a VIP");
    assert!(vip.parse::<std::net::Ipv4Addr>().is_ok(), "VIP {vip:?}");
    vip
}

/// Waits up to `timeout` until a client (`run` runs a command in it; `client` names it)
/// reaches each of the tasks `names` through `url` (the rules in its namespace are up to
/// date), then makes 30 requests: each task must answer between half and one and a half
/// times its even share (5..=15 each of 3), and nothing else may answer.
pub fn check_round_robin(
    client: &str,
    mut run: impl FnMut(&[&str]) -> Output,
    url: &str,
    names: &[&str],
    timeout: Duration,
) {
    wait_for(
        &format!("{client} to reach each of {names:?} through {url}"),
        timeout,
        || {
            let t = tally(&requests(&mut run, url, names.len() * 2));
            observe(format!("{client}: {t:?}"));
            (t.len() == names.len() && names.iter().all(|n| t.contains_key(*n))).then_some(())
        },
    );
    let answers = requests(&mut run, url, 30);
    let share = 30 / names.len().max(1);
    assert_spread(
        &format!("30 requests to {url} from {client}"),
        &answers,
        names,
        share / 2,
        share * 3 / 2,
    );
}
