//! DNS over UDP: several sockets on one port (SO_REUSEPORT, the kernel spreads clients over
//! them), each served by one task that answers local and cached names inline and hands
//! forwarded ones to a task of their own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::handler::{Outcome, QueryHandler, Transport};
use crate::metrics::{DnsMetrics, DropReason};
use crate::wire::MAX_TCP_MESSAGE;

/// Kernel receive buffer per socket: room for bursts while the task is busy.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Binds `count` UDP sockets to `addr`; with port 0 they all share the port the first one got.
pub(crate) fn bind_udp(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = reuse_port_socket(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(reuse_port_socket(bound)?);
    }
    Ok(sockets)
}

fn reuse_port_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES) {
        tracing::debug!(error = %e, "cannot enlarge the DNS UDP receive buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Serves one socket until the task is dropped.
pub(crate) async fn serve_udp(socket: UdpSocket, handler: Arc<QueryHandler>) {
    let socket = Arc::new(socket);
    // A datagram can be as long as the largest TCP message; longer ones cannot exist.
    let mut packet = vec![0u8; MAX_TCP_MESSAGE];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (len, peer) = match socket.recv_from(&mut packet).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        match handler.answer_now(&packet[..len], Transport::Udp, &mut out) {
            Outcome::Answered => send(&socket, &out, peer, &handler.metrics),
            Outcome::Ignored => {}
            Outcome::Forward(pending) => {
                let socket = Arc::clone(&socket);
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    handler.answer_forwarded(pending, &mut out).await;
                    send(&socket, &out, peer, &handler.metrics);
                });
            }
        }
    }
}

/// Sends without waiting: when the send buffer is full the response is dropped, as the network
/// would drop it, rather than stalling every other client of this socket.
fn send(socket: &UdpSocket, response: &[u8], peer: SocketAddr, metrics: &DnsMetrics) {
    match socket.try_send_to(response, peer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            metrics.count_drop(DropReason::SendBufferFull)
        }
        Err(e) => tracing::debug!(%peer, error = %e, "DNS UDP send failed"),
    }
}
