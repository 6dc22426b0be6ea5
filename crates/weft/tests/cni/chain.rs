//! A conflist of weft and the reference plugins (portmap, bandwidth, tuning), run as
//! libcni runs one.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{observe, require_root_and_tools, wait_for, Lab};

use crate::harness::*;

/// Where a chained reference plugin is.
pub fn ref_plugin(kind: &str) -> String {
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
pub fn entry(list: &Value, plugin: &Value, runtime: &Value, prev: Option<&Value>) -> Value {
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

/// The plugin binary of one entry of a conflist: weft's, or a reference plugin.
fn plugin_bin(plugin: &Value) -> (&str, String) {
    let kind = plugin["type"].as_str().expect("type");
    let bin = if kind == "weft" {
        WEFT.to_string()
    } else {
        ref_plugin(kind)
    };
    (kind, bin)
}

/// A conflist as libcni runs it for one container (CNI_CONTAINERID `cid`, CNI_NETNS
/// `path`), with the runtime's capability arguments.
pub struct Chain<'a> {
    pub list: &'a Value,
    pub runtime: &'a Value,
    pub cid: &'a str,
    pub path: &'a str,
}

impl Chain<'_> {
    /// ADD: each plugin in order, with the previous result; returns the last result.
    pub fn add(&self, cni: &Cni) -> Value {
        let mut prev: Option<Value> = None;
        for p in self.list["plugins"].as_array().expect("plugins") {
            let (kind, bin) = plugin_bin(p);
            let c = entry(self.list, p, self.runtime, prev.as_ref());
            let a = cni.invoke(&bin, "ADD", self.cid, Some(self.path), "", &c);
            assert!(a.ok, "ADD of {kind} in the chain: {}", a.text);
            prev = Some(a.json);
        }
        prev.expect("a result")
    }

    /// DEL: each plugin in reverse order, with the cached result.
    pub fn del(&self, cni: &Cni, result: &Value) {
        for p in self.list["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .rev()
        {
            let (kind, bin) = plugin_bin(p);
            let c = entry(self.list, p, self.runtime, Some(result));
            let a = cni.invoke(&bin, "DEL", self.cid, Some(self.path), "", &c);
            assert!(a.ok, "DEL of {kind} in the chain: {}", a.text);
        }
    }
}

#[test]
pub fn portmap_bandwidth_and_tuning_chain_after_weft() {
    require_root_and_tools(&["ip", "tc", "iptables", "busybox", "curl"]);
    let lab = Lab::up(WEFT, 2);
    let s = Scratch::new(&lab);
    let h1 = Cni::new(&lab, &s, "h1");
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
    h1.wait_status_ok(&entry(&list, &list["plugins"][0], &json!({}), None));
    let (ns, path) = netns(&lab, "web");
    let chain = Chain {
        list: &list,
        runtime: &runtime,
        cid: "web",
        path: &path,
    };
    let result = chain.add(&h1);
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
    chain.del(&h1, &result);
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
