//! Forwarding to a real (scripted) upstream resolver: RCODEs relayed as they are, the cache, TCP
//! fallback on truncation, and SERVFAIL in bounded time when no upstream answers.

mod support;

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use mep_dns::AnswerSource;
use support::*;

#[tokio::test]
async fn noerror_answers_are_relayed_then_served_from_the_cache() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let first = udp(mep.addr(), "www.ok.test.", RecordType::A, Some(1232)).await;
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert!(
        !first.metadata.authoritative,
        "a forwarded answer is not ours"
    );
    assert!(first.metadata.recursion_available);
    assert_eq!(
        addresses(&first),
        vec!["192.0.2.53".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(ttls(&first), vec![60]);
    assert_eq!(upstream.udp_count(), 1);

    let second = udp(mep.addr(), "WWW.ok.test.", RecordType::A, None).await;
    assert_eq!(addresses(&second), addresses(&first));
    assert!(ttls(&second)[0] <= 60);
    assert_eq!(second.queries[0].name().to_ascii(), "WWW.ok.test.");
    assert!(second.edns.is_none(), "no OPT for a client that sent none");
    assert_eq!(upstream.udp_count(), 1, "the second query is a cache hit");

    let metrics = mep.handle.metrics();
    assert_eq!(
        metrics.responses(AnswerSource::Upstream, ResponseCode::NoError),
        1
    );
    assert_eq!(
        metrics.responses(AnswerSource::Cache, ResponseCode::NoError),
        1
    );
}

#[tokio::test]
async fn nxdomain_stays_nxdomain_and_is_cached_for_the_soa_minimum() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    for _ in 0..2 {
        let m = udp(mep.addr(), "nx.test.", RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        assert!(m.authorities[0].ttl <= 30);
    }
    assert_eq!(
        upstream.udp_count(),
        1,
        "negative answers are cached (RFC 2308)"
    );
    assert_eq!(
        mep.handle
            .metrics()
            .responses(AnswerSource::Cache, ResponseCode::NXDomain),
        1
    );
}

#[tokio::test]
async fn servfail_is_relayed_and_not_cached() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    for _ in 0..2 {
        let m = udp(mep.addr(), "fail.test.", RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(upstream.udp_count(), 2);
    assert_eq!(
        mep.handle
            .metrics()
            .responses(AnswerSource::Upstream, ResponseCode::ServFail),
        2
    );
}

#[tokio::test]
async fn truncated_upstream_answers_are_fetched_again_over_tcp() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let big = udp(mep.addr(), "big.test.", RecordType::A, Some(1232)).await;
    assert!(!big.metadata.truncation);
    assert_eq!(big.answers.len(), usize::from(BIG_ANSWER_RECORDS));
    assert_eq!((upstream.udp_count(), upstream.tcp_count()), (1, 1));

    // From the cache: too large for 512 bytes, so truncated; whole over TCP.
    let bytes = query(5, "big.test.", RecordType::A, None).to_vec().unwrap();
    let raw = exchange_udp_raw(mep.addr(), &bytes).await;
    assert!(raw.len() <= 512);
    let small = Message::from_vec(&raw).unwrap();
    assert!(small.metadata.truncation);
    assert!(small.answers.len() < usize::from(BIG_ANSWER_RECORDS));
    let over_tcp = tcp(mep.addr(), "big.test.", RecordType::A).await;
    assert_eq!(over_tcp.answers.len(), usize::from(BIG_ANSWER_RECORDS));
    assert_eq!((upstream.udp_count(), upstream.tcp_count()), (1, 1));
}

#[tokio::test]
async fn tcp_clients_get_forwarded_answers_too() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let m = tcp(mep.addr(), "tcp.ok.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_in_bounded_time() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mep = Mep::start(&[], vec![silent.local_addr().unwrap()]).await;
    let started = Instant::now();
    let m = udp(mep.addr(), "www.example.", RecordType::A, None).await;
    let took = started.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(took < Duration::from_secs(3), "SERVFAIL after {took:?}");
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    let mut asked = 0;
    while silent.recv(&mut buf).is_ok() {
        asked += 1;
    }
    assert_eq!(asked, 2, "800 ms overall, 400 ms per attempt: asked twice");
}

#[tokio::test]
async fn a_refusing_upstream_gives_servfail_at_once() {
    let mep = Mep::start(&[], vec![unused_port_addr()]).await;
    let m = udp(mep.addr(), "www.example.", RecordType::AAAA, Some(1232)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.edns.is_some());
    assert_eq!(
        mep.handle
            .metrics()
            .responses(AnswerSource::Error, ResponseCode::ServFail),
        1
    );
}

#[tokio::test]
async fn the_next_upstream_answers_when_the_first_is_silent() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![silent.local_addr().unwrap(), upstream.addr]).await;
    let m = udp(mep.addr(), "second.ok.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn forwarded_queries_beyond_the_limit_get_servfail_without_waiting() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mep = Mep::start_with(&[], vec![silent.local_addr().unwrap()], |c| {
        c.max_forwarded_in_flight = 1;
        c.upstream_timeout = Duration::from_secs(5);
        c.upstream_attempt_timeout = Duration::from_secs(5);
    })
    .await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(mep.addr()).await.unwrap();
    let waiting = query(1, "one.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    client.send(&waiting).await.unwrap();
    // The first query holds the only slot once the silent upstream has received it.
    let mut buf = [0u8; 512];
    tokio::time::timeout(EXCHANGE_LIMIT, async {
        silent.set_nonblocking(true).unwrap();
        while silent.recv(&mut buf).is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the upstream receives the first query");
    let refused = query(2, "two.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    client.send(&refused).await.unwrap();
    let mut response = vec![0u8; 512];
    let len = tokio::time::timeout(EXCHANGE_LIMIT, client.recv(&mut response))
        .await
        .expect("a response")
        .unwrap();
    let m = Message::from_vec(&response[..len]).unwrap();
    assert_eq!(m.metadata.id, 2, "the second query is answered first");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn identical_concurrent_queries_go_upstream_once() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let server = mep.addr();
    let asks: Vec<_> = (0..20u16)
        .map(|i| {
            // The same question in differing case (0x20), each with its own ID.
            let qname = if i % 2 == 0 {
                "slow.ok.test."
            } else {
                "SLOW.ok.TEST."
            };
            let bytes = query(1000 + i, qname, RecordType::A, Some(1232))
                .to_vec()
                .unwrap();
            tokio::spawn(async move { (i, exchange_udp_raw(server, &bytes).await) })
        })
        .collect();
    for ask in asks {
        let (i, bytes) = ask.await.unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 1000 + i);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&m).len(), 1);
        let asked = if i % 2 == 0 {
            "slow.ok.test."
        } else {
            "SLOW.ok.TEST."
        };
        assert_eq!(m.queries[0].name().to_ascii(), asked, "its own question");
    }
    assert_eq!(upstream.udp_count(), 1, "one upstream exchange for all 20");
}

