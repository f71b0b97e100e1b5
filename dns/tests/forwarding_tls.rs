//! Forwarding over DNS over TLS (`tls://ADDR#NAME`) to a real Unbound serving DoT with a
//! certificate from a test CA: answered when the certificate carries NAME and the CA is
//! trusted, SERVFAIL when it does not; queries share one connection, pipelined, and mep opens
//! another when the upstream closes it or stops answering on it. Needs `unbound` (Debian package
//! unbound, installed by scripts/setup.sh).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rustls::pki_types::CertificateDer;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Names that Unbound answers with TTL 0, so that mep caches none of them and asks every time.
const UNCACHED: u8 = 40;

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
        let uncached: String = (0..UNCACHED)
            .map(|i| format!("    local-data: \"n{i}.dot.test. 0 IN A 192.0.2.{i}\"\n"))
            .collect();
        std::fs::write(
            dir.join("unbound.conf"),
            format!(
                "server:\n    interface: 127.0.0.1@{port}\n    tls-port: {port}\n\
                 \x20   tls-service-key: \"{d}/tls.key\"\n    tls-service-pem: \"{d}/tls.pem\"\n\
                 \x20   do-daemonize: no\n    username: \"\"\n    chroot: \"\"\n\
                 \x20   directory: \"{d}\"\n    pidfile: \"\"\n    use-syslog: no\n\
                 \x20   access-control: 127.0.0.0/8 allow\n    module-config: \"iterator\"\n\
                 \x20   local-zone: \"dot.test.\" static\n\
                 \x20   local-data: \"www.dot.test. 60 IN A 192.0.2.99\"\n{uncached}\
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
    mep_forwarding_via(unbound.addr, &unbound.ca, name).await
}

async fn mep_forwarding_via(addr: SocketAddr, ca: &CertificateDer<'static>, name: &str) -> Mep {
    let upstream: mep_dns::Upstream = format!("tls://{addr}#{name}").parse().unwrap();
    let ca = ca.clone();
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

/// A TCP relay in front of Unbound that counts the connections it accepts, can cut them all
/// (as an upstream closing idle connections does) and can hold queries back (as an upstream
/// that hangs does), passing them on once released.
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stalled: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            stalled: Arc::default(),
            cut: broadcast::channel(1).0,
        };
        let (accepted, stalled, cut) = (
            Arc::clone(&relay.accepted),
            Arc::clone(&relay.stalled),
            relay.cut.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut cut_rx = cut.subscribe();
                let stalled = Arc::clone(&stalled);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = pass(client_read, server_write, Some(stalled)) => {}
                        _ = pass(server_read, client_write, None) => {}
                        _ = cut_rx.recv() => {}
                    }
                });
            }
        });
        relay
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`, holding what comes while `stalled` is set.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Asks for `n{i}.dot.test` for every `i` at once; each must get its own address.
async fn ask_uncached_at_once(mep: SocketAddr) {
    let mut asked = tokio::task::JoinSet::new();
    for i in 0..UNCACHED {
        asked.spawn(async move {
            let answer = udp(mep, &format!("n{i}.dot.test."), RecordType::A, Some(1232)).await;
            (i, answer)
        });
    }
    while let Some(done) = asked.join_next().await {
        let (i, answer) = done.unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "n{i}");
        assert_eq!(
            addresses(&answer),
            vec![std::net::IpAddr::from([192, 0, 2, i])],
            "n{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_share_one_connection_which_is_replaced_when_closed_or_stuck() {
    let unbound = tokio::task::spawn_blocking(Unbound::start).await.unwrap();
    let relay = Relay::start(unbound.addr).await;
    let mep = mep_forwarding_via(relay.addr, &unbound.ca, "upstream.test").await;

    // Forty uncached queries at once, then forty more one after another: one connection.
    ask_uncached_at_once(mep.addr()).await;
    for i in 0..UNCACHED {
        let answer = udp(mep.addr(), &format!("n{i}.dot.test."), RecordType::A, None).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    }
    assert_eq!(relay.accepted(), 1, "one connection for 80 queries");

    // The upstream closes it: the next queries are answered on a new one.
    relay.cut.send(()).unwrap();
    ask_uncached_at_once(mep.addr()).await;
    assert_eq!(relay.accepted(), 2);

    // The upstream stops answering on it: queries fail in bounded time, and once it answers
    // again the next query goes on a fresh connection, not on the one that hung.
    relay.stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let stuck = udp(mep.addr(), "n1.dot.test.", RecordType::A, None).await;
    assert_eq!(stuck.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(3));
    let before = relay.accepted();
    relay.stalled.store(false, Ordering::SeqCst);
    let answer = udp(mep.addr(), "n2.dot.test.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(relay.accepted(), before + 1);
}
