//! Real CNI runtimes on lab hosts: podman (CNI backend) and `ctr run --cni`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use weft_testkit::{observe, require_root_and_tools, wait_for, Lab, ETH0_INET};

use crate::harness::*;

/// podman (CNI backend) for one lab host: its own storage, run dir and containers.conf
/// under the test's scratch dir, run in the root mount namespace and the host's network
/// namespace, so the namespaces podman mounts in /run/netns are seen by the host's router
/// and by later podman calls (hybrid cgroups on these machines need runc and cgroupfs).
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

/// A busybox root file system as a tarball (an image without a registry: busybox and its links).
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
    let p3 = Podman::new(&lab, &s, "h3", &image);
    p1.install(&lab, "h1", &net, &["--chain", "portmap"]);
    p2.install(&lab, "h2", &net, &[]);
    p3.install(&lab, "h3", &net, &[]);
    p2.install(&lab, "h2", &tenant, &["--subnet", "10.33.0.0/24"]);

    // Across hosts by address and by name; `podman inspect` shows weft's address.
    let a1 = p1.start("c1", &net, &[], &["sleep", "1000"]);
    let a2 = p2.start("c2", &net, &[], &["sleep", "1000"]);
    let a3 = p3.start("c3", &net, &[], &["sleep", "1000"]);
    assert!(
        a1.starts_with("10.") && a2.starts_with("10."),
        "podman inspect: {a1:?} {a2:?}"
    );
    // `weft ps` shows a 64-hex id's first 12 characters, as docker ps does.
    let id1 = p1.ok(&["inspect", "c1", "--format", "{{.Id}}"]);
    assert_eq!(listed(&lab, "h1", &id1[..12]), vec![format!("{a1}/12")]);
    wait_for(
        "the containers of 3 hosts to ping each other by address and by name",
        Duration::from_secs(20),
        || {
            (pings(&p2, "c2", &a1)
                && pings(&p2, "c2", "c1")
                && pings(&p1, "c1", "c2.weft.local")
                && pings(&p3, "c3", &a2)
                && pings(&p3, "c3", "c1")
                && pings(&p1, "c1", &a3))
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
            let exec = ["task", "exec", "--exec-id", "ip", "ctr1"];
            let out = ctr_cmd(&[&exec[..], &ETH0_INET].concat());
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
    let h3 = Cni::new(&lab, &s, "h3");
    let del = h3.weft("DEL", &format!("{net}-ctr1"), None, "", &c3);
    assert!(del.ok, "{}", del.text);
    drop(p1);
    drop(p2);
    drop(p3);
    for h in ["h1", "h2", "h3"] {
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
