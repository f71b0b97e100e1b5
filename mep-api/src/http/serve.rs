//! The connection loop of a listener: HTTP/1.1 (title-case header names) and HTTP/2, over TLS
//! when the listener has an acceptor, and graceful shutdown that lets in-flight requests finish.
//!
//! Every connection holds a place in the listener's [`ConnTable`]: a client may hold only its
//! share, a connection with no request in flight that stays silent is closed (sooner the fuller
//! the listener), and a new connection at a full listener takes the place of the longest-idle
//! one. TLS handshakes run in the per-connection task under a timeout, so a slow or silent
//! client never holds up `accept`; request heads must arrive within the header timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use http::{Extensions, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use mep_net::{AcceptBackoff, Closed, ConnTable, ConnTicket, Refusal};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::{ConnCloseLabels, ListenerLabels, Metrics};

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often idle connections are looked for.
const SWEEP_PERIOD: Duration = Duration::from_millis(250);

/// One listener and what serves it.
pub struct Listener {
    pub name: &'static str,
    pub listener: TcpListener,
    pub router: Router,
    /// Header spellings for HTTP/1.1 responses (see `header_case`).
    pub spelling: Extensions,
    pub tls: Option<TlsAcceptor>,
    pub table: Arc<ConnTable>,
    pub header_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Serves `listener` until `shutdown` fires, then drains open connections.
pub async fn serve(listener: Listener, shutdown: CancellationToken) {
    let Listener {
        name,
        listener,
        router,
        spelling,
        tls,
        table,
        header_timeout,
        metrics,
    } = listener;
    let connections = Connections {
        name,
        builder: Arc::new(http_builder(header_timeout)),
        router,
        spelling,
        tls,
        metrics,
        shutdown: shutdown.clone(),
    };
    let graceful = GracefulShutdown::new();
    tokio::spawn(Arc::clone(&table).run_sweeper(SWEEP_PERIOD, shutdown.child_token()));
    let mut backoff = AcceptBackoff::new(name);
    while let Some((stream, peer)) = accept(&listener, &mut backoff, &shutdown).await {
        let ticket = match table.admit(peer.ip()) {
            Ok(ticket) => Arc::new(ticket),
            Err(refusal) => {
                connections.count_close(match refusal {
                    Refusal::ClientLimit => "client_limit",
                    Refusal::Full => "table_full",
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(
            connections
                .clone()
                .run(stream, peer, ticket, graceful.watcher()),
        );
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after drain timeout"
        );
    }
}

/// HTTP/1.1 with title-case header names and a header read timeout, and HTTP/2.
fn http_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .title_case_headers(true)
        .preserve_header_case(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// The next connection, or `None` once `shutdown` fires. Accept errors (out of file descriptors
/// and the like) back off instead of spinning.
async fn accept(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    backoff.succeeded();
                    return Some(conn);
                }
                Err(e) => tokio::time::sleep(backoff.failed(&e)).await,
            },
        }
    }
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct Connections {
    name: &'static str,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    spelling: Extensions,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Connections {
    fn count_close(&self, reason: &'static str) {
        self.metrics
            .http_connections_closed
            .get_or_create(&ConnCloseLabels {
                listener: self.name,
                reason,
            })
            .inc();
    }

    /// Serves one connection until it ends or its table closes it (idle, evicted).
    async fn run(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        ticket: Arc<ConnTicket>,
        watcher: Watcher,
    ) {
        let gauge = self
            .metrics
            .http_connections
            .get_or_create(&ListenerLabels {
                listener: self.name,
            })
            .clone();
        gauge.inc();
        let io = ActivityIo {
            inner: stream,
            ticket: Arc::clone(&ticket),
        };
        tokio::select! {
            reason = ticket.closed() => self.count_close(match reason {
                Closed::Evicted => "evicted",
                Closed::Idle => "idle",
                Closed::NoRequest => "no_request",
            }),
            () = self.serve_http(io, peer, Arc::clone(&ticket), watcher) => {}
        }
        gauge.dec();
    }

    /// The TLS handshake if the listener has an acceptor, then HTTP until the connection ends.
    async fn serve_http(
        &self,
        io: ActivityIo<TcpStream>,
        peer: SocketAddr,
        ticket: Arc<ConnTicket>,
        watcher: Watcher,
    ) {
        let name = self.name;
        let io = match &self.tls {
            None => Either::Left(io),
            Some(acceptor) => {
                // The watcher is held from here on, so a pending handshake must not outlive
                // shutdown.
                let handshake = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => h,
                };
                match handshake {
                    Ok(Ok(stream)) => Either::Right(stream),
                    Ok(Err(e)) => {
                        tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let service = tracked(self.router.clone(), self.spelling.clone(), peer, ticket);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(listener = name, %peer, error = %e, "connection ended with error");
        }
    }
}

/// The router as a per-connection service: each request carries the peer address, is marked in
/// flight (so its connection is neither idle nor evictable while it runs), and its response gets
/// the exact header spellings.
fn tracked(
    router: Router,
    spelling: Extensions,
    peer: SocketAddr,
    ticket: Arc<ConnTicket>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut req: Request<Incoming>| {
        let work = ticket.start();
        req.extensions_mut().insert(PeerAddr(peer));
        let (router, spelling) = (router.clone(), spelling.clone());
        async move {
            let mut response = router.oneshot(req).await?;
            response.extensions_mut().extend(spelling);
            drop(work);
            Ok(response)
        }
    })
}

/// A connection's stream that tells its table when bytes arrive.
struct ActivityIo<S> {
    inner: S,
    ticket: Arc<ConnTicket>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.ticket.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The remote address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);
