//! Mp1 and Mm5 against clients that hold connections without using them, send bodies slowly or
//! declare absurd ones, and floods beyond the listener's capacity: each attack, then a
//! well-behaved client that must still be served within its timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mep_tests::{service_body, test_config, TestMep};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn start(tweak: impl FnOnce(&mut mep_api::Config)) -> (TestMep, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    (TestMep::start_with(config).await, dir)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// Reads until the server closes the connection; answers what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => Some((
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )),
        Err(_) => None,
    }
}

/// A well-behaved request on a fresh connection, with its own timeout.
async fn well_behaved(mep: &TestMep, limit: Duration) -> bool {
    let client = reqwest::Client::builder().timeout(limit).build().unwrap();
    client
        .get(mep.url("/transports"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test]
async fn connections_that_send_nothing_are_closed() {
    let (mep, _dir) = start(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr_of(&mep.mp1)).await.unwrap());
    }
    for stream in &mut silent {
        let (_, after) = until_closed(stream, Duration::from_secs(5))
            .await
            .expect("a silent connection is closed");
        assert!(after < Duration::from_secs(3), "{after:?}");
    }
    // A keep-alive connection that went quiet after a request is closed as well.
    let mut kept = TcpStream::connect(addr_of(&mep.mp1)).await.unwrap();
    kept.write_all(b"GET /mep/mec_service_mgmt/v1/transports HTTP/1.1\r\nHost: mep\r\n\r\n")
        .await
        .unwrap();
    let (answered, after) = until_closed(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    assert!(well_behaved(&mep, Duration::from_secs(2)).await);
    mep.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let (mep, _dir) = start(|c| c.http.body_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(addr_of(&mep.mp1)).await.unwrap();
    let head = "POST /mep/mec_service_mgmt/v1/applications/app-1/services HTTP/1.1\r\n\
                Host: mep\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (response, after) = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    mep.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body() {
    let (mep, _dir) = start(|_| {}).await;
    for listener in [&mep.mp1, &mep.mm5] {
        let mut stream = TcpStream::connect(addr_of(listener)).await.unwrap();
        let head = "PUT /mep/appMng/v1/applications/app-1/confs HTTP/1.1\r\nHost: mep\r\n\
                    Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let response = String::from_utf8_lossy(&buf[..n]);
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    }
    // A body without a declared length is cut off at the limit too.
    let mut stream = TcpStream::connect(addr_of(&mep.mp1)).await.unwrap();
    let mut request = b"POST /mep/mec_service_mgmt/v1/applications/app-1/services HTTP/1.1\r\n\
        Host: mep\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..100 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b' '; 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let _ = stream.write_all(&request).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    mep.stop().await;
}

/// 1,100 silent connections from many addresses against an Mp1 of 256 places: Mm5 keeps
/// answering, a well-behaved Mp1 client is served (the flood's idle connections make room), and
/// the closes are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_capacity_leaves_mp1_and_mm5_serving() {
    mep_net::fd::raise_to_hard().unwrap();
    let (mep, _dir) = start(|c| c.http.mp1_max_connections = 256).await;
    let server = addr_of(&mep.mp1);
    let mut flood = Vec::new();
    for i in 0..1100u32 {
        let source = Ipv4Addr::new(127, 1, (i / 200) as u8, 1 + (i % 200) as u8);
        if let Ok(s) = connect_from(source, server).await {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 1000, "{}", flood.len());
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("{}/health", mep.mm5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for _ in 0..20 {
        assert!(well_behaved(&mep, Duration::from_secs(2)).await);
    }
    mep.register("app-1", &service_body("still-writable")).await;
    let metrics = mep.metrics_text().await;
    let evicted: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("mep_http_connections_closed_total")
                && l.contains("listener=\"mp1\"")
                && l.contains("reason=\"evicted\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(evicted >= 800, "{evicted} evicted\n{metrics}");
    mep.stop().await;
}

/// One address may hold only its share of a listener.
#[tokio::test]
async fn one_address_holds_only_its_share() {
    mep_net::fd::raise_to_hard().unwrap();
    let (mep, _dir) = start(|c| c.http.max_connections_per_client = 16).await;
    let server = addr_of(&mep.mp1);
    let attacker = Ipv4Addr::new(127, 0, 7, 7);
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(connect_from(attacker, server).await.unwrap());
    }
    let mut closed_at_once = 0;
    for stream in &mut held {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 24, "all but 16 are refused");
    assert!(well_behaved(&mep, Duration::from_secs(2)).await);
    mep.stop().await;
}
