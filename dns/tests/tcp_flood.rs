//! DNS over TCP under connection floods: idle and trickling connections from many addresses, and
//! one address opening hundreds, must leave well-behaved clients served (RFC 7766 section 6.2).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use mep_dns::TcpClose;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `source` (any 127/8 address is this host's loopback).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

fn framed(id: u16) -> Vec<u8> {
    let bytes = query(id, "edge.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// One query on a fresh connection from 127.0.0.1, answered within `limit`.
async fn well_behaved(server: SocketAddr, id: u16, limit: Duration) -> bool {
    let exchange = async {
        let mut stream = connect_from(Ipv4Addr::LOCALHOST, server).await.ok()?;
        stream.write_all(&framed(id)).await.ok()?;
        let len = stream.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.ok()?;
        let m = Message::from_vec(&buf).ok()?;
        (m.metadata.id == id && m.answers.len() == 1).then_some(())
    };
    matches!(tokio::time::timeout(limit, exchange).await, Ok(Some(())))
}

/// 1,000 connections from 200 addresses, half silent and half sending a query every 5 s (and
/// never reading), against a table of 256 places, then 200 well-behaved clients, each with a 2 s
/// timeout: at least 99 % are served, the flood making room by eviction and by the idle limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_floods_leave_well_behaved_clients_served() {
    mep_net::fd::raise_to_hard().unwrap();
    let mep = Mep::start_with(
        &[rule("r", "edge.example", "192.0.2.1", None)],
        vec![],
        |c| {
            c.max_tcp_connections = 256;
        },
    )
    .await;
    let server = mep.addr();
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let source = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 2 + (i % 250) as u8 / 5 * 5);
        let Ok(stream) = connect_from(source, server).await else {
            continue;
        };
        flood.push(tokio::spawn(async move {
            let mut stream = stream;
            if i % 2 == 0 {
                // Silent: holds the connection until the server closes it.
                let mut buf = [0u8; 1];
                let _ = stream.read(&mut buf).await;
            } else {
                // Trickling: a query every 5 s, answers never read.
                for n in 0..4 {
                    if stream.write_all(&framed(n)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }));
    }
    assert!(flood.len() >= 990, "{} flood connections", flood.len());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let mut served = 0;
    for id in 0..200u16 {
        if well_behaved(server, id, Duration::from_secs(2)).await {
            served += 1;
        }
    }
    let metrics = mep.handle.metrics();
    let evicted = metrics.tcp_closed(TcpClose::Evicted);
    eprintln!(
        "{served} of 200 well-behaved TCP queries answered in {:?} beside {} flood connections; {evicted} evicted",
        started.elapsed(),
        flood.len()
    );
    assert!(
        served >= 198,
        "{served} of 200 served in {:?} (evicted {evicted})",
        started.elapsed()
    );
    assert!(evicted >= 700, "the flood made room: {evicted} evicted");
    // At a full table the idle limit is 0.5 s: the rest of the flood is closed soon after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(metrics.tcp_closed(TcpClose::Idle) > 0);
    for task in flood {
        task.abort();
    }
}

/// One address opening 300 connections holds only its share; others are served meanwhile.
#[tokio::test]
async fn one_address_holds_only_its_share() {
    mep_net::fd::raise_to_hard().unwrap();
    let mep = Mep::start(&[rule("r", "edge.example", "192.0.2.1", None)], vec![]).await;
    let server = mep.addr();
    let attacker = Ipv4Addr::new(127, 0, 9, 9);
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = connect_from(attacker, server).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = mep.handle.metrics().tcp_closed(TcpClose::ClientLimit);
    assert_eq!(
        refused,
        300 - 32,
        "all but the per-client share are refused"
    );
    for id in 0..20 {
        assert!(well_behaved(server, id, Duration::from_secs(2)).await);
    }
}

/// A client that sends a length prefix and then trickles the message is cut off.
#[tokio::test]
async fn a_message_that_never_completes_is_cut_off() {
    let mep = Mep::start_with(&[], vec![], |c| {
        c.tcp_message_timeout = Duration::from_millis(200);
    })
    .await;
    let mut slow = TcpStream::connect(mep.addr()).await.unwrap();
    slow.write_all(&[0, 40, 0x12]).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(EXCHANGE_LIMIT, slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(mep.handle.metrics().tcp_closed(TcpClose::MessageTimeout), 1);
}
