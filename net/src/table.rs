//! The connection table of one listener.
//!
//! Admission, eviction and sweeping take the table's lock (O(open connections) at worst, and
//! only on accept or on a sweep); what a connection does per request is two atomic stores.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Limits of one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client: one IPv4 address, or one IPv6 /64 (what one
    /// host or subscriber line typically holds).
    pub max_per_client: usize,
    /// How long a connection with nothing in flight may stay silent while the table is at most
    /// half full.
    pub idle_timeout: Duration,
    /// The idle limit when the table is full; between half and full it falls linearly, so that
    /// idle connections make room sooner the more there are.
    pub min_idle_timeout: Duration,
    /// Time a new connection has to start its first request (see [`ConnTicket::start`]),
    /// however many bytes it trickles meanwhile; `None` leaves it to the idle limit.
    pub first_request_timeout: Option<Duration>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client holds `max_per_client` connections already.
    ClientLimit,
    /// The table is full and every connection in it has work in flight.
    Full,
}

/// Why the table closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// It was the longest idle when a new connection arrived at a full table.
    Evicted,
    /// It stayed silent, with nothing in flight, beyond the idle limit.
    Idle,
    /// It did not start a request within the first-request timeout.
    NoRequest,
}

const OPEN: u8 = 0;
const EVICTED: u8 = 1;
const IDLE: u8 = 2;
const NO_REQUEST: u8 = 3;

/// Counts of a table, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub open: usize,
    pub admitted: u64,
    pub refused_client_limit: u64,
    pub refused_full: u64,
    pub evicted: u64,
    pub closed_idle: u64,
    pub closed_no_request: u64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    client: IpAddr,
    /// Milliseconds since the table's epoch.
    admitted: u64,
    last_active: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether a request was ever started on it.
    started: std::sync::atomic::AtomicBool,
    closed_as: AtomicU8,
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    entries: HashMap<u64, Arc<Entry>>,
    per_client: HashMap<IpAddr, usize>,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    refused_client_limit: AtomicU64,
    refused_full: AtomicU64,
    evicted: AtomicU64,
    closed_idle: AtomicU64,
    closed_no_request: AtomicU64,
}

/// Every open connection of one listener. Share it in an `Arc`.
#[derive(Debug)]
pub struct ConnTable {
    name: &'static str,
    limits: ConnLimits,
    epoch: Instant,
    inner: Mutex<Inner>,
    open: AtomicUsize,
    counters: Counters,
}