#[tokio::test]
async fn the_do_and_cd_bits_and_edns_options_go_upstream_and_ad_comes_back() {
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let ask = |dnssec: bool, ecs: bool| {
        let mut m = query(7, "sec.ok.test.", RecordType::A, Some(1232));
        m.metadata.checking_disabled = dnssec;
        let edns = m.edns.as_mut().unwrap();
        edns.set_dnssec_ok(dnssec);
        // A client cookie concerns this hop only; a client subnet goes on.
        edns.options_mut()
            .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        if ecs {
            edns.options_mut()
                .insert(EdnsOption::Unknown(8, vec![0, 1, 24, 0, 198, 51, 100]));
        }
        m.to_vec().unwrap()
    };

    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &ask(true, false)).await).unwrap();
    assert!(
        m.metadata.authentic_data,
        "AD from the upstream, for a DO client"
    );
    assert!(m.metadata.checking_disabled);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok, "DO echoed");
    let sent = upstream.last_udp_query.lock().unwrap().clone().unwrap();
    let sent_edns = sent.edns.as_ref().unwrap();
    assert!(sent_edns.flags().dnssec_ok && sent.metadata.checking_disabled);
    assert!(sent_edns
        .options()
        .get(hickory_proto::rr::rdata::opt::EdnsCode::Cookie)
        .is_none());

    // Without DO it is another question: asked again, and answered without AD.
    let m = Message::from_vec(&exchange_udp_raw(mep.addr(), &ask(false, false)).await).unwrap();
    assert!(!m.metadata.authentic_data);
    assert!(!m.edns.as_ref().unwrap().flags().dnssec_ok);
    assert_eq!(upstream.udp_count(), 2);
    // Both are cached now.
    exchange_udp_raw(mep.addr(), &ask(true, false)).await;
    exchange_udp_raw(mep.addr(), &ask(false, false)).await;
    assert_eq!(upstream.udp_count(), 2);

    // A client subnet goes upstream, and its answer is neither taken from nor put in the cache.
    exchange_udp_raw(mep.addr(), &ask(false, true)).await;
    exchange_udp_raw(mep.addr(), &ask(false, true)).await;
    assert_eq!(upstream.udp_count(), 4);
    let sent = upstream.last_udp_query.lock().unwrap().clone().unwrap();
    let options = sent.edns.as_ref().unwrap().options();
    assert!(options
        .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        .is_some());
}

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn a_forward_whose_clients_went_away_leaves_nothing_behind() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(&[], vec![upstream.addr]).await;
    let answerer = mep.handle.answerer();
    let query = query(1, "slow.ok.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    // Two clients wait for one exchange; both go away before the upstream answers.
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (answerer, query) = (answerer.clone(), query.clone());
            tokio::spawn(async move {
                answerer
                    .answer(&query, mep_dns::Transport::Https, LOOPBACK)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(answerer.forwards_in_flight(), 1, "one shared exchange");
    for w in &waiting {
        w.abort();
    }
    for w in waiting {
        let _ = w.await;
    }
    assert_eq!(answerer.forwards_in_flight(), 0, "nothing left behind");
    // A finished exchange leaves too.
    let answer = answerer
        .answer(&query, mep_dns::Transport::Https, LOOPBACK)
        .await
        .unwrap();
    assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 1);
    assert_eq!(answerer.forwards_in_flight(), 0);
}

#[tokio::test]
async fn a_client_flooding_a_hung_zone_cannot_take_every_forwarding_slot() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start_with(&[], vec![upstream.addr], |c| {
        c.max_forwarded_in_flight = 32;
        c.max_forwarded_per_client = 8;
        c.upstream_timeout = Duration::from_secs(5);
        c.upstream_attempt_timeout = Duration::from_secs(5);
    })
    .await;
    // 127.0.0.2 asks for 100 names whose servers never answer: without a per-client share its
    // queries would hold all 32 slots for 5 s.
    let hostile = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    hostile.connect(mep.addr()).await.unwrap();
    for i in 0..100u16 {
        let flood = query(i, &format!("r{i}.silent.test."), RecordType::A, None);
        hostile.send(&flood.to_vec().unwrap()).await.unwrap();
    }
    // Its surplus gets SERVFAIL at once: 92 answers, each for a query beyond its 8.
    let mut buf = vec![0u8; 512];
    for _ in 0..92 {
        let len = tokio::time::timeout(EXCHANGE_LIMIT, hostile.recv(&mut buf))
            .await
            .expect("SERVFAIL for the surplus, at once")
            .unwrap();
        let m = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    let refused = mep
        .handle
        .metrics()
        .forwards_refused(mep_dns::ForwardLimit::Client);
    assert_eq!(refused, 92);
    // Another client's cache misses still go upstream and are answered.
    for i in 0..20 {
        let m = udp(mep.addr(), &format!("n{i}.ok.test."), RecordType::A, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    assert_eq!(
        mep.handle
            .metrics()
            .forwards_refused(mep_dns::ForwardLimit::Total),
        0
    );
}
