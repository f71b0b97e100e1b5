//! DNS over TLS with kdig (`+tls`) against the real server and a certificate from a test CA:
//! local answers, NODATA, forwarded NOERROR and NXDOMAIN, the transport counted; and idle TLS
//! connections do not keep other clients from being answered.
//! Needs `kdig` (Debian `knot-dnsutils`, installed by scripts/setup.sh).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mep_dns::{EncryptedDns, Transport};
use support::*;

/// kdig against `server`; with `+tls` among `args`, trusting only the test CA `ca`.
fn kdig(server: SocketAddr, ca: &std::path::Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new("kdig");
    command.arg(format!("@{}", server.ip())).args([
        "-p",
        &server.port().to_string(),
        "+time=5",
        "+retry=0",
    ]);
    if args.contains(&"+tls") {
        command
            .arg(format!("+tls-ca={}", ca.display()))
            .arg("+tls-hostname=dns.mep.test");
    }
    let output = command
        .args(args)
        .output()
        .expect("kdig (Debian package knot-dnsutils, installed by scripts/setup.sh) runs");
    String::from_utf8(output.stdout).unwrap()
}

/// mep with DNS over TLS (a certificate for `dns.mep.test` from a test CA, whose PEM is
/// `trusted-ca.pem` in the scratch directory) and the rule `edge.example`.
async fn start() -> (Mep, ScriptedUpstream, Scratch) {
    let dir = Scratch::new("mep-dns-tls");
    let pki = TestPki::new("dns.mep.test");
    std::fs::write(dir.0.join("trusted-ca.pem"), &pki.ca_pem).unwrap();
    let upstream = ScriptedUpstream::start().await;
    let encrypted = EncryptedDns {
        tls_addr: "127.0.0.1:0".parse().unwrap(),
        max_connections: 64,
        cert_chain: vec![pki.cert_der],
        key: pki.key_der,
    };
    let rules = [rule("r1", "edge.example", "192.0.2.2", Some(60))];
    let mep = Mep::start_encrypted(&rules, vec![upstream.addr], |_| {}, Some(encrypted)).await;
    (mep, upstream, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn kdig_gets_the_same_answers_over_tls_as_over_udp() {
    let (mep, _upstream, dir) = start().await;
    let ca = dir.0.join("trusted-ca.pem");
    let tls = mep.handle.tls_addr().expect("DoT listens");
    for (addr, transport) in [(tls, "+tls"), (mep.addr(), "+notcp")] {
        let ask = |args: &'static [&'static str]| {
            let ca = ca.clone();
            tokio::task::spawn_blocking(move || {
                let mut all = vec![transport];
                all.extend_from_slice(args);
                kdig(addr, &ca, &all)
            })
        };
        let local = ask(&["EDGE.example", "A"]).await.unwrap();
        assert!(local.contains("status: NOERROR"), "{transport}: {local}");
        assert!(local.contains("Flags: qr aa rd ra"), "{transport}: {local}");
        assert!(local.contains("192.0.2.2"), "{transport}: {local}");
        let nodata = ask(&["edge.example", "MX"]).await.unwrap();
        assert!(nodata.contains("status: NOERROR"), "{transport}: {nodata}");
        assert!(
            nodata.contains("ANSWER: 0; AUTHORITY: 1"),
            "{transport}: {nodata}"
        );
        let forwarded = ask(&["www.ok.test", "A"]).await.unwrap();
        assert!(forwarded.contains("192.0.2.53"), "{transport}: {forwarded}");
        assert!(!forwarded.contains(" aa "), "{transport}: {forwarded}");
        let nx = ask(&["nx.test", "A"]).await.unwrap();
        assert!(nx.contains("status: NXDOMAIN"), "{transport}: {nx}");
    }
    let metrics = mep.handle.metrics();
    assert_eq!(metrics.queries(Transport::Tls), 4);
    assert_eq!(metrics.queries(Transport::Udp), 4);
}

/// 300 connections from 100 other addresses that never finish (or start) a TLS handshake,
/// against a table of 64 places: the table makes room by closing the longest idle, so 20 clients
/// in a row from 127.0.0.1 each get their answer within 3 s.
#[tokio::test(flavor = "multi_thread")]
async fn idle_tls_handshakes_do_not_keep_others_waiting() {
    let (mep, _upstream, dir) = start().await;
    let ca = dir.0.join("trusted-ca.pem");
    let tls = mep.handle.tls_addr().unwrap();
    let mut idle = Vec::new();
    for i in 0..300u32 {
        let source = std::net::Ipv4Addr::new(127, 0, 1, (i % 100) as u8 + 1);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        if let Ok(stream) = socket.connect(tls).await {
            idle.push(stream);
        }
    }
    for _ in 0..20 {
        let started = Instant::now();
        let ca = ca.clone();
        let out =
            tokio::task::spawn_blocking(move || kdig(tls, &ca, &["+tls", "edge.example", "A"]))
                .await
                .unwrap();
        assert!(out.contains("192.0.2.2"), "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered in time"
        );
    }
    assert!(mep.handle.metrics().tcp_closed(mep_dns::TcpClose::Evicted) > 0);
    drop(idle);
}

/// The raw response to `query` over DNS over TLS.
async fn over_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    query: &[u8],
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("dns.mep.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    tls.write_all(&framed).await.unwrap();
    let len = tls.read_u16().await.unwrap();
    let mut out = vec![0u8; usize::from(len)];
    tls.read_exact(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn local_answers_are_the_same_bytes_over_udp_and_tls() {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::RecordType;
    let (mep, _upstream, dir) = start().await;
    let tls = mep.handle.tls_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.0.join("trusted-ca.pem")).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let mut compared = 0;
    let names = ["edge.example.", "EDGE.Example.", "eDgE.eXaMpLe."];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
        RecordType::ANY,
    ];
    for (n, name) in names.iter().enumerate() {
        for (t, qtype) in types.iter().enumerate() {
            for edns in [
                None,
                Some((1232u16, false)),
                Some((4096, true)),
                Some((512, false)),
            ] {
                let mut m = Message::query();
                m.metadata.id = (n * 100 + t * 10) as u16 + 1;
                m.metadata.recursion_desired = t % 2 == 0;
                m.add_query(Query::query(
                    hickory_proto::rr::Name::from_ascii(name).unwrap(),
                    *qtype,
                ));
                if let Some((size, dnssec)) = edns {
                    let mut e = Edns::new();
                    e.set_max_payload(size);
                    e.set_dnssec_ok(dnssec);
                    m.set_edns(e);
                }
                let bytes = m.to_vec().unwrap();
                let udp = exchange_udp_raw(mep.addr(), &bytes).await;
                let dot = over_tls(tls, &connector, &bytes).await;
                assert_eq!(udp, dot, "{name} {qtype} {edns:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 60);
}
