//! Keeps this node in step with the other nodes of a site (etcd store): every change they
//! commit reaches the index that owns its table, in commit order.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apps::Apps;
use crate::auth::Auth;
use crate::notify::Outbox;
use crate::registry::Registry;
use crate::store::{Replicated, Store, Table};

/// Applies replicated changes until `shutdown` or the end of the stream.
pub(super) async fn run(
    mut changes: mpsc::Receiver<Replicated>,
    registry: Arc<Registry>,
    apps: Arc<Apps>,
    auth: Arc<Auth>,
    outbox: Arc<Outbox>,
    store: Store,
    shutdown: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => match c {
                Some(c) => c,
                None => return,
            },
        };
        match change.table {
            Table::Services => registry.apply_replicated_service(&change).await,
            Table::SerAvailabilitySubscriptions => {
                registry.apply_replicated_subscription(&change).await
            }
            Table::AppConfigs => apps.apply_replicated_config(&change).await,
            Table::Tasks
            | Table::TerminationSubscriptions
            | Table::Readiness
            | Table::Registrations => apps.apply_replicated_record(&change),
            Table::AppCredentials => auth.credentials().apply_replicated(&change).await,
            Table::Liveness => registry.apply_replicated_heartbeat(&change),
            Table::Meta => auth.apply_replicated_keys(&change),
            Table::Lockouts => auth.apply_replicated_lock(&change),
            Table::Outbox => outbox.apply_replicated(&change),
            Table::NotifiedLiveness => registry.apply_replicated_notified_liveness(&change).await,
            Table::Terminations => apps.apply_replicated_termination(&change),
            // Only the store's own check reads them; claiming keeps the record of what was
            // applied from growing with them.
            Table::SignedRequests => {
                store.claim(&change);
            }
        }
    }
}
