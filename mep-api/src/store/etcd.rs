//! The etcd backend: the records of every mep node of a site in one etcd cluster, under
//! `{prefix}/{table}/{key}`.
//!
//! At open the node lists the prefix at one revision (what [`EtcdStore::loaded`] answers) and
//! watches from the next revision on, so its in-memory indexes follow every other node's commits
//! in order. After a compaction that outran the watch, the node lists again and replays the
//! difference. Writes are etcd transactions whose compares are the commit's [`Check`]s.
//!
//! One client per endpoint, not etcd-client's balanced channel: that channel keeps sending a
//! share of requests to a dead member, so every request here goes to one endpoint and a failed
//! one is retried on the next until the write deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Check, Replicated, StoreError, Table, Write};

/// How a node reaches the cluster.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs of the members (`http://h1:2379`, `https://…`).
    pub endpoints: Vec<String>,
    /// Where mep's keys live, e.g. `/mep/v1`.
    pub prefix: String,
    /// This node's id (unique among the nodes of a site).
    pub node_id: String,
    pub tls: Option<EtcdTls>,
    /// How long one request may take before the next endpoint is tried.
    pub request_timeout: Duration,
    /// How long a write keeps trying before it is answered as unavailable.
    pub write_deadline: Duration,
}

/// TLS towards etcd: the CA that signed the members' certificates, and optionally a client
/// certificate.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the members' certificates carry, if not the endpoints' host.
    pub domain: Option<String>,
}

/// Most operations (compares and writes) in one transaction: etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// Keys per page when listing.
const LIST_PAGE: i64 = 512;
/// Replicated changes buffered between the watch and the indexes.
const CHANGES_BUFFER: usize = 4096;

/// Renewals between two looks for idle keep-alive streams.
const KEEP_ALIVE_SWEEP: usize = 4096;
/// A keep-alive stream unused this long is closed.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(600);

/// A lease's open keep-alive stream.
struct KeepAlive {
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
}

type KeepAliveSlot = (
    Arc<tokio::sync::Mutex<Option<KeepAlive>>>,
    tokio::time::Instant,
);

/// The `(key, value)` rows of a table.
type Rows = Vec<(String, Vec<u8>)>;

pub struct EtcdStore {
    clients: Vec<Client>,
    preferred: AtomicUsize,
    /// `{prefix}/`, the start of every key.
    root: String,
    node_id: String,
    request_timeout: Duration,
    write_deadline: Duration,
    /// What the list at open found, by table; taken by the indexes as they load.
    loaded: Mutex<HashMap<Table, Rows>>,
    /// Per record, the newest revision this node applied; a delete leaves an entry only until
    /// the watch delivers it.
    applied: Mutex<HashMap<Table, HashMap<String, i64>>>,
    applied_revision: AtomicI64,
    changes: Mutex<Option<mpsc::Receiver<Replicated>>>,
    /// An open keep-alive stream per lease renewed lately, with when it was last used.
    keep_alives: Mutex<HashMap<i64, KeepAliveSlot>>,
    renewals: AtomicUsize,
    /// The leader campaign, which revokes its lease when the store closes.
    campaign: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
}

/// A request failed in a way another endpoint, or the same one a little later, may not.
fn retryable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Aborted
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))
}

fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions, StoreError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.request_timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some(tls) = &config.tls {
        let mut t =
            TlsOptions::new().ca_certificate(Certificate::from_pem(read_file(&tls.ca_file)?));
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                t = t.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Config(
                    "an etcd client certificate needs both its certificate and its key file".into(),
                ))
            }
        }
        if let Some(domain) = &tls.domain {
            t = t.domain_name(domain.clone());
        }
        options = options.with_tls(t);
    }
    Ok(options)
}

