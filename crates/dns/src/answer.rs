//! Answering one DNS query from the record store, or deciding to forward it.
//!
//! Names in the store are answered here (A, round-robin; other types empty), as are
//! PTR queries for known addresses. Unknown names in the domain get NXDOMAIN, unknown
//! addresses in the overlay ranges too. Everything else goes upstream.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::{IpNet, Ipv4Net};

use crate::records::normalize_name;
use crate::services::read_names;
use crate::{read_records, DnsError, SharedRecords, SharedServiceNames};

/// Largest UDP answer we send when the client announces a bigger EDNS buffer.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP answer limit without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;

/// How the query arrived (decides the size limit of the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers are cut to 512 bytes or the client's EDNS size, with TC set.
    Udp,
    /// TCP: answers up to 64 KiB.
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: forward the query upstream.
    Forward,
    /// Not a query at all (or unreadable): send nothing.
    Drop,
}

/// Settings for local answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerConfig {
    /// Domain answered authoritatively (`--dns-domain`), e.g. `weft.local.`.
    pub domain: String,
    /// TTL of local answers, seconds (default 1).
    pub ttl: u32,
    /// Address ranges whose reverse names we own: unknown addresses there get NXDOMAIN.
    pub reverse_ranges: Vec<Ipv4Net>,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            domain: crate::DEFAULT_DOMAIN.to_string(),
            ttl: crate::DEFAULT_TTL,
            reverse_ranges: vec![Ipv4Net::new(Ipv4Addr::new(10, 32, 0, 0), 12).unwrap_or_default()],
        }
    }
}

/// Answers queries from a shared record store.
#[derive(Debug)]
pub struct Answerer {
    records: SharedRecords,
    /// Service names, consulted before the container records.
    services: SharedServiceNames,
    domain: Name,
    domain_text: String,
    ttl: u32,
    reverse_ranges: Vec<Ipv4Net>,
    soa: Record,
    rotation: AtomicUsize,
}

impl Answerer {
    /// An answerer for `config.domain` over `records`.
    pub fn new(records: SharedRecords, config: AnswerConfig) -> Result<Self, DnsError> {
        let domain_text = normalize_name(&config.domain)?;
        let bad = |e: hickory_proto::ProtoError| DnsError::BadName {
            name: config.domain.clone(),
            why: e.to_string(),
        };
        let domain = Name::from_ascii(&domain_text).map_err(bad)?;
        let soa = SOA::new(
            Name::from_ascii("ns")
                .and_then(|n| n.append_domain(&domain))
                .map_err(bad)?,
            Name::from_ascii("hostmaster")
                .and_then(|n| n.append_domain(&domain))
                .map_err(bad)?,
            1,
            3600,
            600,
            86400,
            config.ttl,
        );
        Ok(Answerer {
            records,
            services: SharedServiceNames::default(),
            soa: Record::from_rdata(domain.clone(), config.ttl, RData::SOA(soa)),
            domain,
            domain_text,
            ttl: config.ttl,
            reverse_ranges: config.reverse_ranges,
            rotation: AtomicUsize::new(0),
        })
    }

    /// The store answers come from.
    pub fn records(&self) -> &SharedRecords {
        &self.records
    }

    /// The table of service names this answerer consults (the router writes it).
    pub fn service_names(&self) -> &SharedServiceNames {
        &self.services
    }

    /// Addresses of `fqdn` (lowercase, final dot): a service's name first, else the records.
    fn addrs_of(&self, fqdn: &str) -> Vec<Ipv4Addr> {
        if let Some(a) = read_names(&self.services).lookup(fqdn) {
            return a.to_vec();
        }
        read_records(&self.records).lookup(fqdn)
    }

    /// The domain answered here, lowercase with the final dot.
    pub fn domain(&self) -> &str {
        &self.domain_text
    }

