//! The design alternative mep's DNS server was measured against: the same N generated rules
//! answered through hickory-server's `Server` and a `RequestHandler` that reads the snapshot.
//! benches/dns.sh runs it beside mep's server for local answers. Answers A from the rules and
//! nothing else (no NODATA SOA, no forwarding).
//!
//! Usage: hickory_baseline LISTEN RULES ZONE [THREADS]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, Metadata, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use mep_rules::{Snapshot, SnapshotPublisher, SnapshotReader};

#[path = "common/bench_rules.rs"]
mod bench_rules;
use bench_rules::bench_rules;

struct SnapshotHandler {
    snapshots: SnapshotReader,
}

#[async_trait::async_trait]
impl RequestHandler for SnapshotHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let failed = |mut metadata: Metadata| {
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: Default::default(),
            })
        };
        let Ok(info) = request.request_info() else {
            return failed(metadata);
        };
        let name = info.query.name().to_string().to_ascii_lowercase();
        let snapshot = self.snapshots.load();
        let records: Vec<Record> = snapshot
            .dns_answers(name.trim_end_matches('.'))
            .unwrap_or_default()
            .iter()
            .filter_map(|answer| match answer.address {
                std::net::IpAddr::V4(a) => Some(Record::from_rdata(
                    info.query.name().into(),
                    answer.ttl.unwrap_or(300),
                    RData::A(A(a)),
                )),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        metadata.authoritative = true;
        if records.is_empty() {
            metadata.response_code = ResponseCode::NXDomain;
        }
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            records.iter(),
            [],
            [],
            [],
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => failed(metadata),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, rules, zone, rest @ ..] = args.as_slice() else {
        return Err("usage: hickory_baseline LISTEN RULES ZONE [THREADS]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let count: u32 = rules.parse()?;
    let threads: usize = match rest.first() {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let rules = bench_rules(count, zone);
    let snapshots = SnapshotPublisher::new();
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
        let mut server = Server::new(SnapshotHandler {
            snapshots: snapshots.reader(),
        });
        for _ in 0..threads {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(listen),
                socket2::Type::DGRAM,
                None,
            )?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&listen.into())?;
            server.register_socket(tokio::net::UdpSocket::from_std(socket.into())?);
        }
        let tcp = tokio::net::TcpListener::bind(listen).await?;
        server.register_listener(tcp, Duration::from_secs(10), 65_535);
        println!("hickory-server baseline serving {count} rules on {listen}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
