//! Wires a `mep` process together and takes it apart again on shutdown: [`core`] holds the
//! state (store, auth, registry, applications), [`listeners`] binds and guards the sockets,
//! [`routers`] builds the Mp1 and Mm5 APIs, and [`Mep::start_with`] starts the servers and the
//! background work in that order.

mod core;
mod listeners;
mod replication;
mod routers;
#[cfg(test)]
pub(crate) mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use mep_dns::DnsServer;
use mep_rules::{DataPlane, SnapshotReader};

use crate::apps::{Apps, AppsError};
use crate::auth::service::AuthError;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::header_case::spelling_template;
use crate::http::serve::{serve, Listener};
use crate::readiness::Part;
use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError};
use crate::tls::TlsError;

use self::core::Core;
use self::listeners::{conn_table, descriptor_budget, Bound, TlsAcceptors};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load state: {0}")]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the notification client: {0}")]
    Notifier(#[from] reqwest::Error),
    #[error("cannot load application state: {0}")]
    Apps(#[from] AppsError),
    #[error("cannot set up the data plane: {0}")]
    DataPlane(String),
    #[error("cannot start the DNS server: {0}")]
    Dns(#[from] mep_dns::DnsError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(
        "Mm5 would listen on {0}, which is not a loopback address, without protection: \
         configure mm5_client_ca (mutual TLS) or mm5_token (operator bearer token)"
    )]
    Mm5Unprotected(SocketAddr),
}

/// Parts a caller may provide instead of those the configuration describes (tests use a manual
/// clock and data planes that fail on purpose).
#[derive(Default)]
pub struct Substitutes {
    pub clock: Option<Arc<dyn Clock>>,
    pub dataplane: Option<Arc<dyn DataPlane>>,
}

/// A running `mep`.
pub struct Mep {
    pub mp1_addr: SocketAddr,
    pub mm5_addr: SocketAddr,
    /// Where the DNS server answers (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// Where DNS over TLS is served, if it is (`dns_tls_addr`).
    pub dns_tls_addr: Option<SocketAddr>,
    /// Where DNS over HTTPS is served, if it is (`dns_https_addr`).
    pub dns_https_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    apps: Arc<Apps>,
    store: Store,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

/// The store the configuration names.
async fn open_store(config: &Config) -> Result<Store, StoreError> {
    match &config.store {
        crate::config::StoreChoice::Redb => Store::open(&config.data_dir),
        #[cfg(feature = "etcd")]
        crate::config::StoreChoice::Etcd {
            endpoints,
            prefix,
            node_id,
            ca_file,
            cert_file,
            key_file,
            request_timeout,
            write_deadline,
        } => {
            Store::open_etcd(crate::store::etcd::EtcdConfig {
                endpoints: endpoints.clone(),
                prefix: prefix.clone(),
                node_id: node_id.clone(),
                tls: ca_file.as_ref().map(|ca| crate::store::etcd::EtcdTls {
                    ca_file: ca.clone(),
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                    domain: None,
                }),
                request_timeout: *request_timeout,
                write_deadline: *write_deadline,
            })
            .await
        }
        #[cfg(not(feature = "etcd"))]
        crate::config::StoreChoice::Etcd { .. } => Err(StoreError::Config(
            "this mep was built without the etcd store (cargo feature etcd)".into(),
        )),
    }
}

impl Mep {
    /// Starts with the host clock.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts with the given clock (tests move time with a `ManualClock`).
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Self::start_with(
            config,
            Substitutes {
                clock: Some(clock),
                ..Default::default()
            },
        )
        .await
    }