    /// TTL of local answers.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Addresses for `name` as `weft dns-lookup` shows them: as given, else under the domain.
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        let Ok(fqdn) = normalize_name(name) else {
            return Vec::new();
        };
        let found = self.addrs_of(&fqdn);
        if !found.is_empty() || name.trim().ends_with('.') {
            return found;
        }
        self.addrs_of(&format!("{fqdn}{}", self.domain_text))
    }

    /// Answers a query given as wire bytes, or says to forward or drop it.
    pub fn answer(&self, query: &[u8], transport: Transport) -> Outcome {
        let req = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => return error_reply(query, ResponseCode::FormErr),
        };
        if req.message_type != MessageType::Query {
            return Outcome::Drop;
        }
        if req.op_code != OpCode::Query {
            return self.finish(&req, reply_to(&req, ResponseCode::NotImp), transport);
        }
        let [q] = req.queries.as_slice() else {
            return self.finish(&req, reply_to(&req, ResponseCode::FormErr), transport);
        };
        if q.query_class() != DNSClass::IN {
            return Outcome::Forward;
        }
        let qname = q.name().to_lowercase();
        let key = qname.to_ascii();
        let in_domain = self.domain.zone_of(&qname);

        if q.query_type() == RecordType::PTR {
            return self.answer_ptr(&req, q, &qname, transport);
        }
        let addrs = self.addrs_of(&key);
        let mut resp = reply_to(&req, ResponseCode::NoError);
        resp.metadata.authoritative = true;
        if !addrs.is_empty() {
            if matches!(q.query_type(), RecordType::A | RecordType::ANY) {
                let n = addrs.len();
                let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
                for i in 0..n {
                    let addr = addrs[(start + i) % n];
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        self.ttl,
                        RData::A(A(addr)),
                    ));
                }
            } else if in_domain {
                resp.add_authority(self.soa.clone());
            }
            return self.finish(&req, resp, transport);
        }
        // A service without tasks in rotation is still ours: an empty answer, not upstream.
        if read_names(&self.services).lookup(&key).is_some() {
            return self.finish(&req, resp, transport);
        }
        if !in_domain {
            return Outcome::Forward;
        }
        if qname == self.domain.to_lowercase() {
            if q.query_type() == RecordType::SOA {
                resp.add_answer(self.soa.clone());
            } else {
                resp.add_authority(self.soa.clone());
            }
            return self.finish(&req, resp, transport);
        }
        resp.metadata.response_code = ResponseCode::NXDomain;
        resp.add_authority(self.soa.clone());
        self.finish(&req, resp, transport)
    }

    fn answer_ptr(&self, req: &Message, q: &Query, qname: &Name, transport: Transport) -> Outcome {
        let addr = match qname.parse_arpa_name() {
            Ok(IpNet::V4(net)) if net.prefix_len() == 32 => net.addr(),
            _ => return Outcome::Forward,
        };
        let mut names = read_records(&self.records).reverse(addr);
        if let Some(service) = read_names(&self.services).reverse.get(&addr) {
            names.insert(0, service.clone());
        }
        let mut resp = reply_to(req, ResponseCode::NoError);
        resp.metadata.authoritative = true;
        if names.is_empty() {
            if !self.reverse_ranges.iter().any(|r| r.contains(&addr)) {
                return Outcome::Forward;
            }
            resp.metadata.response_code = ResponseCode::NXDomain;
            return self.finish(req, resp, transport);
        }
        for n in names {
            if let Ok(target) = Name::from_ascii(&n) {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    self.ttl,
                    RData::PTR(PTR(target)),
                ));
            }
        }
        self.finish(req, resp, transport)
    }

    /// Encodes `resp`, cutting answers to the client's size limit over UDP (TC set).
    fn finish(&self, req: &Message, mut resp: Message, transport: Transport) -> Outcome {
        let limit = match (transport, &req.edns) {
            (Transport::Tcp, _) => u16::MAX as usize,
            (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
            (Transport::Udp, Some(e)) => {
                e.max_payload()
                    .clamp(PLAIN_UDP_PAYLOAD as u16, MAX_UDP_PAYLOAD) as usize
            }
        };
        loop {
            match resp.to_vec() {
                Ok(bytes) if bytes.len() <= limit => return Outcome::Reply(bytes),
                Ok(_) => {
                    resp.metadata.truncation = true;
                    if resp.additionals.pop().is_none()
                        && resp.authorities.pop().is_none()
                        && resp.answers.pop().is_none()
                    {
                        return Outcome::Drop;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode a DNS answer");
                    return match reply_to(req, ResponseCode::ServFail).to_vec() {
                        Ok(b) => Outcome::Reply(b),
                        Err(_) => Outcome::Drop,
                    };
                }
            }
        }
    }
}

/// A reply to `req` with its id, question, flags and EDNS echoed.
fn reply_to(req: &Message, code: ResponseCode) -> Message {
    let mut resp = Message::response(req.id, req.op_code);
    resp.metadata.recursion_desired = req.recursion_desired;
    resp.metadata.checking_disabled = req.checking_disabled;
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = code;
    resp.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        resp.set_edns(edns);
    }
    resp
}

