//! DNS answers of the XDP program through `BPF_PROG_TEST_RUN`: generated queries (names with
//! and without rules, in any case; A, AAAA and other types; with and without EDNS, DO, options,
//! other versions; odd flags; IPv4 and IPv6, VLAN-tagged or not; other addresses and ports)
//! against the DNS server's own answer to the same bytes. An XDP_TX answer must be that answer
//! byte for byte with correct checksums; every query the server answers locally with records
//! must be answered; everything else passes unchanged. Needs root.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mep_dns::{DnsAnswerer, DnsConfig, DnsServer, Transport, Upstream};
use mep_ebpf::{TestProgram, XdpConfig, XdpDataPlane, XdpDnsConfig};
use mep_ebpf_testkit::*;
use mep_rules::{DataPlane, DnsRule, Snapshot, SnapshotPublisher};
use tokio_util::sync::CancellationToken;

const XDP_TX: u32 = 3;
const PORT: u16 = 5353;
const SERVICE_V4: &str = "10.53.0.1";
const SERVICE_V6: &str = "fd53::1";
const CLIENT_V4: &str = "10.53.0.2";
const CLIENT_V6: &str = "fd53::2";
const UDP_PAYLOAD: u16 = 1232;
const DEFAULT_TTL: u32 = 300;

fn dns_rule(id: &str, name: &str, ip: &str, ttl: Option<u32>) -> DnsRule {
    DnsRule::active(id, name, ip.parse().expect("an IP address"), ttl)
}

/// The rules of the generated queries: one or two families, several records, default TTLs,
/// so many records that a classic 512-byte answer cannot hold them, a name no rule can make
/// the server answer locally.
fn rules() -> Vec<DnsRule> {
    let mut r = vec![
        dns_rule("a", "edge.example.org", "192.0.2.10", Some(30)),
        dns_rule("b", "edge.example.org", "2001:db8::10", None),
        dns_rule("c", "v6only.example.org", "2001:db8::11", Some(5)),
        dns_rule("d", "two.mec", "198.51.100.1", Some(0)),
        dns_rule("e", "two.mec", "198.51.100.2", None),
        dns_rule("f", "x.y.z.odd-length.example", "203.0.113.7", Some(60)),
        dns_rule("g", "_srv.example.org", "192.0.2.99", None),
        dns_rule("h", SHORT_MAX, "192.0.2.32", Some(32)),
        dns_rule("i", SHORT_MAX_PLUS_1, "2001:db8::33", Some(33)),
    ];
    for i in 0..27 {
        r.push(dns_rule(
            &format!("l{i}"),
            LONG,
            &format!("198.18.0.{i}"),
            None,
        ));
    }
    for i in 0..40 {
        r.push(dns_rule(
            &format!("m{i}"),
            "many.example.org",
            &format!("192.0.2.{}", 100 + i),
            Some(10),
        ));
    }
    r
}

/// 27 records (432 bytes, which the kernel holds) under a long name: too big for a classic
/// 512-byte answer, so only queries with a larger EDNS size get them from the kernel.
const LONG: &str =
    "a-rather-long-label-to-make-the-answer-big.and-another-long-label-too.example.org";

/// The longest name the short-name map holds (32 wire bytes), and one byte longer.
const SHORT_MAX: &str = "ssssssssssssssssssssss.example";
const SHORT_MAX_PLUS_1: &str = "lllllllllllllllllllllll.example";

const NAMES: [&str; 11] = [
    LONG,
    SHORT_MAX,
    SHORT_MAX_PLUS_1,
    "edge.example.org",
    "v6only.example.org",
    "two.mec",
    "x.y.z.odd-length.example",
    "many.example.org",
    "_srv.example.org",
    "nothing.example.org",
    "example.org",
];

/// A data plane answering DNS for the service addresses, and the DNS server it must agree
/// with, both following `publisher`.
struct Rig {
    plane: XdpDataPlane,
    answerer: DnsAnswerer,
    publisher: SnapshotPublisher,
    rt: tokio::runtime::Runtime,
    _shutdown: CancellationToken,
}

fn rig() -> Rig {
    require_root();
    let rt = rt();
    let publisher = SnapshotPublisher::new();
    let shutdown = CancellationToken::new();
    let config = DnsConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        // Nothing listens there: forwarded queries are not what these tests compare.
        upstreams: vec![Upstream::from(SocketAddr::from(([127, 0, 0, 1], 9)))],
        upstream_timeout: Duration::from_millis(50),
        default_ttl: DEFAULT_TTL,
        udp_payload: UDP_PAYLOAD,
        ..DnsConfig::default()
    };
    let handle = rt
        .block_on(DnsServer::start(
            config,
            publisher.reader(),
            shutdown.clone(),
        ))
        .expect("start the DNS server");
    let pin_path = format!("/sys/fs/bpf/{}", unique("mepd"));
    let plane = XdpDataPlane::new(XdpConfig {
        pin_path: pin_path.into(),
        dns: Some(XdpDnsConfig {
            port: PORT,
            addresses: vec![
                SERVICE_V4.parse().expect("address"),
                SERVICE_V6.parse().expect("address"),
            ],
            udp_payload: UDP_PAYLOAD,
            default_ttl: DEFAULT_TTL,
        }),
        ..XdpConfig::default()
    })
    .expect("load the XDP data plane");
    Rig {
        plane,
        answerer: handle.answerer(),
        publisher,
        rt,
        _shutdown: shutdown,
    }
}

