//! Names in a lab: which lab names are valid, what each namespace is called, which
//! namespaces belong to which lab, and the files written into /etc/netns. Pure logic.

use std::net::Ipv4Addr;

/// Longest lab name, so that `LAB-hN` and `LAB-c-NAME` stay short.
pub const MAX_LAB_NAME: usize = 20;
/// Longest container name (it is also a DNS label under weft.local).
pub const MAX_CONTAINER_NAME: usize = 32;
/// Most hosts in one lab (host I gets 172.29.0.I).
pub const MAX_HOSTS: u32 = 200;
/// Prefix length of the underlay subnet 172.29.0.0/24.
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// The bridge that joins the hosts, inside the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "br0";
/// Name of each host's underlay interface, inside the host namespace.
pub const HOST_IFNAME: &str = "eth0";

/// What a namespace is within its lab.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    /// Host I (`LAB-hI`).
    Host(u32),
    /// A container (`LAB-c-NAME`).
    Container(String),
    /// The namespace holding the bridge (`LAB-ul`).
    Underlay,
}

/// Checks a lab name: 1 to 20 of `[a-z0-9-]`, dash-separated words, none of them just
/// `c`. The last rule keeps labs apart: lab `x`'s container namespaces are `x-c-NAME`,
/// so a lab called `x-c` or `x-c-y` could not be told from them.
pub fn validate_lab_name(name: &str) -> Result<(), String> {
    let what = format!("invalid lab name {name:?}");
    check_length_and_characters(&what, name, MAX_LAB_NAME, "")?;
    if name.split('-').any(str::is_empty) {
        return Err(format!(
            "{what}: it must not start or end with '-' or contain \"--\""
        ));
    }
    if name.split('-').any(|w| w == "c") {
        return Err(format!(
            "{what}: no dash-separated word may be just \"c\" (container namespaces are LAB-c-NAME)"
        ));
    }
    Ok(())
}

/// Checks a container name: 1 to 32 of `[a-z0-9-]`, not starting or ending with '-',
/// and not `hN` (those are the hosts).
pub fn validate_container_name(name: &str) -> Result<(), String> {
    let what = format!("invalid container name {name:?}");
    check_length_and_characters(&what, name, MAX_CONTAINER_NAME, " (it becomes a DNS name)")?;
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{what}: it must not start or end with '-'"));
    }
    if host_index(name).is_some() || name == "ul" {
        return Err(format!(
            "{what}: h1, h2, ... and ul name the lab's hosts and underlay; pick another"
        ));
    }
    Ok(())
}

/// What lab and container names share: 1 to `max` characters of `[a-z0-9-]`. Errors
/// start with `what`; `why` ends the one about characters.
fn check_length_and_characters(
    what: &str,
    name: &str,
    max: usize,
    why: &str,
) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("{what}: it must be 1 to {max} characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "{what}: use only lowercase letters, digits and '-'{why}"
        ));
    }
    Ok(())
}

/// Checks the number of hosts.
pub fn validate_hosts(n: u32) -> Result<(), String> {
    if n == 0 || n > MAX_HOSTS {
        return Err(format!(
            "invalid --hosts {n}: a lab has 1 to {MAX_HOSTS} hosts"
        ));
    }
    Ok(())
}

/// `I` of a host written `hI` (no leading zeros, I >= 1).
pub fn host_index(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('h')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Short name of host I: `hI`.
pub fn host_name(i: u32) -> String {
    format!("h{i}")
}

/// Namespace of host I.
pub fn host_ns(lab: &str, i: u32) -> String {
    format!("{lab}-h{i}")
}

/// Namespace of the underlay.
pub fn underlay_ns(lab: &str) -> String {
    format!("{lab}-ul")
}

/// Namespace of a container.
pub fn container_ns(lab: &str, container: &str) -> String {
    format!("{lab}-c-{container}")
}

/// Underlay address of host I.
pub fn underlay_ip(i: u32) -> Ipv4Addr {
    // Host numbers are capped at MAX_HOSTS (< 255), so the last octet always fits.
    Ipv4Addr::new(172, 29, 0, u8::try_from(i).unwrap_or(u8::MAX))
}

/// Name of the bridge each host's dockerd uses (`-b`); it lives in the host's namespace,
/// so every host can use the same name.
pub const DOCKER_BRIDGE: &str = "docker0";
/// Prefix length of a host's Docker bridge subnet.
pub const DOCKER_PREFIX_LEN: u8 = 24;

/// Address of host I's Docker bridge: 172.30.I.1 (subnet 172.30.I.0/24), clear of the
/// underlay 172.29.0.0/24 and of weft's 10.32.0.0/12, and distinct per host.
pub fn docker_bridge_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, u8::try_from(i).unwrap_or(u8::MAX), 1)
}

