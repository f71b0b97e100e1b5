//! The DNS server inside `mep serve`: answers follow Mm5 and Mp1 rule changes from the very next
//! query, and everything else is forwarded.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use mep_tests::{appd_body, test_config, TestMep};
use reqwest::Method;
use serde_json::json;
use tokio::net::UdpSocket;

async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::new(0x4d45, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_follow_rule_changes_from_the_next_query() {
    let dir = tempfile::tempdir().unwrap();
    let mep = TestMep::start_with(test_config(dir.path())).await;
    let dns = mep.mep.dns_addr;

    let before = ask(dns, "video.edge.example.", RecordType::A).await;
    assert_ne!(
        before.metadata.response_code,
        ResponseCode::NoError,
        "not configured yet: forwarded to a dead upstream"
    );

    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "Video.Edge.Example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    let answer = ask(dns, "video.edge.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), vec!["192.0.2.10"]);
    assert_eq!(answer.answers[0].ttl, 30);
    let nodata = ask(dns, "VIDEO.edge.example.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(
        nodata.answers.is_empty(),
        "NODATA for another type of a covered name"
    );

    // The app switches the rule off over Mp1: the very next query no longer gets it.
    let url = mep.app_support("/applications/app-1/dns_rules/dns-1");
    let mut rule: serde_json::Value = mep.json_at(&url).await;
    rule["state"] = json!("INACTIVE");
    assert_eq!(mep.send_json(Method::PUT, &url, &rule).await.status(), 200);
    let gone = ask(dns, "video.edge.example.", RecordType::A).await;
    assert!(addresses(&gone).is_empty());

    // An Mm5 update with two addresses and ttl 0 answers both, with TTL 0.
    let mut two = appd_body("video", "video.edge.example");
    let mut second = two["appDNSRule"][0].clone();
    second["dnsRuleId"] = json!("dns-2");
    second["ipAddress"] = json!("192.0.2.11");
    two["appDNSRule"].as_array_mut().unwrap().push(second);
    for rule in two["appDNSRule"].as_array_mut().unwrap() {
        rule["ttl"] = json!(0);
    }
    let (_, progress) = mep.appd(Method::PUT, "app-1", Some(&two)).await;
    assert_eq!(progress["configResult"], "SUCCESS");
    let both = ask(dns, "video.edge.example.", RecordType::A).await;
    let mut got = addresses(&both);
    got.sort();
    assert_eq!(got, vec!["192.0.2.10", "192.0.2.11"]);
    assert!(both.answers.iter().all(|r| r.ttl == 0));

    let metrics = mep.metrics_text().await;
    assert!(
        metrics.contains("mep_dns_"),
        "DNS counters are exposed with the other metrics"
    );
    mep.stop().await;
}

/// A mep with `tweak` applied to its test configuration and the `video.edge.example` rule of
/// app-1 configured over Mm5; keep the directory while it runs.
async fn start_with_video_rule(
    tweak: impl FnOnce(&mut mep_api::Config),
) -> (TestMep, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let mep = TestMep::start_with(config).await;
    let (_, progress) = mep
        .appd(
            Method::POST,
            "app-1",
            Some(&appd_body("video", "video.edge.example")),
        )
        .await;
    assert_eq!(progress["configResult"], "SUCCESS");
    (mep, dir)
}

/// kdig over `transport` (+tls, +https, +https-get) to `server`, trusting the generated CA.
async fn kdig_encrypted(server: SocketAddr, data_dir: &std::path::Path, transport: &str) -> String {
    let ca = data_dir.join("tls/ca.pem");
    let out = tokio::process::Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            transport,
            "+time=5",
            "+retry=0",
        ])
        .arg(format!("+tls-ca={}", ca.display()))
        .args(["+tls-hostname=localhost", "video.edge.example", "A"])
        .output()
        .await
        .expect("kdig (Debian package knot-dnsutils, installed by scripts/setup.sh) runs");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn dns_over_tls_answers_rules_with_the_generated_certificate() {
    let (mep, dir) =
        start_with_video_rule(|c| c.dns_tls_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let tls = mep.mep.dns_tls_addr.expect("DNS over TLS listens");
    let out = kdig_encrypted(tls, dir.path(), "+tls").await;
    assert!(out.contains(";; TLS session"), "{out}");
    assert!(out.contains("192.0.2.10"), "{out}");
    assert!(out.contains("Flags: qr aa"), "{out}");
    let metrics = mep.metrics_text().await;
    assert!(
        metrics.contains("mep_dns_queries_total{transport=\"tls\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn dns_over_https_answers_get_and_post_like_udp() {
    let (mep, dir) =
        start_with_video_rule(|c| c.dns_https_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let doh = mep.mep.dns_https_addr.expect("DNS over HTTPS listens");
    let ca = dir.path().join("tls/ca.pem");
    for method in ["+https", "+https-get"] {
        let out = kdig_encrypted(doh, dir.path(), method).await;
        assert!(out.contains(";; HTTP session"), "{method}: {out}");
        assert!(out.contains("192.0.2.10"), "{method}: {out}");
        assert!(out.contains("Flags: qr aa"), "{method}: {out}");
    }

    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}/dns-query", doh.port());
    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("video.edge.example.").unwrap(),
        RecordType::A,
    ));
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query.to_vec().unwrap());
    let r = client
        .get(format!("{base}?dns={encoded}"))
        .header("accept", "application/dns-message")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dns-message");
    let answer = Message::from_vec(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(addresses(&answer), vec!["192.0.2.10"]);

    let doc: serde_json::Value = client
        .get(format!("https://localhost:{}/openapi.json", doh.port()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/dns-query"]["get"].is_object(), "{doc}");
    assert!(doc["paths"]["/dns-query"]["post"].is_object(), "{doc}");

    let missing = client.get(&base).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let garbled = client.get(format!("{base}?dns=%%%")).send().await.unwrap();
    assert_eq!(garbled.status(), 400);
    let repeated = client
        .get(format!("{base}?dns={encoded}&dns={encoded}"))
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), 400);
    assert_eq!(
        repeated.headers()["content-type"],
        "application/problem+json"
    );
    let wrong_type = client
        .post(&base)
        .header("content-type", "text/plain")
        .body(query.to_vec().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let not_a_query = client
        .post(&base)
        .header("content-type", "application/dns-message")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_query.status(), 400);
}
