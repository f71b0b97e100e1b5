//! Local answers from DNS rules, against the real server on an ephemeral port.

mod support;

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use mep_dns::AnswerSource;
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn edge_rules() -> Vec<mep_rules::DnsRule> {
    vec![
        rule("r1", "edge.example", "192.0.2.1", Some(0)),
        rule("r2", "Edge.Example.", "192.0.2.2", Some(60)),
        rule("r3", "edge.example", "2001:db8::1", None),
    ]
}

#[tokio::test]
async fn a_and_aaaa_answers_are_authoritative_with_the_shortest_rule_ttl() {
    let mep = Mep::start(&edge_rules(), vec![]).await;
    let a = udp(mep.addr(), "edge.example.", RecordType::A, None).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert!(a.metadata.recursion_available && a.metadata.recursion_desired);
    assert_eq!(addresses(&a), vec![ip("192.0.2.1"), ip("192.0.2.2")]);
    assert_eq!(
        ttls(&a),
        vec![0, 0],
        "one RRset, one TTL: the shortest rule TTL"
    );

    let aaaa = udp(mep.addr(), "edge.example.", RecordType::AAAA, Some(1232)).await;
    assert!(aaaa.metadata.authoritative);
    assert_eq!(addresses(&aaaa), vec![ip("2001:db8::1")]);
    assert_eq!(
        ttls(&aaaa),
        vec![300],
        "a rule without ttl gets the default TTL"
    );
    assert_eq!(aaaa.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    let counted = mep
        .handle
        .metrics()
        .responses(AnswerSource::Local, ResponseCode::NoError);
    assert_eq!(counted, 2);
}

#[tokio::test]
async fn names_match_whatever_their_case_and_the_question_keeps_its_case() {
    let mep = Mep::start(&edge_rules(), vec![]).await;
    let m = udp(mep.addr(), "EdGe.ExAmPlE.", RecordType::A, None).await;
    assert_eq!(addresses(&m).len(), 2);
    assert_eq!(m.queries[0].name().to_ascii(), "EdGe.ExAmPlE.");
    assert_eq!(m.answers[0].name.to_ascii(), "EdGe.ExAmPlE.");
}

#[tokio::test]
async fn other_types_of_a_covered_name_get_nodata_with_an_soa() {
    let rules = [rule("r1", "v4only.example", "192.0.2.7", Some(20))];
    let mep = Mep::start(&rules, vec![]).await;
    for qtype in [RecordType::MX, RecordType::TXT, RecordType::AAAA] {
        let m = udp(mep.addr(), "v4only.example.", qtype, None).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.metadata.authoritative, "{qtype}");
        assert!(m.answers.is_empty(), "{qtype}");
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("{qtype}: expected an SOA, got {:?}", m.authorities);
        };
        assert_eq!(soa.minimum, 20);
        assert_eq!(m.authorities[0].ttl, 20);
    }
}

#[tokio::test]
async fn a_published_change_is_answered_by_the_very_next_query() {
    let upstream = ScriptedUpstream::start().await;
    let mep = Mep::start(
        &[rule("r1", "svc.test", "192.0.2.10", Some(5))],
        vec![upstream.addr],
    )
    .await;
    let before = udp(mep.addr(), "svc.test.", RecordType::A, None).await;
    assert_eq!(addresses(&before), vec![ip("192.0.2.10")]);

    mep.snapshots.publish(snapshot(
        2,
        &[rule("r1", "svc.test", "192.0.2.11", Some(5))],
    ));
    let changed = udp(mep.addr(), "svc.test.", RecordType::A, None).await;
    assert_eq!(addresses(&changed), vec![ip("192.0.2.11")]);

    let mut inactive = rule("r1", "svc.test", "192.0.2.11", Some(5));
    inactive.state = mep_rules::RuleState::Inactive;
    mep.snapshots.publish(snapshot(3, &[inactive]));
    let gone = udp(mep.addr(), "svc.test.", RecordType::A, None).await;
    assert_eq!(
        gone.metadata.response_code,
        ResponseCode::NXDomain,
        "without its rule the name goes to the upstream, which does not know it"
    );
    assert!(!gone.metadata.authoritative);
    assert!(gone.answers.is_empty());
    assert_eq!(upstream.udp_count(), 1);
}

#[tokio::test]
async fn tcp_queries_are_answered_in_order_on_one_connection() {
    let mep = Mep::start(&edge_rules(), vec![]).await;
    let responses = tcp_pipelined(
        mep.addr(),
        &[
            query(1, "edge.example.", RecordType::A, None),
            query(2, "EDGE.example.", RecordType::AAAA, Some(4096)),
            query(3, "edge.example.", RecordType::MX, None),
        ],
    )
    .await;
    let ids: Vec<u16> = responses.iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(addresses(&responses[0]).len(), 2);
    assert_eq!(addresses(&responses[1]), vec![ip("2001:db8::1")]);
    assert!(responses[2].answers.is_empty() && responses[2].metadata.authoritative);
}

#[tokio::test]
async fn answers_larger_than_the_client_buffer_are_truncated_and_complete_over_tcp() {
    let rules: Vec<_> = (0..100)
        .map(|i| {
            rule(
                &format!("r{i}"),
                "many.example",
                &format!("198.51.100.{i}"),
                Some(30),
            )
        })
        .collect();
    let mep = Mep::start(&rules, vec![]).await;

    let classic = query(9, "many.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let raw = exchange_udp_raw(mep.addr(), &classic).await;
    assert!(raw.len() <= 512, "{} bytes without EDNS", raw.len());
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    assert!(!m.answers.is_empty() && m.answers.len() < 100);

    let edns = query(9, "many.example.", RecordType::A, Some(4096))
        .to_vec()
        .unwrap();
    let raw = exchange_udp_raw(mep.addr(), &edns).await;
    assert!(
        raw.len() <= 1232,
        "{} bytes: our own EDNS size caps the client's",
        raw.len()
    );
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());

    let full = tcp(mep.addr(), "many.example.", RecordType::A).await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 100);
}

async fn dig(server: std::net::SocketAddr, args: &[&str]) -> String {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=5", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig (Debian package dnsutils, installed by scripts/setup.sh) runs");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn dig_gets_authoritative_answers_over_udp_and_tcp() {
    let mep = Mep::start(&edge_rules(), vec![]).await;
    for transport in ["+notcp", "+tcp"] {
        let out = dig(mep.addr(), &[transport, "EDGE.example", "A"]).await;
        assert!(out.contains("status: NOERROR"), "{transport}: {out}");
        assert!(out.contains("flags: qr aa rd ra;"), "{transport}: {out}");
        assert!(out.contains("192.0.2.2"), "{transport}: {out}");
    }
    let nodata = dig(mep.addr(), &["edge.example", "MX"]).await;
    assert!(nodata.contains("status: NOERROR"), "{nodata}");
    assert!(nodata.contains("ANSWER: 0, AUTHORITY: 1"), "{nodata}");
}