/// The first key after every key that starts with `prefix`.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    pub(super) async fn open(config: EtcdConfig) -> Result<Arc<Self>, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoints".into()));
        }
        let options = connect_options(&config)?;
        let mut clients = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|e| StoreError::Config(format!("etcd endpoint {endpoint}: {e}")))?;
            clients.push(client);
        }
        let store = Self {
            clients,
            preferred: AtomicUsize::new(0),
            root: format!("{}/", config.prefix.trim_end_matches('/')),
            node_id: config.node_id,
            request_timeout: config.request_timeout,
            write_deadline: config.write_deadline,
            loaded: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            applied_revision: AtomicI64::new(0),
            changes: Mutex::new(None),
            keep_alives: Mutex::new(HashMap::new()),
            renewals: AtomicUsize::new(0),
            campaign: Mutex::new(None),
            stop: CancellationToken::new(),
        };
        // The cluster may still be electing a leader when the nodes start together.
        let (rows, revision) = store
            .retrying(Duration::from_secs(30).max(store.write_deadline), |c| {
                let root = store.root.clone();
                async move { list(c, &root, &root, 0).await }
            })
            .await?;
        let mut loaded: HashMap<Table, Rows> = HashMap::new();
        {
            let mut applied = store.applied.lock();
            for row in rows {
                applied
                    .entry(row.table)
                    .or_default()
                    .insert(row.key.clone(), row.mod_revision);
                loaded
                    .entry(row.table)
                    .or_default()
                    .push((row.key, row.value));
            }
        }
        *store.loaded.lock() = loaded;
        store.applied_revision.store(revision, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(CHANGES_BUFFER);
        *store.changes.lock() = Some(rx);
        let store = Arc::new(store);
        tokio::spawn(Arc::clone(&store).watch(tx, revision + 1));
        tracing::info!(
            endpoints = store.clients.len(),
            prefix = %store.root,
            node = %store.node_id,
            revision,
            "etcd store open"
        );
        Ok(store)
    }

    pub(super) fn node_id(&self) -> &str {
        &self.node_id
    }

    pub(super) fn applied_revision(&self) -> i64 {
        self.applied_revision.load(Ordering::Relaxed)
    }

    pub(super) fn loaded(&self, table: Table) -> Rows {
        let mut rows = self.loaded.lock().remove(&table).unwrap_or_default();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    pub(super) fn take_changes(&self) -> Option<mpsc::Receiver<Replicated>> {
        self.changes.lock().take()
    }

    /// Stops the watch and the campaign; waits (a little) for the campaign to hand the lead on.
    pub(super) async fn close(&self) {
        self.stop.cancel();
        let campaign = self.campaign.lock().take();
        if let Some(campaign) = campaign {
            let _ = tokio::time::timeout(self.request_timeout, campaign).await;
        }
    }

    /// Starts the campaign for the lead (see [`EtcdStore::campaign`]).
    pub(super) fn start_campaign(self: &Arc<Self>, leadership: super::Leadership) {
        let task = tokio::spawn(Arc::clone(self).campaign(leadership));
        *self.campaign.lock() = Some(task);
    }

    fn client(&self) -> Client {
        self.clients[self.preferred.load(Ordering::Relaxed) % self.clients.len()].clone()
    }

    fn next_endpoint(&self) {
        self.preferred.fetch_add(1, Ordering::Relaxed);
    }

    fn full_key(&self, table: Table, key: &str) -> String {
        format!("{}{}/{key}", self.root, table.name())
    }

    /// Runs `op` on one endpoint after another until it succeeds, fails for good, or `deadline`
    /// passes.
    async fn retrying<T, F, Fut>(&self, deadline: Duration, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let until = tokio::time::Instant::now() + deadline;
        let mut pause = Duration::from_millis(20);
        loop {
            let reason = match tokio::time::timeout(self.request_timeout, op(self.client())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !retryable(&e) => {
                    return Err(StoreError::Unavailable(format!("etcd refused: {e}")))
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.request_timeout),
            };
            self.next_endpoint();
            if tokio::time::Instant::now() + pause >= until {
                return Err(StoreError::Unavailable(format!(
                    "etcd did not confirm the request within {deadline:?}: {reason}"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    pub(super) async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full_key(table, key);
        let response = self
            .retrying(self.write_deadline, |mut c| {
                let full = full.clone();
                async move { c.get(full, None).await }
            })
            .await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// One transaction per at most [`MAX_TXN_OPS`] operations, the checks in the first; a
    /// commit larger than that is atomic per part only.
    pub(super) async fn commit(
        &self,
        checks: Vec<Check>,
        writes: Vec<Write>,
    ) -> Result<(), StoreError> {
        if checks.len() >= MAX_TXN_OPS {
            return Err(StoreError::Config(format!(
                "{} checks in one commit; etcd takes at most {MAX_TXN_OPS} operations",
                checks.len()
            )));
        }
        let first = (MAX_TXN_OPS - checks.len()).min(writes.len());
        let mut rest = writes;
        let head: Vec<Write> = rest.drain(..first).collect();
        self.commit_part(&checks, &head).await?;
        for part in rest.chunks(MAX_TXN_OPS) {
            self.commit_part(&[], part).await?;
        }
        Ok(())
    }

    async fn commit_part(&self, checks: &[Check], writes: &[Write]) -> Result<(), StoreError> {
        let compares: Vec<Compare> = checks
            .iter()
            .map(|check| {
                let (table, key) = check.target();
                let key = self.full_key(table, key);
                match check {
                    Check::Absent { .. } => Compare::create_revision(key, CompareOp::Equal, 0),
                    Check::Holds { value, .. } => {
                        Compare::value(key, CompareOp::Equal, value.clone())
                    }
                }
            })
            .collect();
        let ops: Vec<TxnOp> = writes
            .iter()
            .map(|w| match w {
                Write::Put { table, key, value } => {
                    TxnOp::put(self.full_key(*table, key), value.clone(), None)
                }
                Write::PutLeased {
                    table,
                    key,
                    value,
                    lease,
                } => TxnOp::put(
                    self.full_key(*table, key),
                    value.clone(),
                    Some(etcd_client::PutOptions::new().with_lease(*lease)),
                ),
                Write::Delete { table, key } => TxnOp::delete(self.full_key(*table, key), None),
            })
            .collect();
        // When the compares fail, read back what the writes touch: a retry after a lost answer
        // finds its own writes there and is a success, not a conflict.
        let reads: Vec<TxnOp> = writes
            .iter()
            .map(|w| {
                let (table, key) = w.target();
                TxnOp::get(self.full_key(table, key), None)
            })
            .collect();
        let mut attempts = 0u32;
        let response = self
            .retrying(self.write_deadline, |mut c| {
                attempts += 1;
                let txn = Txn::new()
                    .when(compares.clone())
                    .and_then(ops.clone())
                    .or_else(reads.clone());
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            self.record_own(writes, revision);
            return Ok(());
        }
        if attempts > 1 && already_applied(writes, &response.op_responses()) {
            self.record_own(writes.iter().filter(|w| w.value().is_some()), revision);
            return Ok(());
        }
        Err(StoreError::Conflict)
    }

    /// Records the revision of this node's own writes, so that the watch's copy of them is not
    /// applied a second time and never undoes a newer change.
    fn record_own<'a>(&self, writes: impl IntoIterator<Item = &'a Write>, revision: i64) {
        let mut applied = self.applied.lock();
        for write in writes {
            let (table, key) = write.target();
            let entry = applied
                .entry(table)
                .or_default()
                .entry(key.to_owned())
                .or_insert(0);
            *entry = (*entry).max(revision);
        }
    }

    pub(super) fn claim(&self, change: &Replicated) -> bool {
        let mut applied = self.applied.lock();
        let per_table = applied.entry(change.table).or_default();
        match per_table.get(change.key.as_str()) {
            Some(&newest) if newest >= change.revision => {
                if change.value.is_none() && newest == change.revision {
                    per_table.remove(change.key.as_str());
                }
                false
            }
            _ => {
                if change.value.is_some() {
                    per_table.insert(change.key.clone(), change.revision);
                } else {
                    per_table.remove(change.key.as_str());
                }
                true
            }
        }
    }

    /// The keys this node holds a record of, for the difference after a relist.
    fn known_keys(&self) -> Vec<(Table, String)> {
        self.applied
            .lock()
            .iter()
            .flat_map(|(t, keys)| keys.keys().map(move |k| (*t, k.clone())))
            .collect()
    }
}

/// Whether a failed transaction's reads show every write already in place.
fn already_applied(writes: &[Write], responses: &[TxnOpResponse]) -> bool {
    writes.len() == responses.len()
        && writes.iter().zip(responses).all(|(w, r)| match (w, r) {
            (w, TxnOpResponse::Get(g)) => match w.value() {
                Some(value) => g.kvs().first().is_some_and(|kv| kv.value() == value),
                None => g.kvs().is_empty(),
            },
            _ => false,
        })
}

/// A listed record.
struct Row {
    table: Table,
    key: String,
    value: Vec<u8>,
    mod_revision: i64,
}

/// Splits `{root}{table}/{key}` into its table and key; `None` for keys mep does not own.
fn parse_key<'a>(root: &str, full: &'a [u8]) -> Option<(Table, &'a str)> {
    let rest = std::str::from_utf8(full).ok()?.strip_prefix(root)?;
    let (table, key) = rest.split_once('/')?;
    Some((Table::from_name(table)?, key))
}

/// Every record under `prefix` (a part of mep's keys under `root`) at one revision (`at`, or
/// the newest when 0), page by page.
async fn list(
    mut client: Client,
    root: &str,
    prefix: &str,
    at: i64,
) -> Result<(Vec<Row>, i64), etcd_client::Error> {
    let end = range_end(prefix);
    let mut start = prefix.as_bytes().to_vec();
    let mut revision = at;
    let mut rows = Vec::new();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LIST_PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = client.get(start.clone(), Some(options)).await?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            if let Some((table, key)) = parse_key(root, kv.key()) {
                rows.push(Row {
                    table,
                    key: key.to_owned(),
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                });
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return Ok((rows, revision)),
        }
    }
}

impl EtcdStore {
    /// Follows every change under the root from revision `from` on, across endpoint failures
    /// (resuming from the last revision seen) and compactions (listing again), until closed.
    async fn watch(self: Arc<Self>, tx: mpsc::Sender<Replicated>, mut from: i64) {
        let mut pause = Duration::from_millis(50);
        while !self.stop.is_cancelled() {
            let mut client = self.client();
            let options = WatchOptions::new()
                .with_range(range_end(&self.root))
                .with_start_revision(from)
                .with_progress_notify();
            let opened = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = tokio::time::timeout(self.request_timeout, client.watch(self.root.clone(), Some(options))) => r,
            };
            let mut stream = match opened {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "etcd watch could not start; trying the next endpoint");
                    self.pause_then_next(&mut pause).await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!("etcd watch did not start in time; trying the next endpoint");
                    self.pause_then_next(&mut pause).await;
                    continue;
                }
            };
            loop {
                let message = tokio::select! {
                    _ = self.stop.cancelled() => return,
                    m = stream.message() => m,
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) | Err(_) => {
                        tracing::warn!(from, "etcd watch broke off; resuming on the next endpoint");
                        break;
                    }
                };
                if response.canceled() {
                    if response.compact_revision() > 0 {
                        tracing::warn!(
                            from,
                            compacted = response.compact_revision(),
                            "etcd compacted past this node's watch; listing again"
                        );
                        match self.relist(&tx).await {
                            Some(revision) => from = revision + 1,
                            None => return,
                        }
                    } else {
                        tracing::warn!(
                            reason = response.cancel_reason(),
                            "etcd canceled the watch"
                        );
                    }
                    break;
                }
                pause = Duration::from_millis(50);
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    from = from.max(kv.mod_revision() + 1);
                    let Some((table, key)) = parse_key(&self.root, kv.key()) else {
                        continue;
                    };
                    let value = match event.event_type() {
                        etcd_client::EventType::Put => Some(kv.value().to_vec()),
                        etcd_client::EventType::Delete => None,
                    };
                    let change = Replicated {
                        table,
                        key: key.to_owned(),
                        value,
                        revision: kv.mod_revision(),
                    };
                    if tx.send(change).await.is_err() {
                        return;
                    }
                }
                // Only a progress notification says every change up to its header's revision was
                // sent; the header of the creation or of a batch of a catching-up watch is the
                // store's newest revision, not this watch's position.
                if response.events().is_empty() && !response.created() {
                    if let Some(header) = response.header() {
                        from = from.max(header.revision() + 1);
                    }
                }
                self.applied_revision.fetch_max(from - 1, Ordering::Relaxed);
            }
            self.pause_then_next(&mut pause).await;
        }
    }

    async fn pause_then_next(&self, pause: &mut Duration) {
        self.next_endpoint();
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(*pause) => {}
        }
        *pause = (*pause * 2).min(Duration::from_secs(2));
    }

    /// Lists the root again and sends what differs from what this node applied: every record
    /// newer than its copy here, and a delete for every record gone. Answers the list's
    /// revision (`None` once closed).
    async fn relist(&self, tx: &mpsc::Sender<Replicated>) -> Option<i64> {
        let (rows, revision) = loop {
            let listed = self
                .retrying(self.write_deadline, |c| {
                    let root = self.root.clone();
                    async move { list(c, &root, &root, 0).await }
                })
                .await;
            match listed {
                Ok(listed) => break listed,
                Err(e) if !self.stop.is_cancelled() => {
                    tracing::warn!(error = %e, "etcd relist failed; retrying");
                }
                Err(_) => return None,
            }
        };
        let mut present: HashMap<Table, std::collections::HashSet<String>> = HashMap::new();
        for row in &rows {
            present
                .entry(row.table)
                .or_default()
                .insert(row.key.clone());
        }
        for (table, key) in self.known_keys() {
            if !present.get(&table).is_some_and(|keys| keys.contains(&key)) {
                let gone = Replicated {
                    table,
                    key,
                    value: None,
                    revision,
                };
                tx.send(gone).await.ok()?;
            }
        }
        for row in rows {
            let change = Replicated {
                table: row.table,
                key: row.key,
                value: Some(row.value),
                revision: row.mod_revision,
            };
            tx.send(change).await.ok()?;
        }
        Some(revision)
    }
}

