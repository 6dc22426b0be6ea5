//! Between the API's forms and the core's types: a create request parsed into a
//! `ServiceSpec`, a definition shown as a `ServiceInfo`, a container's addresses matched
//! to the services it joins, and the subnets the host needs an address in.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_api::services::{
    parse_dnsrr, parse_duration, parse_health, parse_port, parse_publish, HealthForm,
    DEFAULT_HEALTH_INTERVAL_MS,
};
use weft_api::{ServiceCreateRequest, ServiceInfo, ServiceTask};
use weft_mesh::Millis;
use weft_services::{
    Definition, EndpointMode, HealthCheck, HealthKind, PortSpec, Publish, ServiceError,
    ServiceSpec, ServicesCore, Task,
};

use super::ServicesError;

/// The request as the core's spec (no VIP yet); `range` bounds `--subnet`, `default` is
/// the subnet without one.
pub(super) fn parse(
    req: &ServiceCreateRequest,
    range: Ipv4Net,
    default: Ipv4Net,
) -> Result<ServiceSpec, ServicesError> {
    req.check_forms()?;
    let mut ports: Vec<PortSpec> = Vec::new();
    for p in &req.ports {
        let (proto, port) = parse_port(p)?;
        let spec = PortSpec { proto, port };
        if !ports.contains(&spec) {
            ports.push(spec);
        }
    }
    let mut published = Vec::new();
    for p in &req.publish {
        let (proto, host_port, port) = parse_publish(p)?;
        published.push(Publish {
            proto,
            host_port,
            port,
        });
    }
    let mode = match &req.endpoint_mode {
        Some(m) if parse_dnsrr(m)? => EndpointMode::Dnsrr,
        _ => EndpointMode::Vip,
    };
    let subnet = match &req.subnet {
        Some(s) => {
            let net: Ipv4Net = s
                .trim()
                .parse()
                .map_err(|_| ServicesError::BadSubnet(s.clone()))?;
            let net = net.trunc();
            if !range.contains(&net) {
                return Err(ServicesError::SubnetOutsideRange { subnet: net, range });
            }
            net
        }
        None => default,
    };
    let health = match &req.health {
        Some(h) => Some(HealthCheck {
            kind: match parse_health(h)? {
                HealthForm::Tcp => HealthKind::Tcp,
                HealthForm::Http(path) => HealthKind::Http { path },
            },
            interval_ms: match &req.health_interval {
                Some(i) => parse_duration(i)?,
                None => DEFAULT_HEALTH_INTERVAL_MS,
            },
        }),
        None => None,
    };
    Ok(ServiceSpec {
        name: req.name.trim().to_string(),
        mode,
        subnet,
        vip: None,
        ports,
        published,
        health,
    })
}

/// `80/tcp`.
fn port_text(p: &PortSpec) -> String {
    format!("{}/{}", p.port, p.proto)
}

