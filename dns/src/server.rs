//! Starting the DNS server: settle the configuration, bind UDP and TCP on one port, spawn the
//! tasks that serve them until shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mep_rules::SnapshotReader;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{DnsConfig, Upstream, RESOLV_CONF};
use crate::encrypted::EncryptedDns;
use crate::error::DnsError;
use crate::handler::{Outcome, QueryHandler};
use crate::metrics::{DnsMetrics, Transport};
use crate::tcp::{bind_tcp, serve_tcp, Framing, TcpLimits};
use crate::udp::{bind_udp, help_udp, listen_udp, serve_udp, UdpReaders};

/// With port 0, how often a fresh UDP port is tried when its TCP twin is taken.
const EPHEMERAL_PORT_TRIES: usize = 16;

/// mep's DNS server; see [`DnsServer::start`].
#[derive(Debug)]
pub struct DnsServer;

/// A running DNS server.
#[derive(Debug)]
pub struct DnsHandle {
    local_addr: SocketAddr,
    answerer: DnsAnswerer,
    tls_addr: Option<SocketAddr>,
    upstreams: Vec<Upstream>,
    metrics: Arc<DnsMetrics>,
    /// The listener tasks; each ends with `None` when cancelled.
    tasks: JoinSet<Option<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and serves until `shutdown` is cancelled. Each query
    /// reads the newest snapshot from `snapshots`, so a published rule change is answered from
    /// the very next query on. Must be called within a Tokio runtime.
    pub async fn start(
        config: DnsConfig,
        snapshots: SnapshotReader,
        shutdown: CancellationToken,
    ) -> Result<DnsHandle, DnsError> {
        Self::start_with(config, None, snapshots, shutdown).await
    }

    /// [`DnsServer::start`], and DNS over TLS as `encrypted` says.
    pub async fn start_with(
        config: DnsConfig,
        encrypted: Option<&EncryptedDns>,
        snapshots: SnapshotReader,
        shutdown: CancellationToken,
    ) -> Result<DnsHandle, DnsError> {
        let upstreams = config.resolved_upstreams(|| std::fs::read_to_string(RESOLV_CONF))?;
        let readers = match config.udp_readers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (udp, tcp) = bind_both(config.listen)?;
        let local_addr = tcp.local_addr().map_err(|source| DnsError::Bind {
            transport: "TCP",
            addr: config.listen,
            source,
        })?;
        let metrics = Arc::new(DnsMetrics::new());
        let handler = Arc::new(QueryHandler::new(
            &config,
            &upstreams,
            snapshots,
            Arc::clone(&metrics),
        )?);

        let mut tasks = JoinSet::new();
        let bind_error = |transport, source| DnsError::Bind {
            transport,
            addr: config.listen,
            source,
        };
        let udp = listen_udp(udp).map_err(|e| bind_error("UDP", e))?;
        let udp = UdpReaders::new(udp, Arc::clone(&handler));
        tasks.spawn(
            shutdown
                .clone()
                .run_until_cancelled_owned(serve_udp(Arc::clone(&udp))),
        );
        for _ in 1..readers {
            let help = help_udp(Arc::clone(&udp));
            tasks.spawn(shutdown.clone().run_until_cancelled_owned(help));
        }
        let listener = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_error("TCP", e))?;
        let limits = TcpLimits {
            table: mep_net::ConnLimits {
                max_connections: config.max_tcp_connections,
                max_per_client: config.max_tcp_per_client,
                idle_timeout: config.tcp_idle_timeout,
                min_idle_timeout: config.tcp_min_idle_timeout,
                first_request_timeout: None,
            },
            message_timeout: config.tcp_message_timeout,
        };
        let answerer = DnsAnswerer(Arc::clone(&handler));
        let serve = serve_tcp(
            listener,
            Framing::Tcp,
            Arc::clone(&handler),
            limits,
            shutdown.clone(),
        );
        tasks.spawn(shutdown.clone().run_until_cancelled_owned(serve));
        let mut tls_addr = None;
        if let Some(settings) = encrypted {
            let acceptor = settings.acceptor()?;
            let bind_error = |source| DnsError::Bind {
                transport: "TLS",
                addr: settings.tls_addr,
                source,
            };
            let tls = bind_tcp(settings.tls_addr).map_err(bind_error)?;
            tls_addr = Some(tls.local_addr().map_err(bind_error)?);
            let tls = tokio::net::TcpListener::from_std(tls).map_err(bind_error)?;
            let mut tls_limits = limits;
            tls_limits.table.max_connections = settings.max_connections;
            let serve = serve_tcp(
                tls,
                Framing::Tls(acceptor),
                handler,
                tls_limits,
                shutdown.clone(),
            );
            tasks.spawn(shutdown.run_until_cancelled_owned(serve));
        }
        tracing::info!(%local_addr, ?upstreams, udp_readers = readers, ?tls_addr,
            "DNS server listening");
        Ok(DnsHandle {
            local_addr,
            answerer,
            tls_addr,
            upstreams,
            metrics,
            tasks,
        })
    }
}

impl DnsHandle {
    /// The address UDP and TCP are bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers queries that arrive on other transports (DNS over HTTPS in the API server).
    pub fn answerer(&self) -> DnsAnswerer {
        self.answerer.clone()
    }

    /// Where DNS over TLS is served, if it is.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The upstream resolvers in use, in the order they are asked.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    pub fn metrics(&self) -> &Arc<DnsMetrics> {
        &self.metrics
    }

    /// Waits until the listeners have stopped after the shutdown token was cancelled.
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Answers DNS messages with the server's handler: the same local answers, cache and upstreams
/// as its own listeners.
#[derive(Clone)]
pub struct DnsAnswerer(Arc<QueryHandler>);

impl std::fmt::Debug for DnsAnswerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsAnswerer")
    }
}

impl DnsAnswerer {
    /// Distinct questions being forwarded right now (identical ones share one exchange).
    pub fn forwards_in_flight(&self) -> usize {
        self.0.forwards_in_flight()
    }

    /// The response to the query `packet` that came from `client` over `transport` (no size
    /// limit but the DNS message's); None when no response is due (not a query, or too short to
    /// be one).
    pub async fn answer(
        &self,
        packet: &[u8],
        transport: Transport,
        client: std::net::IpAddr,
    ) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self.0.answer_now(packet, transport, || client, &mut out) {
            Outcome::Answered => Some(out),
            Outcome::Ignored => None,
            Outcome::Forward(pending) => {
                self.0.answer_forwarded(pending, &mut out).await;
                Some(out)
            }
        }
    }
}

/// Binds the UDP socket and the TCP listener to the same port.
fn bind_both(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let bind_error = |transport, source| DnsError::Bind {
        transport,
        addr,
        source,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = bind_udp(addr).map_err(|e| bind_error("UDP", e))?;
        let port = udp.local_addr().map_err(|e| bind_error("UDP", e))?.port();
        match bind_tcp(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tries < EPHEMERAL_PORT_TRIES => {}
            Err(e) => return Err(bind_error("TCP", e)),
        }
    }
}
