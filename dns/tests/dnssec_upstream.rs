//! DNSSEC through mep: Knot DNS serves a zone it signs itself (`dnssec-signing: on`) as mep's
//! upstream, and kdig asks mep. A client that sets DO gets the signatures (and the NSEC proofs of
//! a negative answer) exactly as Knot sent them; one that does not gets none. Needs `knotd` and
//! `kdig` (Debian `knot`, `knot-dnsutils`; scripts/setup.sh installs them).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A knotd on a loopback port serving `signed.test`, signed on load.
struct Knot {
    child: Child,
    _dir: Scratch,
    addr: SocketAddr,
}

impl Knot {
    fn start() -> Knot {
        let scratch = Scratch::new("mep-knot");
        let dir = scratch.0.clone();
        let port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("knot.conf"),
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n\
                 database:\n    storage: {d}\n\
                 template:\n  - id: default\n    storage: {d}\n    dnssec-signing: on\n\
                 zone:\n  - domain: signed.test\n    file: signed.test.zone\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("signed.test.zone"),
            "$ORIGIN signed.test.\n$TTL 300\n\
             @ SOA ns.signed.test. hostmaster.signed.test. 1 3600 600 86400 60\n\
             @ NS ns\nns A 127.0.0.1\nwww A 192.0.2.80\n",
        )
        .unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd (Debian package knot, installed by scripts/setup.sh) starts");
        let knot = Knot {
            child,
            _dir: scratch,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !kdig(knot.addr, &["+dnssec", "www.signed.test", "A"]).contains("RRSIG") {
            assert!(Instant::now() < deadline, "knotd serves the signed zone");
            std::thread::sleep(Duration::from_millis(100));
        }
        knot
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kdig(server: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=5", "+retry=0"])
        .args(args)
        .output()
        .expect("kdig (Debian package knot-dnsutils, installed by scripts/setup.sh) runs");
    String::from_utf8(output.stdout).unwrap()
}

async fn kdig_async(server: SocketAddr, args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || kdig(server, args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_and_denial_proofs_reach_clients_that_set_do() {
    let knot = tokio::task::spawn_blocking(Knot::start).await.unwrap();
    let mep = Mep::start(&[], vec![knot.addr]).await;

    let signed = kdig_async(mep.addr(), &["+dnssec", "www.signed.test", "A"]).await;
    assert!(signed.contains("status: NOERROR"), "{signed}");
    assert!(signed.contains("192.0.2.80"), "{signed}");
    assert!(
        signed.contains("RRSIG\tA 13"),
        "the A record's signature: {signed}"
    );
    assert!(signed.contains("flags: do"), "DO echoed: {signed}");

    let plain = kdig_async(mep.addr(), &["www.signed.test", "A"]).await;
    assert!(plain.contains("192.0.2.80"), "{plain}");
    assert!(
        !plain.contains("RRSIG"),
        "no signatures without DO: {plain}"
    );

    // Over TCP, and from the cache the second time: the same signatures.
    for _ in 0..2 {
        let tcp = kdig_async(mep.addr(), &["+tcp", "+dnssec", "www.signed.test", "A"]).await;
        assert!(tcp.contains("RRSIG\tA 13"), "{tcp}");
    }

    let keys = kdig_async(mep.addr(), &["+dnssec", "signed.test", "DNSKEY"]).await;
    assert!(keys.contains("DNSKEY\t257"), "{keys}");
    assert!(keys.contains("RRSIG\tDNSKEY"), "{keys}");

    let missing = kdig_async(mep.addr(), &["+dnssec", "nope.signed.test", "A"]).await;
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(missing.contains("NSEC"), "the denial proof: {missing}");
    assert!(missing.contains("RRSIG\tSOA"), "{missing}");
}