/// What groups connections as one client: an IPv4 address, or the /64 of an IPv6 address.
pub(crate) fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl ConnTable {
    pub fn new(name: &'static str, limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            name,
            limits: ConnLimits {
                max_connections: limits.max_connections.max(1),
                max_per_client: limits.max_per_client.max(1),
                min_idle_timeout: limits.min_idle_timeout.min(limits.idle_timeout),
                ..limits
            },
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            open: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a connection from `peer`. At a full table the longest-idle connection with
    /// nothing in flight is closed to make room.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnTicket, Refusal> {
        let client = client_key(peer);
        let mut inner = self.lock();
        if inner.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            self.counters
                .refused_client_limit
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::ClientLimit);
        }
        if inner.entries.len() >= self.limits.max_connections {
            let victim = inner
                .entries
                .values()
                .filter(|e| e.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|e| e.last_active.load(Ordering::Relaxed))
                .map(|e| e.id);
            match victim {
                Some(id) => {
                    self.close_locked(&mut inner, id, EVICTED);
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::Full);
                }
            }
        }
        inner.next_id += 1;
        let now = self.now_ms();
        let entry = Arc::new(Entry {
            id: inner.next_id,
            client,
            admitted: now,
            last_active: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            started: std::sync::atomic::AtomicBool::new(false),
            closed_as: AtomicU8::new(OPEN),
            close: CancellationToken::new(),
        });
        inner.entries.insert(entry.id, Arc::clone(&entry));
        *inner.per_client.entry(client).or_default() += 1;
        self.open.store(inner.entries.len(), Ordering::Relaxed);
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnTicket {
            table: Arc::clone(self),
            entry,
        })
    }

    /// Takes `id` out of the table and, if `reason` is not [`OPEN`], tells its connection to
    /// close.
    fn close_locked(&self, inner: &mut Inner, id: u64, reason: u8) {
        let Some(entry) = inner.entries.remove(&id) else {
            return;
        };
        if let Some(n) = inner.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                inner.per_client.remove(&entry.client);
            }
        }
        self.open.store(inner.entries.len(), Ordering::Relaxed);
        if reason != OPEN {
            entry.closed_as.store(reason, Ordering::Release);
            entry.close.cancel();
        }
    }

    /// The idle limit now: `idle_timeout` up to half occupancy, falling linearly to
    /// `min_idle_timeout` at a full table.
    pub fn idle_timeout(&self) -> Duration {
        let ConnLimits {
            max_connections,
            idle_timeout,
            min_idle_timeout,
            ..
        } = self.limits;
        let open = self.open.load(Ordering::Relaxed);
        let half = max_connections as f64 / 2.0;
        let pressure = ((open as f64 - half) / half).clamp(0.0, 1.0);
        idle_timeout - (idle_timeout - min_idle_timeout).mul_f64(pressure)
    }

    /// Closes every connection idle beyond the current limit, and every one that has not
    /// started a request within the first-request timeout; answers how many.
    pub fn sweep(&self) -> usize {
        let limit = self.idle_timeout().as_millis() as u64;
        let first = self
            .limits
            .first_request_timeout
            .map(|t| t.as_millis() as u64);
        let now = self.now_ms();
        let mut inner = self.lock();
        let mut idle = Vec::new();
        let mut no_request = Vec::new();
        for e in inner.entries.values() {
            if first.is_some_and(|first| {
                !e.started.load(Ordering::Acquire) && now.saturating_sub(e.admitted) > first
            }) {
                no_request.push(e.id);
            } else if e.in_flight.load(Ordering::Acquire) == 0
                && now.saturating_sub(e.last_active.load(Ordering::Relaxed)) > limit
            {
                idle.push(e.id);
            }
        }
        for id in &idle {
            self.close_locked(&mut inner, *id, IDLE);
        }
        for id in &no_request {
            self.close_locked(&mut inner, *id, NO_REQUEST);
        }
        let c = &self.counters;
        c.closed_idle
            .fetch_add(idle.len() as u64, Ordering::Relaxed);
        c.closed_no_request
            .fetch_add(no_request.len() as u64, Ordering::Relaxed);
        idle.len() + no_request.len()
    }

    /// Sweeps every `period` until `shutdown` fires.
    pub async fn run_sweeper(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let closed = self.sweep();
                    if closed > 0 {
                        tracing::debug!(listener = self.name, closed, "closed idle connections");
                    }
                }
            }
        }
    }

    pub fn counts(&self) -> TableCounts {
        let c = &self.counters;
        TableCounts {
            open: self.open.load(Ordering::Relaxed),
            admitted: c.admitted.load(Ordering::Relaxed),
            refused_client_limit: c.refused_client_limit.load(Ordering::Relaxed),
            refused_full: c.refused_full.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            closed_idle: c.closed_idle.load(Ordering::Relaxed),
            closed_no_request: c.closed_no_request.load(Ordering::Relaxed),
        }
    }
}

/// An admitted connection's place in its table; dropping it frees the place.
#[derive(Debug)]
pub struct ConnTicket {
    table: Arc<ConnTable>,
    entry: Arc<Entry>,
}

impl ConnTicket {
    /// Records activity: a byte (or a whole message) arrived.
    pub fn touch(&self) {
        self.entry
            .last_active
            .store(self.table.now_ms(), Ordering::Relaxed);
    }

    /// Marks work in flight (a request or query being read, answered or forwarded): the
    /// connection is neither idle nor evictable until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.entry.in_flight.fetch_add(1, Ordering::AcqRel);
        self.entry.started.store(true, Ordering::Release);
        InFlight {
            table: Arc::clone(&self.table),
            entry: Arc::clone(&self.entry),
        }
    }

    /// Resolves when the table closes this connection, with the reason.
    pub async fn closed(&self) -> Closed {
        self.entry.close.cancelled().await;
        match self.entry.closed_as.load(Ordering::Acquire) {
            EVICTED => Closed::Evicted,
            NO_REQUEST => Closed::NoRequest,
            _ => Closed::Idle,
        }
    }

    /// The idle limit of this connection's table now.
    pub fn idle_timeout(&self) -> Duration {
        self.table.idle_timeout()
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        self.table.close_locked(&mut inner, self.entry.id, OPEN);
    }
}

