//! Malformed and unusual packets, garbage at volume, and shutdown.

mod support;

use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use mep_dns::{DropReason, TcpClose};
use rand::RngExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

async fn client(mep: &Mep) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(mep.addr()).await.unwrap();
    socket
}

async fn next_response(socket: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(EXCHANGE_LIMIT, socket.recv(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

fn valid_query(id: u16) -> Vec<u8> {
    query(id, "edge.example.", RecordType::A, None)
        .to_vec()
        .unwrap()
}

#[tokio::test]
async fn packets_too_short_or_not_queries_get_no_response() {
    let mep = Mep::start(&[rule("r", "edge.example", "192.0.2.1", None)], vec![]).await;
    let socket = client(&mep).await;
    let mut response = valid_query(0x0BAD);
    response[2] |= 0x80;
    socket.send(&[0x12, 0x34, 0x01]).await.unwrap();
    socket.send(&response).await.unwrap();
    socket.send(&valid_query(0x0600D)).await.unwrap();
    // Datagrams on one socket are handled in order: the first response is the valid query's.
    let m = next_response(&socket).await;
    assert_eq!(m.metadata.id, 0x600D);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(mep.handle.metrics().dropped(DropReason::Malformed), 2);
}

#[tokio::test]
async fn a_question_that_does_not_parse_gets_formerr() {
    let mep = Mep::start(&[], vec![]).await;
    let good = valid_query(0x0F0F);
    // Header intact, question cut in the middle of a label.
    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &good[..16]).await).unwrap();
    assert_eq!(m.metadata.id, 0x0F0F);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Two questions.
    let mut two = good.clone();
    two[5] = 2;
    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &two).await).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn unknown_edns_versions_get_badvers_and_other_opcodes_notimp() {
    let mep = Mep::start(&[], vec![]).await;
    let mut q = query(3, "edge.example.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &q.to_vec().unwrap()).await).unwrap();
    assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
    assert_eq!(m.edns.as_ref().map(|e| e.version()), Some(0));

    let mut notify = query(4, "edge.example.", RecordType::SOA, None);
    notify.metadata.op_code = OpCode::Notify;
    let m =
        Message::from_vec(&exchange_udp_raw(mep.addr(), &notify.to_vec().unwrap()).await).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    let axfr = query(5, "edge.example.", RecordType::AXFR, None)
        .to_vec()
        .unwrap();
    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &axfr).await).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn thousands_of_mangled_packets_leave_the_server_answering() {
    let rules = [rule("r", "edge.example", "192.0.2.1", Some(5))];
    let mep = Mep::start(&rules, vec![]).await;
    let socket = client(&mep).await;
    let base = query(0, "edge.example.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let mut rng = rand::rng();
    for _ in 0..5_000 {
        let mut packet = base.clone();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..packet.len());
            packet[at] = rng.random();
        }
        packet.truncate(rng.random_range(0..=packet.len()));
        // Responses and short packets are never answered; keep the flood to queries.
        if packet.len() > 2 {
            packet[2] &= 0x7F;
        }
        socket.send(&packet).await.unwrap();
        let mut buf = [0u8; 2048];
        while socket.try_recv(&mut buf).is_ok() {}
    }
    let check = client(&mep).await;
    check.send(&valid_query(0x4242)).await.unwrap();
    let m = next_response(&check).await;
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn a_tcp_connection_with_garbage_is_closed_and_others_go_on() {
    let mep = Mep::start(&[rule("r", "edge.example", "192.0.2.1", None)], vec![]).await;
    let mut bad = tokio::net::TcpStream::connect(mep.addr()).await.unwrap();
    bad.write_all(&[0, 3, 0xFF, 0xFF, 0xFF]).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_LIMIT, bad.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed without a response: {read:?} {buf:?}"
    );
    let m = tcp(mep.addr(), "edge.example.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let mep = Mep::start_with(&[], vec![], |c| {
        c.tcp_idle_timeout = Duration::from_millis(100);
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(mep.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(EXCHANGE_LIMIT, idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
}

#[tokio::test]
async fn a_full_table_makes_room_by_closing_the_longest_idle_connection() {
    let mep = Mep::start_with(
        &[rule("r", "edge.example", "192.0.2.1", None)],
        vec![],
        |c| {
            c.max_tcp_connections = 1;
        },
    )
    .await;
    let mut held = tokio::net::TcpStream::connect(mep.addr()).await.unwrap();
    // The newcomer takes the idle connection's place and is served.
    let m = tcp(mep.addr(), "edge.example.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1);
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(EXCHANGE_LIMIT, held.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(mep.handle.metrics().tcp_closed(TcpClose::Evicted), 1);
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    let config = mep_dns::DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstreams: vec![unused_port_addr().into()],
        ..mep_dns::DnsConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let snapshots = mep_rules::SnapshotPublisher::new();
    let handle = mep_dns::DnsServer::start(config, snapshots.reader(), shutdown.clone())
        .await
        .unwrap();
    let addr = handle.local_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    shutdown.cancel();
    tokio::time::timeout(EXCHANGE_LIMIT, handle.stopped())
        .await
        .expect("the listeners stop");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
