//! Names of services (`weft service create`), answered beside the container records: the
//! router keeps this table equal to the services core's plan, the answerer reads it.
//!
//! For a service `NAME` in domain `D` the router sets `NAME.` and `NAME.D` (its VIP, or in
//! `dnsrr` mode its tasks), `tasks.NAME.` and `tasks.NAME.D` (the tasks in rotation), and the
//! VIP's reverse name `NAME.D`. Names are stored lowercase with the final dot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// The table of service names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNames {
    /// Name → addresses (in the order answered, rotated by the answerer).
    pub forward: BTreeMap<String, Vec<Ipv4Addr>>,
    /// VIP → the service's name.
    pub reverse: BTreeMap<Ipv4Addr, String>,
}

/// The table shared by its one writer (the router's services task) and the answerer.
pub type SharedServiceNames = Arc<RwLock<ServiceNames>>;

impl ServiceNames {
    /// The table for `services` as (name, VIP, task addresses in rotation), in `domain`
    /// (`weft.local.`).
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = (&'a str, Option<Ipv4Addr>, &'a [Ipv4Addr])>,
    ) -> ServiceNames {
        let mut t = ServiceNames::default();
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        for (name, vip, tasks) in services {
            let name = name.to_ascii_lowercase();
            let short = format!("{name}.");
            let long = format!("{name}.{domain}.");
            let answer = match vip {
                Some(v) => vec![v],
                None => tasks.to_vec(),
            };
            t.forward.insert(format!("tasks.{short}"), tasks.to_vec());
            t.forward.insert(format!("tasks.{long}"), tasks.to_vec());
            t.forward.insert(short, answer.clone());
            if let Some(v) = vip {
                t.reverse.insert(v, long.clone());
            }
            t.forward.insert(long, answer);
        }
        t
    }

    /// Addresses of `fqdn` (lowercase, final dot); `None` when it is no service's name.
    pub fn lookup(&self, fqdn: &str) -> Option<&[Ipv4Addr]> {
        self.forward.get(fqdn).map(|v| v.as_slice())
    }
}

/// Reads the shared table, tolerating a poisoned lock.
pub fn read_names(t: &SharedServiceNames) -> std::sync::RwLockReadGuard<'_, ServiceNames> {
    t.read().unwrap_or_else(|e| e.into_inner())
}

/// Replaces the shared table.
pub fn replace_names(t: &SharedServiceNames, names: ServiceNames) {
    *t.write().unwrap_or_else(|e| e.into_inner()) = names;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_has_its_short_long_and_tasks_names() {
        let tasks = [Ipv4Addr::new(10, 32, 0, 7), Ipv4Addr::new(10, 32, 0, 8)];
        let vip = Ipv4Addr::new(10, 32, 0, 2);
        let t = ServiceNames::build(
            "weft.local.",
            [("Web", Some(vip), &tasks[..]), ("db", None, &tasks[..1])],
        );
        assert_eq!(t.lookup("web."), Some(&[vip][..]));
        assert_eq!(t.lookup("web.weft.local."), Some(&[vip][..]));
        assert_eq!(t.lookup("tasks.web."), Some(&tasks[..]));
        assert_eq!(t.lookup("tasks.web.weft.local."), Some(&tasks[..]));
        assert_eq!(t.lookup("db.weft.local."), Some(&tasks[..1]));
        assert_eq!(
            t.reverse.get(&vip).map(String::as_str),
            Some("web.weft.local.")
        );
        assert_eq!(t.reverse.len(), 1);
        assert_eq!(t.lookup("other."), None);
    }
}
