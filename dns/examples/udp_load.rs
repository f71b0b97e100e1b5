//! A lean DNS-over-UDP load generator for benchmarks (`CLIENT=lean benches/dns.sh`): one
//! thread, SOCKETS connected sockets (source ports), at most WINDOW queries outstanding on each.
//! Each run of queries of one length leaves as one UDP GSO message (the kernel splits it into
//! ordinary datagrams before the server's socket), answers are taken with `recvmmsg` batches
//! from the sockets epoll finds ready.
//!
//! Why: dnsperf spends more CPU per query than the servers it measures (8.7-14.9 µs against
//! mep's 7.1 and Knot's 7.9-8.2 in one run, both pinned to the other core), so on two cores it
//! caps their queries/s before either is saturated. This client costs 1.6-2.3 µs per query
//! against mep, so pinned to one core it can saturate a server pinned to the other, and the q/s
//! of two servers then compare their costs.
//!
//! Not quinn-udp, whose `Transmit` would do the GSO sends: it turns UDP_GRO on for every socket
//! it wraps, so the kernel would hand this client mep's GSO answers whole, one receive per
//! message, while Knot's and Unbound's arrive one datagram each. The client would then be
//! cheaper against mep than against its peers, and real stub resolvers do not do that.
//!
//! Queries are read from a dnsperf-style file (`NAME TYPE` per line) and sent round robin, with
//! RD set and no EDNS, as dnsperf sends them. An answer counts if its ID is the one outstanding
//! in its slot of its socket; a query unanswered after 2 s is lost.
//!
//! Prints one line: `answered=N qps=Q lost=L not_noerror=E avg_us=A busy=B`, where B is the
//! share of one core this client used: near 1.0, the client and not the server set the q/s.
//!
//! Usage: udp_load SERVER QUERY_FILE SECONDS [SOCKETS [WINDOW]]   (defaults: 4 sockets, 50 each)

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;
/// Datagrams per GSO message (the kernel takes up to 64 on any version with `UDP_SEGMENT`).
const SEGMENTS: usize = 64;
/// `UDP_SEGMENT` of `<linux/udp.h>` (Linux 4.18), which `libc` defines for uclibc only.
const UDP_SEGMENT: libc::c_int = 103;
/// Room for any answer to the queries of a benchmark (no EDNS, so at most 512 bytes).
const BUF: usize = 512;
/// A query unanswered for this long is lost and its slot reused.
const LOST_AFTER: Duration = Duration::from_secs(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, file, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: udp_load SERVER QUERY_FILE SECONDS [SOCKETS [WINDOW]]".into());
    };
    let server: SocketAddr = server.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let sockets: usize = rest.first().map_or(Ok(4), |s| s.parse())?;
    let window: usize = rest.get(1).map_or(Ok(50), |s| s.parse())?;
    if window == 0 || window > usize::from(u16::MAX) {
        return Err("WINDOW must be 1..65535".into());
    }
    let queries = read_queries(file)?;

    let mut clients = (0..sockets)
        .map(|_| Client::connect(server, window))
        .collect::<io::Result<Vec<_>>>()?;
    let mut totals = Totals::default();
    let start = Instant::now();
    let mut next_query = 0usize;
    let mut last_sweep = start;
    let mut recv = RecvBatch::new();
    let mut readiness = Readiness::new(&clients)?;
    for client in &mut clients {
        client.send(&queries, &mut next_query)?;
    }
    while start.elapsed() < duration {
        for &index in readiness.wait()? {
            let client = &mut clients[index];
            client.receive(&mut recv, &mut totals)?;
            client.send(&queries, &mut next_query)?;
        }
        let now = Instant::now();
        if now - last_sweep > Duration::from_millis(100) {
            for client in &mut clients {
                client.sweep(now, &mut totals);
                client.send(&queries, &mut next_query)?;
            }
            last_sweep = now;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let busy = cpu_seconds()? / secs;
    let avg_us = if totals.answered > 0 {
        totals.latency.as_secs_f64() * 1e6 / totals.answered as f64
    } else {
        0.0
    };
    println!(
        "answered={} qps={:.0} lost={} not_noerror={} avg_us={avg_us:.0} busy={busy:.2}",
        totals.answered,
        totals.answered as f64 / secs,
        totals.lost,
        totals.not_noerror
    );
    Ok(())
}

/// CPU time (user and system) this process has used, in seconds.
fn cpu_seconds() -> io::Result<f64> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// The wire bytes of every query in the file, ID 0.
fn read_queries(path: &str) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(rtype)) = (fields.next(), fields.next()) else {
            continue;
        };
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_str(name)?,
            RecordType::from_str(rtype)?,
        ));
        out.push(message.to_vec()?);
    }
    if out.is_empty() {
        return Err(format!("no queries in {path}").into());
    }
    Ok(out)
}

