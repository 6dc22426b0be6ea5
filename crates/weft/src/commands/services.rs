//! `weft service create|rm|ls|inspect` and `weft status services`.

use std::fmt::Write;

use anyhow::{Context, Result};
use weft_api::{ServiceCreateRequest, ServiceInfo};

use super::{block_on, client};
use crate::cli::{ServiceCommand, ServiceCreateArgs};

/// Runs one `weft service` command.
pub fn run(command: ServiceCommand) -> Result<()> {
    match command {
        ServiceCommand::Create(args) => create(args),
        ServiceCommand::Rm { name } => {
            let _: ServiceInfo = block_on(client().delete(&path_of(&name)?))?;
            println!("{name}");
            Ok(())
        }
        ServiceCommand::Ls => {
            let list: Vec<ServiceInfo> = block_on(client().get("/services"))?;
            print!("{}", render_table(&list));
            Ok(())
        }
        ServiceCommand::Inspect { name } => {
            let info: ServiceInfo = block_on(client().get(&path_of(&name)?))?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
    }
}

/// The request `weft service create` sends, its forms checked first.
fn request(args: ServiceCreateArgs) -> Result<ServiceCreateRequest> {
    let req = ServiceCreateRequest {
        name: args.name,
        ports: args.ports,
        publish: args.publish,
        endpoint_mode: args.endpoint_mode,
        subnet: args.subnet,
        health: args.health,
        health_interval: args.health_interval,
    };
    req.check_forms()?;
    Ok(req)
}

fn create(args: ServiceCreateArgs) -> Result<()> {
    let req = request(args)?;
    let info: ServiceInfo = block_on(client().post("/services", &req))
        .with_context(|| format!("service {} not created", req.name))?;
    match &info.vip {
        Some(vip) => println!("{vip}"),
        None => println!("{}", info.name),
    }
    Ok(())
}

/// `/services/NAME`, refusing a name that cannot be one path segment.
fn path_of(name: &str) -> Result<String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        anyhow::bail!(
            "{name:?} is not a service name: names hold letters, digits and '-'; see `weft service ls`"
        );
    }
    Ok(format!("/services/{name}"))
}

/// Checks that every service named exists on this host's router (for `weft run`), so a
/// typo fails before a container is made.
pub fn require_services(names: &[String]) -> Result<()> {
    for n in names {
        let _: ServiceInfo = block_on(client().get(&path_of(n)?))?;
    }
    Ok(())
}

/// `NAME MODE VIP PORTS PUBLISHED TASKS`, columns aligned; TASKS is healthy/total.
pub fn render_table(list: &[ServiceInfo]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "MODE".to_string(),
        "VIP".to_string(),
        "PORTS".to_string(),
        "PUBLISHED".to_string(),
        "TASKS".to_string(),
    ]];
    let or_dash = |v: String| if v.is_empty() { "-".to_string() } else { v };
    for s in list {
        rows.push([
            s.name.clone(),
            s.mode.clone(),
            or_dash(s.vip.clone().unwrap_or_default()),
            or_dash(s.ports.join(",")),
            or_dash(s.published.join(",")),
            s.tasks_column(),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for note in list.iter().filter_map(|s| s.lost_race.as_deref()) {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::ServiceTask;

    #[test]
    fn a_lost_race_is_a_note_under_the_table() {
        let list = vec![ServiceInfo {
            name: "web".into(),
            mode: "vip".into(),
            origin: "h1".into(),
            lost_race: Some("this host created service web at the same time as peer h1".into()),
            ..Default::default()
        }];
        let t = render_table(&list);
        assert_eq!(
            t.lines().last(),
            Some("note: this host created service web at the same time as peer h1")
        );
    }

    #[test]
    fn the_table_aligns_and_counts_healthy_tasks() {
        let task = |healthy| ServiceTask {
            addr: "10.32.0.9".into(),
            host: "h1".into(),
            container: "c1".into(),
            healthy,
        };
        let list = vec![
            ServiceInfo {
                name: "whoami".into(),
                mode: "vip".into(),
                vip: Some("10.32.0.2".into()),
                subnet: "10.32.0.0/12".into(),
                ports: vec!["80/tcp".into()],
                published: vec!["8000:80/tcp".into()],
                tasks: vec![task(true), task(false), task(true)],
                ..Default::default()
            },
            ServiceInfo {
                name: "db".into(),
                mode: "dnsrr".into(),
                subnet: "10.32.0.0/12".into(),
                ..Default::default()
            },
        ];
        let t = render_table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    MODE   VIP        PORTS   PUBLISHED    TASKS"
        );
        assert_eq!(
            lines[1],
            "whoami  vip    10.32.0.2  80/tcp  8000:80/tcp  2/3"
        );
        assert_eq!(
            lines[2],
            "db      dnsrr  -          -       -            0/0"
        );
    }

    #[test]
    fn bad_forms_fail_before_the_router_is_asked() {
        let args = |port: &str| ServiceCreateArgs {
            name: "web".into(),
            ports: vec![port.into()],
            publish: Vec::new(),
            endpoint_mode: None,
            subnet: None,
            health: None,
            health_interval: None,
        };
        assert!(request(args("80")).is_ok());
        let e = request(args("0")).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        assert!(path_of("we/b").is_err());
        assert_eq!(path_of("web").unwrap(), "/services/web");
    }
}
