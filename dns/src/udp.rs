//! DNS over UDP: one socket, read by one task that takes up to [`BATCH`] datagrams per
//! `recvmmsg`, answers local and cached names inline, sends those answers with one `sendmmsg`
//! and hands forwarded queries to a task of their own; helper tasks join it on the same socket
//! only while the queue stays deep (see [`UdpReaders`]). One reader per worker on sockets of
//! their own (SO_REUSEPORT) was measured and dropped: the kernel spreads clients over the
//! sockets whatever the load, so each reader gets smaller batches and wakes more often: with
//! two workers under dnsperf here it cost 6.3-7.0 µs of CPU per query against 4.7-6.1 for one
//! socket (four rounds, alternated), at no gain in latency at 20,000 queries/s.
//!
//! Answers of one batch to the same client with the same length (a resolver asking for many
//! names) leave as one UDP GSO message (`UDP_SEGMENT`): the kernel routes and builds them once
//! and cuts them into datagrams at the end.
//!
//! A socket is watched for readability only. Every answer freed after delivery signals write
//! space, and a socket registered for writability too (as tokio's `UdpSocket` is) turns each of
//! those into an epoll event that can wake an idle worker thread for nothing.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::handler::{Outcome, QueryHandler};
use crate::metrics::Transport;
use crate::metrics::{DnsMetrics, DropReason};
use crate::wire::MAX_TCP_MESSAGE;

/// Kernel receive buffer per socket: room for bursts while the task is busy.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Datagrams received (and answers sent) per system call at most.
const BATCH: usize = 32;

/// Answers longer than this leave one by one: a GSO segment must fit the path's MTU, and
/// 1,232 bytes (the DNS flag day's payload size) fits every IPv6 path.
const GSO_MAX_SEGMENT: usize = 1232;

/// Payload bytes of one GSO message at most (a datagram's, less room for its headers).
const GSO_MAX_BYTES: usize = 65_000;

/// `UDP_SEGMENT` of `<linux/udp.h>` (Linux 4.18), which `libc` defines for uclibc only.
const UDP_SEGMENT: libc::c_int = 103;

/// Room for one control message carrying a `u16` (`CMSG_SPACE(2)`, 24 bytes on 64-bit Linux),
/// in words so that it is aligned as a `cmsghdr`.
type Control = [u64; 4];

/// Binds the UDP socket of `addr` (with port 0, a free port).
pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    enlarge_receive_buffer(&socket);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks for [`RECEIVE_BUFFER_BYTES`] past `net.core.rmem_max` where the process may
/// (`SO_RCVBUFFORCE` needs CAP_NET_ADMIN), else up to that cap: the kernel's default cap, 208
/// KiB, holds only some 200 queries, which is all of one client's burst that the one socket
/// could absorb while its reader is busy.
fn enlarge_receive_buffer(socket: &Socket) {
    let bytes = RECEIVE_BUFFER_BYTES as libc::c_int;
    let forced = set_int_option(socket.as_raw_fd(), libc::SO_RCVBUFFORCE, bytes).is_ok();
    if !forced {
        if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES) {
            tracing::debug!(error = %e, "cannot enlarge the DNS UDP receive buffer");
        }
    }
    match socket.recv_buffer_size() {
        Ok(got) if got < RECEIVE_BUFFER_BYTES => tracing::info!(
            bytes = got,
            "DNS UDP receive buffer smaller than asked: raise net.core.rmem_max or grant CAP_NET_ADMIN"
        ),
        _ => {}
    }
}

