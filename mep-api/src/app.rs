//! Wires a `mep` process together: store, registry, notifier, the liveness sweeper and the Mp1 and
//! Mm5 listeners; and takes it apart again on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use mep_dns::DnsServer;
use mep_net::{fd, ConnLimits, ConnTable};
use mep_rules::{DataPlane, SnapshotReader};

use crate::apps::{Apps, AppsError, AppsParts};
use crate::auth::middleware::{require_operator_token, OperatorToken};
use crate::auth::service::{run_key_maintenance, AuthError};
use crate::auth::Auth;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::directory::KnownApps;
use crate::http::header_case::spelling_template;
use crate::http::middleware::{
    limit_uri_length, problem_for_routing_errors, read_body_within, record_metrics, BodyLimits,
    MetricsContext,
};
use crate::http::serve::{serve, Listener};
use crate::links::Links;
use crate::metrics::Metrics;
use crate::mm5::{ops_router, OpsState};
use crate::model::ids::new_id;
use crate::model::service::{
    EndPointInfo, GrantType, OAuth2Info, SecurityInfo, TransportInfo, TransportType,
};
use crate::mp1::app_support::AppSupportState;
use crate::mp1::timing::{NtpServer, PtpMaster};
use crate::notify::{Notifier, NotifyConfig};
use crate::readiness::{Part, Readiness};
use crate::registry::{run_liveness_sweeper, Registry, RegistryError, RegistryParts};
use crate::store::{Store, StoreError, Table, Write};
use crate::tls::TlsError;
use crate::{auth, dataplanes, mm5, mp1, problem, tls};

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
    registry: Arc<Registry>,
    apps: Arc<Apps>,
    store: Store,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
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

    /// Starts with some parts substituted.
    pub async fn start_with(config: Config, substitutes: Substitutes) -> Result<Self, StartError> {
        let clock = substitutes.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mm5_exposed = !config.mm5_addr.ip().is_loopback();
        if mm5_exposed && config.tls.mm5_client_ca.is_none() && config.mm5_token.is_none() {
            return Err(StartError::Mm5Unprotected(config.mm5_addr));
        }
        let budget = descriptor_budget(&config);
        let store = Store::open(&config.data_dir)?;
        let mp1_listener = bind(config.mp1_addr).await?;
        let mm5_listener = bind(config.mm5_addr).await?;
        let mp1_addr = local_addr(&mp1_listener, config.mp1_addr)?;
        let mm5_addr = local_addr(&mm5_listener, config.mm5_addr)?;
        let links = Links::new(&config.api_root.clone().unwrap_or_else(|| {
            let host = if mp1_addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                match mp1_addr {
                    SocketAddr::V4(a) => a.ip().to_string(),
                    SocketAddr::V6(a) => format!("[{}]", a.ip()),
                }
            };
            let scheme = if config.insecure_http {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{host}:{}", mp1_addr.port())
        }));
        let identity = if config.insecure_http && config.tls.mm5_client_ca.is_none() {
            None
        } else {
            Some(tls::identity(
                &config.tls,
                &config.data_dir,
                &tls::default_names(config.api_root.as_deref(), mp1_addr),
            )?)
        };
        let mp1_tls = match (&identity, config.insecure_http) {
            (Some(identity), false) => Some(tls::acceptor(identity, None)?),
            _ => None,
        };
        let mm5_tls = match &identity {
            Some(identity) if config.tls.mm5_client_ca.is_some() || mm5_exposed => Some(
                tls::acceptor(identity, config.tls.mm5_client_ca.as_deref())?,
            ),
            _ => None,
        };
        let auth = Arc::new(Auth::open(
            config.auth.clone(),
            &config.data_dir,
            store.clone(),
            clock.clone(),
        )?);
        if !config.auth.enabled {
            tracing::warn!("authentication is off: every Mp1 caller is trusted (--no-auth)");
        }

        let shutdown = CancellationToken::new();
        let readiness = Arc::new(Readiness::default());
        let metrics = Arc::new(Metrics::new());
        let notify_config = NotifyConfig {
            max_in_flight: budget.notify,
            ..config.notify.clone()
        };
        let notifier = Notifier::new(notify_config, metrics.clone(), shutdown.clone())?;
        let mut transports = vec![platform_transport(&store, &links).await?];
        transports.extend(config.transports.iter().cloned());
        let registry = Arc::new(Registry::load(RegistryParts {
            store: store.clone(),
            clock: clock.clone(),
            links: links.clone(),
            notifier: notifier.clone(),
            limits: config.limits.clone(),
            liveness: config.liveness,
            transports,
        })?);
        let dataplane = match substitutes.dataplane {
            Some(dataplane) => dataplane,
            None => dataplanes::build(&config.dataplane).map_err(StartError::DataPlane)?,
        };
        let apps = Arc::new(
            Apps::load(AppsParts {
                store: store.clone(),
                clock: clock.clone(),
                links: links.clone(),
                notifier,
                dataplane,
                registry: registry.clone(),
                config: config.apps.clone(),
                readiness: readiness.clone(),
            })
            .await?,
        );
        readiness.set(Part::Store, true);

        let spelling = spelling_template().await;
        let mp1_router = with_common_layers(
            auth::protect(
                mp1::service_mgmt::router(registry.clone()).merge(mp1::app_support::router(
                    AppSupportState {
                        apps: apps.clone(),
                        clock,
                        ntp_servers: config
                            .ntp_servers
                            .iter()
                            .map(|s| NtpServer::named(s))
                            .collect(),
                        ptp_masters: config
                            .ptp_masters
                            .iter()
                            .map(|a| PtpMaster::at(*a))
                            .collect(),
                    },
                )),
                &auth,
                &config.callback_allow,
                Arc::new(KnownApps {
                    auth: auth.clone(),
                    apps: apps.clone(),
                    registry: registry.clone(),
                    trusting: !config.auth.enabled,
                }),
            )
            .merge(auth::endpoint::router(auth.clone())),
            &config,
            MetricsContext {
                metrics: metrics.clone(),
                listener: "mp1",
            },
        );
        let mm5_router = with_common_layers(
            ops_router(OpsState {
                metrics: metrics.clone(),
                registry: registry.clone(),
                store: store.clone(),
                dataplane: apps.dataplane().clone(),
                readiness: readiness.clone(),
            })
            .merge(mm5::appd::router(apps.clone()))
            .merge(mm5::capabilities::router(registry.clone()))
            .merge(mm5::termination::router(apps.clone(), auth.clone()))
            .merge(mm5::credentials::router(auth.clone())),
            &config,
            MetricsContext {
                metrics: metrics.clone(),
                listener: "mm5",
            },
        );

        let dns_config = mep_dns::DnsConfig {
            max_tcp_connections: budget.dns_tcp,
            ..config.dns.clone()
        };
        let dns = DnsServer::start(dns_config, apps.snapshots(), shutdown.clone())
            .await
            .map_err(StartError::Dns)?;
        metrics.register_with(|registry| dns.metrics().register(registry));
        let dns_addr = dns.local_addr();
        readiness.set(Part::Dns, true);

        let mut tasks = JoinSet::new();
        tasks.spawn(dns.stopped());
        let table = |name, max_connections| {
            ConnTable::new(
                name,
                ConnLimits {
                    max_connections,
                    max_per_client: config.http.max_connections_per_client,
                    idle_timeout: config.http.idle_timeout,
                    min_idle_timeout: config.http.min_idle_timeout,
                    // hyper times request heads once it reads them; this covers the time
                    // before (the TLS handshake, the protocol sniff) on a new connection.
                    first_request_timeout: Some(config.http.header_timeout),
                },
            )
        };
        tasks.spawn(serve(
            Listener {
                name: "mp1",
                listener: mp1_listener,
                router: mp1_router,
                spelling: spelling.clone(),
                tls: mp1_tls,
                table: table("mp1", budget.mp1),
                header_timeout: config.http.header_timeout,
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        ));
        let mm5_router = match &config.mm5_token {
            Some(token) => mm5_router.layer(axum::middleware::from_fn_with_state(
                Arc::new(OperatorToken::new(token.expose_secret())),
                require_operator_token,
            )),
            None => mm5_router,
        };
        tasks.spawn(serve(
            Listener {
                name: "mm5",
                listener: mm5_listener,
                router: mm5_router,
                spelling,
                tls: mm5_tls,
                table: table("mm5", budget.mm5),
                header_timeout: config.http.header_timeout,
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        ));
        tasks.spawn(run_key_maintenance(auth.clone(), shutdown.clone()));
        {
            let apps = apps.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { apps.sync_dataplane(shutdown).await });
        }
        tasks.spawn(run_liveness_sweeper(
            registry.clone(),
            config.liveness_sweep,
            shutdown.clone(),
        ));
        tracing::info!(
            %mp1_addr, %mm5_addr, %dns_addr, api_root = links.api_root(),
            data_dir = %config.data_dir.display(),
            "mep is serving"
        );
        Ok(Mep {
            mp1_addr,
            mm5_addr,
            dns_addr,
            registry,
            apps,
            store,
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

fn with_common_layers(router: Router, config: &Config, metrics: MetricsContext) -> Router {
    router
        .fallback(|| async {
            problem::problem_response(
                http::StatusCode::NOT_FOUND,
                "no resource at this URI".into(),
            )
        })
        .layer(axum::middleware::from_fn(problem_for_routing_errors))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                max_bytes: config.max_body_bytes,
                timeout: config.http.body_timeout,
            },
            read_body_within,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.max_uri_bytes,
            limit_uri_length,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            record_metrics,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
}

/// Raises the descriptor limit to the hard limit and divides it between the listeners (Mm5
/// first, so the platform manager and `/health` answer however Mp1 is flooded).
fn descriptor_budget(config: &Config) -> fd::Budget {
    let limit = match fd::raise_to_hard() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise RLIMIT_NOFILE; assuming 1024");
            fd::FdLimit {
                soft: 1024,
                hard: 1024,
                raised_from: None,
            }
        }
    };
    let open = fd::open_now();
    let budget = fd::divide(
        limit.soft,
        open,
        fd::Wanted {
            mp1: config.http.mp1_max_connections,
            mm5: config.http.mm5_max_connections,
            dns_tcp: config.dns.max_tcp_connections,
            notify: config.notify.max_in_flight,
        },
    );
    tracing::info!(
        soft = limit.soft,
        hard = limit.hard,
        raised_from = ?limit.raised_from,
        open,
        mp1 = budget.mp1,
        mm5 = budget.mm5,
        dns_tcp = budget.dns_tcp,
        notify = budget.notify,
        reserve = budget.reserve,
        "descriptor budget"
    );
    budget
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// The REST transport the platform offers, with an id allocated at first start and kept.
async fn platform_transport(store: &Store, links: &Links) -> Result<TransportInfo, StartError> {
    const KEY: &str = "platform_transport_id";
    let id = match store
        .load(Table::Meta)?
        .into_iter()
        .find(|(k, _)| k == KEY)
        .and_then(|(_, v)| String::from_utf8(v).ok())
    {
        Some(id) => id,
        None => {
            let id = new_id();
            store
                .commit(vec![Write::Put {
                    table: Table::Meta,
                    key: KEY.into(),
                    value: id.clone().into_bytes(),
                }])
                .await?;
            id
        }
    };
    Ok(TransportInfo {
        id,
        name: "REST".into(),
        description: Some("REST over HTTP/1.1 through the MEC platform (mep Mp1)".into()),
        transport_type: TransportType::RestHttp,
        protocol: "HTTP".into(),
        version: "1.1".into(),
        endpoint: EndPointInfo {
            uris: Some(vec![format!("{}/mep", links.api_root())]),
            ..Default::default()
        },
        security: SecurityInfo {
            o_auth2_info: Some(OAuth2Info {
                grant_types: vec![GrantType::ClientCredentials],
                token_endpoint: Some(format!(
                    "{}{}",
                    links.api_root(),
                    auth::endpoint::TOKEN_PATH
                )),
            }),
        },
        impl_specific_info: None,
    })
}
