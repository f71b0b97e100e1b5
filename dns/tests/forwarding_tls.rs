//! Forwarding over DNS over TLS (`tls://ADDR#NAME`) to a real Unbound serving DoT with a
//! certificate from a test CA: answered when the certificate carries NAME and the CA is
//! trusted, SERVFAIL when it does not. Needs `unbound` (Debian package unbound, installed by
//! scripts/setup.sh).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rustls::pki_types::CertificateDer;
use support::*;

/// Unbound answering `www.dot.test` from local-data over TLS only, with a certificate for
/// `upstream.test` that a fresh CA signed.
struct Unbound {
    child: Child,
    _dir: Scratch,
    addr: SocketAddr,
    ca: CertificateDer<'static>,
}

impl Unbound {
    fn start() -> Unbound {
        let scratch = Scratch::new("mep-unbound");
        let dir = scratch.0.clone();
        let pki = TestPki::new("upstream.test");
        std::fs::write(dir.join("tls.pem"), &pki.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
        let port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("unbound.conf"),
            format!(
                "server:\n    interface: 127.0.0.1@{port}\n    tls-port: {port}\n\
                 \x20   tls-service-key: \"{d}/tls.key\"\n    tls-service-pem: \"{d}/tls.pem\"\n\
                 \x20   do-daemonize: no\n    username: \"\"\n    chroot: \"\"\n\
                 \x20   directory: \"{d}\"\n    pidfile: \"\"\n    use-syslog: no\n\
                 \x20   access-control: 127.0.0.0/8 allow\n    module-config: \"iterator\"\n\
                 \x20   local-zone: \"dot.test.\" static\n\
                 \x20   local-data: \"www.dot.test. 60 IN A 192.0.2.99\"\n\
                 remote-control:\n    control-enable: no\n"
            ),
        )
        .unwrap();
        let unbound = ["unbound", "/usr/sbin/unbound"]
            .into_iter()
            .find(|p| Command::new(p).arg("-V").output().is_ok())
            .expect("unbound (Debian package unbound, installed by scripts/setup.sh)");
        let child = Command::new(unbound)
            .arg("-d")
            .arg("-c")
            .arg(dir.join("unbound.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "unbound listens for DoT");
            std::thread::sleep(Duration::from_millis(50));
        }
        Unbound {
            child,
            _dir: scratch,
            addr,
            ca: pki.ca_der,
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn mep_forwarding_to(unbound: &Unbound, name: &str) -> Mep {
    let upstream: mep_dns::Upstream = format!("tls://{}#{name}", unbound.addr).parse().unwrap();
    let ca = unbound.ca.clone();
    Mep::start_with(&[], vec![], move |c| {
        c.upstreams = vec![upstream];
        c.upstream_ca = vec![ca];
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_go_upstream_over_tls_to_a_certificate_that_carries_the_name() {
    let unbound = tokio::task::spawn_blocking(Unbound::start).await.unwrap();
    let mep = mep_forwarding_to(&unbound, "upstream.test").await;
    let answer = udp(mep.addr(), "www.dot.test.", RecordType::A, Some(1232)).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()]
    );
    let nx = udp(mep.addr(), "nope.dot.test.", RecordType::A, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    // The same resolver under a name its certificate does not carry is not trusted.
    let wrong = mep_forwarding_to(&unbound, "other.test").await;
    let refused = udp(wrong.addr(), "www.dot.test.", RecordType::A, None).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::ServFail);
}
