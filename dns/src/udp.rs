//! DNS over UDP: several sockets on one port (SO_REUSEPORT, the kernel spreads clients over
//! them), each served by one task that takes up to [`BATCH`] datagrams per `recvmmsg`, answers
//! local and cached names inline, sends those answers with one `sendmmsg` and hands forwarded
//! queries to a task of their own.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::handler::{Outcome, QueryHandler};
use crate::metrics::Transport;
use crate::metrics::{DnsMetrics, DropReason};
use crate::wire::MAX_TCP_MESSAGE;

/// Kernel receive buffer per socket: room for bursts while the task is busy.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Datagrams received (and answers sent) per system call at most.
const BATCH: usize = 32;

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

/// The buffers of one socket's batch: the datagrams as received with their senders, and the
/// answers to send back to the same addresses. Plain data, so the serving future stays `Send`;
/// the kernel's message headers, which hold pointers into these, live only inside one call.
struct Batch {
    /// `BATCH` slots of the largest possible datagram each (pages are touched only when used).
    packets: Box<[u8]>,
    lens: [usize; BATCH],
    peers: Box<[libc::sockaddr_storage; BATCH]>,
    peer_lens: [libc::socklen_t; BATCH],
    answers: Vec<Vec<u8>>,
    /// Slots whose answer is in `answers`, in the order received.
    ready: Vec<usize>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            packets: vec![0u8; BATCH * MAX_TCP_MESSAGE].into_boxed_slice(),
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is a plain C struct of integers, for which all zeroes
            // is a valid value (family AF_UNSPEC).
            peers: Box::new([unsafe { mem::zeroed() }; BATCH]),
            peer_lens: [0; BATCH],
            answers: (0..BATCH).map(|_| Vec::with_capacity(4096)).collect(),
            ready: Vec::with_capacity(BATCH),
        }
    }

    /// Receives up to `BATCH` datagrams without blocking; `WouldBlock` when none is waiting.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is a plain C struct of integers and raw pointers; all zeroes (null
        // pointers, zero lengths) is a valid value.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let slots = self.packets.chunks_exact_mut(MAX_TCP_MESSAGE);
        for (((iov, header), slot), peer) in iovecs
            .iter_mut()
            .zip(headers.iter_mut())
            .zip(slots)
            .zip(self.peers.iter_mut())
        {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            header.msg_hdr.msg_name = (peer as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec and one sockaddr_storage that outlive the
        // call, and every iovec at a distinct, exclusively borrowed slot of `packets` of the
        // length it states; the kernel writes at most that much and at most the stated name
        // length. `fd` is the open socket owned by the caller. Non-blocking, no timeout.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for (slot, header) in headers[..received].iter().enumerate() {
            // A datagram longer than the slot cannot exist (slots hold 65,535 bytes).
            self.lens[slot] = (header.msg_len as usize).min(MAX_TCP_MESSAGE);
            self.peer_lens[slot] = header.msg_hdr.msg_namelen;
        }
        Ok(received)
    }

    /// Sends the ready answers, as many per call as the kernel takes; when the send buffer is
    /// full the rest are dropped, as the network would drop them, rather than stalling every
    /// other client of this socket.
    fn send_ready(&mut self, fd: RawFd, metrics: &DnsMetrics) {
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: as in `receive`, all zeroes is a valid mmsghdr.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let count = self.ready.len();
        for (i, &slot) in self.ready.iter().enumerate() {
            let answer = &self.answers[slot];
            iovecs[i].iov_base = answer.as_ptr() as *mut libc::c_void;
            iovecs[i].iov_len = answer.len();
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&self.peers[slot] as *const libc::sockaddr_storage)
                .cast_mut()
                .cast();
            header.msg_namelen = self.peer_lens[slot];
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers[sent..count] each point at one iovec and one sockaddr_storage that
            // outlive the call; the iovecs point at answers that are not touched until it
            // returns, with their true lengths. The kernel only reads through them (sendmmsg
            // writes nothing but msg_len). `fd` is the open socket owned by the caller.
            let result = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[sent..].as_mut_ptr(),
                    (count - sent) as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if result > 0 {
                sent += result as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                for _ in sent..count {
                    metrics.count_drop(DropReason::SendBufferFull);
                }
                break;
            }
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // This answer cannot be sent (sendmmsg reports an error only for the first
            // message); skip it and go on with the others.
            let peer = self.peer(self.ready[sent]);
            tracing::debug!(?peer, error = %e, "DNS UDP send failed");
            sent += 1;
        }
        self.ready.clear();
    }

    fn peer(&self, slot: usize) -> Option<SocketAddr> {
        sockaddr_to_std(&self.peers[slot], self.peer_lens[slot])
    }
}

