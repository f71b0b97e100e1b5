//! The embedded backend: every durable record lives in one redb file in the data directory.
//!
//! Writes go through a single writer thread that commits whatever batches are waiting in one
//! fsync'd transaction (group commit), so concurrent writers share the cost of durability while each
//! caller still learns only after its change is on disk. A batch whose checks fail is left out of
//! its group and reported as a conflict; the others commit.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Check, StoreError, Table, Write};

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
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
    checks: Vec<Check>,
    writes: Vec<Write>,
    /// Whether the caller waits for the writes to be on disk (an fsync), or only for them to be
    /// committed (visible, and on disk with the next durable commit).
    durable: bool,
    done: oneshot::Sender<Outcome>,
}

/// How one batch of a group ended.
#[derive(Debug, Clone)]
enum Outcome {
    Committed,
    Conflict,
    Failed(String),
}

/// Handle to the redb file. Cheap to clone; the writer thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct RedbStore {
    db: std::sync::Arc<Database>,
    writer: mpsc::Sender<Batch>,
    path: PathBuf,
    closed: tokio::sync::watch::Receiver<bool>,
}

/// Most batches one transaction takes; bounds the latency of the first caller in a burst.
const MAX_BATCHES_PER_COMMIT: usize = 512;

impl RedbStore {
    /// Opens (or creates) `mep.redb` in `data_dir`, recovering from an unclean shutdown if needed.
    pub(super) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("mep.redb");
        let db = std::sync::Arc::new(Database::create(&path)?);
        {
            let txn = db.begin_write()?;
            for table in Table::ALL {
                txn.open_table(definition(table))?;
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

    pub(super) async fn commit(
        &self,
        checks: Vec<Check>,
        writes: Vec<Write>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(Batch {
                checks,
                writes,
                durable,
                done,
            })
            .map_err(|_| StoreError::WriterGone)?;
        match result.await {
            Ok(Outcome::Committed) => Ok(()),
            Ok(Outcome::Conflict) => Err(StoreError::Conflict),
            Ok(Outcome::Failed(reason)) => {
                tracing::error!(%reason, "store commit failed");
                Err(StoreError::WriterGone)
            }
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    pub(super) fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub(super) fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    pub(super) async fn close(self) {
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

    pub(super) fn file_size(&self) -> u64 {
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
        match apply(db, &group) {
            Ok(outcomes) => {
                for (batch, outcome) in group.into_iter().zip(outcomes) {
                    let _ = batch.done.send(outcome);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for batch in group {
                    let _ = batch.done.send(Outcome::Failed(reason.clone()));
                }
            }
        }
    }
}

/// Whether every check of a batch holds in `txn` (which already holds the group's earlier batches).
fn checks_hold(txn: &redb::WriteTransaction, checks: &[Check]) -> Result<bool, StoreError> {
    for check in checks {
        let (table, key) = check.target();
        let t = txn.open_table(definition(table))?;
        let current = t.get(key)?;
        let holds = match check {
            Check::Absent { .. } => current.is_none(),
            Check::Holds { value, .. } => current.is_some_and(|v| v.value() == value.as_slice()),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn apply(db: &Database, group: &[Batch]) -> Result<Vec<Outcome>, StoreError> {
    let mut txn = db.begin_write()?;
    if !group.iter().any(|b| b.durable) {
        txn.set_durability(redb::Durability::None);
    }
    let mut outcomes = Vec::with_capacity(group.len());
    for batch in group {
        if !checks_hold(&txn, &batch.checks)? {
            outcomes.push(Outcome::Conflict);
            continue;
        }
        for write in &batch.writes {
            match write {
                Write::Put { table, key, value }
                | Write::PutLeased {
                    table, key, value, ..
                } => {
                    txn.open_table(definition(*table))?
                        .insert(key.as_str(), value.as_slice())?;
                }
                Write::Delete { table, key } => {
                    txn.open_table(definition(*table))?.remove(key.as_str())?;
                }
            }
        }
        outcomes.push(Outcome::Committed);
    }
    txn.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

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

    #[tokio::test]
    async fn a_batch_whose_check_fails_is_a_conflict_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = |k: &str, v: &str| Write::Put {
            table: Table::Services,
            key: k.into(),
            value: v.as_bytes().to_vec(),
        };
        let absent = |k: &str| Check::Absent {
            table: Table::Services,
            key: k.into(),
        };
        store
            .commit_checked(vec![absent("a")], vec![put("a", "1")])
            .await
            .unwrap();
        let (again, other) = tokio::join!(
            store.commit_checked(vec![absent("a")], vec![put("a", "2")]),
            store.commit_checked(vec![absent("b")], vec![put("b", "1")]),
        );
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
        other.unwrap();
        let holds = |v: &str| Check::Holds {
            table: Table::Services,
            key: "a".into(),
            value: v.as_bytes().to_vec(),
        };
        assert!(matches!(
            store
                .commit_checked(vec![holds("0")], vec![put("a", "3")])
                .await,
            Err(StoreError::Conflict)
        ));
        store
            .commit_checked(vec![holds("1")], vec![put("a", "3")])
            .await
            .unwrap();
        assert_eq!(
            store.load(Table::Services).unwrap(),
            vec![
                ("a".to_string(), b"3".to_vec()),
                ("b".to_string(), b"1".to_vec())
            ]
        );
    }
}
