//! The install step shared by scripts/demo and scripts/test (scripts/lib/packages.sh), run
//! with stub `dpkg-query` and `apt-get` first in PATH and a made-up package table, so what
//! it asks apt-get for does not depend on what this machine has installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lib/packages.sh");

/// A scratch directory with stubs: `dpkg-query` reports the packages listed in
/// `installed`; `apt-get` logs its arguments to `apt.log` and, on `install`, records the
/// packages as installed and creates each one's command (`weft-stub-<pkg>`), or fails
/// when the file `fail` exists.
struct Stubs {
    dir: PathBuf,
}

impl Stubs {
    fn new(tag: &str) -> Stubs {
        let dir = std::env::temp_dir().join(format!("weft-packages-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("installed"), "").unwrap();
        let d = dir.display();
        write_exec(
            &dir.join("bin/dpkg-query"),
            &format!(
                "#!/bin/sh\n# dpkg-query -W -f=... PKG\nfor last; do :; done\n\
                 grep -qx \"$last\" {d}/installed || exit 1\nprintf 'install ok installed'\n"
            ),
        );
        write_exec(
            &dir.join("bin/apt-get"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> {d}/apt.log\n\
                 [ -e {d}/fail ] && {{ echo 'E: Unable to locate package'; exit 100; }}\n\
                 [ \"$1\" = install ] || exit 0\n\
                 for a; do case $a in -*|install) ;; *) echo \"$a\" >> {d}/installed;\n\
                 printf '#!/bin/sh\\n' > {d}/bin/weft-stub-$a; chmod +x {d}/bin/weft-stub-$a;; esac; done\n"
            ),
        );
        Stubs { dir }
    }

    /// Runs `weft_install_packages PKGS` with the stub table (pkga, pkgb, pkgc).
    fn install(&self, pkgs: &str) -> Output {
        let d = self.dir.display();
        let script = format!(
            ". {LIB}\nWEFT_PACKAGES='\npkga weft-stub-pkga demo test\npkgb weft-stub-pkgb test\npkgc weft-stub-pkgc demo test\n'\n\
             WEFT_INSTALL_WHO=t weft_install_packages {pkgs}"
        );
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{d}/bin:/usr/bin:/bin"))
            .env("WEFT_APT_LOG", self.dir.join("apt-output.log"))
            .env("WEFT_POLICY_RC", self.dir.join("policy-rc.d"))
            .output()
            .unwrap()
    }

    /// [`Stubs::install`], which must succeed.
    fn install_ok(&self, pkgs: &str) -> Output {
        let o = self.install(pkgs);
        assert!(o.status.success(), "install failed: {}", stderr(&o));
        o
    }

    fn apt_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("apt.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Makes the command of stub package `pkg` (`weft-stub-<pkg>`), as if installed.
    fn make_command(&self, pkg: &str) {
        write_exec(
            &self.dir.join(format!("bin/weft-stub-{pkg}")),
            "#!/bin/sh\n",
        );
    }

    fn mark_installed(&self, pkg: &str) {
        let mut s = std::fs::read_to_string(self.dir.join("installed")).unwrap();
        s.push_str(pkg);
        s.push('\n');
        std::fs::write(self.dir.join("installed"), s).unwrap();
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The apt-get calls of one install of `packages`: an update, then one install of them all.
fn update_then_install(packages: &str) -> Vec<String> {
    vec![
        "update -qq".to_string(),
        format!("install -y -qq --no-install-recommends {packages}"),
    ]
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn installs_only_what_is_missing_then_nothing() {
    let s = Stubs::new("missing");
    s.mark_installed("pkgb");
    // pkgb is installed but its command is not there yet: make it.
    s.make_command("pkgb");
    let o = s.install_ok("pkga pkgb pkgc");
    assert_eq!(
        s.apt_calls(),
        update_then_install("pkga pkgc"),
        "apt-get asked for exactly the missing packages"
    );
    assert!(
        stderr(&o).contains("installing pkga pkgc"),
        "{}",
        stderr(&o)
    );
    assert!(
        !s.dir.join("policy-rc.d").exists(),
        "the policy-rc.d made for the install is removed after it"
    );
    // Everything is there now: a second run asks apt-get for nothing and says nothing.
    let o = s.install("pkga pkgb pkgc");
    assert!(o.status.success(), "second run failed: {}", stderr(&o));
    assert_eq!(
        s.apt_calls().len(),
        2,
        "second run called apt-get: {:?}",
        s.apt_calls()
    );
    assert_eq!(stderr(&o), "", "second run printed something");
}

#[test]
fn a_failed_install_is_one_clear_error() {
    let s = Stubs::new("fail");
    std::fs::write(s.dir.join("fail"), "").unwrap();
    let o = s.install("pkga pkgc");
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("t: apt-get install pkga pkgc failed")
            && last.contains("apt-output.log")
            && last.contains("install them by hand"),
        "the last line says what failed, where the log is and what to do: {err}"
    );
    assert!(
        err.contains("Unable to locate package"),
        "apt's own words are shown: {err}"
    );
    assert!(
        !s.dir.join("policy-rc.d").exists(),
        "policy-rc.d left behind after a failure"
    );
}

#[test]
fn an_installed_package_without_its_command_is_an_error() {
    let s = Stubs::new("nocmd");
    s.mark_installed("pkga");
    let o = s.install("pkga");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        s.apt_calls().is_empty(),
        "nothing to install: {:?}",
        s.apt_calls()
    );
    assert!(
        stderr(&o).contains("weft-stub-pkga is missing although pkga is installed")
            && stderr(&o).contains("apt-get install --reinstall pkga"),
        "{}",
        stderr(&o)
    );
}

/// A command that another package already provides (Google's `kubectl` package owns
/// /usr/bin/kubectl on some machines, and Debian's kubernetes-client would collide with it)
/// is not installed again.
#[test]
fn a_command_already_there_is_not_installed_again() {
    let s = Stubs::new("present");
    s.make_command("pkgc");
    s.install_ok("pkga pkgc");
    assert_eq!(
        s.apt_calls(),
        update_then_install("pkga"),
        "pkgc's command is there: only pkga is asked for"
    );
}

/// The real table: the demo needs a subset of what the tests need, and every command the
/// demo and the tests run has its package in it.
#[test]
fn the_table_covers_the_demo_and_the_tests() {
    let list = |who: &str| -> Vec<String> {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(". {LIB}; weft_packages_for {who}"))
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let demo = list("demo");
    let test = list("test");
    for p in &demo {
        assert!(
            test.contains(p),
            "{p} is installed for the demo but not for the tests"
        );
    }
    for p in [
        "iproute2",
        "nftables",
        "iputils-ping",
        "curl",
        "docker.io",
        "busybox-static",
        "tar",
    ] {
        assert!(
            demo.contains(&p.to_string()),
            "the demo uses {p} but does not install it"
        );
    }
    for p in [
        "iptables",
        "iperf3",
        "ethtool",
        "tcpdump",
        "dnsutils",
        "dnsmasq",
        "chromium",
        "chromium-driver",
        "prometheus",
        "procps",
        "python3",
        "kubernetes-client",
    ] {
        assert!(
            test.contains(&p.to_string()),
            "the tests use {p} but do not install it"
        );
    }
}
