//! DNS over TLS with kdig (`+tls`) against the real server and a certificate from a test CA:
//! local answers, NODATA, forwarded NOERROR and NXDOMAIN, the transport counted; and idle TLS
//! connections do not keep other clients from being answered.
//! Needs `kdig` (Debian `knot-dnsutils`, installed by scripts/setup.sh).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mep_dns::{EncryptedDns, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;

/// A CA (written to a file for kdig) and a certificate for `dns.mep.test` it signed.
fn test_pki(
    dir: &std::path::Path,
) -> (
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["dns.mep.test".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_file, vec![cert.der().clone()], key)
}

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

async fn start() -> (Mep, ScriptedUpstream, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let (ca, cert_chain, key) = test_pki(&dir.0);
    let upstream = ScriptedUpstream::start().await;
    let encrypted = EncryptedDns {
        tls_addr: "127.0.0.1:0".parse().unwrap(),
        cert_chain,
        key,
    };
    let rules = [rule("r1", "edge.example", "192.0.2.2", Some(60))];
    let mep = Mep::start_encrypted(&rules, vec![upstream.addr], |_| {}, Some(encrypted)).await;
    std::fs::rename(&ca, dir.0.join("trusted-ca.pem")).unwrap();
    (mep, upstream, dir)
}

mod tempdir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!("mep-dns-tls-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn idle_tls_connections_do_not_keep_others_waiting() {
    let (mep, _upstream, dir) = start().await;
    let ca = dir.0.join("trusted-ca.pem");
    let tls = mep.handle.tls_addr().unwrap();
    // 200 clients that connect and never say anything (not even a TLS hello).
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(tls).await.unwrap());
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || kdig(tls, &ca, &["+tls", "edge.example", "A"]))
        .await
        .unwrap();
    assert!(out.contains("192.0.2.2"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered beside 200 idle connections"
    );
    drop(idle);
}
