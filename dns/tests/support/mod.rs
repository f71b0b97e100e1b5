//! What the DNS server tests share: starting mep's server on an ephemeral port with given rules,
//! a scripted upstream resolver, and a small client built on hickory-proto messages.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mep_dns::{DnsConfig, DnsHandle, DnsServer};
use mep_rules::{DnsRule, Snapshot, SnapshotPublisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single exchange in the tests; reaching it fails the test.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

pub fn rule(id: &str, name: &str, ip: &str, ttl: Option<u32>) -> DnsRule {
    DnsRule::active(id, name, ip.parse().expect("an IP address"), ttl)
}

pub fn snapshot(version: u64, rules: &[DnsRule]) -> Arc<Snapshot> {
    Arc::new(Snapshot::build(
        version,
        [],
        rules.iter().map(|r| ("app-1", r)),
    ))
}

/// mep's DNS server on 127.0.0.1 with one UDP reader, so that a panic in its task would leave
/// every later query of the test unanswered.
pub struct Mep {
    pub handle: DnsHandle,
    pub snapshots: SnapshotPublisher,
    pub shutdown: CancellationToken,
}

impl Mep {
    pub async fn start(rules: &[DnsRule], upstreams: Vec<SocketAddr>) -> Mep {
        Self::start_with(rules, upstreams, |_| {}).await
    }

    pub async fn start_with(
        rules: &[DnsRule],
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut DnsConfig),
    ) -> Mep {
        Self::start_encrypted(rules, upstreams, tweak, None).await
    }

    /// `start_with`, serving DNS over TLS and HTTPS as `encrypted` says.
    pub async fn start_encrypted(
        rules: &[DnsRule],
        upstreams: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut DnsConfig),
        encrypted: Option<mep_dns::EncryptedDns>,
    ) -> Mep {
        let snapshots = SnapshotPublisher::new();
        snapshots.publish(snapshot(1, rules));
        let mut config = DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstreams: if upstreams.is_empty() {
                vec![unused_port_addr().into()]
            } else {
                upstreams.into_iter().map(Into::into).collect()
            },
            udp_readers: 1,
            upstream_timeout: Duration::from_millis(800),
            upstream_attempt_timeout: Duration::from_millis(400),
            ..DnsConfig::default()
        };
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let handle = DnsServer::start_with(
            config,
            encrypted.as_ref(),
            snapshots.reader(),
            shutdown.clone(),
        )
        .await
        .expect("the DNS server starts");
        Mep {
            handle,
            snapshots,
            shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

impl Drop for Mep {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A loopback address where nothing listens: the discard port, privileged and never bound by
/// the tests, so no concurrently running test can pick it up the way it could a released port.
pub fn unused_port_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

pub fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

/// A query message; `edns` is the advertised UDP payload size.
pub fn query(id: u16, qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the raw response.
pub async fn exchange_udp_raw(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(packet).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(EXCHANGE_LIMIT, socket.recv(&mut buf))
        .await
        .expect("a UDP response in time")
        .unwrap();
    buf.truncate(len);
    buf
}

pub async fn udp(server: SocketAddr, qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let bytes = query(0x4D45, qname, qtype, edns).to_vec().unwrap();
    let response = exchange_udp_raw(server, &bytes).await;
    let message = Message::from_vec(&response).expect("a well-formed response");
    assert_eq!(message.metadata.id, 0x4D45);
    message
}

/// Sends each query on one TCP connection, then reads the responses in order.
pub async fn tcp_pipelined(server: SocketAddr, queries: &[Message]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    for q in queries {
        let bytes = q.to_vec().unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    stream.write_all(&out).await.unwrap();
    let mut responses = Vec::new();
    for _ in queries {
        let read = async {
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await.unwrap();
            buf
        };
        let buf = tokio::time::timeout(EXCHANGE_LIMIT, read)
            .await
            .expect("a TCP response in time");
        responses.push(Message::from_vec(&buf).unwrap());
    }
    responses
}

pub async fn tcp(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    tcp_pipelined(server, &[query(0x7CB, qname, qtype, None)])
        .await
        .remove(0)
}

pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

pub fn ttls(m: &Message) -> Vec<u32> {
    m.answers.iter().map(|r| r.ttl).collect()
}

/// A resolver for the `test.` zone that answers from a script, on UDP and TCP of one port:
/// - `<anything>.ok.test.`: one A record 192.0.2.53, TTL 60;
/// - `nx.test.`: NXDOMAIN with an SOA (TTL 30);
/// - `fail.test.`: SERVFAIL;
/// - `big.test.`: over UDP an empty answer with TC set; over TCP 40 A records;
/// - `silent.test.` and names under it: no answer at all;
/// - `slow.ok.test.`: like any `.ok.test.` name, 300 ms late.
///
/// A query with the DO bit gets AD set (as a validating resolver would) and DO echoed.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    /// The last query that arrived over UDP.
    pub last_udp_query: Arc<std::sync::Mutex<Option<Message>>>,
    shutdown: CancellationToken,
}

pub const BIG_ANSWER_RECORDS: u8 = 40;

impl ScriptedUpstream {
    pub async fn start() -> ScriptedUpstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counter = udp_queries.clone();
        let last_udp_query = Arc::new(std::sync::Mutex::new(None));
        let last = last_udp_query.clone();
        let udp = Arc::new(udp);
        tokio::spawn(shutdown.clone().run_until_cancelled_owned(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let request = Message::from_vec(&buf[..len]).expect("a well-formed query");
                let slow = request
                    .queries
                    .first()
                    .is_some_and(|q| q.name().to_ascii().eq_ignore_ascii_case("slow.ok.test."));
                *last.lock().unwrap() = Some(request);
                if let Some(response) = scripted_response(&buf[..len], false) {
                    let udp = udp.clone();
                    tokio::spawn(async move {
                        if slow {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let _ = udp.send_to(&response, peer).await;
                    });
                }
            }
        }));
        let counter = tcp_queries.clone();
        tokio::spawn(shutdown.clone().run_until_cancelled_owned(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut buf = vec![0u8; usize::from(len)];
                        stream.read_exact(&mut buf).await.unwrap();
                        counter.fetch_add(1, Ordering::SeqCst);
                        if let Some(response) = scripted_response(&buf, true) {
                            let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&response);
                            stream.write_all(&framed).await.unwrap();
                        }
                    }
                });
            }
        }));
        ScriptedUpstream {
            addr,
            udp_queries,
            tcp_queries,
            last_udp_query,
            shutdown,
        }
    }

    pub fn udp_count(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_count(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn scripted_response(packet: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).expect("mep sends well-formed queries");
    assert_eq!(request.metadata.op_code, OpCode::Query);
    assert!(request.metadata.recursion_desired, "mep asks for recursion");
    let q = request.queries.first().expect("one question").clone();
    let qname = q.name().to_ascii().to_ascii_lowercase();
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = true;
    response.metadata.recursion_available = true;
    response.add_query(q.clone());
    if let Some(edns) = request.edns.as_ref() {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload());
        ours.set_dnssec_ok(edns.flags().dnssec_ok);
        response.metadata.authentic_data = edns.flags().dnssec_ok;
        response.set_edns(ours);
    }
    let a = |i: u8| {
        Record::from_rdata(
            q.name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
        )
    };
    match qname.as_str() {
        n if n == "silent.test." || n.ends_with(".silent.test.") => return None,
        "fail.test." => response.metadata.response_code = ResponseCode::ServFail,
        "nx.test." => {
            response.metadata.response_code = ResponseCode::NXDomain;
            let zone = name("test.");
            response.add_authority(Record::from_rdata(
                zone.clone(),
                30,
                RData::SOA(SOA::new(
                    zone.clone(),
                    name("hostmaster.test."),
                    1,
                    3600,
                    600,
                    86400,
                    30,
                )),
            ));
        }
        "big.test." if !over_tcp => response.metadata.truncation = true,
        "big.test." => {
            for i in 0..BIG_ANSWER_RECORDS {
                response.add_answer(a(i));
            }
        }
        n if n.ends_with(".ok.test.") && q.query_type() == RecordType::A => {
            response.add_answer(a(53));
        }
        _ => response.metadata.response_code = ResponseCode::NXDomain,
    }
    Some(response.to_vec().unwrap())
}

/// A scratch directory under the system's temp directory, removed on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for TCP at the moment of asking (a server started next takes it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh CA and a certificate for `name` it signed, in the forms servers and clients take.
pub struct TestPki {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub ca_pem: String,
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: rustls::pki_types::PrivateKeyDer<'static>,
    pub key_pem: String,
}

impl TestPki {
    pub fn new(name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        TestPki {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            key_pem: key.serialize_pem(),
        }
    }
}
