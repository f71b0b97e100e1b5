//! DNS over TCP (RFC 7766) and over TLS (RFC 7858, the same framing inside rustls):
//! length-prefixed queries answered in order on each connection, with the connection table of
//! `mep-net` deciding who may hold a connection and for how long (a TLS handshake included).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mep_net::{AcceptBackoff, Closed, ConnLimits, ConnTable, ConnTicket, Refusal};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::handler::{Outcome, QueryHandler};
use crate::metrics::TcpClose;
use crate::metrics::Transport;

const LISTEN_BACKLOG: i32 = 1024;

pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What a DNS-over-TCP listener allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    pub(crate) table: ConnLimits,
    /// Time a query has to arrive whole once its length prefix has, its answer to be written,
    /// and a TLS client to finish its handshake.
    pub(crate) message_timeout: Duration,
}

/// A stream listener of DNS messages: plain TCP, or TLS with this acceptor.
#[derive(Clone)]
pub(crate) enum Framing {
    Tcp,
    Tls(TlsAcceptor),
}

impl Framing {
    fn transport(&self) -> Transport {
        match self {
            Framing::Tcp => Transport::Tcp,
            Framing::Tls(_) => Transport::Tls,
        }
    }

    fn table_name(&self) -> &'static str {
        match self {
            Framing::Tcp => "dns-tcp",
            Framing::Tls(_) => "dns-tls",
        }
    }
}

/// How often idle connections are looked for.
const SWEEP_PERIOD: Duration = Duration::from_millis(100);

/// Accepts connections until the task is dropped; each connection ends on `shutdown`. Every
/// connection holds a place in a [`ConnTable`]: a client may hold `max_tcp_per_client`, an idle
/// connection is closed after the idle limit (shorter the fuller the table), and a new
/// connection at a full table takes the place of the longest-idle one, as Knot and Unbound do.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    framing: Framing,
    handler: Arc<QueryHandler>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let table = ConnTable::new(framing.table_name(), limits.table);
    tokio::spawn(Arc::clone(&table).run_sweeper(SWEEP_PERIOD, shutdown.child_token()));
    let mut backoff = AcceptBackoff::new(framing.table_name());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                tokio::time::sleep(backoff.failed(&e)).await;
                continue;
            }
        };
        let ticket = match table.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                handler.metrics.count_tcp_close(match refusal {
                    Refusal::ClientLimit => TcpClose::ClientLimit,
                    Refusal::Full => TcpClose::TableFull,
                });
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        let framing = framing.clone();
        tokio::spawn(async move {
            handler.metrics.tcp_connection_opened();
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a DNS connection");
            }
            let message_timeout = limits.message_timeout;
            let context = Connection {
                transport: framing.transport(),
                client: peer.ip(),
                ticket: &ticket,
                handler: &handler,
                message_timeout,
            };
            let connection = async {
                match framing {
                    Framing::Tcp => serve_connection(stream, &context).await,
                    Framing::Tls(acceptor) => {
                        // A connection in its handshake is idle to the table: at a full table
                        // a newcomer may take its place.
                        let tls = tokio::select! {
                            closed = ticket.closed() => return Some(close_reason(closed)),
                            accepted = timeout(message_timeout, acceptor.accept(stream)) => {
                                match accepted {
                                    Ok(Ok(tls)) => tls,
                                    Ok(Err(_)) => return None,
                                    Err(_) => return Some(TcpClose::MessageTimeout),
                                }
                            }
                        };
                        serve_connection(tls, &context).await
                    }
                }
            };
            if let Some(Some(reason)) = shutdown.run_until_cancelled(connection).await {
                handler.metrics.count_tcp_close(reason);
            }
            handler.metrics.tcp_connection_closed();
        });
    }
}

fn close_reason(closed: Closed) -> TcpClose {
    match closed {
        Closed::Evicted => TcpClose::Evicted,
        Closed::Idle | Closed::NoRequest => TcpClose::Idle,
    }
}

/// One client connection's place, its client and how it is served, besides its stream.
struct Connection<'a> {
    transport: Transport,
    client: std::net::IpAddr,
    ticket: &'a ConnTicket,
    handler: &'a QueryHandler,
    message_timeout: Duration,
}

/// Serves one connection; answers why the server closed it, if it did.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    connection: &Connection<'_>,
) -> Option<TcpClose> {
    let Connection {
        transport,
        client,
        ticket,
        handler,
        message_timeout,
    } = *connection;
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let mut packet = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4096);
    loop {
        // Between queries the connection is idle: the table may close it.
        let len = tokio::select! {
            closed = ticket.closed() => return Some(close_reason(closed)),
            len = reader.read_u16() => len.ok()?,
        };
        let _work = ticket.start();
        packet.resize(usize::from(len), 0);
        match timeout(message_timeout, reader.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some(TcpClose::MessageTimeout),
        }
        match handler.answer_now(&packet, transport, || client, &mut out) {
            Outcome::Answered => {}
            Outcome::Ignored => return None,
            Outcome::Forward(pending) => handler.answer_forwarded(pending, &mut out).await,
        }
        // Responses over TCP are limited to 65,535 bytes when they are written.
        let out_len = u16::try_from(out.len()).ok()?;
        framed.clear();
        framed.extend_from_slice(&out_len.to_be_bytes());
        framed.extend_from_slice(&out);
        match timeout(message_timeout, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some(TcpClose::MessageTimeout),
        }
    }
}
