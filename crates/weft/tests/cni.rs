//! End-to-end tests of weft as a CNI plugin (issue 12) on labs of network namespaces: the
//! verbs as the spec and Nomad's go-cni drive them, chaining the reference plugins,
//! kill -9 of the router during parallel ADDs, and real runtimes (podman, `ctr run --cni`).
//! Runtimes here are driven through the plugin binary itself: every invocation sets the
//! CNI_* environment and stdin exactly as libcni does.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// Where Debian's containernetworking-plugins are.
const REF_PLUGINS: &str = "/usr/lib/cni";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory for a test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(lab: &Lab) -> Scratch {
        let dir = std::env::temp_dir().join(format!("weft-cni-{}", lab.name()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, body: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, body).expect("scratch file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One plugin invocation: its exit status and stdout as JSON (null when empty).
struct Answer {
    ok: bool,
    json: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }
}

/// Runs plugin `bin` on `host` with the CNI environment and `stdin`, as libcni does.
#[allow(clippy::too_many_arguments)]
fn invoke(
    lab: &Lab,
    scratch: &Scratch,
    host: &str,
    bin: &str,
    command: &str,
    cid: &str,
    netns: Option<&str>,
    args: &str,
    stdin: &Value,
) -> Answer {
    let name = format!(
        "in-{}-{}-{}",
        command,
        cid,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let file = scratch.file(&name, &stdin.to_string());
    let mut cmd = vec![
        "env".to_string(),
        format!("CNI_COMMAND={command}"),
        format!("CNI_CONTAINERID={cid}"),
        "CNI_IFNAME=eth0".to_string(),
        format!("CNI_PATH={REF_PLUGINS}"),
        format!("CNI_ARGS={args}"),
    ];
    if let Some(ns) = netns {
        cmd.push(format!("CNI_NETNS={ns}"));
    }
    cmd.extend(
        ["sh", "-c", "exec \"$0\" < \"$1\"", bin, &file]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let out = lab.exec(host, &refs);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Answer {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        text: text(&out),
    }
}

/// weft's CNI plugin on `host`.
#[allow(clippy::too_many_arguments)]
fn weft_cni(
    lab: &Lab,
    s: &Scratch,
    host: &str,
    command: &str,
    cid: &str,
    netns: Option<&str>,
    args: &str,
    conf: &Value,
) -> Answer {
    invoke(lab, s, host, WEFT, command, cid, netns, args, conf)
}

/// The router socket of a lab host.
fn socket_of(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &["sh", "-c", "echo \"$WEFT_RUN_DIR/weft.sock\""]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn conf(lab: &Lab, host: &str, version: &str, name: &str) -> Value {
    json!({"cniVersion": version, "name": name, "type": "weft", "socket": socket_of(lab, host)})
}

/// Makes a network namespace named after the lab (so `weft lab down` removes it too).
fn netns(lab: &Lab, short: &str) -> (String, String) {
    let name = lab.netns(short);
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "ip netns add {name}: {}", text(&out));
    (name.clone(), format!("/run/netns/{name}"))
}

/// The IPv4 addresses on `eth0` in a namespace (empty when it has none or is gone).
fn kernel_addrs(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.position(|x| x == "inet")?;
            w.next().map(str::to_string)
        })
        .collect()
}

/// `weft ps` of a host: (id, addresses).
fn ps(lab: &Lab, host: &str) -> Option<Vec<(String, Vec<String>)>> {
    let out = lab.weft(host, &["ps"]);
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let addrs = w
                    .iter()
                    .filter(|x| x.contains('/') && x.starts_with(|c: char| c.is_ascii_digit()))
                    .map(|x| x.to_string())
                    .collect();
                (w.first().map_or(String::new(), |x| x.to_string()), addrs)
            })
            .collect(),
    )
}

fn listed(lab: &Lab, host: &str, id: &str) -> Vec<String> {
    ps(lab, host)
        .unwrap_or_default()
        .into_iter()
        .filter(|(i, _)| i == id)
        .flat_map(|(_, a)| a)
        .collect()
}

