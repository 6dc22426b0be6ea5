//! Kubernetes, as far as it can be tested without an API server or a kubelet (none can be
//! installed here): the DaemonSet manifest as kubectl parses it and as the router takes its
//! arguments, and a lab of 3 routers that find each other through node lists (listed and
//! watched) served by this test on each host's own loopback, and reclaim the space of a
//! node deleted from them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_testkit::{require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/kubernetes/weft.yaml"
);
const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../kube/tests/data");
/// The fake API's port on each lab host's loopback.
const API_PORT: u16 = 18080;

/// The manifest's objects as `kubectl` parses them (offline: `--local` reads the file and
/// builds the objects without a server; no server-side schema validation happens).
fn manifest_objects() -> Vec<Value> {
    let home = tempfile::tempdir().expect("a temp dir");
    let mut kubectl = Command::new("kubectl");
    kubectl
        .args([
            "label",
            "--local",
            "-f",
            MANIFEST,
            "weft.test/parsed=yes",
            "-o",
            "json",
        ])
        // No kubeconfig: nothing may reach a cluster.
        .env("HOME", home.path())
        .env_remove("KUBECONFIG");
    let out = weft_testkit::netns::command_ok(
        &mut kubectl,
        &format!("kubectl could not parse {MANIFEST}"),
        "kubectl runs (scripts/lib/packages.sh installs kubernetes-client)",
    );
    serde_json::Deserializer::from_slice(&out)
        .into_iter::<Value>()
        .map(|v| v.expect("kubectl prints JSON objects"))
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("the manifest has no {kind}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_manifest_parses_and_holds_the_daemonset_weave_kube_users_expect() {
    require_root_and_tools(&["kubectl"]);
    let objs = manifest_objects();
    let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet"
        ]
    );
    for o in &objs {
        assert_eq!(o["metadata"]["labels"]["weft.test/parsed"], "yes", "{o}");
    }

    let role = find(&objs, "ClusterRole");
    assert_eq!(role["rules"].as_array().map(Vec::len), Some(1), "{role}");
    assert_eq!(strs(&role["rules"][0]["resources"]), ["nodes"]);
    assert_eq!(strs(&role["rules"][0]["verbs"]), ["get", "list", "watch"]);
    let binding = find(&objs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = find(&objs, "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");

    let ds = find(&objs, "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}]),
        "tolerates every taint"
    );
    let init = &pod["initContainers"][0];
    assert_eq!(strs(&init["args"])[..2], ["cni", "install"]);
    assert_eq!(init["securityContext"]["privileged"], true);
    let mounts: Vec<String> = init["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| host_path(pod, m["name"].as_str().unwrap()))
        .collect();
    assert_eq!(mounts, ["/opt/cni/bin", "/etc/cni/net.d"]);

    let main = &pod["containers"][0];
    assert_eq!(main["securityContext"]["privileged"], true);
    let probe = &main["readinessProbe"]["httpGet"];
    assert_eq!(
        (
            probe["host"].as_str(),
            probe["port"].as_i64(),
            probe["path"].as_str()
        ),
        (Some("127.0.0.1"), Some(6784), Some("/status"))
    );
    let env = |name: &str| -> Value {
        main["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the weft container's env"))
            .clone()
    };
    assert_eq!(env("IPALLOC_RANGE")["value"], "10.32.0.0/12");
    assert_eq!(env("CONN_LIMIT")["value"], "200");
    let pw = &env("WEFT_PASSWORD")["valueFrom"]["secretKeyRef"];
    assert_eq!(pw["optional"], true, "the password Secret is optional");
    assert_eq!(
        env("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // The CNI plugin, on the host, reaches the router's socket at the same path.
    assert_eq!(env("WEFT_RUN_DIR")["value"], "/run/weft");
    let run = main["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/run/weft")
        .expect("/run/weft is mounted");
    assert_eq!(host_path(pod, run["name"].as_str().unwrap()), "/run/weft");
}

/// The host path of the pod's volume `name`.
fn host_path(pod: &Value, name: &str) -> String {
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["hostPath"]["path"].as_str())
        .unwrap_or_else(|| panic!("volume {name} is not a hostPath"))
        .to_string()
}

/// The weft container's command line as Kubernetes runs it ($(VAR) expanded from its env).
fn manifest_launch_args() -> Vec<String> {
    let objs = manifest_objects();
    let main = &find(&objs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    let mut args = strs(&main["command"]);
    for a in strs(&main["args"]) {
        let mut a = a;
        for e in main["env"].as_array().unwrap() {
            let value = match e["name"].as_str() {
                Some("NODE_NAME") => "node-a",
                _ => e["value"].as_str().unwrap_or(""),
            };
            a = a.replace(&format!("$({})", e["name"].as_str().unwrap()), value);
        }
        args.push(a);
    }
    args
}

/// The manifest's `weft launch` arguments parse, and the router goes as far as the API: in a
/// pod it would read the service account's token next (which does not exist here).
#[test]
fn the_manifest_launch_arguments_reach_the_kubernetes_api() {
    require_root_and_tools(&["ip", "kubectl"]);
    let args = manifest_launch_args();
    assert_eq!(args[0], "/usr/bin/weft");
    assert!(!args.iter().any(|a| a.contains("$(")), "{args:?}");
    let lab = Lab::up(WEFT, 1);
    let mut cmd = vec![
        "env",
        "KUBERNETES_SERVICE_HOST=127.0.0.1",
        "KUBERNETES_SERVICE_PORT=1",
        WEFT,
    ];
    cmd.extend(args[1..].iter().map(String::as_str));
    let out = lab.exec("h1", &cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the launch succeeded without an API: {err}"
    );
    // Outside a pod the token is missing; inside one, the address refuses.
    assert!(
        err.contains("--kube-peers")
            && (err.contains("/var/run/secrets/kubernetes.io/serviceaccount/token")
                || err.contains("https://127.0.0.1:1")),
        "{err}"
    );
    assert!(!err.contains("invalid"), "a flag was refused: {err}");
}

/// A fake Kubernetes API, served by this test process on each lab host's own loopback (the
/// listening sockets are made inside the hosts' namespaces): `GET /api/v1/nodes` answers
/// the current node list; `?watch=1&resourceVersion=V` streams the changes after V, one
/// event per line, as the API does. Hosts named in `no_watch` answer a watch with 403, as an
/// API that only lists, so their routers fall back to a list per tick.
struct FakeApi {
    state: Arc<(Mutex<ApiState>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ApiState {
    version: u64,
    /// The nodes by name (objects as the API gives them).
    nodes: BTreeMap<String, Value>,
    /// Every change: (version, event line).
    events: Vec<(u64, String)>,
    /// Events written to watchers.
    streamed: usize,
    stop: bool,
}

impl FakeApi {
    fn start(lab: &Lab, recorded: &str, no_watch: &[&str]) -> FakeApi {
        let state = Arc::new((Mutex::new(ApiState::default()), Condvar::new()));
        let api = FakeApi {
            state,
            threads: Vec::new(),
        };
        api.serve(lab, recorded);
        let mut api = api;
        for h in lab.hosts() {
            let listener = weft_testkit::netns::in_netns(&lab.netns(&h), || {
                TcpListener::bind(("127.0.0.1", API_PORT))
            })
            .unwrap_or_else(|e| panic!("the fake API cannot listen on {h}'s loopback: {e}"));
            listener
                .set_nonblocking(true)
                .expect("a non-blocking listener");
            let state = api.state.clone();
            let watch = !no_watch.contains(&h.as_str());
            api.threads.push(std::thread::spawn(move || {
                accept_loop(listener, state, watch)
            }));
        }
        api
    }

    /// Serves a recorded list, its 192.168.56.11-13 made the lab's h1-h3: the list changes
    /// at once, and watchers get one event per node added, changed or deleted.
    fn serve(&self, lab: &Lab, recorded: &str) {
        let text = std::fs::read_to_string(Path::new(RECORDED).join(recorded))
            .expect("a recorded node list");
        let text = (1..=3).fold(text, |t, i| {
            t.replace(
                &format!("\"192.168.56.1{i}\""),
                &format!("\"{}\"", lab.underlay_ip(&format!("h{i}"))),
            )
        });
        let list: Value = serde_json::from_str(&text).expect("a recorded list is JSON");
        let new: BTreeMap<String, Value> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().expect("a name").to_string(),
                    n.clone(),
                )
            })
            .collect();
        let (lock, changed) = &*self.state;
        let mut st = lock.lock().unwrap();
        let mut events = Vec::new();
        for (name, node) in &st.nodes {
            if !new.contains_key(name) {
                events.push(("DELETED", node.clone()));
            }
        }
        for (name, node) in &new {
            match st.nodes.get(name) {
                None => events.push(("ADDED", node.clone())),
                Some(old) if old != node => events.push(("MODIFIED", node.clone())),
                Some(_) => {}
            }
        }
        for (kind, mut node) in events {
            st.version += 1;
            node["metadata"]["resourceVersion"] = Value::String(st.version.to_string());
            let line = serde_json::json!({"type": kind, "object": node}).to_string();
            let v = st.version;
            st.events.push((v, line));
        }
        st.nodes = new;
        changed.notify_all();
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let (lock, changed) = &*self.state;
        if let Ok(mut st) = lock.lock() {
            st.stop = true;
        }
        changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<(Mutex<ApiState>, Condvar)>, watch: bool) {
    let mut conns = Vec::new();
    loop {
        if state.0.lock().map(|st| st.stop).unwrap_or(true) {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let state = state.clone();
                conns.push(std::thread::spawn(move || answer(stream, &state, watch)));
            }
            // Shutdown is checked between accepts; this is not a synchronisation.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => break,
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Answers one request: the list, a watch stream, or 403 to a watch when `watch` is false.
fn answer(mut stream: TcpStream, state: &(Mutex<ApiState>, Condvar), watch: bool) {
    let _ = stream.set_nonblocking(false);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let (lock, changed) = state;
    if !target.contains("watch=1") {
        let body = {
            let st = lock.lock().unwrap();
            serde_json::json!({
                "kind": "NodeList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": st.version.to_string()},
                "items": st.nodes.values().collect::<Vec<_>>(),
            })
            .to_string()
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if !watch {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"watch is not allowed here","reason":"Forbidden","code":403}"#;
        let _ = write!(
            stream,
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let from: u64 = target
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("resourceVersion="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        )
        .is_err()
    {
        return;
    }
    let mut sent = from;
    let mut st = lock.lock().unwrap();
    loop {
        if st.stop {
            return;
        }
        let lines: Vec<String> = st
            .events
            .iter()
            .filter(|(v, _)| *v > sent)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        sent = st.version;
        if !lines.is_empty() {
            st.streamed += lines.len();
            drop(st);
            if stream.write_all(lines.concat().as_bytes()).is_err() {
                return;
            }
            st = lock.lock().unwrap();
            continue;
        }
        st = changed.wait(st).unwrap();
    }
}

fn ipam_owners(lab: &Lab, host: &str) -> Vec<(String, u64, bool)> {
    lab.report(host)
        .and_then(|r| r.ipam)
        .map(|i| {
            i.entries
                .into_iter()
                .filter(|e| e.size > 0)
                .map(|e| (e.peer, e.size, e.reachable))
                .collect()
        })
        .unwrap_or_default()
}

fn log_of(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &["sh", "-c", "cat \"$WEFT_RUN_DIR/weft.log\""]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const RECLAIMED: &str = "reclaimed the address space of a node deleted from Kubernetes";

#[test]
fn routers_peer_from_the_node_list_and_reclaim_a_deleted_nodes_space() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 3);
    // h2's API only lists: its router polls; h1's and h3's watch.
    let api = FakeApi::start(&lab, "three-nodes.json", &["h2"]);
    let url = format!("http://127.0.0.1:{API_PORT}");
    // No peers on the command line: each router learns them from the node list.
    for (h, node) in [("h1", "node-a"), ("h2", "node-b"), ("h3", "node-c")] {
        lab.weft_ok(
            h,
            &[
                "launch",
                "--kube-peers",
                "--kube-api",
                &url,
                "--kube-node",
                node,
                "--kube-poll",
                "1",
                "--kube-reclaim-after",
                "2",
            ],
        );
    }
    wait_for("3 peers on every host", Duration::from_secs(20), || {
        ["h1", "h2", "h3"]
            .iter()
            .all(|h| lab.report(h).is_some_and(|r| r.router.peers.len() == 3))
            .then_some(())
    });
    let name = lab.report("h3").expect("h3's report").router.name;
    assert_eq!(name, "node-c", "the peer is named after its node");
    // A container on each host: the ring is made by consensus and each host owns space.
    for (h, c) in [("h1", "k1"), ("h2", "k2"), ("h3", "k3")] {
        let out = lab.container(h, c, &[]);
        assert!(
            out.status.success(),
            "container {c} on {h}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for(
        "h1 to see 3 owners of space",
        Duration::from_secs(15),
        || (ipam_owners(&lab, "h1").len() == 3).then_some(()),
    );

    // node-c's router dies; the node stays in the API (NotReady): its space stays its own.
    let pid = lab.router_pid("h3");
    assert!(lab.exec("h3", &["kill", "-9", &pid]).status.success());
    wait_for(
        "h1 to see node-c unreachable",
        Duration::from_secs(20),
        || {
            ipam_owners(&lab, "h1")
                .iter()
                .any(|(p, _, reachable)| p == "node-c" && !reachable)
                .then_some(())
        },
    );
    // An observation window, not a synchronisation: 3 grace periods of a listed node.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert!(
            ipam_owners(&lab, "h1")
                .iter()
                .any(|(p, _, _)| p == "node-c"),
            "node-c's space was taken while node-c was still listed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // node-c is deleted from the API: node-a (the lowest-named live node) takes its space.
    api.serve(&lab, "node-c-deleted.json");
    wait_for(
        "node-c's space to be reclaimed",
        Duration::from_secs(30),
        || {
            let owners = ipam_owners(&lab, "h1");
            (!owners.iter().any(|(p, _, _)| p == "node-c")).then_some(owners)
        },
    );
    wait_for(
        "h2 to see the ring without node-c",
        Duration::from_secs(15),
        || {
            (!ipam_owners(&lab, "h2")
                .iter()
                .any(|(p, _, _)| p == "node-c"))
            .then_some(())
        },
    );
    assert!(log_of(&lab, "h1").contains(RECLAIMED), "node-a reclaimed");
    assert!(
        !log_of(&lab, "h2").contains(RECLAIMED),
        "node-b must leave the reclaim to node-a"
    );
    let st = lab.weft_ok("h1", &["status", "ipam"]);
    assert!(!st.contains("unreachable"), "{st}");
    eprintln!("{st}");
    // h1 and h3 watched: the changes reached them as events.
    assert!(
        api.state.0.lock().unwrap().streamed > 0,
        "no watch event was streamed"
    );
    // h2 polled: its API refused the watch, which it logged once, not at every tick.
    let refused = "watch is not allowed here";
    assert_eq!(
        log_of(&lab, "h2").matches(refused).count(),
        1,
        "{}",
        log_of(&lab, "h2")
    );
    assert!(!log_of(&lab, "h1").contains(refused));
}
