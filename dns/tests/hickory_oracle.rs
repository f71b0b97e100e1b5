//! Local answers against an independent authoritative server: hickory-server's `Catalog` of
//! in-memory zones, one per rule name (mep answers as if each rule name were its own zone apex,
//! with an SOA owned by the name). Thousands of generated queries (names in random case, every
//! common type, with and without EDNS and DO) go to both over UDP and over TCP; the answers
//! must agree in everything that is not mep's own choice as a forwarder (RA, its EDNS payload
//! size), but the DO bit: RFC 3225 has it copied into the response, which mep does and
//! hickory-server without its DNSSEC features does not. ANY is not asked: RFC 8482 lets a
//! server answer it with a subset, and mep gives the addresses where hickory gives every RRset.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use mep_rules::DnsRule;
use support::*;

/// mep's TTL for a rule without one (`DnsConfig::default_ttl`).
const DEFAULT_TTL: u32 = 300;

/// A small deterministic generator, so that a failure names a case that can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The rules: names of one to three labels, some written in capitals, each with up to three
/// IPv4 and two IPv6 addresses, TTLs that differ within one name or are left to the default.
/// One rule as generated: its name, address and TTL.
struct Spec {
    name: String,
    address: IpAddr,
    ttl: Option<u32>,
}

fn generated_rules(rng: &mut Lcg) -> Vec<Spec> {
    let ttls = [None, Some(0), Some(60), Some(3600)];
    let mut rules = Vec::new();
    for n in 0..40 {
        let name = match n % 3 {
            0 => format!("svc{n}.edge.example"),
            1 => format!("Cam{n}.Site-A.Edge.Example."),
            _ => format!("v{n}.mec"),
        };
        let (v4, v6) = (1 + rng.below(3), rng.below(3));
        for i in 0..v4 {
            let ip = IpAddr::V4(Ipv4Addr::new(198, 18, n, i as u8 + 1));
            let ttl = *rng.pick(&ttls);
            rules.push(Spec {
                name: name.clone(),
                address: ip,
                ttl,
            });
        }
        for i in 0..v6 {
            let ip = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                n.into(),
                0,
                0,
                0,
                i as u16 + 1,
            ));
            let ttl = *rng.pick(&ttls);
            rules.push(Spec {
                name: name.clone(),
                address: ip,
                ttl,
            });
        }
    }
    rules
}

/// The zones hickory serves for `rules`: per name an apex SOA (MNAME the name, RNAME
/// `hostmaster.<name>`, serial the snapshot version, MINIMUM the name's shortest TTL, which is
/// also the SOA's own TTL) and its A and AAAA RRsets, each with the shortest TTL of its rules
/// (one RRset carries one TTL, RFC 2181 section 5.2).
fn zones(rules: &[Spec], serial: u32) -> Catalog {
    let mut by_name: BTreeMap<LowerName, Vec<&Spec>> = BTreeMap::new();
    for rule in rules {
        let mut fqdn = name(&rule.name);
        fqdn.set_fqdn(true);
        let name = LowerName::from(fqdn);
        by_name.entry(name).or_default().push(rule);
    }
    let mut catalog = Catalog::new();
    for (origin, rules) in by_name {
        let apex = Name::from(&origin);
        let ttl = |r: &&Spec| r.ttl.unwrap_or(DEFAULT_TTL);
        let minimum = rules.iter().map(ttl).min().unwrap_or(DEFAULT_TTL);
        let mut records = BTreeMap::new();
        let rname = Name::from_ascii("hostmaster")
            .unwrap()
            .append_domain(&apex)
            .unwrap();
        let soa = SOA::new(apex.clone(), rname, serial, 3600, 600, 86_400, minimum);
        let mut soa_set = RecordSet::with_ttl(apex.clone(), RecordType::SOA, minimum);
        soa_set.insert(
            Record::from_rdata(apex.clone(), minimum, RData::SOA(soa)),
            0,
        );
        records.insert(RrKey::new(origin.clone(), RecordType::SOA), soa_set);
        for rtype in [RecordType::A, RecordType::AAAA] {
            let of_type: Vec<&&Spec> = rules
                .iter()
                .filter(|r| (rtype == RecordType::A) == r.address.is_ipv4())
                .collect();
            let Some(set_ttl) = of_type.iter().map(|r| ttl(r)).min() else {
                continue;
            };
            let mut set = RecordSet::with_ttl(apex.clone(), rtype, set_ttl);
            for rule in of_type {
                let data = match rule.address {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                set.insert(Record::from_rdata(apex.clone(), set_ttl, data), 0);
            }
            records.insert(RrKey::new(origin.clone(), rtype), set);
        }
        let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            apex,
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .expect("a zone with an SOA");
        catalog.upsert(origin, vec![Arc::new(zone)]);
    }
    catalog
}

/// hickory-server on UDP and TCP of one loopback port.
async fn start_hickory(catalog: Catalog) -> (SocketAddr, Server<Catalog>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, std::time::Duration::from_secs(10), 65_535);
    (addr, server)
}

