//! TLS on the listeners: Mp1 over HTTPS with the generated CA, plain HTTP to the TLS port, slow
//! handshakes, exact header spelling and ALPN over TLS, and the protection Mm5 needs when it
//! listens beyond loopback (an operator token or mutual TLS).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mep_api::config::Secret;
use mep_api::Mep;
use mep_tests::{service_body, test_config, TestMep, SERVICE_MGMT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const OPERATOR_TOKEN: &str = "operator-token-0123456789";

fn https_client(data_dir: &Path) -> reqwest::Client {
    let ca = std::fs::read(data_dir.join("tls/ca.pem")).expect("the CA was written");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start_tls(dir: &Path) -> TestMep {
    let mut config = test_config(dir);
    config.insecure_http = false;
    TestMep::start_with(config).await
}

#[tokio::test]
async fn an_https_client_trusting_the_generated_ca_talks_to_mp1() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_tls(dir.path()).await;
    let port = mep.mep.mp1_addr.port();
    let client = https_client(dir.path());

    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{port}{SERVICE_MGMT}/transports"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        let transports: Value = r.json().await.unwrap();
        assert_eq!(
            transports[0]["endpoint"]["uris"][0],
            format!("https://127.0.0.1:{port}/mep"),
            "the API root defaults to https"
        );
        assert_eq!(
            transports[0]["security"]["oAuth2Info"]["tokenEndpoint"],
            format!("https://127.0.0.1:{port}/mep/token")
        );
    }
    let r = client
        .post(format!(
            "https://localhost:{port}{SERVICE_MGMT}/applications/app-1/services"
        ))
        .json(&service_body("rnis"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://"));

    // A client that does not trust the CA refuses the certificate.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("https://localhost:{port}{SERVICE_MGMT}/transports"))
        .send()
        .await
        .is_err());
    mep.stop().await;
}

fn rustls_client(data_dir: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(data_dir.join("tls/ca.pem")).unwrap();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(&ca).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn header_spelling_and_alpn_hold_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_tls(dir.path()).await;
    let addr = mep.mep.mp1_addr;
    let client = https_client(dir.path());
    let created: Value = client
        .post(format!(
            "https://localhost:{}{SERVICE_MGMT}/applications/app-1/services",
            addr.port()
        ))
        .json(&service_body("rnis"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["serInstanceId"].as_str().unwrap();

    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = rustls_client(dir.path(), &[b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!(
        "GET {SERVICE_MGMT}/services/{id} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\r\nETag: \""), "{response}");
    assert!(
        response.contains("\r\nContent-Type: application/json"),
        "{response}"
    );

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let h2 = rustls_client(dir.path(), &[b"h2", b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    mep.stop().await;
}

#[tokio::test]
async fn plain_http_and_silent_clients_do_not_disturb_the_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mep = start_tls(dir.path()).await;
    let port = mep.mep.mp1_addr.port();
    let client = https_client(dir.path());
    let url = format!("https://localhost:{port}{SERVICE_MGMT}/transports");

    // Plain HTTP to the TLS port fails on the client side; the server goes on.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}{SERVICE_MGMT}/transports"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "{plain:?}"
    );
    // A client that connects and never starts the handshake holds up nobody.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Shutdown does not wait for the silent client's handshake to time out.
    let stopping = std::time::Instant::now();
    mep.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn mm5_beyond_loopback_without_protection_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.mm5_addr = "0.0.0.0:0".parse().unwrap();
    let err = match Mep::start(config).await {
        Ok(mep) => {
            mep.shutdown().await;
            panic!("mep started with an unprotected Mm5 on 0.0.0.0");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("mm5_client_ca") && err.contains("mm5_token") && err.contains("0.0.0.0"),
        "{err}"
    );
}

#[tokio::test]
async fn mm5_with_an_operator_token_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.mm5_addr = "0.0.0.0:0".parse().unwrap();
    config.mm5_token = Some(Secret::from(OPERATOR_TOKEN));
    let mep = TestMep::start_with(config).await;
    let base = format!("http://127.0.0.1:{}", mep.mep.mm5_addr.port());

    let r = mep
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"mep\"");
    let r = mep
        .http
        .get(format!("{base}/metrics"))
        .bearer_auth("operator-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = mep
        .http
        .get(format!("{base}/metrics"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let confs = format!("{base}/mep/appMng/v1/applications/app-1/confs");
    assert_eq!(mep.http.get(&confs).send().await.unwrap().status(), 401);
    // Probes may check health without the token.
    let r = mep.http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    mep.stop().await;
}

#[tokio::test]
async fn mm5_beyond_loopback_is_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.insecure_http = false;
    config.mm5_addr = "0.0.0.0:0".parse().unwrap();
    config.mm5_token = Some(Secret::from(OPERATOR_TOKEN));
    let mep = TestMep::start_with(config).await;
    let port = mep.mep.mm5_addr.port();
    let client = https_client(dir.path());
    let r = client
        .get(format!("https://127.0.0.1:{port}/metrics"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain = mep
        .http
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.as_ref().map_or(true, |r| !r.status().is_success()));
    mep.stop().await;
}

/// A CA and a client certificate it signed, as PEM: (ca, client cert, client key).
fn client_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "MECM client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["mecm".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "mecm");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn mm5_with_a_client_ca_requires_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_pki();
    let ca_file = dir.path().join("mecm-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let mut config = test_config(dir.path());
    config.mm5_addr = "0.0.0.0:0".parse().unwrap();
    config.tls.mm5_client_ca = Some(ca_file);
    let mep = TestMep::start_with(config).await;
    let url = format!("https://127.0.0.1:{}/metrics", mep.mep.mm5_addr.port());

    assert!(
        https_client(dir.path()).get(&url).send().await.is_err(),
        "no client certificate, no connection"
    );
    let server_ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let with_cert = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&server_ca).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = with_cert.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    mep.stop().await;
}
