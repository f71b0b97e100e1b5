//! The embedded store: every durable record of mep lives in one redb file in the data directory.
//!
//! Writes go through a single writer thread that commits whatever batches are waiting in one
//! fsync'd transaction (group commit), so concurrent writers share the cost of durability while each
//! caller still learns only after its change is on disk. Reads of live state never come here: the
//! control plane keeps in-memory indexes and uses [`Store::load`] once at start.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

/// The tables of the store. Keys are ids; values are JSON documents owned by the module that writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Platform facts fixed at first start (such as the id of the platform's transport).
    Meta,
    Services,
    SerAvailabilitySubscriptions,
    /// Committed rule configuration per application instance.
    AppConfigs,
    /// Rule-change tasks (the journal of interrupted ones, the results of finished ones).
    Tasks,
    TerminationSubscriptions,
    Readiness,
    Registrations,
    /// Application credentials provisioned over Mm5 (secret keys sealed, see `auth::secrets`).
    AppCredentials,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Services,
        Table::SerAvailabilitySubscriptions,
        Table::AppConfigs,
        Table::Tasks,
        Table::TerminationSubscriptions,
        Table::Readiness,
        Table::Registrations,
        Table::AppCredentials,
    ];

    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Meta => TableDefinition::new("meta"),
            Table::Services => TableDefinition::new("services"),
            Table::SerAvailabilitySubscriptions => {
                TableDefinition::new("ser_availability_subscriptions")
            }
            Table::AppConfigs => TableDefinition::new("app_configs"),
            Table::Tasks => TableDefinition::new("tasks"),
            Table::TerminationSubscriptions => TableDefinition::new("termination_subscriptions"),
            Table::Readiness => TableDefinition::new("readiness"),
            Table::Registrations => TableDefinition::new("registrations"),
            Table::AppCredentials => TableDefinition::new("app_credentials"),
        }
    }
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        table: Table,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded store: {0}")]
    Redb(Box<redb::Error>),
    #[error("the store writer has stopped")]
    WriterGone,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

struct Batch {
    writes: Vec<Write>,
    /// Whether the caller waits for the writes to be on disk (an fsync), or only for them to be
    /// committed (visible, and on disk with the next durable commit).
    durable: bool,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the store. Cheap to clone; the writer thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<Database>,
    writer: mpsc::Sender<Batch>,
    path: PathBuf,
    closed: tokio::sync::watch::Receiver<bool>,
}

/// Most batches one transaction takes; bounds the latency of the first caller in a burst.
const MAX_BATCHES_PER_COMMIT: usize = 512;

impl Store {
    /// Opens (or creates) `mep.redb` in `data_dir`, recovering from an unclean shutdown if needed.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("mep.redb");
        let db = std::sync::Arc::new(Database::create(&path)?);
        {
            let txn = db.begin_write()?;
            for table in Table::ALL {
                txn.open_table(table.definition())?;
            }
            txn.commit()?;
        }
        let (writer, batches) = mpsc::channel::<Batch>();
        let writer_db = db.clone();
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        thread::Builder::new()
            .name("mep-store-writer".into())
            .spawn(move || {
                run_writer(&writer_db, batches);
                drop(writer_db);
                let _ = closed_tx.send(true);
            })
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        Ok(Self {
            db,
            writer,
            path,
            closed,
        })
    }

    /// Applies `writes` atomically and returns once they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.send(writes, true).await
    }

    /// Applies `writes` atomically without waiting for the disk: they survive a process crash
    /// only once a later durable commit is done, and a power loss may take them. For records
    /// whose loss costs nothing but a report (the journal entry of a task about to commit).
    pub async fn commit_volatile(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.send(writes, false).await
    }

    async fn send(&self, writes: Vec<Write>, durable: bool) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(Batch {
                writes,
                durable,
                done,
            })
            .map_err(|_| StoreError::WriterGone)?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => {
                tracing::error!(%reason, "store commit failed");
                Err(StoreError::WriterGone)
            }
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Every `(key, value)` of a table, in key order. Used to build the in-memory indexes at start.
    pub fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.definition())?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Drops this handle and waits until the database file is closed, which happens once every other
    /// handle is gone too. Lets a process reopen the same data directory (a restart in tests).
    pub async fn close(self) {
        let Self {
            db,
            writer,
            mut closed,
            ..
        } = self;
        drop(writer);
        drop(db);
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Size of the store file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

fn run_writer(db: &Database, batches: mpsc::Receiver<Batch>) {
    while let Ok(first) = batches.recv() {
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_COMMIT {
            match batches.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let outcome = apply(db, &group).map_err(|e| e.to_string());
        for batch in group {
            let _ = batch.done.send(outcome.clone());
        }
    }
}

fn apply(db: &Database, group: &[Batch]) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    if !group.iter().any(|b| b.durable) {
        txn.set_durability(redb::Durability::None);
    }
    {
        for batch in group {
            for write in &batch.writes {
                match write {
                    Write::Put { table, key, value } => {
                        txn.open_table(table.definition())?
                            .insert(key.as_str(), value.as_slice())?;
                    }
                    Write::Delete { table, key } => {
                        txn.open_table(table.definition())?.remove(key.as_str())?;
                    }
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn committed_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let put = |k: &str| Write::Put {
                table: Table::Services,
                key: k.into(),
                value: k.as_bytes().to_vec(),
            };
            store.commit(vec![put("a"), put("b")]).await.unwrap();
            store
                .commit(vec![Write::Delete {
                    table: Table::Services,
                    key: "a".into(),
                }])
                .await
                .unwrap();
            store.close().await;
        }
        let store = Store::open(dir.path()).unwrap();
        let rows = store.load(Table::Services).unwrap();
        assert_eq!(rows, vec![("b".to_string(), b"b".to_vec())]);
        assert!(store
            .load(Table::SerAvailabilitySubscriptions)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_volatile_commit_is_visible_at_once_and_durable_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let put = |k: &str| Write::Put {
            table: Table::Tasks,
            key: k.into(),
            value: k.as_bytes().to_vec(),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.commit_volatile(vec![put("journal")]).await.unwrap();
            assert_eq!(
                store.load(Table::Tasks).unwrap().len(),
                1,
                "visible at once"
            );
            store.commit(vec![put("result")]).await.unwrap();
            store.close().await;
        }
        let store = Store::open(dir.path()).unwrap();
        let keys: Vec<String> = store
            .load(Table::Tasks)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["journal".to_string(), "result".to_string()]);
    }

    #[tokio::test]
    async fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .commit(vec![Write::Put {
                        table: Table::Services,
                        key: format!("{i:04}"),
                        value: vec![1],
                    }])
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(store.load(Table::Services).unwrap().len(), 200);
    }
}
