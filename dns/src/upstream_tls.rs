//! DNS-over-TLS upstreams on long-lived connections. Each upstream gets one connection, opened
//! by the first query that needs it and shared by every query after it: queries are pipelined
//! on it and matched to their answers by ID, in whatever order the answers come (RFC 7766
//! §6.2.1.1, RFC 7858 §3.4). A connection per query would cost a TCP and a TLS handshake before
//! every forwarded query, and the upstream a connection's state each time.
//!
//! A connection closes when the upstream closes it, when reading or writing fails, when a query
//! gives up while nothing was read on it, or after [`IDLE`] without a query waiting. A query
//! that fails because its connection closed (the upstream may close an idle one at any time) is
//! asked once more on a fresh one.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::metrics::DnsMetrics;
use crate::upstream::{framed, read_framed};
use crate::wire::{put_u16, u16_at};

/// Queries waiting for their answers on one connection, at most (forwarding is bounded before
/// this by `max_forwarded_in_flight`).
const MAX_PENDING: usize = 4096;
/// Framed queries queued for the writer, at most.
const WRITE_QUEUE: usize = 512;
/// A connection with no query waiting for this long is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(20);

/// One DNS-over-TLS upstream and its current connection.
pub(crate) struct TlsUpstream {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    current: ArcSwapOption<Connection>,
    /// Held while a connection is opened, so that concurrent queries wait for one connection
    /// instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
    metrics: Arc<DnsMetrics>,
}

impl std::fmt::Display for TlsUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls://{}#{}", self.addr, self.name.to_str())
    }
}

impl TlsUpstream {
    pub(crate) fn new(
        addr: SocketAddr,
        name: &str,
        connector: TlsConnector,
        metrics: Arc<DnsMetrics>,
    ) -> Result<Self, crate::DnsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| crate::DnsError::UpstreamTls(format!("upstream name {name:?}: {e}")))?;
        Ok(TlsUpstream {
            addr,
            name,
            connector,
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// Sends `query` (its ID is chosen here and written into it) and returns the ID and the
    /// upstream's answer.
    pub(crate) async fn exchange(&self, query: &mut [u8]) -> io::Result<(u16, Vec<u8>)> {
        let Some(connection) = self.current.load_full().filter(|c| !c.is_closed()) else {
            return self.connect().await?.exchange(query).await;
        };
        match connection.exchange(query).await {
            Err(error) if connection.is_closed() => {
                tracing::debug!(upstream = %self.addr, %error, "DoT connection closed; asking on a fresh one");
                self.connect().await?.exchange(query).await
            }
            result => result,
        }
    }

    /// The current connection, or a new one if it is closed.
    async fn connect(&self) -> io::Result<Arc<Connection>> {
        let _connecting = self.connecting.lock().await;
        if let Some(current) = self.current.load_full().filter(|c| !c.is_closed()) {
            return Ok(current);
        }
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = self.connector.connect(self.name.clone(), tcp).await?;
        self.metrics.count_upstream_tls_connection();
        let connection = Connection::start(stream);
        self.current.store(Some(Arc::clone(&connection)));
        Ok(connection)
    }
}

/// Queries sent on a connection and waiting for their answers, by ID.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u16, (u64, oneshot::Sender<Vec<u8>>)>,
    /// Tells a waiting query from a later one that got its ID.
    next_ticket: u64,
}

/// One open connection: a writer task sends queued queries, a reader task hands each answer to
/// the query with its ID.
struct Connection {
    pending: Mutex<Pending>,
    queries: mpsc::Sender<Vec<u8>>,
    closed: CancellationToken,
    /// Answers read so far.
    answers: AtomicU64,
}

impl Connection {
    fn start(stream: TlsStream<TcpStream>) -> Arc<Connection> {
        let (queries, queued) = mpsc::channel(WRITE_QUEUE);
        let connection = Arc::new(Connection {
            pending: Mutex::new(Pending::default()),
            queries,
            closed: CancellationToken::new(),
            answers: AtomicU64::new(0),
        });
        let (reader, writer) = tokio::io::split(stream);
        tokio::spawn(write_queries(Arc::clone(&connection), writer, queued));
        tokio::spawn(read_answers(Arc::clone(&connection), reader));
        connection
    }

    fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Closes it; every query still waiting fails.
    fn close(&self) {
        self.closed.cancel();
        self.lock_pending().waiting.clear();
    }

    /// The map holds no invariant a panic could break halfway, so a poisoned lock is used as is.
    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn exchange(&self, query: &mut [u8]) -> io::Result<(u16, Vec<u8>)> {
        let (id, ticket, answer) = {
            let mut pending = self.lock_pending();
            if self.is_closed() {
                return Err(closed());
            }
            if pending.waiting.len() >= MAX_PENDING {
                return Err(io::Error::other(
                    "too many queries waiting on the connection",
                ));
            }
            let id = loop {
                let id = rand::random::<u16>();
                if !pending.waiting.contains_key(&id) {
                    break id;
                }
            };
            let ticket = pending.next_ticket;
            pending.next_ticket += 1;
            let (tx, rx) = oneshot::channel();
            pending.waiting.insert(id, (ticket, tx));
            (id, ticket, rx)
        };
        // Whatever happens next (an answer, a failure, the caller's deadline), the ID is free
        // again afterwards.
        let _waiting = Waiting {
            connection: self,
            id,
            ticket,
            answers_before: self.answers.load(Ordering::Relaxed),
        };
        put_u16(query, 0, id);
        self.queries
            .try_send(framed(query))
            .map_err(|_| io::Error::other("the connection's write queue is full or closed"))?;
        let answer = answer.await.map_err(|_| closed())?;
        Ok((id, answer))
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "upstream connection closed",
    )
}

/// Frees a query's ID when it stops waiting, unless a later query holds it by then. A query
/// that gives up unanswered while nothing at all was read on the connection since it was sent
/// closes the connection: the upstream stopped answering on it, and the next query opens
/// another.
struct Waiting<'a> {
    connection: &'a Connection,
    id: u16,
    ticket: u64,
    answers_before: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut pending = self.connection.lock_pending();
        let unanswered = pending
            .waiting
            .get(&self.id)
            .is_some_and(|(ticket, _)| *ticket == self.ticket);
        if !unanswered {
            return;
        }
        pending.waiting.remove(&self.id);
        drop(pending);
        if self.connection.answers.load(Ordering::Relaxed) == self.answers_before {
            self.connection.close();
        }
    }
}

async fn write_queries(
    connection: Arc<Connection>,
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut queued: mpsc::Receiver<Vec<u8>>,
) {
    let mut batch = Vec::new();
    loop {
        let next = tokio::select! {
            _ = connection.closed.cancelled() => break,
            next = tokio::time::timeout(IDLE, queued.recv()) => next,
        };
        match next {
            Ok(Some(framed)) => {
                // Everything queued meanwhile goes out in the same TLS records.
                batch.clear();
                batch.extend_from_slice(&framed);
                while let Ok(more) = queued.try_recv() {
                    batch.extend_from_slice(&more);
                }
                let written = async {
                    writer.write_all(&batch).await?;
                    writer.flush().await
                };
                if let Err(error) = written.await {
                    tracing::debug!(%error, "writing to a DoT upstream failed");
                    break;
                }
            }
            Ok(None) => break,
            Err(_idle) if connection.lock_pending().waiting.is_empty() => break,
            Err(_idle) => {}
        }
    }
    connection.close();
    let _ = writer.shutdown().await;
}

async fn read_answers(connection: Arc<Connection>, mut reader: ReadHalf<TlsStream<TcpStream>>) {
    loop {
        let answer = tokio::select! {
            _ = connection.closed.cancelled() => break,
            answer = read_framed(&mut reader) => answer,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%error, "reading from a DoT upstream ended");
                break;
            }
        };
        let Some(id) = u16_at(&answer, 0) else {
            break;
        };
        connection.answers.fetch_add(1, Ordering::Relaxed);
        // An answer nobody waits for (its query gave up) is dropped.
        if let Some((_, tx)) = connection.lock_pending().waiting.remove(&id) {
            let _ = tx.send(answer);
        }
    }
    connection.close();
}