/// Seconds a leader's lease lives without a renewal: how long a dead leader's notifications
/// wait for another node to take over.
const LEADER_TTL: i64 = 3;
/// How often the lease is renewed and a follower tries to take the lead.
const CAMPAIGN_PERIOD: Duration = Duration::from_millis(500);
/// Taken off the lease's life by the leader's own clock, for clocks running at other rates.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

impl EtcdStore {
    /// Every record of `table` as etcd holds it now, oldest change first.
    pub(super) async fn list_table(&self, table: Table) -> Result<Vec<Replicated>, StoreError> {
        let prefix = format!("{}{}/", self.root, table.name());
        let (rows, _) = self
            .retrying(self.write_deadline, |c| {
                let prefix = prefix.clone();
                async move { list(c, &self.root, &prefix, 0).await }
            })
            .await?;
        let mut changes: Vec<Replicated> = rows
            .into_iter()
            .map(|row| Replicated {
                table: row.table,
                key: row.key,
                value: Some(row.value),
                revision: row.mod_revision,
            })
            .collect();
        changes.sort_by_key(|c| c.revision);
        Ok(changes)
    }

    /// Campaigns for the `{prefix}/leader` key until closed: holds a lease, renews it every
    /// [`CAMPAIGN_PERIOD`], and puts the key with it when nobody holds the key. Leadership ends
    /// when a renewal says the lease is gone, or when no renewal succeeded for the lease's life.
    pub(super) async fn campaign(self: Arc<Self>, leadership: super::Leadership) {
        let key = format!("{}leader", self.root);
        while !self.stop.is_cancelled() {
            let granted = self
                .retrying(self.write_deadline, |mut c| async move {
                    c.lease_grant(LEADER_TTL, None).await
                })
                .await;
            let (lease, ttl) = match granted {
                Ok(g) => (g.id(), Duration::from_secs(g.ttl().max(1) as u64)),
                Err(e) => {
                    tracing::warn!(error = %e, "no etcd lease for the leader election; retrying");
                    self.sleep(CAMPAIGN_PERIOD).await;
                    continue;
                }
            };
            let mut renewed = tokio::time::Instant::now();
            let mut leads = false;
            loop {
                let asked = tokio::time::Instant::now();
                match self.hold_or_take(&key, lease).await {
                    Ok(true) => {
                        if !leads {
                            tracing::info!(node = %self.node_id, "this node now sends the site's notifications");
                        }
                        leads = true;
                        leadership.lead_until(renewed + ttl - LEASE_MARGIN);
                    }
                    Ok(false) => {
                        if leads {
                            tracing::warn!(node = %self.node_id, "another node took the lead");
                        }
                        leads = false;
                        leadership.step_down();
                    }
                    Err(e) => tracing::debug!(error = %e, "leader key not checked"),
                }
                self.sleep(CAMPAIGN_PERIOD).await;
                if self.stop.is_cancelled() {
                    break;
                }
                match self.renew(lease).await {
                    Ok(true) => renewed = asked,
                    Ok(false) => {
                        tracing::warn!(node = %self.node_id, "the leader election lease expired");
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "leader election lease not renewed"),
                }
                if renewed.elapsed() + LEASE_MARGIN >= ttl {
                    tracing::warn!(node = %self.node_id, "the leader election lease was not renewed in time");
                    break;
                }
            }
            if leads {
                tracing::warn!(node = %self.node_id, "this node no longer sends notifications");
            }
            leadership.step_down();
            if self.stop.is_cancelled() {
                // A node that stops hands the lead on at once rather than after the lease.
                let mut client = self.client();
                let _ =
                    tokio::time::timeout(self.request_timeout, client.lease_revoke(lease)).await;
            }
        }
        leadership.step_down();
    }

