//! The services' DNS names: the answerer's service-name table is rebuilt from each plan
//! (`NAME`, `NAME.DOMAIN` → the VIP or in dnsrr mode the tasks; `tasks.NAME[.DOMAIN]` →
//! the tasks in rotation; the VIP's PTR → `NAME.DOMAIN`).

use weft_dns::services::replace_names;
use weft_dns::ServiceNames;
use weft_services::{EndpointMode, Plan};

use crate::dns::DnsHandle;

/// Makes the DNS answer the plan's services (nothing when DNS is off).
pub(super) fn update(dns: &DnsHandle, plan: &Plan) {
    let (Some(table), Some(domain)) = (dns.service_names(), dns.domain()) else {
        return;
    };
    let names = ServiceNames::build(
        &domain,
        plan.services.iter().map(|s| {
            let vip = match s.mode {
                EndpointMode::Vip => s.vip,
                EndpointMode::Dnsrr => None,
            };
            (s.name.as_str(), vip, s.backends.as_slice())
        }),
    );
    replace_names(&table, names);
}