/// `name` with each letter's case flipped at random (the question must come back as sent).
fn random_case(rng: &mut Lcg, name: &str) -> String {
    name.chars()
        .map(|c| match rng.below(2) {
            0 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect()
}

fn generated_query(rng: &mut Lcg, id: u16, names: &[String]) -> Message {
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SOA,
        RecordType::NS,
        RecordType::MX,
        RecordType::TXT,
        RecordType::CNAME,
        RecordType::PTR,
        RecordType::SRV,
        RecordType::CAA,
        RecordType::HTTPS,
        RecordType::SVCB,
    ];
    let picked = rng.pick(names).clone();
    let qname = random_case(rng, &picked);
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = rng.below(4) != 0;
    m.metadata.checking_disabled = rng.below(8) == 0;
    m.add_query(Query::query(name(&qname), *rng.pick(&types)));
    if rng.below(2) == 0 {
        let mut edns = Edns::new();
        edns.set_max_payload(*rng.pick(&[512, 1232, 4096]));
        edns.set_dnssec_ok(rng.below(2) == 0);
        m.set_edns(edns);
    }
    m
}

/// A record as both servers must give it: owner and names in the data compared without case
/// (mep answers with the question's spelling, hickory with the zone's).
fn normalized(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {} {}",
                r.name.to_ascii().to_ascii_lowercase(),
                r.ttl,
                r.dns_class,
                r.record_type(),
                r.data.to_string().to_ascii_lowercase()
            )
        })
        .collect();
    out.sort();
    out
}

/// Everything in which the two answers must agree.
fn comparable(m: &Message) -> String {
    let h = &m.metadata;
    let edns = m.edns.as_ref().map(|e| {
        format!(
            "edns rcode_high={} options={:?}",
            e.rcode_high(),
            e.options()
        )
    });
    format!(
        "id={} qr={:?} opcode={:?} rcode={:?} aa={} tc={} rd={} cd={}\nquestion={:?}\nanswers={:#?}\nauthorities={:#?}\nadditionals={:#?}\n{:?}",
        h.id,
        h.message_type,
        h.op_code,
        h.response_code,
        h.authoritative,
        h.truncation,
        h.recursion_desired,
        h.checking_disabled,
        m.queries
            .iter()
            .map(|q| format!("{} {} {:?}", q.name().to_ascii(), q.query_type(), q.query_class()))
            .collect::<Vec<_>>(),
        normalized(&m.answers),
        normalized(&m.authorities),
        normalized(&m.additionals),
        edns,
    )
}

/// Both servers for the same generated rules, and questions about their names.
struct Pair {
    rng: Lcg,
    names: Vec<String>,
    mep: Mep,
    hickory: SocketAddr,
    _server: Server<Catalog>,
}

impl Pair {
    async fn start(seed: u64) -> Pair {
        let mut rng = Lcg(seed);
        let rules = generated_rules(&mut rng);
        let mep_rules: Vec<DnsRule> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| DnsRule::active(format!("r{i}"), &r.name, r.address, r.ttl))
            .collect();
        // `Mep::start` publishes the rules as snapshot version 1: the SOA serial.
        let mep = Mep::start(&mep_rules, vec![]).await;
        let (hickory, server) = start_hickory(zones(&rules, 1)).await;
        let names = rules.iter().map(|r| r.name.clone()).collect();
        Pair {
            rng,
            names,
            mep,
            hickory,
            _server: server,
        }
    }

    fn queries(&mut self, count: u16) -> Vec<Message> {
        (0..count)
            .map(|id| generated_query(&mut self.rng, id, &self.names))
            .collect()
    }
}

/// Fails with the first disagreement of each query type, and how many there were in all.
fn assert_agree(queries: &[Message], ours: &[Message], theirs: &[Message]) {
    let mut disagreements: BTreeMap<RecordType, String> = BTreeMap::new();
    let mut disagreeing = 0;
    for ((query, ours), theirs) in queries.iter().zip(ours).zip(theirs) {
        let dnssec_ok = |m: &Message| m.edns.as_ref().map(|e| e.flags().dnssec_ok);
        assert_eq!(
            dnssec_ok(ours),
            dnssec_ok(query),
            "mep copies DO: {query:?}"
        );
        let (ours, theirs) = (comparable(ours), comparable(theirs));
        if ours != theirs {
            disagreeing += 1;
            let qtype = query.queries[0].query_type();
            disagreements
                .entry(qtype)
                .or_insert_with(|| format!("query {query:?}\nmep:\n{ours}\nhickory:\n{theirs}"));
        }
    }
    assert_eq!((ours.len(), theirs.len()), (queries.len(), queries.len()));
    assert!(
        disagreements.is_empty(),
        "{disagreeing} of {} answers differ; the first of each query type:\n{}",
        queries.len(),
        disagreements.into_values().collect::<Vec<_>>().join("\n\n")
    );
}

async fn over_udp(server: SocketAddr, queries: &[Message]) -> Vec<Message> {
    let mut answers = Vec::new();
    for query in queries {
        let bytes = exchange_udp_raw(server, &query.to_vec().unwrap()).await;
        answers.push(Message::from_vec(&bytes).expect("a well-formed answer"));
    }
    answers
}

#[tokio::test]
async fn udp_answers_agree_with_hickory_servers_authoritative_zones() {
    let mut pair = Pair::start(0x006d_6570_5f64_6e73).await;
    let queries = pair.queries(3000);
    let ours = over_udp(pair.mep.addr(), &queries).await;
    let theirs = over_udp(pair.hickory, &queries).await;
    assert_agree(&queries, &ours, &theirs);
}

#[tokio::test]
async fn tcp_answers_agree_with_hickory_servers_authoritative_zones() {
    let mut pair = Pair::start(0x0074_6370_0000_0001).await;
    let queries = pair.queries(1000);
    let ours = tcp_pipelined(pair.mep.addr(), &queries).await;
    let theirs = tcp_pipelined(pair.hickory, &queries).await;
    assert_agree(&queries, &ours, &theirs);
}