    /// Puts the leader key with `lease` if nobody holds it; answers whether `lease` holds it.
    async fn hold_or_take(&self, key: &str, lease: i64) -> Result<bool, StoreError> {
        let response = self
            .retrying(self.request_timeout, |mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key,
                        self.node_id.as_bytes(),
                        Some(etcd_client::PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key, None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(true);
        }
        Ok(response.op_responses().iter().any(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().is_some_and(|kv| kv.lease() == lease),
            _ => false,
        }))
    }

    /// A lease of `ttl`, in whole seconds rounded up.
    pub(super) async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = ttl.as_secs() as i64 + i64::from(ttl.subsec_nanos() > 0);
        let granted = self
            .retrying(self.write_deadline, |mut c| async move {
                c.lease_grant(seconds.max(1), None).await
            })
            .await?;
        Ok(granted.id())
    }

    /// Renews `lease` once; `Ok(false)` when etcd says it is gone. Each lease keeps its
    /// keep-alive stream open between renewals: opening one per renewal cost more CPU than the
    /// renewal itself (measured with benches/etcd-site.sh).
    pub(super) async fn renew(&self, lease: i64) -> Result<bool, StoreError> {
        let slot = self.keep_alive_slot(lease);
        let mut held = slot.lock().await;
        let until = tokio::time::Instant::now() + self.request_timeout;
        let mut reason = String::new();
        for _ in 0..self.clients.len().max(2) {
            if held.is_none() {
                let mut client = self.client();
                match tokio::time::timeout_at(until, client.lease_keep_alive(lease)).await {
                    Ok(Ok((keeper, stream))) => *held = Some(KeepAlive { keeper, stream }),
                    Ok(Err(e)) => {
                        reason = e.to_string();
                        self.next_endpoint();
                        continue;
                    }
                    Err(_) => break,
                }
            }
            let Some(open) = held.as_mut() else { continue };
            let answer = tokio::time::timeout_at(until, async {
                open.keeper.keep_alive().await?;
                open.stream.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(answer))) => {
                    let alive = answer.ttl() > 0;
                    if !alive {
                        *held = None;
                        self.keep_alives.lock().remove(&lease);
                    }
                    return Ok(alive);
                }
                Ok(Ok(None)) => reason = "the keep-alive stream ended".into(),
                Ok(Err(e)) => reason = e.to_string(),
                Err(_) => break,
            }
            *held = None;
            self.next_endpoint();
        }
        *held = None;
        Err(StoreError::Unavailable(format!(
            "lease {lease} not renewed within {:?}: {reason}",
            self.request_timeout
        )))
    }

    /// The keep-alive stream slot of `lease`; now and then forgets the slots of leases nobody
    /// renewed for a while (services deregistered, leases expired).
    fn keep_alive_slot(&self, lease: i64) -> Arc<tokio::sync::Mutex<Option<KeepAlive>>> {
        let now = tokio::time::Instant::now();
        let mut slots = self.keep_alives.lock();
        if self
            .renewals
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(KEEP_ALIVE_SWEEP)
        {
            slots.retain(|_, (_, used)| now.duration_since(*used) < KEEP_ALIVE_IDLE);
        }
        let (slot, used) = slots.entry(lease).or_insert_with(|| (Arc::default(), now));
        *used = now;
        Arc::clone(slot)
    }

    async fn sleep(&self, period: Duration) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_is_the_first_key_after_the_prefix() {
        assert_eq!(range_end("/mep/v1/"), b"/mep/v10".to_vec());
        assert_eq!(range_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(range_end(""), vec![0]);
    }

    #[test]
    fn keys_outside_mep_tables_are_ignored() {
        let root = "/mep/v1/";
        assert_eq!(
            parse_key(root, b"/mep/v1/services/abc"),
            Some((Table::Services, "abc"))
        );
        assert_eq!(
            parse_key(root, b"/mep/v1/app_configs/a/b"),
            Some((Table::AppConfigs, "a/b"))
        );
        assert_eq!(parse_key(root, b"/mep/v1/elsewhere/abc"), None);
        assert_eq!(parse_key(root, b"/other/services/abc"), None);
    }
}