/// Sets the `SOL_SOCKET` option `name`, whose value is an int, on `fd`; for the options socket2
/// has no setter for.
fn set_int_option(fd: RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that outlives the call, passed with its size; a bad
    // descriptor is an error the kernel reports.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
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
    /// Whether answers are still sent as GSO messages: cleared the first time the kernel
    /// refuses one (no checksum offload on the way, an old kernel).
    gso: bool,
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
            gso: true,
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
        let mut order = [0usize; BATCH];
        let mut groups = [(0usize, 0usize); BATCH];
        let group_count = self.group_ready(&mut order, &mut groups);
        let mut iovecs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        for (iov, &slot) in iovecs.iter_mut().zip(&order[..self.ready.len()]) {
            let answer = &self.answers[slot];
            iov.iov_base = answer.as_ptr() as *mut libc::c_void;
            iov.iov_len = answer.len();
        }
        let mut controls: [Control; BATCH] = [[0; 4]; BATCH];
        // SAFETY: as in `receive`, all zeroes is a valid mmsghdr.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for ((header, &(start, members)), control) in headers
            .iter_mut()
            .zip(&groups[..group_count])
            .zip(controls.iter_mut())
        {
            let slot = order[start];
            let header = &mut header.msg_hdr;
            header.msg_name = (&self.peers[slot] as *const libc::sockaddr_storage)
                .cast_mut()
                .cast();
            header.msg_namelen = self.peer_lens[slot];
            header.msg_iov = &mut iovecs[start];
            header.msg_iovlen = members as _;
            if members > 1 {
                segment_size(header, control, self.answers[slot].len() as u16);
            }
        }
        let mut sent = 0;
        while sent < group_count {
            // SAFETY: headers[sent..group_count] each point at their group's run of iovecs, at
            // one sockaddr_storage and at their control words, all of which outlive the call;
            // the iovecs point at answers that are not touched until it returns, with their
            // true lengths. The kernel only reads through them (sendmmsg writes nothing but
            // msg_len). `fd` is the open socket owned by the caller.
            let result = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[sent..].as_mut_ptr(),
                    (group_count - sent) as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if result > 0 {
                sent += result as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                for &(_, members) in &groups[sent..group_count] {
                    for _ in 0..members {
                        metrics.count_drop(DropReason::SendBufferFull);
                    }
                }
                break;
            }
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let (start, members) = groups[sent];
            if members > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                // The kernel takes no GSO message on this socket's way (no checksum offload,
                // a segment over the MTU, an old kernel): these answers one by one, and no
                // more GSO here.
                tracing::debug!(error = %e, "UDP GSO refused; answers leave one by one");
                self.gso = false;
                for &slot in &order[start..start + members] {
                    self.send_one(fd, slot, metrics);
                }
            } else {
                // These answers (to one address) cannot be sent (sendmmsg reports an error only
                // for the first message); skip them and go on with the others.
                let peer = self.peer(order[start]);
                tracing::debug!(?peer, error = %e, "DNS UDP send failed");
            }
            sent += 1;
        }
        self.ready.clear();
    }

    /// Puts the ready slots in `order` group by group and each group's first index in `order`
    /// and size in `groups`; returns how many groups. A group is one answer, or with GSO on
    /// several of the same length (at most [`GSO_MAX_SEGMENT`]) to the same address. At most
    /// `BATCH` answers, so the quadratic search costs less than the system call it saves.
    fn group_ready(
        &self,
        order: &mut [usize; BATCH],
        groups: &mut [(usize, usize); BATCH],
    ) -> usize {
        let count = self.ready.len();
        let mut taken = [false; BATCH];
        let (mut placed, mut group_count) = (0, 0);
        for i in 0..count {
            if taken[i] {
                continue;
            }
            let slot = self.ready[i];
            let start = placed;
            order[placed] = slot;
            placed += 1;
            let len = self.answers[slot].len();
            if self.gso && len <= GSO_MAX_SEGMENT {
                let mut bytes = len;
                let later = taken[i + 1..count].iter_mut().zip(&self.ready[i + 1..]);
                for (taken, &other) in later {
                    if !*taken
                        && self.answers[other].len() == len
                        && bytes + len <= GSO_MAX_BYTES
                        && self.same_peer(slot, other)
                    {
                        *taken = true;
                        order[placed] = other;
                        placed += 1;
                        bytes += len;
                    }
                }
            }
            groups[group_count] = (start, placed - start);
            group_count += 1;
        }
        group_count
    }

    fn same_peer(&self, a: usize, b: usize) -> bool {
        self.peer_lens[a] == self.peer_lens[b] && {
            let len = (self.peer_lens[a] as usize).min(size_of::<libc::sockaddr_storage>());
            // SAFETY: both point at whole sockaddr_storage values, and `len` is within them.
            let (x, y) = unsafe {
                (
                    std::slice::from_raw_parts(
                        (&self.peers[a] as *const libc::sockaddr_storage).cast::<u8>(),
                        len,
                    ),
                    std::slice::from_raw_parts(
                        (&self.peers[b] as *const libc::sockaddr_storage).cast::<u8>(),
                        len,
                    ),
                )
            };
            x == y
        }
    }

    /// Sends one answer with its own system call; when the send buffer is full it is dropped.
    fn send_one(&self, fd: RawFd, slot: usize, metrics: &DnsMetrics) {
        let answer = &self.answers[slot];
        // SAFETY: the answer and the peer address outlive the call and are only read, with
        // their true lengths; `fd` is the open socket owned by the caller.
        let result = unsafe {
            libc::sendto(
                fd,
                answer.as_ptr().cast(),
                answer.len(),
                libc::MSG_DONTWAIT,
                (&self.peers[slot] as *const libc::sockaddr_storage).cast(),
                self.peer_lens[slot],
            )
        };
        if result < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                metrics.count_drop(DropReason::SendBufferFull);
            } else {
                tracing::debug!(peer = ?self.peer(slot), error = %e, "DNS UDP send failed");
            }
        }
    }

    fn peer(&self, slot: usize) -> Option<SocketAddr> {
        sockaddr_to_std(&self.peers[slot], self.peer_lens[slot])
    }
}