#[derive(Default)]
struct Totals {
    answered: u64,
    lost: u64,
    not_noerror: u64,
    latency: Duration,
}

/// One connected socket and its outstanding queries: slot `i` carries IDs `i + k * window`,
/// so an answer's ID names its slot, and a late answer to a slot's earlier query is not counted.
struct Client {
    socket: UdpSocket,
    window: usize,
    /// The ID each slot sent last.
    ids: Vec<u16>,
    /// When each slot's outstanding query was sent, if it has one.
    sent_at: Vec<Option<Instant>>,
    free: Vec<usize>,
    /// The datagrams of one GSO message, back to back.
    segments: Vec<u8>,
}

impl Client {
    fn connect(server: SocketAddr, window: usize) -> io::Result<Self> {
        let any: IpAddr = match server {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((any, 0))?;
        socket.connect(server)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            window,
            ids: (0..window).map(|slot| slot as u16).collect(),
            sent_at: vec![None; window],
            free: (0..window).rev().collect(),
            segments: vec![0; SEGMENTS * BUF],
        })
    }

    /// Fills the window with the next queries: each run of queries of one length leaves as one
    /// UDP GSO message (`UDP_SEGMENT`), which the kernel splits into datagrams on the way in.
    fn send(&mut self, queries: &[Vec<u8>], next_query: &mut usize) -> io::Result<()> {
        while !self.free.is_empty() {
            let size = queries[*next_query % queries.len()].len();
            let most = self.free.len().min(SEGMENTS);
            let run = (0..most)
                .take_while(|i| queries[(*next_query + i) % queries.len()].len() == size)
                .count();
            // The run takes the top of the free stack, top first.
            for i in 0..run {
                let slot = self.free[self.free.len() - 1 - i];
                let id = self.next_id(slot);
                let segment = &mut self.segments[i * size..(i + 1) * size];
                segment.copy_from_slice(&queries[(*next_query + i) % queries.len()]);
                segment[..2].copy_from_slice(&id.to_be_bytes());
            }
            if !send_segments(&self.socket, &mut self.segments[..run * size], size)? {
                return Ok(());
            }
            let now = Instant::now();
            for _ in 0..run {
                if let Some(slot) = self.free.pop() {
                    self.sent_at[slot] = Some(now);
                }
            }
            *next_query = next_query.wrapping_add(run);
        }
        Ok(())
    }

    /// The slot's next ID: `window` on from its last, back to `slot` past `u16::MAX`.
    fn next_id(&mut self, slot: usize) -> u16 {
        let next = usize::from(self.ids[slot]) + self.window;
        self.ids[slot] = u16::try_from(next).unwrap_or(slot as u16);
        self.ids[slot]
    }

    /// Takes every answer waiting on the socket.
    fn receive(&mut self, recv: &mut RecvBatch, totals: &mut Totals) -> io::Result<()> {
        loop {
            let count = recv.receive(&self.socket)?;
            let now = Instant::now();
            for message in recv.messages(count) {
                if message.len() < 12 || message[2] & 0x80 == 0 {
                    continue;
                }
                let id = u16::from_be_bytes([message[0], message[1]]);
                let slot = usize::from(id) % self.window;
                match self.sent_at[slot] {
                    Some(sent_at) if self.ids[slot] == id => {
                        self.sent_at[slot] = None;
                        self.free.push(slot);
                        totals.answered += 1;
                        totals.latency += now - sent_at;
                        if message[3] & 0x0f != 0 {
                            totals.not_noerror += 1;
                        }
                    }
                    _ => {}
                }
            }
            if count < BATCH {
                return Ok(());
            }
        }
    }

    /// Frees the slots of queries unanswered for [`LOST_AFTER`].
    fn sweep(&mut self, now: Instant, totals: &mut Totals) {
        for (slot, entry) in self.sent_at.iter_mut().enumerate() {
            if matches!(entry, Some(sent_at) if now - *sent_at > LOST_AFTER) {
                *entry = None;
                self.free.push(slot);
                totals.lost += 1;
            }
        }
    }
}