    /// Starts with some parts substituted: binds the listeners, loads the state, then serves
    /// DNS, Mp1 and Mm5 and starts the background work (the data plane's first sync, key
    /// rotation, the liveness sweeper). `/ready` says when all of it is up.
    pub async fn start_with(config: Config, substitutes: Substitutes) -> Result<Self, StartError> {
        listeners::check_mm5_protection(&config)?;
        let budget = descriptor_budget(&config);
        let store = open_store(&config).await?;
        let bound = Bound::bind(&config).await?;
        let tls = TlsAcceptors::new(&config, bound.mp1_addr)?;
        let shutdown = CancellationToken::new();
        let core = Core::load(
            &config,
            substitutes,
            store,
            listeners::links(&config, bound.mp1_addr),
            budget.notify,
            &shutdown,
        )
        .await?;

        // DNS over TLS and over HTTPS connections come out of the DNS-over-TCP share of
        // descriptors, in equal parts.
        let stream_listeners = 1
            + usize::from(config.dns_tls_addr.is_some())
            + usize::from(config.dns_https_addr.is_some());
        let dns_stream_share = (budget.dns_tcp / stream_listeners).max(1);
        let dns_tls = match (config.dns_tls_addr, &tls.identity) {
            (Some(tls_addr), Some(identity)) => Some(mep_dns::EncryptedDns {
                tls_addr,
                max_connections: dns_stream_share,
                cert_chain: identity.chain.clone(),
                key: identity.key.clone_key(),
            }),
            _ => None,
        };
        let dns = DnsServer::start_with(
            mep_dns::DnsConfig {
                max_tcp_connections: dns_stream_share,
                ..config.dns.clone()
            },
            dns_tls.as_ref(),
            core.apps.snapshots(),
            shutdown.clone(),
        )
        .await?;
        core.metrics
            .register_with(|registry| dns.metrics().register(registry));
        let dns_addr = dns.local_addr();
        let dns_tls_addr = dns.tls_addr();
        let dns_answerer = dns.answerer();
        core.readiness.set(Part::Dns, true);

        let mut tasks = JoinSet::new();
        tasks.spawn(dns.stopped());
        let spelling = spelling_template().await;
        let listener = |name, listener, router, tls, max_connections| Listener {
            name,
            listener,
            router,
            spelling: spelling.clone(),
            tls,
            table: conn_table(&config, name, max_connections),
            header_timeout: config.http.header_timeout,
            metrics: core.metrics.clone(),
        };
        let (mp1_addr, mm5_addr) = (bound.mp1_addr, bound.mm5_addr);
        let mp1 = routers::mp1(&config, &core);
        let mm5 = routers::mm5(&config, &core);
        tasks.spawn(serve(
            listener("mp1", bound.mp1, mp1, tls.mp1, budget.mp1),
            shutdown.clone(),
        ));
        tasks.spawn(serve(
            listener("mm5", bound.mm5, mm5, tls.mm5, budget.mm5),
            shutdown.clone(),
        ));
        let mut dns_https_addr = None;
        if let (Some(addr), Some(identity)) = (config.dns_https_addr, &tls.identity) {
            let bound_doh = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            dns_https_addr = bound_doh.local_addr().ok();
            let acceptor = crate::tls::acceptor(identity, None)?;
            let router = routers::dns_https(&config, &core, dns_answerer);
            tasks.spawn(serve(
                listener(
                    "dns-https",
                    bound_doh,
                    router,
                    Some(acceptor),
                    dns_stream_share,
                ),
                shutdown.clone(),
            ));
        }
        core.spawn_background(&mut tasks, &config, &shutdown);
        tracing::info!(
            %mp1_addr, %mm5_addr, %dns_addr, api_root = core.links.api_root(),
            data_dir = %config.data_dir.display(),
            "mep is serving"
        );
        Ok(Mep {
            mp1_addr,
            mm5_addr,
            dns_addr,
            dns_tls_addr,
            dns_https_addr,
            registry: core.registry,
            apps: core.apps,
            store: core.store,
            shutdown,
            tasks,
        })
    }

    /// The registry, for in-process tests that drive liveness directly.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Application support: rules, snapshots, termination.
    pub fn apps(&self) -> &Arc<Apps> {
        &self.apps
    }

    /// A reader of the newest rule snapshot.
    pub fn snapshots(&self) -> SnapshotReader {
        self.apps.snapshots()
    }

    /// Stops accepting, lets in-flight requests finish, stops background work, releases the data
    /// plane and closes the store.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.apps.dataplane().shutdown().await;
        drop(self.apps);
        drop(self.registry);
        self.store.close().await;
        tracing::info!("mep stopped");
    }
}