/// The address of the first interface with a sandbox: what Nomad registers in Consul.
fn first_sandbox_addr(result: &Value) -> (String, String) {
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    let (i, iface) = ifaces
        .iter()
        .enumerate()
        .find(|(_, i)| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        .unwrap_or_else(|| panic!("no interface with a sandbox in {result}"));
    let ip = result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .find(|ip| ip["interface"].as_u64() == Some(i as u64))
        .unwrap_or_else(|| panic!("no ip for interface {i} in {result}"));
    (
        iface["sandbox"].as_str().unwrap_or_default().to_string(),
        ip["address"].as_str().unwrap_or_default().to_string(),
    )
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn launch(lab: &Lab, host: &str) {
    lab.weft_ok(host, &["launch", "--nickname", host]);
}

fn wait_status_ok(lab: &Lab, s: &Scratch, host: &str, conf: &Value) {
    wait_for("STATUS to pass", Duration::from_secs(30), || {
        let a = weft_cni(lab, s, host, "STATUS", "", None, "", conf);
        observe(&a.text);
        a.ok.then_some(())
    });
}

#[test]
fn verbs_results_and_nomad_invocation() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 1);
    let s = Scratch::new(&lab);
    let c10 = conf(&lab, "h1", "1.0.0", "wnet");
    let c11 = conf(&lab, "h1", "1.1.0", "wnet");

    // VERSION needs no router.
    let v = weft_cni(&lab, &s, "h1", "VERSION", "", None, "", &c11);
    assert!(v.ok, "{}", v.text);
    for ver in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            v.json["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!(ver)),
            "{}",
            v.text
        );
    }
    // Router down: STATUS is 50, ADD is 11 and says what to do.
    let st = weft_cni(&lab, &s, "h1", "STATUS", "", None, "", &c11);
    assert!(!st.ok && st.code() == 50, "{}", st.text);
    let (ns_a, path_a) = netns(&lab, "a");
    let add = weft_cni(&lab, &s, "h1", "ADD", "ctr-a", Some(&path_a), "", &c10);
    assert!(!add.ok && add.code() == 11, "{}", add.text);
    assert!(
        add.json["details"]
            .as_str()
            .unwrap_or_default()
            .contains("weft launch"),
        "{}",
        add.text
    );
    // Bad stdin is 6.
    let bad = invoke(
        &lab,
        &s,
        "h1",
        WEFT,
        "ADD",
        "x",
        Some(&path_a),
        "",
        &json!("not a conf"),
    );
    assert!(!bad.ok && bad.code() == 6, "{}", bad.text);

    launch(&lab, "h1");
    wait_status_ok(&lab, &s, "h1", &c11);

    // Nomad: go-cni's CNI_ARGS and the portMappings capability; CNI_CONTAINERID is the
    // alloc id and the namespace is named after it.
    let alloc = "0b6e3ea2-1c47-4d5a-9e0c-3c6f1b0b9d11";
    let nomad_args = format!(
        "IgnoreUnknown=1;NOMAD_REGION=global;NOMAD_NAMESPACE=default;NOMAD_JOB_ID=web;NOMAD_GROUP_NAME=frontend;NOMAD_ALLOC_ID={alloc}"
    );
    let mut nomad_conf = c10.clone();
    nomad_conf["capabilities"] = json!({"portMappings": true});
    nomad_conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 25123, "containerPort": 8080, "protocol": "tcp"}]});
    let add = weft_cni(
        &lab,
        &s,
        "h1",
        "ADD",
        alloc,
        Some(&path_a),
        &nomad_args,
        &nomad_conf,
    );
    assert!(add.ok, "{}", add.text);
    let result_a = add.json.clone();
    let (sandbox, addr) = first_sandbox_addr(&result_a);
    assert_eq!(sandbox, path_a);
    assert_eq!(
        kernel_addrs(&ns_a),
        vec![addr.clone()],
        "the result's address is the container's"
    );
    assert_eq!(listed(&lab, "h1", alloc), vec![addr.clone()]);
    assert_eq!(
        result_a["dns"]["nameservers"][0], "127.0.0.11",
        "{result_a}"
    );
    // Its name is in weft's DNS, and answered inside the namespace.
    let ip = addr.split('/').next().unwrap().to_string();
    let found = lab.weft_ok("h1", &["dns-lookup", "frontend-0b6e3ea2"]);
    assert!(found.contains(&ip), "dns-lookup: {found}");

    // CHECK passes, then fails clearly once the interface is gone.
    let chk = weft_cni(
        &lab,
        &s,
        "h1",
        "CHECK",
        alloc,
        Some(&path_a),
        &nomad_args,
        &with_prev(&c10, &result_a),
    );
    assert!(chk.ok, "{}", chk.text);

    // Results survive a router restart: ADD again answers the same; CHECK still passes.
    lab.weft_ok("h1", &["stop"]);
    let st = weft_cni(&lab, &s, "h1", "STATUS", "", None, "", &c11);
    assert!(!st.ok && st.code() == 50, "STATUS while down: {}", st.text);
    launch(&lab, "h1");
    wait_status_ok(&lab, &s, "h1", &c11);
    let again = weft_cni(
        &lab,
        &s,
        "h1",
        "ADD",
        alloc,
        Some(&path_a),
        &nomad_args,
        &nomad_conf,
    );
    assert!(again.ok, "{}", again.text);
    assert_eq!(first_sandbox_addr(&again.json).1, addr);
    let chk = weft_cni(
        &lab,
        &s,
        "h1",
        "CHECK",
        alloc,
        Some(&path_a),
        "",
        &with_prev(&c10, &result_a),
    );
    assert!(chk.ok, "after restart: {}", chk.text);

    let out = std::process::Command::new("ip")
        .args(["-n", &ns_a, "link", "del", "eth0"])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    let chk = weft_cni(
        &lab,
        &s,
        "h1",
        "CHECK",
        alloc,
        Some(&path_a),
        "",
        &with_prev(&c10, &result_a),
    );
    assert!(!chk.ok && chk.code() == 101, "{}", chk.text);
    assert!(
        chk.json["details"]
            .as_str()
            .unwrap_or_default()
            .contains("eth0 is gone"),
        "{}",
        chk.text
    );

    // DEL, and DEL again, succeed.
    for round in 0..2 {
        let del = weft_cni(
            &lab,
            &s,
            "h1",
            "DEL",
            alloc,
            Some(&path_a),
            "",
            &with_prev(&c10, &result_a),
        );
        assert!(del.ok, "DEL {round}: {}", del.text);
    }
    assert!(listed(&lab, "h1", alloc).is_empty());

    // Results in every version's shape.
    let (ns_b, path_b) = netns(&lab, "b");
    for ver in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(&lab, "h1", ver, "wnet");
        let add = weft_cni(&lab, &s, "h1", "ADD", "ctr-b", Some(&path_b), "", &c);
        assert!(add.ok, "{ver}: {}", add.text);
        assert_eq!(add.json["cniVersion"], ver);
        let has_version = add.json["ips"][0].get("version").is_some();
        assert_eq!(has_version, ver.starts_with("0."), "{ver}: {}", add.text);
        let del = weft_cni(&lab, &s, "h1", "DEL", "ctr-b", Some(&path_b), "", &c);
        assert!(del.ok, "{ver}: {}", del.text);
        assert!(kernel_addrs(&ns_b).is_empty(), "{ver}: DEL left an address");
    }

    // An ADD that fails half way leaves no interface and no address: an address in use,
    // one outside the range, and an interface name taken in the namespace (kernel step).
    let keep = weft_cni(
        &lab,
        &s,
        "h1",
        "ADD",
        "ctr-keep",
        Some(&path_b),
        "K8S_POD_NAME=keep",
        &c10,
    );
    assert!(keep.ok, "{}", keep.text);
    let taken = first_sandbox_addr(&keep.json).1;
    let (ns_c, path_c) = netns(&lab, "c");
    let mut claim = c10.clone();
    claim["runtimeConfig"] = json!({"ips": [taken]});
    let fail = weft_cni(&lab, &s, "h1", "ADD", "ctr-c", Some(&path_c), "", &claim);
    assert!(!fail.ok, "claiming an address in use worked: {}", fail.text);
    let fail = weft_cni(
        &lab,
        &s,
        "h1",
        "ADD",
        "ctr-c",
        Some(&path_c),
        "IP=192.168.77.7",
        &c10,
    );
    assert!(!fail.ok && fail.code() == 7, "{}", fail.text);
    let out = std::process::Command::new("ip")
        .args([
            "-n", &ns_c, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    let fail = weft_cni(&lab, &s, "h1", "ADD", "ctr-c", Some(&path_c), "", &c10);
    assert!(
        !fail.ok,
        "ADD onto a taken interface name worked: {}",
        fail.text
    );
    assert!(
        kernel_addrs(&ns_c).is_empty(),
        "a failed ADD left an address"
    );
    assert!(
        listed(&lab, "h1", "ctr-c").is_empty(),
        "a failed ADD is listed"
    );
    let held = lab.weft_ok("h1", &["status", "ipam"]);
    observe(&held);

    // GC releases what is not valid; the other attachment stays.
    let (ns_d, path_d) = netns(&lab, "d");
    let leak = weft_cni(&lab, &s, "h1", "ADD", "ctr-leak", Some(&path_d), "", &c11);
    assert!(leak.ok, "{}", leak.text);
    let mut gc = c11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
    let done = weft_cni(&lab, &s, "h1", "GC", "", None, "", &gc);
    assert!(done.ok, "{}", done.text);
    assert!(
        listed(&lab, "h1", "ctr-leak").is_empty(),
        "GC left the leaked attachment"
    );
    assert!(kernel_addrs(&ns_d).is_empty(), "GC left the leaked address");
    assert!(
        !listed(&lab, "h1", "ctr-keep").is_empty(),
        "GC released a valid attachment"
    );

    // DEL after the namespace is gone.
    let out = std::process::Command::new("ip")
        .args(["netns", "del", &ns_b])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    let del = weft_cni(&lab, &s, "h1", "DEL", "ctr-keep", Some(&path_b), "", &c10);
    assert!(del.ok, "DEL with the namespace gone: {}", del.text);
    assert!(listed(&lab, "h1", "ctr-keep").is_empty());
    for ns in [ns_a, ns_c, ns_d] {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .output();
    }
}

#[test]
fn add_is_atomic_across_kill_9_of_the_router() {
    require_root_and_tools(&["ip", "kill"]);
    const ADDS: usize = 20;
    let lab = Lab::up(WEFT, 1);
    let s = Scratch::new(&lab);
    let c = conf(&lab, "h1", "1.0.0", "wnet");
    launch(&lab, "h1");
    wait_status_ok(&lab, &s, "h1", &c);
    lab.weft_ok("h1", &["prime"]);
    let mut made = Vec::new();
    for i in 0..ADDS {
        made.push(netns(&lab, &format!("k{i}")));
    }
    let pid = lab.router_pid("h1");
    let answers: Vec<Answer> = std::thread::scope(|sc| {
        let handles: Vec<_> = made
            .iter()
            .enumerate()
            .map(|(i, (_, path))| {
                let (lab, s, c) = (&lab, &s, &c);
                sc.spawn(move || weft_cni(lab, s, "h1", "ADD", &format!("k{i}"), Some(path), "", c))
            })
            .collect();
        // kill -9 while the ADDs are in flight, then start the router again: ADDs it cut
        // short wait for it to learn their fate.
        std::thread::sleep(Duration::from_millis(400));
        let out = lab.exec("h1", &["kill", "-9", &pid]);
        assert!(out.status.success(), "kill -9 {pid}: {}", text(&out));
        wait_for("h1's router to be gone", Duration::from_secs(10), || {
            (!lab.weft("h1", &["status"]).status.success()).then_some(())
        });
        launch(&lab, "h1");
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let ok = answers.iter().filter(|a| a.ok).count();
    eprintln!("{ok} of {ADDS} ADDs returned a result (router killed during them)");
    wait_for(
        "every ADD to have its result listed, or nothing left",
        Duration::from_secs(90),
        || {
            let listing = ps(&lab, "h1")?;
            for (i, ((ns, _), a)) in made.iter().zip(&answers).enumerate() {
                let id = format!("k{i}");
                let in_ps: Vec<String> = listing
                    .iter()
                    .filter(|(x, _)| *x == id)
                    .flat_map(|(_, a)| a.clone())
                    .collect();
                let kernel = kernel_addrs(ns);
                if a.ok {
                    let addr = first_sandbox_addr(&a.json).1;
                    assert_eq!(
                        in_ps,
                        vec![addr.clone()],
                        "{id}: ADD returned {addr}; weft ps lists {in_ps:?}"
                    );
                    assert_eq!(kernel, vec![addr], "{id}: the container's address");
                } else {
                    assert!(
                        [11, 100].contains(&a.code()),
                        "{id}: an ADD failed without a CNI error: {}",
                        a.text
                    );
                    if !in_ps.is_empty() || !kernel.is_empty() {
                        observe(format!(
                            "{id} failed but has ps {in_ps:?}, kernel {kernel:?}"
                        ));
                        return None;
                    }
                }
            }
            Some(())
        },
    );
    assert!(ok > 0, "no ADD succeeded at all");
    for (ns, _) in &made {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .output();
    }
}

/// Where a chained reference plugin is.
fn ref_plugin(kind: &str) -> String {
    let p = Path::new(REF_PLUGINS).join(kind);
    assert!(
        p.is_file(),
        "{} is missing; scripts/test installs containernetworking-plugins",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// One entry of a conflist as libcni hands it to its plugin: the list's version and name,
/// the capabilities' runtimeConfig, and the previous plugin's result.
fn entry(list: &Value, plugin: &Value, runtime: &Value, prev: Option<&Value>) -> Value {
    let mut c = plugin.clone();
    c["cniVersion"] = list["cniVersion"].clone();
    c["name"] = list["name"].clone();
    let mut rc = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (k, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = runtime.get(k) {
                    rc.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        c["runtimeConfig"] = Value::Object(rc);
    }
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

/// ADD of a whole conflist, as libcni runs it: each plugin in order, with the previous
/// result; returns the last result.
fn add_list(
    lab: &Lab,
    s: &Scratch,
    host: &str,
    list: &Value,
    runtime: &Value,
    cid: &str,
    path: &str,
) -> Value {
    let mut prev: Option<Value> = None;
    for p in list["plugins"].as_array().expect("plugins") {
        let kind = p["type"].as_str().expect("type");
        let bin = if kind == "weft" {
            WEFT.to_string()
        } else {
            ref_plugin(kind)
        };
        let c = entry(list, p, runtime, prev.as_ref());
        let a = invoke(lab, s, host, &bin, "ADD", cid, Some(path), "", &c);
        assert!(a.ok, "ADD of {kind} in the chain: {}", a.text);
        prev = Some(a.json);
    }
    prev.expect("a result")
}

/// DEL of a whole conflist: each plugin in reverse order, with the cached result.
#[allow(clippy::too_many_arguments)]
fn del_list(
    lab: &Lab,
    s: &Scratch,
    host: &str,
    list: &Value,
    runtime: &Value,
    cid: &str,
    path: &str,
    result: &Value,
) {
    for p in list["plugins"].as_array().expect("plugins").iter().rev() {
        let kind = p["type"].as_str().expect("type");
        let bin = if kind == "weft" {
            WEFT.to_string()
        } else {
            ref_plugin(kind)
        };
        let c = entry(list, p, runtime, Some(result));
        let a = invoke(lab, s, host, &bin, "DEL", cid, Some(path), "", &c);
        assert!(a.ok, "DEL of {kind} in the chain: {}", a.text);
    }
}

#[test]
fn portmap_bandwidth_and_tuning_chain_after_weft() {
    require_root_and_tools(&["ip", "tc", "iptables", "busybox", "curl"]);
    let lab = Lab::up(WEFT, 2);
    let s = Scratch::new(&lab);
    launch(&lab, "h1");
    // The host's address on the overlay is the containers' gateway: replies to a
    // published port go back through it.
    let gw = lab.weft_ok("h1", &["expose"]);
    let gw = gw.trim().split('/').next().unwrap_or_default().to_string();
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "chain",
        "plugins": [
            {"type": "weft", "socket": socket_of(&lab, "h1"), "capabilities": {"ips": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
            {"type": "tuning", "mtu": 1300},
        ]
    });
    let runtime = json!({
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 100000000, "ingressBurst": 1000000, "egressRate": 100000000, "egressBurst": 1000000},
    });
    wait_status_ok(
        &lab,
        &s,
        "h1",
        &entry(&list, &list["plugins"][0], &json!({}), None),
    );
    let (ns, path) = netns(&lab, "web");
    let result = add_list(&lab, &s, "h1", &list, &runtime, "web", &path);
    let (_, addr) = first_sandbox_addr(&result);
    assert_eq!(kernel_addrs(&ns), vec![addr.clone()], "{result}");
    assert!(
        result["routes"].to_string().contains(&gw),
        "the default route goes through the host's address {gw}: {result}"
    );
    // tuning set the MTU; bandwidth shaped the host side of weft's veth.
    let link = text(&lab.exec("h1", &["ip", "-n", &ns, "link", "show", "eth0"]));
    assert!(link.contains("mtu 1300"), "{link}");
    let host_veth = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .expect("the host veth in the result")
        .to_string();
    let qdisc = text(&lab.exec("h1", &["tc", "qdisc", "show", "dev", &host_veth]));
    assert!(qdisc.contains("tbf"), "bandwidth: {qdisc}");
    // portmap: the published port answers from the other host.
    let www = s.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "weft-cni-ok\n").unwrap();
    let www = www.to_string_lossy().into_owned();
    lab.spawn(
        "h1",
        &[
            "ip", "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "80", "-h", &www,
        ],
    );
    let url = format!("http://{}:8080/", lab.underlay_ip("h1"));
    let direct = format!("http://{}:80/", addr.split('/').next().unwrap_or_default());
    wait_for(
        "the published port to answer from h2",
        Duration::from_secs(20),
        || {
            let out = lab.exec("h2", &["curl", "-sS", "-m", "3", &url]);
            let from_h1 = lab.exec("h1", &["curl", "-sS", "-m", "3", &direct]);
            observe(format!(
                "from h2: {}; from h1 to {direct}: {}; h1's rules: {}; nft: {}",
                text(&out),
                text(&from_h1),
                text(&lab.exec("h1", &["iptables-save", "-t", "nat"])),
                text(&lab.exec("h1", &["nft", "list", "ruleset"]))
            ));
            String::from_utf8_lossy(&out.stdout)
                .contains("weft-cni-ok")
                .then_some(())
        },
    );
    del_list(&lab, &s, "h1", &list, &runtime, "web", &path, &result);
    assert!(kernel_addrs(&ns).is_empty());
    assert!(listed(&lab, "h1", "web").is_empty());
    let rules = text(&lab.exec("h1", &["iptables-save"]));
    assert!(
        !rules.contains("dport 8080"),
        "portmap's DNAT stayed: {rules}"
    );
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &ns])
        .output();
}

/// podman (CNI backend) for one lab host: its own storage, run dir and containers.conf
/// under the test's scratch dir, run in the root mount namespace and the host's network
/// namespace, so the namespaces podman mounts in /run/netns are seen by the host's router
/// and by later podman calls (TESTBED.md: hybrid cgroups need runc and cgroupfs).
struct Podman {
    netns: String,
    dir: PathBuf,
}

impl Podman {
    fn new(lab: &Lab, s: &Scratch, host: &str, image: &str) -> Podman {
        let dir = s.0.join(format!("podman-{host}"));
        let net_d = dir.join("net.d");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::create_dir_all(&net_d).unwrap();
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\",\"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{d}/events.log\"\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{d}/bin\", \"{REF_PLUGINS}\"]\n\
             network_config_dir = \"{d}/net.d\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        let p = Podman {
            netns: lab.netns(host),
            dir,
        };
        p.ok(&["import", image, "localhost/bb"]);
        p
    }

    fn install(&self, lab: &Lab, host: &str, network: &str, extra: &[&str]) {
        let bin = self.dir.join("bin").to_string_lossy().into_owned();
        let net_d = self.dir.join("net.d").to_string_lossy().into_owned();
        let mut args = vec![
            "cni",
            "install",
            "--bin-dir",
            &bin,
            "--conf-dir",
            &net_d,
            "--network",
            network,
        ];
        args.extend_from_slice(extra);
        lab.weft_ok(host, &args);
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.to_string_lossy().into_owned();
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("podman")
            .args([
                "--root",
                &format!("{d}/root"),
                "--runroot",
                &format!("{d}/runroot"),
            ])
            .args(["--tmpdir", &format!("{d}/tmp"), "--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", format!("{d}/containers.conf"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("podman runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d` on `network` (weft's DNS in resolv.conf), then its address.
    fn start(&self, name: &str, network: &str, extra: &[&str], cmd: &[&str]) -> String {
        let net = format!("--network={network}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            &net,
            "--dns",
            "127.0.0.11",
            "--dns-search",
            "weft.local",
        ];
        args.extend_from_slice(extra);
        args.push("localhost/bb");
        args.extend_from_slice(cmd);
        self.ok(&args);
        let fmt = format!("{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}");
        self.ok(&["inspect", name, "--format", &fmt])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
    }
}

/// A busybox root file system as a tarball (TESTBED.md's image without a registry).
fn busybox_tarball(s: &Scratch) -> String {
    let root = s.0.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy(which("busybox"), root.join("bin/busybox")).expect("copy busybox");
    for c in ["sh", "ping", "ip", "cat", "sleep", "nslookup", "httpd"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "podman-ok\n").unwrap();
    let tar = s.0.join("busybox.tar");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "tar: {}", text(&out));
    tar.to_string_lossy().into_owned()
}

fn which(tool: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed; scripts/test installs it"))
}

fn pings(p: &Podman, from: &str, to: &str) -> bool {
    p.run(&["exec", from, "ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

/// Removes what podman and libcni leave outside the test's directory: the cached results
/// of the test's networks and podman's blob cache if the test made it.
struct HostLeftovers {
    networks: Vec<String>,
    made_cache: bool,
}

impl Drop for HostLeftovers {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if self
                    .networks
                    .iter()
                    .any(|n| name.starts_with(&format!("{n}-")))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if self.made_cache {
            let _ = std::fs::remove_dir_all("/var/lib/containers");
        }
    }
}

#[test]
fn podman_and_containerd_on_three_hosts() {
    require_root_and_tools(&[
        "ip",
        "podman",
        "runc",
        "nsenter",
        "unshare",
        "containerd",
        "ctr",
        "curl",
        "busybox",
        "tar",
    ]);
    let lab = Lab::up(WEFT, 3);
    let s = Scratch::new(&lab);
    let net = format!("w{}", lab.name().replace('-', ""));
    let tenant = format!("{net}t");
    let _leftovers = HostLeftovers {
        networks: vec![net.clone(), tenant.clone()],
        made_cache: !Path::new("/var/lib/containers").exists(),
    };
    for h in ["h1", "h2", "h3"] {
        let others: Vec<&str> = ["h1", "h2", "h3"].into_iter().filter(|o| *o != h).collect();
        let mut args = vec!["launch", "--nickname", h];
        args.extend(others);
        lab.weft_ok(h, &args);
    }
    wait_for("3 peers everywhere", Duration::from_secs(30), || {
        ["h1", "h2", "h3"]
            .iter()
            .all(|h| lab.report(h).is_some_and(|r| r.router.peers.len() == 3))
            .then_some(())
    });
    // h1's address on the overlay is its containers' gateway: published ports answer.
    lab.weft_ok("h1", &["expose"]);
    let image = busybox_tarball(&s);
    let p1 = Podman::new(&lab, &s, "h1", &image);
    let p2 = Podman::new(&lab, &s, "h2", &image);
    p1.install(&lab, "h1", &net, &["--chain", "portmap"]);
    p2.install(&lab, "h2", &net, &[]);
    p2.install(&lab, "h2", &tenant, &["--subnet", "10.33.0.0/24"]);

    // Across hosts by address and by name; `podman inspect` shows weft's address.
    let a1 = p1.start("c1", &net, &[], &["sleep", "1000"]);
    let a2 = p2.start("c2", &net, &[], &["sleep", "1000"]);
    assert!(
        a1.starts_with("10.") && a2.starts_with("10."),
        "podman inspect: {a1:?} {a2:?}"
    );
    // `weft ps` shows a 64-hex id's first 12 characters, as docker ps does.
    let id1 = p1.ok(&["inspect", "c1", "--format", "{{.Id}}"]);
    assert_eq!(listed(&lab, "h1", &id1[..12]), vec![format!("{a1}/12")]);
    wait_for(
        "c2 to ping c1 by address and by name",
        Duration::from_secs(20),
        || {
            (pings(&p2, "c2", &a1) && pings(&p2, "c2", "c1") && pings(&p1, "c1", "c2.weft.local"))
                .then_some(())
        },
    );

    // -p 8080:80 through portmap, chained after weft, answers from another host.
    p1.start(
        "web",
        &net,
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let url = format!("http://{}:8080/", lab.underlay_ip("h1"));
    wait_for(
        "the published port to answer from h3",
        Duration::from_secs(20),
        || {
            let out = lab.exec("h3", &["curl", "-sS", "-m", "3", &url]);
            observe(text(&out));
            String::from_utf8_lossy(&out.stdout)
                .contains("podman-ok")
                .then_some(())
        },
    );

    // A tenant (another subnet) cannot reach the default subnet.
    let t1 = p2.start("t1", &tenant, &[], &["sleep", "1000"]);
    assert!(t1.starts_with("10.33.0."), "tenant address {t1}");
    assert!(
        !pings(&p2, "t1", &a1),
        "the tenant reached the default subnet"
    );

    // `podman rm` releases the address: a new container can take it.
    p1.ok(&["rm", "-f", "-t", "0", "c1"]);
    assert!(!ps(&lab, "h1")
        .unwrap_or_default()
        .iter()
        .any(|(_, a)| a.contains(&format!("{a1}/12"))));
    let again = p1.start("c1b", &net, &["--ip", &a1], &["sleep", "1000"]);
    assert_eq!(again, a1, "the released address was not free again");

    // containerd: `ctr run --cni` on h3 gets an address and pings c2 on h2. ctr reads
    // /etc/cni/net.d and /opt/cni/bin only: a private mount namespace puts the test's there.
    let ctr = s.0.join("ctr");
    let (ctr_net, ctr_bin) = (ctr.join("net.d"), ctr.join("bin"));
    std::fs::create_dir_all(&ctr_net).unwrap();
    lab.weft_ok(
        "h3",
        &[
            "cni",
            "install",
            "--bin-dir",
            &ctr_bin.to_string_lossy(),
            "--conf-dir",
            &ctr_net.to_string_lossy(),
            "--network",
            &net,
        ],
    );
    let sock = ctr.join("containerd.sock").to_string_lossy().into_owned();
    let config = ctr.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n",
            d = ctr.display()
        ),
    )
    .unwrap();
    let containerd = std::process::Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ctr.join("containerd.log")).unwrap())
        .spawn()
        .expect("containerd starts");
    let mut daemon = Containerd {
        child: Some(containerd),
        run: None,
        sock: String::new(),
        ns: net.clone(),
        dir: ctr.clone(),
    };
    let ctr_cmd = |args: &[&str]| -> Output {
        std::process::Command::new("ctr")
            .args(["-a", &sock, "-n", &net])
            .args(args)
            .output()
            .expect("ctr runs")
    };
    wait_for("containerd to answer", Duration::from_secs(20), || {
        ctr_cmd(&["version"]).status.success().then_some(())
    });
    let archive = s.0.join("bb-docker.tar").to_string_lossy().into_owned();
    p1.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        &archive,
        "localhost/bb",
    ]);
    let out = ctr_cmd(&["images", "import", &archive]);
    assert!(out.status.success(), "ctr images import: {}", text(&out));
    let script = format!(
        "mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && cp {bin}/weft {REF_PLUGINS}/loopback /opt/cni/bin/ && \
         mount --bind {net_d} /etc/cni/net.d && exec ctr -a {sock} -n {net} run --cni --rm localhost/bb:latest ctr1 sleep 1000",
        bin = ctr_bin.display(),
        net_d = ctr_net.display()
    );
    let run = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.netns("h3")))
        .args([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ctr.join("run.log")).unwrap())
        .spawn()
        .expect("ctr run starts");
    daemon.run = Some(run);
    daemon.sock = sock.clone();
    let ctr_addr = wait_for(
        "ctr's container to get a weft address",
        Duration::from_secs(30),
        || {
            let out = ctr_cmd(&[
                "task",
                "exec",
                "--exec-id",
                "ip",
                "ctr1",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ]);
            observe(format!(
                "{} / {}",
                text(&out),
                std::fs::read_to_string(ctr.join("run.log")).unwrap_or_default()
            ));
            let t = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut w = t.split_whitespace();
            w.position(|x| x == "inet")?;
            w.next().map(str::to_string)
        },
    );
    assert!(
        listed(&lab, "h3", &format!("{net}-ctr1")).contains(&ctr_addr),
        "weft ps on h3 lacks {ctr_addr}"
    );
    wait_for(
        "ctr's container to ping c2 on h2",
        Duration::from_secs(20),
        || {
            ctr_cmd(&[
                "task",
                "exec",
                "--exec-id",
                "ping",
                "ctr1",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &a2,
            ])
            .status
            .success()
            .then_some(())
        },
    );
    drop(daemon);
    // containerd 1.6's ctr does not run CNI DEL when its container ends: do it as a
    // runtime would (docs/cni.md says so).
    let c3 = conf(&lab, "h3", "1.0.0", &net);
    let del = weft_cni(&lab, &s, "h3", "DEL", &format!("{net}-ctr1"), None, "", &c3);
    assert!(del.ok, "{}", del.text);
    drop(p1);
    drop(p2);
    for h in ["h1", "h2"] {
        assert_eq!(
            ps(&lab, h),
            Some(Vec::new()),
            "podman rm left attachments on {h}"
        );
    }
}

/// The test's containerd and its `ctr run`: dropping them ends the container (so its
/// shim exits), then containerd, and unmounts what containerd left under its directory.
struct Containerd {
    child: Option<std::process::Child>,
    run: Option<std::process::Child>,
    sock: String,
    /// containerd namespace (the shims' runc state is /run/containerd/runc/NS).
    ns: String,
    dir: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            let _ = std::process::Command::new("ctr")
                .args(["-a", &self.sock, "-n", &self.ns])
                .args(args)
                .output();
        };
        if let Some(mut run) = self.run.take() {
            ctr(&["task", "kill", "-s", "KILL", "ctr1"]);
            // `ctr run --rm` deletes the task and the container once the task ended.
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = run.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = run.kill();
            let _ = run.wait();
            ctr(&["task", "delete", "-f", "ctr1"]);
            ctr(&["container", "delete", "ctr1"]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let prefix = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in points {
            let _ = std::process::Command::new("umount").arg(m).output();
        }
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.ns));
    }
}