impl Rig {
    fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.publisher.publish(Arc::clone(&snapshot));
        self.plane.snapshot_published(&snapshot);
    }

    fn reference(&self, dns: &[u8]) -> Option<Vec<u8>> {
        self.rt.block_on(self.answerer.answer(
            dns,
            Transport::Udp,
            CLIENT_V4.parse().expect("an address"),
        ))
    }

    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let out = self
            .plane
            .test_run(TestProgram::Steer, frame, 1)
            .expect("test run");
        (out.verdict, out.data)
    }
}

/// A small deterministic generator (the cases must be the same on every run).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a generated query asks and how.
#[derive(Debug)]
struct Case {
    name: String,
    qtype: u16,
    qclass: u16,
    flags: u16,
    /// (payload size, DO, version, options)
    edns: Option<(u16, bool, u8, Vec<u8>)>,
    v6: bool,
    vlan: Option<u16>,
    to_service: bool,
    port: u16,
}

impl Case {
    /// A plain query: type A, class IN, RD, no EDNS, over IPv4 to the service.
    fn a(name: &str) -> Self {
        Case {
            name: name.into(),
            qtype: 1,
            qclass: 1,
            flags: 0x0100,
            edns: None,
            v6: false,
            vlan: None,
            to_service: true,
            port: PORT,
        }
    }
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn query(case: &Case, id: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&case.flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(case.edns.is_some())]);
    m.extend_from_slice(&wire_name(&case.name));
    m.extend_from_slice(&case.qtype.to_be_bytes());
    m.extend_from_slice(&case.qclass.to_be_bytes());
    if let Some((payload, dnssec_ok, version, options)) = &case.edns {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, *version, if *dnssec_ok { 0x80 } else { 0 }, 0]);
        m.extend_from_slice(&(options.len() as u16).to_be_bytes());
        m.extend_from_slice(options);
    }
    m
}

fn frame(case: &Case, dns: &[u8]) -> Vec<u8> {
    let (client, service, other) = if case.v6 {
        (CLIENT_V6, SERVICE_V6, "fd53::99")
    } else {
        (CLIENT_V4, SERVICE_V4, "10.53.0.99")
    };
    let dst = if case.to_service { service } else { other };
    eth(&ip(client, dst, 0, &udp(40000, case.port, dns)), case.vlan)
}