/// Work in flight on a connection; see [`ConnTicket::start`].
#[derive(Debug)]
pub struct InFlight {
    table: Arc<ConnTable>,
    entry: Arc<Entry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.entry
            .last_active
            .store(self.table.now_ms(), Ordering::Relaxed);
        self.entry.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> ConnLimits {
        ConnLimits {
            max_connections: max,
            max_per_client: per_client,
            idle_timeout: Duration::from_secs(10),
            min_idle_timeout: Duration::from_millis(500),
            first_request_timeout: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_may_hold_only_its_share() {
        let table = ConnTable::new("t", limits(10, 2));
        let _a = table.admit(ip("192.0.2.1")).unwrap();
        let _b = table.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            table.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::ClientLimit
        );
        let c = table.admit(ip("192.0.2.2")).unwrap();
        drop(c);
        assert_eq!(table.counts().open, 2);
        // One IPv6 /64 is one client; a v4-mapped address is its IPv4 address.
        let _d = table.admit(ip("2001:db8:0:1::1")).unwrap();
        let _e = table.admit(ip("2001:db8:0:1::2")).unwrap();
        assert!(table.admit(ip("2001:db8:0:1:ffff::3")).is_err());
        assert!(table.admit(ip("2001:db8:0:2::1")).is_ok());
        assert!(table.admit(ip("::ffff:192.0.2.1")).is_err());
        assert_eq!(table.counts().refused_client_limit, 3);
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_longest_idle_and_never_a_busy_one() {
        let table = ConnTable::new("t", limits(3, 10));
        let oldest = table.admit(ip("192.0.2.1")).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = table.admit(ip("192.0.2.2")).unwrap();
        let _work = busy.start();
        busy.touch();
        let _young = table.admit(ip("192.0.2.3")).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        oldest.touch();
        // `oldest` was touched last; of the idle ones `young` is now the longest idle.
        let _new = table.admit(ip("192.0.2.4")).unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(1), _young.closed()).await;
        assert_eq!(closed, Ok(Closed::Evicted));
        assert_eq!(table.counts().evicted, 1);
        assert_eq!(table.counts().open, 3);
        // Everyone left is busy: the next one is refused.
        let _w1 = oldest.start();
        let _w2 = _new.start();
        assert_eq!(table.admit(ip("192.0.2.5")).unwrap_err(), Refusal::Full);
    }

    #[tokio::test]
    async fn the_idle_limit_shrinks_with_occupancy_and_sweeps_close() {
        let table = ConnTable::new("t", limits(4, 10));
        assert_eq!(table.idle_timeout(), Duration::from_secs(10));
        let tickets: Vec<_> = (1..=4)
            .map(|i| table.admit(ip(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        assert_eq!(table.idle_timeout(), Duration::from_millis(500));
        drop(tickets);
        let short = ConnTable::new(
            "t",
            ConnLimits {
                idle_timeout: Duration::from_millis(20),
                min_idle_timeout: Duration::from_millis(20),
                ..limits(4, 10)
            },
        );
        let idle = short.admit(ip("192.0.2.1")).unwrap();
        let busy = short.admit(ip("192.0.2.2")).unwrap();
        let _work = busy.start();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(short.sweep(), 1);
        let closed = tokio::time::timeout(Duration::from_secs(1), idle.closed()).await;
        assert_eq!(closed, Ok(Closed::Idle));
        assert_eq!(short.counts().closed_idle, 1);
        assert_eq!(short.counts().open, 1);
        drop(idle);
        assert_eq!(
            short.counts().open,
            1,
            "a closed ticket's drop frees nothing twice"
        );
    }

    #[tokio::test]
    async fn a_connection_that_never_starts_a_request_is_closed_however_it_trickles() {
        let table = ConnTable::new(
            "t",
            ConnLimits {
                first_request_timeout: Some(Duration::from_millis(30)),
                ..limits(4, 10)
            },
        );
        let trickler = table.admit(ip("192.0.2.1")).unwrap();
        let served = table.admit(ip("192.0.2.2")).unwrap();
        drop(served.start());
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            trickler.touch();
            table.sweep();
        }
        let closed = tokio::time::timeout(Duration::from_secs(1), trickler.closed()).await;
        assert_eq!(closed, Ok(Closed::NoRequest));
        assert_eq!(table.counts().closed_no_request, 1);
        assert_eq!(table.counts().open, 1, "the served connection stays");
    }
}