/// The address the kernel wrote into `storage` (`len` bytes), if IPv4 or IPv6.
fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, it is long enough, and
            // sockaddr_storage is at least as large and as aligned as any socket address.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Serves one socket until the task is dropped.
pub(crate) async fn serve_udp(socket: UdpSocket, handler: Arc<QueryHandler>) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    loop {
        // Waits for readability, then receives; readiness is cleared only on WouldBlock, so
        // while datagrams keep coming no wake-up is needed between batches.
        let received = match socket
            .async_io(Interest::READABLE, || batch.receive(fd))
            .await
        {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        for slot in 0..received {
            let packet = {
                let start = slot * MAX_TCP_MESSAGE;
                &batch.packets[start..start + batch.lens[slot]]
            };
            match handler.answer_now(packet, Transport::Udp, &mut batch.answers[slot]) {
                Outcome::Answered => batch.ready.push(slot),
                Outcome::Ignored => {}
                Outcome::Forward(pending) => {
                    let Some(peer) = batch.peer(slot) else {
                        continue;
                    };
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
        if !batch.ready.is_empty() {
            batch.send_ready(fd, &handler.metrics);
        }
    }
}

/// Sends one forwarded answer without waiting: when the send buffer is full it is dropped.
fn send(socket: &UdpSocket, response: &[u8], peer: SocketAddr, metrics: &DnsMetrics) {
    match socket.try_send_to(response, peer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            metrics.count_drop(DropReason::SendBufferFull)
        }
        Err(e) => tracing::debug!(%peer, error = %e, "DNS UDP send failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdpSocket;
    use std::time::Duration;

    fn receive_all(
        server: &StdUdpSocket,
        batch: &mut Batch,
        want: usize,
    ) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < want && calls < 1000 {
            calls += 1;
            match batch.receive(server.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for slot in 0..n {
                        let start = slot * MAX_TCP_MESSAGE;
                        let packet = batch.packets[start..start + batch.lens[slot]].to_vec();
                        got.push((packet, batch.peer(slot).unwrap()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("receive: {e}"),
            }
        }
        got
    }

    fn batch_round_trip(local: &str) {
        let server = StdUdpSocket::bind(local).unwrap();
        server.set_nonblocking(true).unwrap();
        let client = StdUdpSocket::bind(local).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let server_addr = server.local_addr().unwrap();
        let count = BATCH + 8;
        for i in 0..count {
            client.send_to(&[i as u8; 3], server_addr).unwrap();
        }
        let mut batch = Batch::new();
        let got = receive_all(&server, &mut batch, count);
        assert_eq!(got.len(), count);
        for (i, (packet, peer)) in got.iter().enumerate() {
            assert_eq!(packet, &vec![i as u8; 3]);
            assert_eq!(*peer, client.local_addr().unwrap());
        }
        // Answer the last batch received in one sendmmsg, to the addresses it came from.
        let last = count - BATCH;
        for slot in 0..last {
            batch.answers[slot].clear();
            batch.answers[slot].extend_from_slice(&[0xA0 + slot as u8; 5]);
            batch.ready.push(slot);
        }
        batch.send_ready(server.as_raw_fd(), &DnsMetrics::new());
        assert!(batch.ready.is_empty());
        let mut buf = [0u8; 16];
        for slot in 0..last {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server_addr);
            assert_eq!(&buf[..len], &[0xA0 + slot as u8; 5]);
        }
    }

    #[test]
    fn batches_datagrams_over_ipv4() {
        batch_round_trip("127.0.0.1:0");
    }

    #[test]
    fn batches_datagrams_over_ipv6() {
        if StdUdpSocket::bind("[::1]:0").is_err() {
            return; // no IPv6 loopback here
        }
        batch_round_trip("[::1]:0");
    }
}
