//! DNS over TCP (RFC 7766): length-prefixed queries answered in order on each connection, a
//! bounded number of connections, and an idle timeout so that silent clients free their slot.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::handler::{Outcome, QueryHandler, Transport};
use crate::metrics::DropReason;

const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
}

/// Accepts connections until the task is dropped; each connection ends on `shutdown`.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<QueryHandler>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            handler.metrics.count_drop(DropReason::TcpConnectionLimit);
            continue;
        };
        let handler = Arc::clone(&handler);
        let connection = serve_connection(stream, handler, limits.idle_timeout);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.run_until_cancelled(connection).await;
            drop(slot);
        });
    }
}

async fn serve_connection(stream: TcpStream, handler: Arc<QueryHandler>, idle: Duration) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a DNS connection");
    }
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut packet = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4096);
    loop {
        let Ok(Ok(len)) = timeout(idle, reader.read_u16()).await else {
            return;
        };
        packet.resize(usize::from(len), 0);
        let Ok(Ok(_)) = timeout(idle, reader.read_exact(&mut packet)).await else {
            return;
        };
        match handler.answer_now(&packet, Transport::Tcp, &mut out) {
            Outcome::Answered => {}
            Outcome::Ignored => return,
            Outcome::Forward(pending) => handler.answer_forwarded(pending, &mut out).await,
        }
        // Responses over TCP are limited to 65,535 bytes when they are written.
        let Ok(out_len) = u16::try_from(out.len()) else {
            return;
        };
        framed.clear();
        framed.extend_from_slice(&out_len.to_be_bytes());
        framed.extend_from_slice(&out);
        let Ok(Ok(())) = timeout(idle, writer.write_all(&framed)).await else {
            return;
        };
    }
}