/// An error reply built from the header of an unparsable query, when there is one.
fn error_reply(query: &[u8], code: ResponseCode) -> Outcome {
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
        return Outcome::Drop;
    };
    if header.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let mut resp = Message::response(header.id, header.op_code);
    resp.metadata.response_code = code;
    resp.metadata.recursion_desired = header.recursion_desired;
    match resp.to_vec() {
        Ok(b) => Outcome::Reply(b),
        Err(_) => Outcome::Drop,
    }
}

/// SERVFAIL for `query` (used when forwarding fails), if it can be read.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match Message::from_vec(query) {
        Ok(req) => reply_to(&req, ResponseCode::ServFail).to_vec().ok(),
        Err(_) => match error_reply(query, ResponseCode::ServFail) {
            Outcome::Reply(b) => Some(b),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Entry, EntryKey, EntryState, Records};
    use std::sync::{Arc, RwLock};

    fn store(entries: &[(&str, [u8; 4])]) -> SharedRecords {
        let mut r = Records::new(60_000);
        for (i, (name, a)) in entries.iter().enumerate() {
            let key = EntryKey::new("p1", &format!("c{i}"), name, Ipv4Addr::from(*a)).unwrap();
            r.merge(
                Entry {
                    key,
                    state: EntryState {
                        version: 1,
                        tombstone: false,
                    },
                },
                0,
            );
        }
        Arc::new(RwLock::new(r))
    }

    fn answerer(entries: &[(&str, [u8; 4])]) -> Answerer {
        Answerer::new(store(entries), AnswerConfig::default()).unwrap()
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn ask(a: &Answerer, name: &str, t: RecordType) -> Message {
        match a.answer(&query(name, t), Transport::Udp) {
            Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{name} {t}: expected a reply, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for r in &m.answers {
            if let RData::A(a) = &r.data {
                out.push(a.0);
            }
        }
        out
    }

    #[test]
    fn a_query_for_a_container_name_is_answered_with_ttl_and_id() {
        let a = answerer(&[("web.weft.local", [10, 32, 0, 5])]);
        let q = query("WEB.Weft.Local.", RecordType::A);
        let id = Message::from_vec(&q).unwrap().id;
        let Outcome::Reply(b) = a.answer(&q, Transport::Udp) else {
            panic!("no reply")
        };
        let m = Message::from_vec(&b).unwrap();
        assert_eq!(m.id, id);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative && m.recursion_available && m.recursion_desired);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 32, 0, 5)]);
        assert_eq!(m.answers[0].ttl, 1);
        // The name is echoed as the client wrote it.
        assert_eq!(m.answers[0].name.to_ascii(), "WEB.Weft.Local.");
    }

    #[test]
    fn service_names_are_answered_before_records_also_outside_the_domain() {
        let a = answerer(&[("web.weft.local", [10, 32, 0, 5])]);
        let vip = Ipv4Addr::new(10, 32, 0, 2);
        let task = [Ipv4Addr::new(10, 32, 0, 9)];
        crate::services::replace_names(
            a.service_names(),
            crate::ServiceNames::build(
                "weft.local.",
                [("web", Some(vip), &task[..]), ("idle", None, &[][..])],
            ),
        );
        assert_eq!(
            a_records(&ask(&a, "web.weft.local.", RecordType::A)),
            vec![vip]
        );
        assert_eq!(a_records(&ask(&a, "web.", RecordType::A)), vec![vip]);
        assert_eq!(
            a_records(&ask(&a, "tasks.web.", RecordType::A)),
            task.to_vec()
        );
        let none = ask(&a, "tasks.idle.", RecordType::A);
        assert_eq!(none.response_code, ResponseCode::NoError);
        assert!(none.answers.is_empty());
        let ptr = ask(&a, "2.0.32.10.in-addr.arpa.", RecordType::PTR);
        assert!(
            matches!(&ptr.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "web.weft.local.")
        );
        assert_eq!(a.lookup("tasks.web"), task.to_vec());
        assert_eq!(a.lookup("web"), vec![vip]);
    }

    #[test]
    fn shared_name_answers_rotate() {
        let a = answerer(&[
            ("db.weft.local", [10, 32, 0, 1]),
            ("db.weft.local", [10, 32, 0, 2]),
            ("db.weft.local", [10, 32, 0, 3]),
        ]);
        let firsts: Vec<Ipv4Addr> = (0..3)
            .map(|_| a_records(&ask(&a, "db.weft.local.", RecordType::A))[0])
            .collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                Ipv4Addr::new(10, 32, 0, 1),
                Ipv4Addr::new(10, 32, 0, 2),
                Ipv4Addr::new(10, 32, 0, 3)
            ]
        );
        for _ in 0..3 {
            assert_eq!(
                a_records(&ask(&a, "db.weft.local.", RecordType::A)).len(),
                3
            );
        }
    }

    #[test]
    fn aaaa_for_a_known_name_is_empty_noerror_and_unknown_is_nxdomain() {
        let a = answerer(&[("web.weft.local", [10, 32, 0, 5])]);
        let m = ask(&a, "web.weft.local.", RecordType::AAAA);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1, "SOA for negative caching");
        let m = ask(&a, "nope.weft.local.", RecordType::A);
        assert_eq!(m.response_code, ResponseCode::NXDomain);
        assert!(m.authoritative);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(m.authorities[0].ttl, 1);
        let m = ask(&a, "weft.local.", RecordType::SOA);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn ptr_for_known_addresses_nxdomain_in_range_forward_outside() {
        let a = answerer(&[
            ("web.weft.local", [10, 32, 0, 5]),
            ("www.weft.local", [10, 32, 0, 5]),
        ]);
        let m = ask(&a, "5.0.32.10.in-addr.arpa.", RecordType::PTR);
        let mut names: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["web.weft.local.".to_string(), "www.weft.local.".to_string()]
        );
        assert_eq!(
            ask(&a, "6.0.32.10.in-addr.arpa.", RecordType::PTR).response_code,
            ResponseCode::NXDomain
        );
        assert_eq!(
            a.answer(
                &query("1.1.168.192.in-addr.arpa.", RecordType::PTR),
                Transport::Udp
            ),
            Outcome::Forward
        );
    }

    #[test]
    fn other_names_are_forwarded_and_junk_is_handled() {
        let a = answerer(&[]);
        assert_eq!(
            a.answer(&query("example.com.", RecordType::A), Transport::Udp),
            Outcome::Forward
        );
        assert_eq!(
            a.answer(
                &query("weft.local.example.com.", RecordType::A),
                Transport::Udp
            ),
            Outcome::Forward
        );
        assert_eq!(a.answer(&[], Transport::Udp), Outcome::Drop);
        assert_eq!(a.answer(&[1, 2, 3], Transport::Udp), Outcome::Drop);
        // A readable header with a broken body gets FORMERR with the same id.
        let mut junk = query("x.weft.local.", RecordType::A);
        junk.truncate(15);
        let Outcome::Reply(b) = a.answer(&junk, Transport::Udp) else {
            panic!("no FORMERR")
        };
        let m = Message::from_vec(&b).unwrap();
        assert_eq!(m.response_code, ResponseCode::FormErr);
        assert_eq!(&b[..2], &junk[..2]);
        // A response is never answered (no reflection loops).
        let mut resp = Message::from_vec(&query("x.weft.local.", RecordType::A)).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(
            a.answer(&resp.to_vec().unwrap(), Transport::Udp),
            Outcome::Drop
        );
        assert!(servfail(&query("x.", RecordType::A)).is_some());
    }

    #[test]
    fn big_answers_are_truncated_over_udp_only() {
        let names: Vec<(&str, [u8; 4])> = (0..60u8)
            .map(|i| ("many.weft.local", [10, 32, 1, i]))
            .collect();
        let a = answerer(&names);
        let m = ask(&a, "many.weft.local.", RecordType::A);
        assert!(m.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 60);
        let Outcome::Reply(b) = a.answer(&query("many.weft.local.", RecordType::A), Transport::Tcp)
        else {
            panic!()
        };
        let m = Message::from_vec(&b).unwrap();
        assert!(!m.truncation);
        assert_eq!(m.answers.len(), 60);
    }

    #[test]
    fn lookup_tries_the_domain_for_short_names() {
        let a = answerer(&[("web.weft.local", [10, 32, 0, 5])]);
        assert_eq!(a.lookup("web"), vec![Ipv4Addr::new(10, 32, 0, 5)]);
        assert_eq!(
            a.lookup("Web.weft.local"),
            vec![Ipv4Addr::new(10, 32, 0, 5)]
        );
        assert!(a.lookup("web.").is_empty());
        assert!(a.lookup("..").is_empty());
    }
}