/// Makes `header` a GSO message whose datagrams carry `size` bytes each: one `UDP_SEGMENT`
/// control message in `control`.
fn segment_size(header: &mut libc::msghdr, control: &mut Control, size: u16) {
    header.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes. `control` is aligned as a cmsghdr
    // and CMSG_SPACE(2) bytes long at least, so CMSG_FIRSTHDR returns a pointer into it with
    // room for the header and the two data bytes written through it.
    unsafe {
        header.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        debug_assert!(header.msg_controllen <= size_of::<Control>());
        let cmsg = libc::CMSG_FIRSTHDR(header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(size);
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

/// A bound UDP socket registered with the runtime for readability only.
pub(crate) type UdpListener = AsyncFd<std::net::UdpSocket>;

/// Registers `socket` (non-blocking) with the runtime for readability only.
pub(crate) fn listen_udp(socket: std::net::UdpSocket) -> io::Result<UdpListener> {
    // SAFETY: a std `UdpSocket` owns its descriptor: it stays open and is the one `as_raw_fd`
    // returns until the socket, which the `AsyncFd` owns, is dropped.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// Waits until datagrams are waiting and receives a batch. A batch short of [`BATCH`] emptied
/// the queue (`recvmmsg` without waiting stops there), so readiness is cleared at once instead
/// of by one more call that finds nothing. A datagram that arrives after the call is a
/// readiness event of its own, which clearing this one leaves set.
async fn receive_batch(socket: &UdpListener, batch: &mut Batch) -> io::Result<usize> {
    loop {
        let mut ready = socket.readable().await?;
        match batch.receive(socket.as_raw_fd()) {
            Ok(received) => {
                if received < BATCH {
                    ready.clear_ready();
                }
                return Ok(received);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

/// The readers of the UDP socket. One of them waits for datagrams ([`serve_udp`]); the others
/// ([`help_udp`]) sleep until the queue stays deep for [`HELP_AFTER_FULL_BATCHES`] full batches
/// in a row, then drain it beside it until a batch comes back short. So a load that one core
/// keeps up with is served in the largest batches, by one thread, with no wake-ups for others,
/// and a heavier one by as many as it needs.
pub(crate) struct UdpReaders {
    socket: UdpListener,
    handler: Arc<QueryHandler>,
    wake_helper: Notify,
    idle_helpers: AtomicUsize,
}

/// Full batches in a row after which a reader calls a helper: the queue has not emptied for
/// 512 datagrams, more than a burst of one client's outstanding queries (dnsperf keeps 200),
/// so the reader is falling behind. Calling one after one or eight full batches lost 9-29% of
/// the queries per second under dnsperf here (against one reader alone, in the same runs): two
/// readers' smaller batches for a load one keeps up with.
const HELP_AFTER_FULL_BATCHES: usize = 16;

impl UdpReaders {
    pub(crate) fn new(socket: UdpListener, handler: Arc<QueryHandler>) -> Arc<Self> {
        Arc::new(UdpReaders {
            socket,
            handler,
            wake_helper: Notify::new(),
            idle_helpers: AtomicUsize::new(0),
        })
    }

    /// Wakes a sleeping helper, if there is one, and yields: tokio puts a task woken from a
    /// worker in that worker's LIFO slot, which other workers cannot steal, so without the
    /// yield the helper would wait for this reader instead of running beside it.
    async fn call_helper(&self) {
        if self.idle_helpers.load(Ordering::Relaxed) > 0 {
            self.handler.metrics.count_udp_helper_call();
            self.wake_helper.notify_one();
            tokio::task::yield_now().await;
        }
    }

    /// What every reader does with a batch it received: calls a helper in when `backlog` says
    /// the queue stayed deep, then answers it.
    async fn take(self: &Arc<Self>, batch: &mut Batch, received: usize, backlog: &mut Backlog) {
        if backlog.note(received) {
            self.call_helper().await;
        }
        self.answer(batch, received);
    }

    /// Answers the `received` datagrams of `batch`: local answers and cache hits go back in one
    /// `sendmmsg`, forwarded ones from a task of their own when the upstream answers.
    fn answer(self: &Arc<Self>, batch: &mut Batch, received: usize) {
        for slot in 0..received {
            let packet = {
                let start = slot * MAX_TCP_MESSAGE;
                &batch.packets[start..start + batch.lens[slot]]
            };
            // The client's address is read only for a query that goes upstream.
            let (peers, peer_lens) = (&batch.peers, &batch.peer_lens);
            let client = || {
                sockaddr_to_std(&peers[slot], peer_lens[slot])
                    .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip())
            };
            match self
                .handler
                .answer_now(packet, Transport::Udp, client, &mut batch.answers[slot])
            {
                Outcome::Answered => batch.ready.push(slot),
                Outcome::Ignored => {}
                Outcome::Forward(pending) => {
                    let Some(peer) = batch.peer(slot) else {
                        continue;
                    };
                    let readers = Arc::clone(self);
                    tokio::spawn(async move {
                        let mut out = Vec::new();
                        readers.handler.answer_forwarded(pending, &mut out).await;
                        send(&readers.socket, &out, peer, &readers.handler.metrics);
                    });
                }
            }
        }
        if !batch.ready.is_empty() {
            batch.send_ready(self.socket.as_raw_fd(), &self.handler.metrics);
        }
    }
}

/// Counts full batches in a row.
#[derive(Default)]
struct Backlog(usize);

impl Backlog {
    /// Notes a batch of `received`; true when a helper is due.
    fn note(&mut self, received: usize) -> bool {
        if received < BATCH {
            self.0 = 0;
            return false;
        }
        self.0 += 1;
        if self.0 < HELP_AFTER_FULL_BATCHES {
            return false;
        }
        self.0 = 0;
        true
    }
}

/// The reader that waits for datagrams; serves until the task is dropped.
pub(crate) async fn serve_udp(readers: Arc<UdpReaders>) {
    let mut batch = Batch::new();
    let mut backlog = Backlog::default();
    loop {
        let received = match receive_batch(&readers.socket, &mut batch).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        readers.take(&mut batch, received, &mut backlog).await;
    }
}

/// A helper reader: sleeps until called, then receives batches until one comes back short (the
/// queue is empty) and sleeps again. Serves until the task is dropped.
pub(crate) async fn help_udp(readers: Arc<UdpReaders>) {
    let mut batch = Batch::new();
    let fd = readers.socket.as_raw_fd();
    loop {
        readers.idle_helpers.fetch_add(1, Ordering::Relaxed);
        readers.wake_helper.notified().await;
        readers.idle_helpers.fetch_sub(1, Ordering::Relaxed);
        let mut backlog = Backlog::default();
        loop {
            let received = match batch.receive(fd) {
                Ok(received) => received,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "DNS UDP receive failed");
                    }
                    break;
                }
            };
            readers.take(&mut batch, received, &mut backlog).await;
            if received < BATCH {
                break;
            }
            tokio::task::consume_budget().await;
        }
    }
}

/// Sends one forwarded answer without waiting: when the send buffer is full it is dropped.
fn send(socket: &UdpListener, response: &[u8], peer: SocketAddr, metrics: &DnsMetrics) {
    match socket.get_ref().send_to(response, peer) {
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

    /// Receives everything `client` is sent within a short while.
    fn drain(client: &StdUdpSocket) -> Vec<Vec<u8>> {
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((len, _)) = client.recv_from(&mut buf) {
            got.push(buf[..len].to_vec());
        }
        got
    }

    /// Two clients, answers of three lengths interleaved: the answers of one length to one
    /// client form one group, and each client gets its own answers, each once, in order.
    fn mixed_batch(
        server: &StdUdpSocket,
        batch: &mut Batch,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize) {
        let server_addr = server.local_addr().unwrap();
        let clients = [
            StdUdpSocket::bind("127.0.0.1:0").unwrap(),
            StdUdpSocket::bind("127.0.0.1:0").unwrap(),
        ];
        for i in 0..24u8 {
            clients[usize::from(i % 2)]
                .send_to(&[i], server_addr)
                .unwrap();
        }
        let got = receive_all(server, batch, 24);
        assert_eq!(got.len(), 24);
        for slot in 0..24 {
            let i = slot as u8;
            let len = [3, 40, 1300][slot % 3];
            batch.answers[slot].clear();
            batch.answers[slot].extend(std::iter::repeat_n(i, len));
            batch.ready.push(slot);
        }
        let mut order = [0; BATCH];
        let mut groups = [(0, 0); BATCH];
        let group_count = batch.group_ready(&mut order, &mut groups);
        batch.send_ready(server.as_raw_fd(), &DnsMetrics::new());
        (drain(&clients[0]), drain(&clients[1]), group_count)
    }

    fn expected(client: u8) -> Vec<Vec<u8>> {
        (0..24u8)
            .filter(|i| i % 2 == client)
            .map(|i| vec![i; [3, 40, 1300][usize::from(i) % 3]])
            .collect()
    }

    fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        v.sort();
        v
    }

    #[test]
    fn answers_to_one_client_of_one_length_leave_as_one_gso_message() {
        let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let mut batch = Batch::new();
        let (first, second, group_count) = mixed_batch(&server, &mut batch);
        // Per client: the 3- and 40-byte answers grouped; the 1,300-byte ones (over
        // GSO_MAX_SEGMENT) alone, four each.
        assert_eq!(group_count, 2 * (2 + 4));
        assert!(batch.gso, "the kernel took the GSO messages");
        assert_eq!(sorted(first.clone()), sorted(expected(0)));
        assert_eq!(sorted(second), sorted(expected(1)));
        // Within a group the datagrams keep the order received.
        let threes: Vec<_> = first
            .iter()
            .filter(|a| a.len() == 3)
            .map(|a| a[0])
            .collect();
        assert_eq!(threes, [0, 6, 12, 18]);
    }

    #[test]
    fn a_socket_that_refuses_gso_sends_one_by_one_from_then_on() {
        let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        // Without UDP checksums the kernel refuses GSO messages (EINVAL).
        set_int_option(server.as_raw_fd(), libc::SO_NO_CHECK, 1).unwrap();
        let mut batch = Batch::new();
        let (first, second, _) = mixed_batch(&server, &mut batch);
        assert!(!batch.gso, "GSO is off after the kernel refused it");
        assert_eq!(sorted(first), sorted(expected(0)));
        assert_eq!(sorted(second), sorted(expected(1)));
        let (first, _, group_count) = mixed_batch(&server, &mut batch);
        assert_eq!(group_count, 24, "every answer alone");
        assert_eq!(sorted(first), sorted(expected(0)));
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

    /// The epoll events the runtime registered for `fd`, read from the fdinfo of every epoll
    /// descriptor of this process.
    fn epoll_events(fd: RawFd) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if target.to_string_lossy() != "anon_inode:[eventpoll]" {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                entry.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            for line in info.lines() {
                let mut words = line.split_whitespace();
                if words.next() == Some("tfd:") && words.next() == Some(&fd.to_string()) {
                    let events = words.skip_while(|w| *w != "events:").nth(1)?;
                    return u32::from_str_radix(events, 16).ok();
                }
            }
        }
        None
    }

    #[tokio::test]
    async fn the_socket_is_watched_for_readability_only() {
        let (listener, _, _) = listener_and_client();
        let events = epoll_events(listener.as_raw_fd()).expect("the socket is registered");
        assert_ne!(events & libc::EPOLLIN as u32, 0, "events {events:#x}");
        assert_eq!(events & libc::EPOLLOUT as u32, 0, "events {events:#x}");
    }

    /// Beyond `net.core.rmem_max` when the kernel's default caps it (as root, as CI runs).
    #[test]
    fn the_receive_buffer_is_what_was_asked() {
        let socket = Socket::from(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let got = socket.recv_buffer_size().unwrap();
        assert!(
            got >= RECEIVE_BUFFER_BYTES,
            "{got} bytes: needs root (CAP_NET_ADMIN) or net.core.rmem_max >= {RECEIVE_BUFFER_BYTES}"
        );
    }

    /// A registered loopback socket, a client socket and the address it sends to.
    fn listener_and_client() -> (UdpListener, StdUdpSocket, SocketAddr) {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listen_udp(socket).unwrap();
        let to = listener.get_ref().local_addr().unwrap();
        (listener, StdUdpSocket::bind("127.0.0.1:0").unwrap(), to)
    }

    async fn receive_within(listener: &UdpListener, batch: &mut Batch) -> usize {
        tokio::time::timeout(Duration::from_secs(2), receive_batch(listener, batch))
            .await
            .expect("datagrams waiting were received")
            .unwrap()
    }

    /// A short batch clears readiness without a call that finds nothing: datagrams that come
    /// after it, one or a few at a time, still wake the receiver.
    #[tokio::test]
    async fn datagrams_after_a_short_batch_are_received() {
        let (listener, client, to) = listener_and_client();
        let mut batch = Batch::new();
        for round in 0..300usize {
            let count = 1 + round % 5;
            for i in 0..count {
                client.send_to(&[round as u8, i as u8], to).unwrap();
            }
            let mut got = 0;
            while got < count {
                let received = receive_within(&listener, &mut batch).await;
                assert!(received < BATCH);
                got += received;
            }
            assert_eq!(got, count, "round {round}");
        }
    }

    /// A full batch may have left datagrams queued, so readiness stays set: the rest is
    /// received with no new datagram to raise an event.
    #[tokio::test]
    async fn the_rest_after_a_full_batch_is_received_without_a_new_event() {
        let (listener, client, to) = listener_and_client();
        for i in 0..BATCH + 3 {
            client.send_to(&[i as u8], to).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut batch = Batch::new();
        assert_eq!(receive_within(&listener, &mut batch).await, BATCH);
        assert_eq!(receive_within(&listener, &mut batch).await, 3);
    }

    #[test]
    fn a_helper_is_due_after_full_batches_in_a_row_only() {
        let mut backlog = Backlog::default();
        for _ in 1..HELP_AFTER_FULL_BATCHES {
            assert!(!backlog.note(BATCH));
        }
        assert!(!backlog.note(BATCH - 1), "a short batch starts over");
        for _ in 1..HELP_AFTER_FULL_BATCHES {
            assert!(!backlog.note(BATCH));
        }
        assert!(backlog.note(BATCH));
        assert!(!backlog.note(BATCH), "counting starts over after a call");
    }

    /// Readers of a fresh loopback socket answering `edge.example` with 192.0.2.1, a client,
    /// and the address it sends to.
    fn readers_and_client() -> (Arc<UdpReaders>, StdUdpSocket, SocketAddr) {
        let rule =
            mep_rules::DnsRule::active("r", "edge.example", "192.0.2.1".parse().unwrap(), None);
        let snapshots = mep_rules::SnapshotPublisher::new();
        snapshots.publish(Arc::new(mep_rules::Snapshot::build(
            1,
            [],
            [("app-1", &rule)],
        )));
        let handler = QueryHandler::new(
            &crate::DnsConfig::default(),
            &[],
            snapshots.reader(),
            Arc::new(DnsMetrics::new()),
        )
        .unwrap();
        let (listener, client, to) = listener_and_client();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        (UdpReaders::new(listener, Arc::new(handler)), client, to)
    }

    /// A query for `edge.example` A with ID `id`.
    fn edge_query(id: u16) -> Vec<u8> {
        let mut packet = crate::response::tests::query_bytes(
            "edge.example.",
            hickory_proto::rr::RecordType::A,
            false,
        );
        packet[..2].copy_from_slice(&id.to_be_bytes());
        packet
    }

    /// The IDs of the answers `client` gets within its read timeout, each checked to carry
    /// 192.0.2.1 at its end.
    fn answered_ids(client: &StdUdpSocket) -> Vec<u16> {
        let mut ids = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(len) = client.recv(&mut buf) {
            assert!(buf[..len].ends_with(&[192, 0, 2, 1]), "{:?}", &buf[..len]);
            ids.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
        ids.sort_unstable();
        ids
    }

    async fn until_idle_helpers(readers: &UdpReaders, count: usize) {
        for _ in 0..200 {
            if readers.idle_helpers.load(Ordering::Relaxed) == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("idle helpers never became {count}");
    }

    /// A called helper answers everything queued, then sleeps again: it neither reads nor
    /// answers on its own, which the waiting reader does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_called_helper_drains_the_queue_and_sleeps_again() {
        let (readers, client, to) = readers_and_client();
        client.connect(to).unwrap();
        readers.call_helper().await;
        assert_eq!(
            readers.handler.metrics.udp_helper_calls(),
            0,
            "no helper, no call"
        );
        let helper = tokio::spawn(help_udp(Arc::clone(&readers)));
        until_idle_helpers(&readers, 1).await;
        let queued = 3 * BATCH as u16 + 5;
        for id in 0..queued {
            client.send(&edge_query(id)).unwrap();
        }
        readers.call_helper().await;
        assert_eq!(readers.handler.metrics.udp_helper_calls(), 1);
        let client = tokio::task::spawn_blocking(move || {
            assert_eq!(answered_ids(&client), (0..queued).collect::<Vec<_>>());
            client
        })
        .await
        .unwrap();
        until_idle_helpers(&readers, 1).await;
        client.send(&edge_query(queued)).unwrap();
        let client = tokio::task::spawn_blocking(move || {
            assert!(
                answered_ids(&client).is_empty(),
                "the sleeping helper read a query"
            );
            client
        })
        .await
        .unwrap();
        let reader = tokio::spawn(serve_udp(Arc::clone(&readers)));
        let ids = tokio::task::spawn_blocking(move || answered_ids(&client))
            .await
            .unwrap();
        assert_eq!(ids, [queued], "the waiting reader answers what was left");
        helper.abort();
        reader.abort();
    }
}
