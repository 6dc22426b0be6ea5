//! End-to-end tests of weft as a CNI plugin (issue 12) on labs of network namespaces: the
//! verbs as the spec and Nomad's go-cni drive them, chaining the reference plugins,
//! kill -9 of the router during parallel ADDs, and real runtimes (podman, `ctr run --cni`).
//! Runtimes here are driven through the plugin binary itself: every invocation sets the
//! CNI_* environment and stdin exactly as libcni does.

mod chain;
mod harness;
mod runtimes;

use std::time::Duration;

use harness::*;
use serde_json::json;
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

#[test]
fn verbs_results_and_nomad_invocation() {
    require_root_and_tools(&["ip"]);
    let lab = Lab::up(WEFT, 1);
    let s = Scratch::new(&lab);
    let h1 = Cni::new(&lab, &s, "h1");
    let c10 = conf(&lab, "h1", "1.0.0", "wnet");
    let c11 = conf(&lab, "h1", "1.1.0", "wnet");

    // VERSION needs no router.
    let v = h1.global("VERSION", &c11);
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
    let st = h1.global("STATUS", &c11);
    assert!(!st.ok && st.code() == 50, "{}", st.text);
    let (ns_a, path_a) = netns(&lab, "a");
    let add = h1.add("ctr-a", &path_a, &c10);
    assert!(!add.ok && add.code() == 11, "{}", add.text);
    assert!(add.details().contains("weft launch"), "{}", add.text);
    // Bad stdin is 6.
    let bad = h1.add("x", &path_a, &json!("not a conf"));
    assert!(!bad.ok && bad.code() == 6, "{}", bad.text);

    launch(&lab, "h1");
    h1.wait_status_ok(&c11);

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
    // ADD as Nomad makes it (again after a restart).
    let nomad_add = || h1.weft("ADD", alloc, Some(&path_a), &nomad_args, &nomad_conf);
    let add = nomad_add();
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
    let chk = h1.weft(
        "CHECK",
        alloc,
        Some(&path_a),
        &nomad_args,
        &with_prev(&c10, &result_a),
    );
    assert!(chk.ok, "{}", chk.text);

    // Results survive a router restart: ADD again answers the same; CHECK still passes.
    lab.weft_ok("h1", &["stop"]);
    let st = h1.global("STATUS", &c11);
    assert!(!st.ok && st.code() == 50, "STATUS while down: {}", st.text);
    launch(&lab, "h1");
    h1.wait_status_ok(&c11);
    let again = nomad_add();
    assert!(again.ok, "{}", again.text);
    assert_eq!(first_sandbox_addr(&again.json).1, addr);
    let chk = h1.check(alloc, &path_a, &with_prev(&c10, &result_a));
    assert!(chk.ok, "after restart: {}", chk.text);

    let out = std::process::Command::new("ip")
        .args(["-n", &ns_a, "link", "del", "eth0"])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    let chk = h1.check(alloc, &path_a, &with_prev(&c10, &result_a));
    assert!(!chk.ok && chk.code() == 101, "{}", chk.text);
    assert!(chk.details().contains("eth0 is gone"), "{}", chk.text);

    // DEL, and DEL again, succeed.
    for round in 0..2 {
        let del = h1.del(alloc, &path_a, &with_prev(&c10, &result_a));
        assert!(del.ok, "DEL {round}: {}", del.text);
    }
    assert!(listed(&lab, "h1", alloc).is_empty());

    // Results in every version's shape.
    let (ns_b, path_b) = netns(&lab, "b");
    for ver in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(&lab, "h1", ver, "wnet");
        let add = h1.add("ctr-b", &path_b, &c);
        assert!(add.ok, "{ver}: {}", add.text);
        assert_eq!(add.json["cniVersion"], ver);
        let has_version = add.json["ips"][0].get("version").is_some();
        assert_eq!(has_version, ver.starts_with("0."), "{ver}: {}", add.text);
        let del = h1.del("ctr-b", &path_b, &c);
        assert!(del.ok, "{ver}: {}", del.text);
        assert!(kernel_addrs(&ns_b).is_empty(), "{ver}: DEL left an address");
    }

    // An ADD that fails half way leaves no interface and no address: an address in use,
    // one outside the range, and an interface name taken in the namespace (kernel step).
    let keep = h1.weft("ADD", "ctr-keep", Some(&path_b), "K8S_POD_NAME=keep", &c10);
    assert!(keep.ok, "{}", keep.text);
    let taken = first_sandbox_addr(&keep.json).1;
    let (ns_c, path_c) = netns(&lab, "c");
    let mut claim = c10.clone();
    claim["runtimeConfig"] = json!({"ips": [taken]});
    let fail = h1.add("ctr-c", &path_c, &claim);
    assert!(!fail.ok, "claiming an address in use worked: {}", fail.text);
    let fail = h1.weft("ADD", "ctr-c", Some(&path_c), "IP=192.168.77.7", &c10);
    assert!(!fail.ok && fail.code() == 7, "{}", fail.text);
    let out = std::process::Command::new("ip")
        .args([
            "-n", &ns_c, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "{}", text(&out));
    let fail = h1.add("ctr-c", &path_c, &c10);
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
    let leak = h1.add("ctr-leak", &path_d, &c11);
    assert!(leak.ok, "{}", leak.text);
    let mut gc = c11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
    let done = h1.global("GC", &gc);
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
    let del = h1.del("ctr-keep", &path_b, &c10);
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
    let h1 = Cni::new(&lab, &s, "h1");
    let c = conf(&lab, "h1", "1.0.0", "wnet");
    launch(&lab, "h1");
    h1.wait_status_ok(&c);
    lab.weft_ok("h1", &["prime"]);
    let mut made = Vec::new();
    for i in 0..ADDS {
        made.push(netns(&lab, &format!("k{i}")));
    }
    let pid = lab.router_pid("h1");
    let returned = std::sync::atomic::AtomicUsize::new(0);
    let answers: Vec<Answer> = std::thread::scope(|sc| {
        let handles: Vec<_> = made
            .iter()
            .enumerate()
            .map(|(i, (_, path))| {
                let (h1, c, returned) = (&h1, &c, &returned);
                sc.spawn(move || {
                    let a = h1.add(&format!("k{i}"), path, c);
                    if a.ok {
                        returned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    a
                })
            })
            .collect();
        // kill -9 once an ADD has returned its result and the others are in flight (being
        // listed is not enough: a listed ADD may still be cut short), then start the router
        // again: ADDs it cut short wait for it to learn their fate.
        wait_for(
            "an ADD to return its result",
            Duration::from_secs(60),
            || {
                let n = returned.load(std::sync::atomic::Ordering::SeqCst);
                observe(format!("{n} returned"));
                (n >= 1).then_some(())
            },
        );
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
