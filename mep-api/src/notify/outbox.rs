//! The site's notification outbox, on a store shared by several nodes.
//!
//! A node that makes a change does not send its notifications itself: it puts them in the
//! `outbox` table in the same commit as the change, so a change is never stored without them.
//! The elected leader (see [`Leadership`]) delivers what the outbox holds and deletes each
//! record once it is settled (delivered, given up or dropped). A new leader lists the outbox
//! and resumes with what is still there, so a notification survives the death of the node that
//! made the change and of the leader that was sending it: at least once across a failover (a
//! leader that dies after a delivery and before its delete makes its successor send it again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Notifier, Outgoing, Settled};
use crate::model::ids::new_id;
use crate::store::{Leadership, Replicated, Store, Table, Write};

/// Settled records deleted in one commit at most.
const DELETE_BATCH: usize = 128;
/// Wait before deletes that failed are tried again.
const DELETE_RETRY: Duration = Duration::from_millis(500);

/// A notification as the outbox holds it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    subscription: String,
    callback: String,
    /// The notification's JSON document.
    body: String,
}

/// The leader's side of the outbox. Every node has one; only the leader's sends.
pub struct Outbox {
    store: Store,
    notifier: Notifier,
    leadership: Leadership,
    /// Records handed to delivery whose delete has not been committed yet.
    in_flight: Mutex<HashSet<String>>,
    settled: mpsc::UnboundedSender<String>,
    settled_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    shutdown: CancellationToken,
}

impl Outbox {
    pub fn new(
        store: Store,
        notifier: Notifier,
        leadership: Leadership,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (settled, settled_rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            store,
            notifier,
            leadership,
            in_flight: Mutex::new(HashSet::new()),
            settled,
            settled_rx: Mutex::new(Some(settled_rx)),
            shutdown,
        })
    }

    /// The write that puts `outgoing` in the outbox, to commit with the change it tells of.
    pub fn write(outgoing: &Outgoing) -> Write {
        let record = Record {
            subscription: outgoing.subscription.clone(),
            callback: outgoing.callback.clone(),
            body: String::from_utf8_lossy(&outgoing.body).into_owned(),
        };
        Write::Put {
            table: Table::Outbox,
            key: new_id(),
            // A record of three strings always serializes.
            value: serde_json::to_vec(&record).unwrap_or_default(),
        }
    }

    /// An outbox record put or deleted by any node (this one included): the leader delivers a
    /// new one.
    pub fn apply_replicated(self: &Arc<Self>, change: &Replicated) {
        self.store.claim(change);
        match change.value {
            Some(_) if self.leadership.is_leader() => self.hand_over(change),
            Some(_) => {}
            None => {
                self.in_flight.lock().remove(&change.key);
            }
        }
    }

    /// Queues one record for delivery unless it already is.
    fn hand_over(self: &Arc<Self>, change: &Replicated) {
        let Ok(Some(record)) = change.decode::<Record>() else {
            // An unreadable record would stay for ever: settle it at once.
            let _ = self.settled.send(change.key.clone());
            return;
        };
        if !self.in_flight.lock().insert(change.key.clone()) {
            return;
        }
        let key = change.key.clone();
        let (settled, shutdown) = (self.settled.clone(), self.shutdown.clone());
        let then = Settled::new(move || {
            // A process that stops leaves its queued records to the next leader.
            if !shutdown.is_cancelled() {
                let _ = settled.send(key);
            }
        });
        self.notifier.deliver_then(
            Outgoing {
                subscription: record.subscription,
                callback: record.callback,
                // Exactly its bytes: a decoded string may keep spare capacity.
                body: Bytes::copy_from_slice(record.body.as_bytes()),
            },
            then,
        );
    }

    /// Until `shutdown`: on each won election, sends what the outbox holds; deletes settled
    /// records in batches.
    pub async fn run(self: Arc<Self>) {
        let Some(mut settled) = self.settled_rx.lock().take() else {
            return;
        };
        let mut leads = self.leadership.subscribe();
        let mut pending: Vec<String> = Vec::new();
        let mut took_over = *leads.borrow_and_update();
        loop {
            if took_over {
                self.resume().await;
                took_over = false;
            }
            if pending.is_empty() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    changed = leads.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        took_over = *leads.borrow_and_update();
                        continue;
                    }
                    key = settled.recv() => match key {
                        Some(key) => pending.push(key),
                        None => return,
                    },
                }
            }
            while pending.len() < DELETE_BATCH {
                match settled.try_recv() {
                    Ok(key) => pending.push(key),
                    Err(_) => break,
                }
            }
            if self.delete(&pending).await {
                pending.clear();
            } else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(DELETE_RETRY) => {}
                }
            }
        }
    }

    /// Hands over every record the outbox holds now, oldest first.
    async fn resume(self: &Arc<Self>) {
        match self.store.list_now(Table::Outbox).await {
            Ok(records) => {
                if !records.is_empty() {
                    tracing::info!(
                        records = records.len(),
                        "resuming the notifications a previous leader left"
                    );
                }
                for record in &records {
                    self.hand_over(record);
                }
            }
            // The next record put reaches this node by the watch; the rest waits for the
            // next election.
            Err(e) => tracing::warn!(error = %e, "cannot list the notification outbox"),
        }
    }

    /// Deletes settled records; answers whether that was committed.
    async fn delete(&self, keys: &[String]) -> bool {
        let writes = keys
            .iter()
            .map(|key| Write::Delete {
                table: Table::Outbox,
                key: key.clone(),
            })
            .collect();
        match self.store.commit(writes).await {
            Ok(()) => {
                let mut in_flight = self.in_flight.lock();
                for key in keys {
                    in_flight.remove(key);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, records = keys.len(), "settled notifications not yet removed from the outbox");
                false
            }
        }
    }
}
