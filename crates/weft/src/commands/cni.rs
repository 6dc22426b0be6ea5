//! `weft cni install`: the plugin binary in the runtime's bin dir and a .conflist that
//! names this router's socket, so the plugin does not depend on the runtime's environment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use weft_api::Paths;

use crate::cli::{CniCommand, CniInstallArgs};

/// Runs a `weft cni` command.
pub fn run(command: CniCommand) -> Result<()> {
    match command {
        CniCommand::Install(args) => install(args),
    }
}

fn install(args: CniInstallArgs) -> Result<()> {
    let conflist = conflist(&args, &Paths::from_env().socket())?;
    let exe = std::env::current_exe().context("cannot find the weft binary to install")?;
    let bin = args.bin_dir.join(weft_cni::PLUGIN_TYPE);
    std::fs::create_dir_all(&args.bin_dir)
        .with_context(|| format!("cannot create {}", args.bin_dir.display()))?;
    std::fs::create_dir_all(&args.conf_dir)
        .with_context(|| format!("cannot create {}", args.conf_dir.display()))?;
    let same = std::fs::canonicalize(&bin).ok() == std::fs::canonicalize(&exe).ok();
    if !same {
        // A copy then a rename: a runtime never runs a half-written plugin.
        let bytes =
            std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
        weft_router::entry::write_atomic(&bin, &bytes)
            .with_context(|| format!("cannot write {}", bin.display()))?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", bin.display()))?;
    }
    let file = args.conf_dir.join(format!("10-{}.conflist", args.network));
    weft_router::entry::write_atomic(&file, conflist.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("{}", bin.display());
    println!("{}", file.display());
    Ok(())
}

/// The .conflist: weft first, then the chained reference plugins with their capabilities.
fn conflist(args: &CniInstallArgs, socket: &Path) -> Result<String> {
    let name_ok = !args.network.is_empty()
        && args.network.len() <= 64
        && args
            .network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        bail!(
            "--network {:?}: a network name is 1..64 letters, digits, '-', '_' or '.'",
            args.network
        );
    }
    let mut weft = serde_json::json!({
        "type": weft_cni::PLUGIN_TYPE,
        "socket": socket,
        "capabilities": {"ips": true},
    });
    if let Some(s) = &args.subnet {
        let net: ipnet::Ipv4Net = s.parse().map_err(|_| {
            anyhow::anyhow!("--subnet {s:?} is not an IPv4 CIDR such as 10.40.0.0/24")
        })?;
        weft["subnet"] = serde_json::json!(net.trunc().to_string());
    }
    let mut plugins = vec![weft];
    for p in &args.chain {
        plugins.push(match p.as_str() {
            "portmap" => serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            "bandwidth" => serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
            "tuning" => serde_json::json!({"type": "tuning"}),
            other => bail!("--chain {other:?}: weft chains portmap, bandwidth and tuning"),
        });
    }
    weft_cni::CniVersion::parse(&args.cni_version)
        .map_err(|e| anyhow::anyhow!("--cni-version: {}", e.details))?;
    let list = serde_json::json!({
        "cniVersion": args.cni_version,
        "name": args.network,
        "plugins": plugins,
    });
    Ok(serde_json::to_string_pretty(&list)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(subnet: Option<&str>, chain: &[&str]) -> CniInstallArgs {
        CniInstallArgs {
            bin_dir: "/opt/cni/bin".into(),
            conf_dir: "/etc/cni/net.d".into(),
            network: "tenant".into(),
            subnet: subnet.map(str::to_string),
            chain: chain.iter().map(|s| s.to_string()).collect(),
            cni_version: "1.0.0".into(),
        }
    }

    #[test]
    fn the_conflist_names_the_socket_and_chains() {
        let text = conflist(
            &args(Some("10.40.0.9/24"), &["portmap"]),
            Path::new("/run/weft/weft.sock"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "tenant");
        assert_eq!(v["plugins"][0]["socket"], "/run/weft/weft.sock");
        assert_eq!(v["plugins"][0]["subnet"], "10.40.0.0/24");
        assert_eq!(v["plugins"][1]["type"], "portmap");
        // Each entry, as a runtime hands it over, is a configuration weft accepts.
        let mut entry = v["plugins"][0].clone();
        entry["cniVersion"] = v["cniVersion"].clone();
        entry["name"] = v["name"].clone();
        weft_cni::NetConf::parse(entry.to_string().as_bytes()).unwrap();
    }

    #[test]
    fn bad_flags_are_refused() {
        let e = conflist(&args(Some("10.40/99"), &[]), Path::new("/s")).unwrap_err();
        assert!(e.to_string().contains("--subnet"), "{e}");
        let e = conflist(&args(None, &["flannel"]), Path::new("/s")).unwrap_err();
        assert!(e.to_string().contains("--chain"), "{e}");
    }
}