/// The cgroup (under each cgroup v1 hierarchy's root) under which host I's dockerd puts
/// its containers, so that `lab down` finds their processes and removes the cgroups.
pub fn docker_cgroup_parent(lab: &str, i: u32) -> String {
    format!("weft-lab-{lab}-h{i}")
}

/// Host I of lab `lab` if `name` is one of its Docker cgroup parents.
pub fn docker_cgroup_owner(lab: &str, name: &str) -> Option<u32> {
    host_index(
        name.strip_prefix("weft-lab-")?
            .strip_prefix(lab)?
            .strip_prefix('-')?,
    )
}

/// What `ns` is in lab `lab`, if it belongs to it.
pub fn classify(lab: &str, ns: &str) -> Option<Member> {
    let rest = ns.strip_prefix(lab)?.strip_prefix('-')?;
    if rest == "ul" {
        return Some(Member::Underlay);
    }
    if let Some(i) = host_index(rest) {
        return Some(Member::Host(i));
    }
    let container = rest.strip_prefix("c-")?;
    validate_container_name(container).ok()?;
    Some(Member::Container(container.to_string()))
}

/// The lab whose underlay namespace this is (`LAB-ul` → `LAB`).
pub fn lab_of_underlay(ns: &str) -> Option<&str> {
    let lab = ns.strip_suffix("-ul")?;
    validate_lab_name(lab).ok()?;
    Some(lab)
}

/// A member given on the command line (`h1`, `LAB-h1`, `c1`, `LAB-c-c1`, `ul`, `LAB-ul`).
pub fn parse_target(lab: &str, s: &str) -> Option<Member> {
    if let Some(i) = host_index(s) {
        return Some(Member::Host(i));
    }
    if s == "ul" {
        return Some(Member::Underlay);
    }
    if let Some(m) = classify(lab, s) {
        return Some(m);
    }
    validate_container_name(s)
        .ok()
        .map(|_| Member::Container(s.to_string()))
}

/// The namespace of a member of a lab.
pub fn member_ns(lab: &str, m: &Member) -> String {
    match m {
        Member::Host(i) => host_ns(lab, *i),
        Member::Container(c) => container_ns(lab, c),
        Member::Underlay => underlay_ns(lab),
    }
}

/// /etc/hosts of a lab host: every host of the lab by short and namespace name.
pub fn host_hosts_file(lab: &str, hosts: u32) -> String {
    let mut out = String::from(
        "# written by `weft lab up`: the hosts of this lab\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for j in 1..=hosts {
        out.push_str(&format!(
            "{}\t{} {}\n",
            underlay_ip(j),
            host_name(j),
            host_ns(lab, j)
        ));
    }
    out
}

/// /etc/resolv.conf of a lab host. A lab has no upstream DNS; pointing at loopback makes
/// lookups of unknown names fail at once instead of leaking to the machine's resolver.
pub fn host_resolv_conf() -> String {
    "# written by `weft lab up`: a lab has no upstream DNS; host names are in /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n".to_string()
}

/// /etc/resolv.conf of a lab container: weft's DNS listener address.
pub fn container_resolv_conf() -> String {
    "# written by `weft lab container`: weft's DNS answers here\nnameserver 127.0.0.11\nsearch weft.local\noptions timeout:1 attempts:2\n".to_string()
}

