//! The UDP socket read by two readers under a sustained load: every query gets exactly one
//! answer, whether or not the queue stayed deep enough to call the helper in (that part is
//! shown deterministically by the unit tests in `src/udp.rs`).

mod support;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use support::*;

/// Queries sent in each test.
const QUERIES: usize = 20_000;

/// Queries sent but not yet answered at most: a queue several batches deep whose answers fit
/// the client's receive buffer even where the kernel caps it at its default, 208 KiB (with 200
/// outstanding, a few answers were lost there).
const WINDOW: usize = 100;

/// Sends [`QUERIES`] queries for `edge.example` from one client, keeping [`WINDOW`] of them
/// outstanding, while another thread receives the answers; returns the answers' IDs. Every
/// answer must be the first one's bytes but for the ID, which `check` looks at once.
fn load(server: SocketAddr, check: impl FnOnce(&Message)) -> HashSet<u16> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let client = client.try_clone().unwrap();
        let answered = Arc::clone(&answered);
        std::thread::spawn(move || {
            let mut ids = HashSet::new();
            let mut first = Vec::new();
            let mut buf = [0u8; 1500];
            while ids.len() < QUERIES {
                let Ok(len) = client.recv(&mut buf) else {
                    break;
                };
                let answer = &buf[..len];
                if first.is_empty() {
                    first = answer.to_vec();
                }
                assert_eq!(answer[2..], first[2..], "the same answer");
                assert!(ids.insert(u16::from_be_bytes([answer[0], answer[1]])));
                answered.fetch_add(1, Ordering::Relaxed);
            }
            (ids, first)
        })
    };
    let template = query(0, "edge.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut packet = template.clone();
    for id in 0..QUERIES {
        while id - answered.load(Ordering::Relaxed) >= WINDOW {
            assert!(Instant::now() < deadline, "answers stopped coming");
            std::hint::spin_loop();
        }
        packet[..2].copy_from_slice(&(id as u16).to_be_bytes());
        client.send(&packet).unwrap();
    }
    let (ids, first) = receiver.join().unwrap();
    check(&Message::from_vec(&first).expect("a DNS message"));
    ids
}

fn the_rule_address(answer: &Message) {
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(answer),
        vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_answer_every_query_of_a_sustained_load_once() {
    let mep = Mep::start_with(
        &[rule("r", "edge.example", "192.0.2.1", None)],
        vec![],
        |config| config.udp_readers = 2,
    )
    .await;
    let server = mep.addr();
    let ids = tokio::task::spawn_blocking(move || load(server, the_rule_address))
        .await
        .unwrap();
    assert_eq!(ids.len(), QUERIES, "every query answered");
    let answer = udp(server, "edge.example.", RecordType::A, None).await;
    the_rule_address(&answer);
}
