//! Serves N generated DNS rules through mep's DNS server, for benchmarks (benches/dns.sh).
//! Rule i is `host<i>.<zone>` → 198.18.<i/256>.<i%256>
//! (the benchmarking range, RFC 2544), TTL 3600. With DOT_ADDR it also serves DNS over TLS there,
//! with a self-signed certificate. Stops on SIGINT or SIGTERM, and then prints how often a UDP
//! helper reader was called in (a load one reader did not keep up with).
//!
//! Usage: serve_rules LISTEN RULES ZONE UPSTREAM [THREADS [DOT_ADDR]]

use std::net::SocketAddr;
use std::sync::Arc;

use mep_dns::{DnsConfig, DnsServer, EncryptedDns};
use mep_rules::Snapshot;
use tokio_util::sync::CancellationToken;

#[path = "common/bench_rules.rs"]
mod bench_rules;
use bench_rules::bench_rules;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, rules, zone, upstream, rest @ ..] = args.as_slice() else {
        return Err("usage: serve_rules LISTEN RULES ZONE UPSTREAM [THREADS [DOT_ADDR]]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let count: u32 = rules.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let threads: usize = match rest.first() {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let dot = match rest.get(1) {
        Some(addr) => {
            let key = rcgen::KeyPair::generate()?;
            let cert =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
            Some(EncryptedDns {
                tls_addr: addr.parse()?,
                max_connections: 1024,
                cert_chain: vec![cert.der().clone()],
                key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            })
        }
        None => None,
    };
    let rules = bench_rules(count, zone);
    let snapshots = mep_rules::SnapshotPublisher::new();
    snapshots.publish(Arc::new(Snapshot::build(
        1,
        [],
        rules.iter().map(|r| ("bench-app", r)),
    )));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = DnsConfig {
            listen,
            upstreams: vec![upstream.into()],
            udp_readers: threads,
            ..DnsConfig::default()
        };
        let shutdown = CancellationToken::new();
        let handle =
            DnsServer::start_with(config, dot.as_ref(), snapshots.reader(), shutdown.clone())
                .await?;
        println!(
            "serving {count} rules on {} (DNS over TLS: {:?})",
            handle.local_addr(),
            handle.tls_addr()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        shutdown.cancel();
        let helper_calls = handle.metrics().udp_helper_calls();
        handle.stopped().await;
        println!("UDP helper calls: {helper_calls}");
        Ok(())
    })
}
