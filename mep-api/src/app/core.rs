//! The state of a `mep` process, loaded from the store: authentication, the service registry,
//! application support with its data plane, metrics and readiness; and the background work that
//! keeps it (the data plane's first sync, key rotation, the liveness sweeper).

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{StartError, Substitutes};
use crate::apps::{Apps, AppsParts};
use crate::auth::service::run_key_maintenance;
use crate::auth::service::AuthError;
use crate::auth::Auth;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::model::ids::new_id;
use crate::model::service::{
    EndPointInfo, GrantType, OAuth2Info, SecurityInfo, TransportInfo, TransportType,
};
use crate::notify::{Notifier, NotifyConfig, Outbox};
use crate::readiness::{Part, Readiness};
use crate::registry::{run_liveness_sweeper, Registry, RegistryParts};
use crate::store::{Check, Leadership, Store, StoreError, Table, Write};
use crate::{auth, dataplanes};

/// Everything the routers and the background work share.
pub(super) struct Core {
    pub(super) store: Store,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) links: Links,
    pub(super) auth: Arc<Auth>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) readiness: Arc<Readiness>,
    pub(super) registry: Arc<Registry>,
    pub(super) apps: Arc<Apps>,
    /// Whether this node sends the site's notifications (always, on a single node).
    pub(super) leadership: Leadership,
    outbox: Arc<Outbox>,
}

impl Core {
    /// Loads the state from `store`; `notify_slots` is the notifier's share of the descriptor
    /// budget.
    pub(super) async fn load(
        config: &Config,
        substitutes: Substitutes,
        store: Store,
        links: Links,
        notify_slots: usize,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        let clock = substitutes.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let auth = Arc::new(Auth::open(
            config.auth.clone(),
            &config.data_dir,
            config.master_key_file.as_deref(),
            store.clone(),
            clock.clone(),
        )?);
        auth.share_keys().await.map_err(AuthError::from)?;
        if !config.auth.enabled {
            tracing::warn!("authentication is off: every Mp1 caller is trusted (--no-auth)");
        }
        let readiness = Arc::new(Readiness::default());
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(
            NotifyConfig {
                max_in_flight: notify_slots,
                ..config.notify.clone()
            },
            metrics.clone(),
            shutdown.clone(),
        )?;
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
            None => {
                dataplanes::build(&config.dataplane, &config.dns).map_err(StartError::DataPlane)?
            }
        };
        let apps = Arc::new(
            Apps::load(AppsParts {
                store: store.clone(),
                clock: clock.clone(),
                links: links.clone(),
                notifier: notifier.clone(),
                dataplane,
                registry: registry.clone(),
                config: config.apps.clone(),
                readiness: readiness.clone(),
            })
            .await?,
        );
        readiness.set(Part::Store, true);
        let leadership = store.campaign();
        let outbox = Outbox::new(
            store.clone(),
            notifier,
            leadership.clone(),
            shutdown.clone(),
        );
        Ok(Core {
            leadership,
            outbox,
            store,
            clock,
            links,
            auth,
            metrics,
            readiness,
            registry,
            apps,
        })
    }

    /// The data plane's first sync (rule changes wait for it), key rotation and the liveness
    /// sweeper, each until `shutdown`.
    pub(super) fn spawn_background(
        &self,
        tasks: &mut JoinSet<()>,
        config: &Config,
        shutdown: &CancellationToken,
    ) {
        tasks.spawn(run_key_maintenance(self.auth.clone(), shutdown.clone()));
        let (apps, leadership, until) =
            (self.apps.clone(), self.leadership.clone(), shutdown.clone());
        tasks.spawn(async move { apps.sync_dataplane(leadership, until).await });
        if let Some(changes) = self.store.take_changes() {
            tasks.spawn(super::replication::run(
                changes,
                self.registry.clone(),
                self.apps.clone(),
                self.auth.clone(),
                self.outbox.clone(),
                self.store.clone(),
                shutdown.clone(),
            ));
            tasks.spawn(self.outbox.clone().run());
        }
        tasks.spawn(run_liveness_sweeper(
            self.registry.clone(),
            config.liveness_sweep,
            self.leadership.clone(),
            shutdown.clone(),
        ));
    }
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
            // Created once: nodes starting together on one etcd cluster agree on the first.
            let id = new_id();
            let created = store
                .commit_checked(
                    vec![Check::Absent {
                        table: Table::Meta,
                        key: KEY.into(),
                    }],
                    vec![Write::Put {
                        table: Table::Meta,
                        key: KEY.into(),
                        value: id.clone().into_bytes(),
                    }],
                )
                .await;
            match created {
                Ok(()) => id,
                Err(StoreError::Conflict) => store
                    .get(Table::Meta, KEY)
                    .await?
                    .and_then(|v| String::from_utf8(v).ok())
                    .ok_or(StoreError::Conflict)?,
                Err(e) => return Err(e.into()),
            }
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