/// A definition and its tasks as the API shows them.
pub(super) fn info(d: &Definition, tasks: Vec<Task>) -> ServiceInfo {
    let s = &d.spec;
    ServiceInfo {
        name: s.name.clone(),
        mode: match s.mode {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
        .to_string(),
        vip: s.vip.map(|v| v.to_string()),
        subnet: s.subnet.to_string(),
        ports: s.ports.iter().map(port_text).collect(),
        published: s
            .published
            .iter()
            .map(|p| format!("{}:{}/{}", p.host_port, p.port, p.proto))
            .collect(),
        health: s.health.as_ref().map(|h| {
            let what = match &h.kind {
                HealthKind::Tcp => "tcp".to_string(),
                HealthKind::Http { path } => format!("http:{path}"),
            };
            format!(
                "{what} every {}",
                weft_api::services::format_duration(h.interval_ms)
            )
        }),
        origin: d.origin.clone(),
        lost_race: None,
        tasks: tasks
            .into_iter()
            .map(|t| ServiceTask {
                addr: t.addr.to_string(),
                host: t.host,
                container: t.container,
                healthy: t.healthy,
            })
            .collect(),
    }
}

/// Adds `container`'s addresses as tasks of `services`: each service takes those of the
/// container's addresses in its subnet. All are checked before any is added.
pub(super) fn join(
    core: &mut ServicesCore,
    now: Millis,
    container: &str,
    addrs: &[Ipv4Addr],
    services: &[String],
) -> Result<(), ServicesError> {
    let mut tasks = Vec::new();
    for name in services {
        let Some(d) = core.definition(name) else {
            return Err(ServiceError::Unknown(name.clone()).into());
        };
        let subnet = d.spec.subnet;
        let mine: Vec<Ipv4Addr> = addrs
            .iter()
            .copied()
            .filter(|a| subnet.contains(a))
            .collect();
        if mine.is_empty() {
            return Err(ServicesError::NotInSubnet {
                container: container.to_string(),
                service: name.clone(),
                subnet,
            });
        }
        tasks.extend(mine.into_iter().map(|a| (name.clone(), a)));
    }
    for (name, addr) in tasks {
        core.add_task(now, &name, addr, container)?;
    }
    Ok(())
}

/// The subnets the host needs an address in (every live service's: the host reaches
/// VIPs and its tasks' health checks through it, and published ports are masqueraded
/// from it), and whether any service publishes a port.
pub(super) fn ingress(core: &ServicesCore) -> (BTreeSet<Ipv4Net>, bool) {
    let mut subnets = BTreeSet::new();
    let mut published = false;
    for d in core.definitions() {
        subnets.insert(d.spec.subnet);
        published |= !d.spec.published.is_empty();
    }
    (subnets, published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_types::Proto;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn req(name: &str) -> ServiceCreateRequest {
        ServiceCreateRequest {
            name: name.into(),
            ports: vec!["80".into(), "80/tcp".into(), "53/udp".into()],
            publish: vec!["8000:80".into()],
            health: Some("http:/health".into()),
            health_interval: Some("2s".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_request_becomes_a_spec() {
        let range = net("10.32.0.0/12");
        let s = parse(&req("whoami"), range, range).unwrap();
        assert_eq!(s.name, "whoami");
        assert_eq!(s.mode, EndpointMode::Vip);
        assert_eq!(s.subnet, range);
        assert_eq!(
            s.ports,
            vec![
                PortSpec {
                    proto: Proto::Tcp,
                    port: 80
                },
                PortSpec {
                    proto: Proto::Udp,
                    port: 53
                }
            ]
        );
        assert_eq!(
            s.published,
            vec![Publish {
                proto: Proto::Tcp,
                host_port: 8000,
                port: 80
            }]
        );
        assert_eq!(
            s.health,
            Some(HealthCheck {
                kind: HealthKind::Http {
                    path: "/health".into()
                },
                interval_ms: 2_000
            })
        );
    }

    fn created(core: &mut ServicesCore, name: &str, vip: [u8; 4]) -> ServiceSpec {
        let range = net("10.32.0.0/12");
        let mut spec = parse(&req(name), range, range).unwrap();
        spec.vip = Some(Ipv4Addr::from(vip));
        core.create(0, spec.clone()).unwrap();
        spec
    }

    #[test]
    fn a_taken_name_or_published_port_is_refused_before_a_vip_is_taken() {
        let mut core = ServicesCore::new("me", None, 0);
        let spec = created(&mut core, "whoami", [10, 32, 0, 2]);
        let e = core.precheck(&spec).unwrap_err();
        assert_eq!(e, ServiceError::Exists("whoami".into()));
        let other = ServiceSpec {
            name: "other".into(),
            vip: None,
            ..spec
        };
        let e = core.precheck(&other).unwrap_err().to_string();
        assert!(e.contains("8000") && e.contains("whoami"), "{e}");
    }

    #[test]
    fn a_container_joins_with_its_addresses_in_each_service_subnet() {
        let mut core = ServicesCore::new("me", None, 0);
        created(&mut core, "web", [10, 32, 0, 2]);
        let addrs = [Ipv4Addr::new(10, 32, 0, 9), Ipv4Addr::new(192, 168, 1, 1)];
        join(&mut core, 1, "c1", &addrs, &["web".into()]).unwrap();
        let tasks = core.local_tasks();
        assert_eq!(tasks.len(), 1);
        assert_eq!(
            (tasks[0].addr, tasks[0].container.as_str()),
            (addrs[0], "c1")
        );
        let e = join(&mut core, 2, "c2", &addrs[1..], &["web".into()]).unwrap_err();
        assert!(matches!(e, ServicesError::NotInSubnet { .. }), "{e}");
        let e = join(&mut core, 2, "c1", &addrs, &["web".into(), "nosuch".into()]);
        assert!(e.unwrap_err().to_string().contains("nosuch"));
        // Nothing of a refused join was added.
        assert_eq!(core.local_tasks().len(), 1);
        let (subnets, published) = ingress(&core);
        assert_eq!(
            subnets.into_iter().collect::<Vec<_>>(),
            vec![net("10.32.0.0/12")]
        );
        assert!(published);
    }

    #[test]
    fn a_subnet_outside_the_range_is_refused() {
        let range = net("10.32.0.0/12");
        let mut r = req("web");
        r.subnet = Some("10.32.5.0/24".into());
        assert_eq!(parse(&r, range, range).unwrap().subnet, net("10.32.5.0/24"));
        r.subnet = Some("192.168.0.0/24".into());
        let e = parse(&r, range, range).unwrap_err().to_string();
        assert!(e.contains("outside weft's range 10.32.0.0/12"), "{e}");
        r.subnet = Some("10.32.0.0/33".into());
        assert!(parse(&r, range, range).is_err());
        r.subnet = None;
        r.ports = vec!["0".into()];
        assert!(parse(&r, range, range).is_err());
    }
}
