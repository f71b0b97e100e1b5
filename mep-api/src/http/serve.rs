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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use http::{Extensions, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mep_net::{AcceptBackoff, Closed, ConnTable, ConnTicket, Refusal};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .title_case_headers(true)
        .preserve_header_case(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::spawn(Arc::clone(&table).run_sweeper(SWEEP_PERIOD, shutdown.child_token()));
    let closed = |reason: &'static str| {
        metrics
            .http_connections_closed
            .get_or_create(&ConnCloseLabels {
                listener: name,
                reason,
            })
            .inc();
    };
    let mut backoff = AcceptBackoff::new(name);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    backoff.succeeded();
                    conn
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(backoff.failed(&e)).await;
                    continue;
                }
            },
        };
        let ticket = match table.admit(peer.ip()) {
            Ok(ticket) => Arc::new(ticket),
            Err(refusal) => {
                closed(match refusal {
                    Refusal::ClientLimit => "client_limit",
                    Refusal::Full => "table_full",
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = tracked(router.clone(), spelling.clone(), peer, Arc::clone(&ticket));
        let io = ActivityIo {
            inner: stream,
            ticket: Arc::clone(&ticket),
        };
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let gauge = metrics
                .http_connections
                .get_or_create(&ListenerLabels { listener: name })
                .clone();
            gauge.inc();
            let connection = async {
                let service = TowerToHyperService::new(service);
                let result = match tls {
                    None => {
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(io), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                    Some(acceptor) => {
                        // The watcher is held from here on, so a pending handshake must not
                        // outlive shutdown.
                        let handshake = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => h,
                        };
                        let stream = match handshake {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with error");
                }
            };
            tokio::select! {
                reason = ticket.closed() => {
                    let reason = match reason {
                        Closed::Evicted => "evicted",
                        Closed::Idle => "idle",
                        Closed::NoRequest => "no_request",
                    };
                    metrics
                        .http_connections_closed
                        .get_or_create(&ConnCloseLabels { listener: name, reason })
                        .inc();
                }
                () = connection => {}
            }
            gauge.dec();
        });
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

/// The router as a per-connection service: each request carries the peer address, is marked in
/// flight (so its connection is neither idle nor evictable while it runs), and its response gets
/// the exact header spellings.
fn tracked(
    router: Router,
    spelling: Extensions,
    peer: std::net::SocketAddr,
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
pub struct PeerAddr(pub std::net::SocketAddr);