/// Receive buffers for one `recvmmsg` call.
struct RecvBatch {
    buffers: Vec<[u8; BUF]>,
    lengths: [usize; BATCH],
}

impl RecvBatch {
    fn new() -> Self {
        Self {
            buffers: vec![[0; BUF]; BATCH],
            lengths: [0; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without waiting; returns how many.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.buffers[i].as_mut_ptr().cast(),
            iov_len: BUF,
        });
        // SAFETY: an all-zero mmsghdr is valid (null name, no control data).
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (header, iov) in headers.iter_mut().zip(iovecs.iter_mut()) {
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: BATCH headers point at live iovecs over live buffers; the socket is ours.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(err),
            };
        }
        let got = got as usize;
        for (length, header) in self.lengths.iter_mut().zip(&headers).take(got) {
            *length = header.msg_len as usize;
        }
        Ok(got)
    }

    fn messages(&self, count: usize) -> impl Iterator<Item = &[u8]> {
        self.buffers
            .iter()
            .zip(&self.lengths)
            .take(count)
            .map(|(b, &len)| &b[..len])
    }
}

/// Sends `buf` as datagrams of `size` bytes (the last may be shorter) in one `sendmsg`;
/// returns false if the socket buffer is full.
fn send_segments(socket: &UdpSocket, buf: &mut [u8], size: usize) -> io::Result<bool> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // A cmsghdr followed by a u16, in words so that it is aligned as a cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid (null name, no control data).
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if buf.len() > size {
        header.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE(2) is 24 bytes, within `control`, which is aligned as a cmsghdr,
        // so CMSG_FIRSTHDR points into it with room for the header and its two data bytes.
        unsafe {
            header.msg_controllen = libc::CMSG_SPACE(2) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
            libc::CMSG_DATA(cmsg)
                .cast::<u16>()
                .write_unaligned(size as u16);
        }
    }
    // SAFETY: the header points at a live iovec over `buf` and at `control`; the socket is ours.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_DONTWAIT) };
    if sent >= 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused => Ok(false),
        _ => Err(err),
    }
}

/// Which sockets have answers waiting (epoll, so that a pass costs what is ready, not what
/// is open).
struct Readiness {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: Vec<usize>,
}

impl Readiness {
    fn new(clients: &[Client]) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        for (index, client) in clients.iter().enumerate() {
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: index as u64,
            };
            // SAFETY: both descriptors are open; `event` lives across the call.
            let added = unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    client.socket.as_raw_fd(),
                    &mut event,
                )
            };
            if added < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self {
            epoll,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; clients.len().max(1)],
            ready: Vec::with_capacity(clients.len()),
        })
    }

    /// The indices of the sockets with answers waiting; waits up to 10 ms for one (so that the
    /// caller sweeps for lost queries and sees its deadline).
    fn wait(&mut self) -> io::Result<&[usize]> {
        // SAFETY: `events` is a live array of `events.len()` epoll_events.
        let count = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                10,
            )
        };
        self.ready.clear();
        if count < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(&self.ready),
                _ => Err(err),
            };
        }
        let count = count as usize;
        self.ready
            .extend(self.events[..count].iter().map(|e| e.u64 as usize));
        Ok(&self.ready)
    }
}