/// /etc/hosts of a lab container, with its own overlay address once it has one.
pub fn container_hosts_file(container: &str, addr: Option<&str>) -> String {
    let mut out = String::from(
        "# written by `weft lab container`\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if let Some(a) = addr {
        out.push_str(&format!("{a}\t{container}.weft.local {container}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names() {
        for ok in [
            "weftlab", "t12345-3", "a", "lab-2", "ab-cd", "cc", "c1", "x-c1",
        ] {
            assert!(validate_lab_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Lab",
            "a_b",
            "-a",
            "a-",
            "a--b",
            "x-c",
            "x-c-y",
            "c",
            "c-x",
            "a.b",
            "aaaaaaaaaaaaaaaaaaaaa",
            "lab h",
        ] {
            let e = validate_lab_name(bad).unwrap_err();
            assert!(e.starts_with("invalid lab name"), "{e}");
        }
    }

    #[test]
    fn container_names() {
        for ok in ["c1", "web", "a-b", "h", "hx1", "h01"] {
            assert!(validate_container_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "h1",
            "h22",
            "ul",
            "-a",
            "a-",
            "A",
            "a.b",
            &"x".repeat(33),
        ] {
            assert!(validate_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_count() {
        assert!(validate_hosts(0).is_err());
        assert!(validate_hosts(1).is_ok());
        assert!(validate_hosts(MAX_HOSTS).is_ok());
        assert!(validate_hosts(MAX_HOSTS + 1).is_err());
    }

    #[test]
    fn host_indices() {
        assert_eq!(host_index("h1"), Some(1));
        assert_eq!(host_index("h200"), Some(200));
        for bad in ["h", "h0", "h01", "1", "hx", "h1x", "h-1", "h99999999999"] {
            assert_eq!(host_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn classify_members() {
        assert_eq!(classify("lab", "lab-ul"), Some(Member::Underlay));
        assert_eq!(classify("lab", "lab-h3"), Some(Member::Host(3)));
        assert_eq!(
            classify("lab", "lab-c-web"),
            Some(Member::Container("web".into()))
        );
        for other in [
            "lab",
            "lab-",
            "labx-h1",
            "lab-h1-h1",
            "lab-x",
            "lab-c-",
            "lab2-ul",
        ] {
            assert_eq!(classify("lab", other), None, "{other}");
        }
    }

    /// No namespace of one valid lab is ever claimed by another valid lab.
    #[test]
    fn labs_never_claim_each_others_namespaces() {
        let labs = [
            "a", "a-b", "a-h1", "a-ul", "a-cx", "a-b-h1", "t1", "t1-2", "ab",
        ];
        for owner in labs {
            validate_lab_name(owner).unwrap();
            let mut names = vec![underlay_ns(owner), host_ns(owner, 1), host_ns(owner, 12)];
            for c in ["web", "x-h1", "b-ul", "cx", "b-c-d"] {
                names.push(container_ns(owner, c));
            }
            for ns in &names {
                for other in labs.iter().filter(|l| **l != owner) {
                    assert_eq!(classify(other, ns), None, "{other} claims {ns} of {owner}");
                }
                assert!(classify(owner, ns).is_some(), "{owner} does not claim {ns}");
            }
        }
    }

    #[test]
    fn targets() {
        assert_eq!(parse_target("lab", "h2"), Some(Member::Host(2)));
        assert_eq!(parse_target("lab", "lab-h2"), Some(Member::Host(2)));
        assert_eq!(
            parse_target("lab", "c1"),
            Some(Member::Container("c1".into()))
        );
        assert_eq!(
            parse_target("lab", "lab-c-c1"),
            Some(Member::Container("c1".into()))
        );
        assert_eq!(parse_target("lab", "H1"), None);
        assert_eq!(parse_target("lab", "ul"), Some(Member::Underlay));
        assert_eq!(parse_target("lab", "lab-ul"), Some(Member::Underlay));
    }

    #[test]
    fn underlay_owner() {
        assert_eq!(lab_of_underlay("weftlab-ul"), Some("weftlab"));
        assert_eq!(lab_of_underlay("t1-2-ul"), Some("t1-2"));
        assert_eq!(lab_of_underlay("x-c-ul"), None);
        assert_eq!(lab_of_underlay("ul"), None);
    }

    #[test]
    fn docker_names() {
        assert_eq!(docker_bridge_ip(1), Ipv4Addr::new(172, 30, 1, 1));
        assert_eq!(docker_bridge_ip(MAX_HOSTS), Ipv4Addr::new(172, 30, 200, 1));
        assert!(DOCKER_BRIDGE.len() <= 15);
        assert_eq!(docker_cgroup_parent("lab", 2), "weft-lab-lab-h2");
        assert_eq!(docker_cgroup_owner("lab", "weft-lab-lab-h2"), Some(2));
        // Lab `a`'s cgroups are never claimed by lab `a-h1` and the other way round.
        assert_eq!(docker_cgroup_owner("a", "weft-lab-a-h1-h2"), None);
        assert_eq!(docker_cgroup_owner("a-h1", "weft-lab-a-h1"), None);
        assert_eq!(docker_cgroup_owner("a-h1", "weft-lab-a-h1-h2"), Some(2));
        for other in [
            "docker",
            "weft-lab-lab",
            "weft-lab-lab-h0",
            "weft-lab-labx-h1",
            "weft-lab-lab-ul",
        ] {
            assert_eq!(docker_cgroup_owner("lab", other), None, "{other}");
        }
    }

    #[test]
    fn hosts_file_lists_every_host() {
        let f = host_hosts_file("lab", 3);
        assert!(f.contains("172.29.0.1\th1 lab-h1\n"), "{f}");
        assert!(f.contains("172.29.0.3\th3 lab-h3\n"), "{f}");
        assert!(f.contains("127.0.0.1\tlocalhost\n"), "{f}");
        let c = container_hosts_file("web", Some("10.32.0.1"));
        assert!(c.ends_with("10.32.0.1\tweb.weft.local web\n"), "{c}");
    }
}
