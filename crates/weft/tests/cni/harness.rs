//! Helpers of the CNI tests: invoking a plugin as libcni does, reading `weft ps` and a
//! namespace's addresses, the test's scratch directory.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{observe, wait_for, Lab};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// Where Debian's containernetworking-plugins are.
pub const REF_PLUGINS: &str = "/usr/lib/cni";

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory for a test's files, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(lab: &Lab) -> Scratch {
        let dir = std::env::temp_dir().join(format!("weft-cni-{}", lab.name()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn file(&self, name: &str, body: &str) -> String {
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
pub struct Answer {
    pub ok: bool,
    pub json: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }

    /// The `details` of a CNI error ("" when there are none).
    pub fn details(&self) -> &str {
        self.json["details"].as_str().unwrap_or_default()
    }
}

/// A lab host on which a test runs CNI plugins as libcni does, with their stdin written to
/// the test's scratch directory.
pub struct Cni<'a> {
    lab: &'a Lab,
    scratch: &'a Scratch,
    host: &'a str,
}

impl<'a> Cni<'a> {
    pub fn new(lab: &'a Lab, scratch: &'a Scratch, host: &'a str) -> Cni<'a> {
        Cni { lab, scratch, host }
    }

    /// Runs plugin `bin` with the CNI environment (CNI_COMMAND `command`, CNI_CONTAINERID
    /// `cid`, CNI_NETNS `netns`, CNI_ARGS `args`) and `stdin`.
    pub fn invoke(
        &self,
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
        let file = self.scratch.file(&name, &stdin.to_string());
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
        let out = self.lab.exec(self.host, &refs);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Answer {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            text: text(&out),
        }
    }

    /// weft's plugin with any command and CNI_ARGS.
    pub fn weft(
        &self,
        command: &str,
        cid: &str,
        netns: Option<&str>,
        args: &str,
        conf: &Value,
    ) -> Answer {
        self.invoke(WEFT, command, cid, netns, args, conf)
    }

    /// weft's ADD of container `cid` in the namespace at `netns`, without CNI_ARGS.
    pub fn add(&self, cid: &str, netns: &str, conf: &Value) -> Answer {
        self.weft("ADD", cid, Some(netns), "", conf)
    }

    /// weft's CHECK, as [`Cni::add`].
    pub fn check(&self, cid: &str, netns: &str, conf: &Value) -> Answer {
        self.weft("CHECK", cid, Some(netns), "", conf)
    }

    /// weft's DEL, as [`Cni::add`].
    pub fn del(&self, cid: &str, netns: &str, conf: &Value) -> Answer {
        self.weft("DEL", cid, Some(netns), "", conf)
    }

    /// A command about no container (VERSION, STATUS, GC).
    pub fn global(&self, command: &str, conf: &Value) -> Answer {
        self.weft(command, "", None, "", conf)
    }

    /// Waits until weft's STATUS passes.
    pub fn wait_status_ok(&self, conf: &Value) {
        wait_for("STATUS to pass", Duration::from_secs(30), || {
            let a = self.global("STATUS", conf);
            observe(&a.text);
            a.ok.then_some(())
        });
    }
}

/// The router socket of a lab host.
pub fn socket_of(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &["sh", "-c", "echo \"$WEFT_RUN_DIR/weft.sock\""]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn conf(lab: &Lab, host: &str, version: &str, name: &str) -> Value {
    json!({"cniVersion": version, "name": name, "type": "weft", "socket": socket_of(lab, host)})
}

/// Makes a network namespace named after the lab (so `weft lab down` removes it too).
pub fn netns(lab: &Lab, short: &str) -> (String, String) {
    let name = lab.netns(short);
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "ip netns add {name}: {}", text(&out));
    (name.clone(), format!("/run/netns/{name}"))
}

/// The IPv4 addresses on `eth0` in a namespace (empty when it has none or is gone).
pub fn kernel_addrs(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip runs");
    weft_testkit::inet_addrs(&out.stdout)
}

/// `weft ps` of a host: (id, addresses) of its attachments (the host's own exposed
/// addresses, the `weft:expose` line, are not an attachment).
pub fn ps(lab: &Lab, host: &str) -> Option<Vec<(String, Vec<String>)>> {
    let mut lines = lab.ps(host)?;
    lines.retain(|(id, _)| id != "weft:expose");
    Some(lines)
}

pub fn listed(lab: &Lab, host: &str, id: &str) -> Vec<String> {
    ps(lab, host)
        .unwrap_or_default()
        .into_iter()
        .filter(|(i, _)| i == id)
        .flat_map(|(_, a)| a)
        .collect()
}

/// The address of the first interface with a sandbox: what Nomad registers in Consul.
pub fn first_sandbox_addr(result: &Value) -> (String, String) {
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

pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

pub fn launch(lab: &Lab, host: &str) {
    lab.weft_ok(host, &["launch", "--nickname", host]);
}