fn random_case(g: &mut Gen) -> Case {
    let base = NAMES[g.below(NAMES.len() as u64) as usize];
    let name: String = base
        .chars()
        .map(|c| {
            if g.chance(30) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let qtype = match g.below(10) {
        0..=3 => 1,
        4..=7 => 28,
        8 => 15,
        _ => 255,
    };
    let mut flags: u16 = 0;
    if g.chance(70) {
        flags |= 0x0100; // RD
    }
    if g.chance(20) {
        flags |= 0x0010; // CD
    }
    if g.chance(20) {
        flags |= 0x0020; // AD
    }
    if g.chance(5) {
        flags |= 4 << 11; // NOTIFY
    }
    if g.chance(3) {
        flags |= 0x8000; // a response
    }
    let edns = g.chance(60).then(|| {
        let payload = [0u16, 512, 1232, 4096, 600][g.below(5) as usize];
        let version = if g.chance(5) { 1 } else { 0 };
        let options = if g.chance(40) {
            // A client cookie (RFC 7873), as dig sends.
            vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]
        } else {
            Vec::new()
        };
        (payload, g.chance(50), version, options)
    });
    Case {
        name,
        qtype,
        qclass: if g.chance(3) { 3 } else { 1 },
        flags,
        edns,
        v6: g.chance(40),
        vlan: g.chance(25).then_some(42),
        to_service: !g.chance(5),
        port: if g.chance(5) { 53 } else { PORT },
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn folds_to_ffff(mut s: u32) -> bool {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Checks the frame around an XDP_TX answer (turned around, lengths and checksums right) and
/// returns its DNS message.
fn unwrap_answer(query: &[u8], answer: &[u8]) -> Vec<u8> {
    assert_eq!(&answer[0..6], &query[6..12], "destination MAC");
    assert_eq!(&answer[6..12], &query[0..6], "source MAC");
    let mut l3 = 14;
    if be16(answer, 12) == 0x8100 {
        assert_eq!(&answer[12..16], &query[12..16], "VLAN tag");
        l3 = 18;
    }
    let ip = &answer[l3..];
    let qip = &query[l3..];
    let (udp_at, pseudo) = if ip[0] >> 4 == 6 {
        assert_eq!(&ip[8..24], &qip[24..40]);
        assert_eq!(&ip[24..40], &qip[8..24]);
        assert_eq!(ip[6], 17);
        let len = be16(ip, 4);
        assert_eq!(usize::from(len) + 40, ip.len(), "IPv6 payload length");
        let mut p = sum(&ip[8..40]);
        p += u32::from(len) + 17;
        (40, p)
    } else {
        assert_eq!(ip[0], 0x45);
        assert_eq!(&ip[12..16], &qip[16..20]);
        assert_eq!(&ip[16..20], &qip[12..16]);
        assert_eq!(usize::from(be16(ip, 2)), ip.len(), "IPv4 total length");
        assert!(folds_to_ffff(sum(&ip[..20])), "IPv4 header checksum");
        let udp_len = be16(ip, 2) - 20;
        (20, sum(&ip[12..20]) + u32::from(udp_len) + 17)
    };
    let udp = &ip[udp_at..];
    let qudp = &qip[udp_at..];
    assert_eq!(be16(udp, 0), be16(qudp, 2), "source port");
    assert_eq!(be16(udp, 2), be16(qudp, 0), "destination port");
    assert_eq!(usize::from(be16(udp, 4)), udp.len(), "UDP length");
    assert_ne!(be16(udp, 6), 0, "UDP checksum present");
    assert!(folds_to_ffff(pseudo + sum(udp)), "UDP checksum");
    udp[8..].to_vec()
}

/// Whether the server's answer is one the kernel must give: a local NOERROR answer with records
/// (AA set, TC clear) to an A or AAAA question of class IN, whose records the kernel holds.
fn kernel_must_answer(case: &Case, reference: Option<&[u8]>) -> bool {
    let Some(r) = reference else {
        return false;
    };
    let flags = be16(r, 2);
    case.to_service
        && case.port == PORT
        && (case.qtype == 1 || case.qtype == 28)
        && case.qclass == 1
        && flags & 0x0400 != 0
        && flags & 0x0200 == 0
        && flags & 0x000f == 0
        && be16(r, 6) > 0
        && r.len()
            - 12
            - (wire_name(&case.name).len() + 4)
            - if case.edns.is_some() { 11 } else { 0 }
            <= mep_ebpf_common::DNS_RECORDS_MAX
}

fn check_cases(rig: &Rig, seed: u64, n: usize) -> (usize, usize) {
    let mut g = Gen(seed);
    let (mut answered, mut passed) = (0, 0);
    for i in 0..n {
        let case = random_case(&mut g);
        let dns = query(&case, i as u16);
        let input = frame(&case, &dns);
        let reference = rig.reference(&dns);
        let (verdict, out) = rig.run(&input);
        if verdict == XDP_TX {
            let got = unwrap_answer(&input, &out);
            assert_eq!(
                Some(&got),
                reference.as_ref(),
                "kernel and server answers differ for {case:?}"
            );
            answered += 1;
        } else {
            assert_eq!(verdict, XDP_PASS, "{case:?}");
            assert_eq!(out, input, "a passed query is left as it was: {case:?}");
            passed += 1;
        }
        assert_eq!(
            verdict == XDP_TX,
            kernel_must_answer(&case, reference.as_deref()),
            "{case:?}: server said {reference:?}"
        );
    }
    (answered, passed)
}

#[test]
fn kernel_answers_are_the_servers_answers() {
    let rig = rig();
    let rules = rules();
    rig.publish(Snapshot::build(1, [], rules.iter().map(|r| ("app", r))));
    let (answered, passed) = check_cases(&rig, 0x5eed_1234_abcd_0001, 3000);
    assert!(answered > 400, "answered {answered}");
    assert!(passed > 800, "passed {passed}");
    let counters = rig.plane.dns_counters();
    assert_eq!(counters.answered, answered as u64);
    // Passed queries for the service are counted; those for other addresses or ports are not.
    assert!(counters.passed > 0 && counters.passed < passed as u64);
}

#[test]
fn rule_changes_reach_the_next_query() {
    let rig = rig();
    let ask = |name: &str| {
        let case = Case::a(name);
        let input = frame(&case, &query(&case, 7));
        let (verdict, out) = rig.run(&input);
        (verdict == XDP_TX).then(|| unwrap_answer(&input, &out))
    };
    let first = [dns_rule("a", "moving.mec", "192.0.2.1", Some(30))];
    let v1 = Snapshot::build(1, [], first.iter().map(|r| ("app", r)));
    rig.publish(v1.clone());
    let one = ask("moving.mec").expect("answered");
    assert_eq!(&one[one.len() - 4..], &[192, 0, 2, 1]);

    let moved = [dns_rule("a", "moving.mec", "192.0.2.2", Some(30))];
    let v2 = v1.with_app_rules(2, "app", None, [], &moved);
    assert_eq!(v2.dns_changes_since(1).map(<[_]>::len), Some(1), "derived");
    rig.publish(v2.clone());
    let two = ask("moving.mec").expect("answered");
    assert_eq!(&two[two.len() - 4..], &[192, 0, 2, 2]);

    let v3 = v2.with_app_rules(3, "app", None, [], []);
    rig.publish(v3);
    assert_eq!(
        ask("moving.mec"),
        None,
        "a removed rule is left to userspace"
    );

    // A snapshot not derived from the one held is compared name by name.
    let other = [dns_rule("z", "other.mec", "192.0.2.3", None)];
    rig.publish(Snapshot::build(10, [], other.iter().map(|r| ("b", r))));
    assert!(ask("other.mec").is_some());
    assert_eq!(ask("moving.mec"), None);
}

#[test]
fn other_packets_pass_unchanged() {
    let rig = rig();
    let rules = rules();
    rig.publish(Snapshot::build(1, [], rules.iter().map(|r| ("app", r))));
    let case = Case {
        flags: 0,
        ..Case::a("edge.example.org")
    };
    let dns = query(&case, 1);
    // TCP to the DNS port, a fragment, a truncated datagram, trailing Ethernet padding.
    let tcp_frame = eth(&ip(CLIENT_V4, SERVICE_V4, 0, &tcp(40000, PORT)), None);
    let mut fragment = frame(&case, &dns);
    fragment[14 + 6] = 0x20; // MF
    let mut short = frame(&case, &dns);
    short.truncate(short.len() - 3);
    for input in [tcp_frame, fragment, short] {
        let (verdict, out) = rig.run(&input);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, input);
    }
    let mut padded = frame(&case, &dns);
    padded.extend_from_slice(&[0; 20]);
    let (verdict, out) = rig.run(&padded);
    assert_eq!(
        verdict, XDP_TX,
        "padding after the datagram is not part of it"
    );
    let got = unwrap_answer(&padded, &out);
    assert_eq!(Some(got), rig.reference(&dns));
}

/// Questions that are not a rule's name in any case, though their bytes are close to one: the
/// datagram ends inside the name (right after a full query for it, whose bytes the program's
/// scratch buffer still holds), a zero, an underscore, a compression pointer, or a byte with
/// its top bit set in place of any byte of the name. None is answered or changed.
#[test]
fn near_miss_questions_pass_unchanged() {
    let rig = rig();
    let rules = rules();
    rig.publish(Snapshot::build(1, [], rules.iter().map(|r| ("app", r))));
    let mut tried = 0;
    for name in [
        "edge.example.org",
        "two.mec",
        "x.y.z.odd-length.example",
        SHORT_MAX,
    ] {
        let case = Case::a(name);
        let dns = query(&case, 7);
        let full = frame(&case, &dns);
        let name_len = wire_name(name).len();
        let mut variants: Vec<Vec<u8>> =
            (1..name_len).map(|cut| dns[..12 + cut].to_vec()).collect();
        for at in 12..12 + name_len - 1 {
            for byte in [0u8, b'_', 0xc0, 0xe1, b'A' | 0x80] {
                if dns[at] != byte {
                    let mut d = dns.clone();
                    d[at] = byte;
                    variants.push(d);
                }
            }
        }
        for variant in variants {
            assert_eq!(rig.run(&full).0, XDP_TX, "{name} itself is answered");
            let input = frame(&case, &variant);
            let (verdict, out) = rig.run(&input);
            assert_eq!(verdict, XDP_PASS, "{name}: {variant:02x?}");
            assert_eq!(out, input, "{name}: {variant:02x?}");
            tried += 1;
        }
    }
    assert!(tried > 250, "{tried}");
}

#[test]
fn answering_is_off_without_dns_config_and_before_the_first_snapshot() {
    let rig = rig();
    let case = Case {
        flags: 0,
        v6: true,
        ..Case::a("edge.example.org")
    };
    let input = frame(&case, &query(&case, 1));
    assert_eq!(rig.run(&input).0, XDP_PASS, "no snapshot followed yet");
    let plain = plane();
    let rules = rules();
    let snapshot = Snapshot::build(1, [], rules.iter().map(|r| ("app", r)));
    plain.snapshot_published(&snapshot);
    let out = plain
        .test_run(TestProgram::Steer, &input, 1)
        .expect("test run");
    assert_eq!(out.verdict, XDP_PASS, "--dns-xdp off");
    assert_eq!(plain.dns_answers(), None);
}
