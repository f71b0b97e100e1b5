//! What happens to one query, whatever transport it came on: local answer from the newest rule
//! snapshot, else the cache, else the upstreams. The first two (and every error response) are
//! written at once without locks or allocation; only forwarding waits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mep_net::{ClientShare, ClientShares};
use mep_rules::SnapshotReader;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::cache::AnswerCache;
use crate::config::{DnsConfig, Upstream};
use crate::error::DnsError;
use crate::forwarded::ForwardedAnswer;
use crate::metrics::{AnswerSource, DnsMetrics, DropReason, ForwardLimit, Transport};
use crate::query::{Edns, Query, Rejection, ReplyTo};
use crate::response::{write_error, write_local, LocalAnswerParams};
use crate::upstream::{routes, Forwarder};
use crate::wire::{rcode, CLASS_IN, MAX_NAME_LEN, MAX_TCP_MESSAGE};

/// What became of a packet.
pub(crate) enum Outcome {
    /// The response is in the output buffer.
    Answered,
    /// No response is due.
    Ignored,
    /// The upstreams must be asked: hand this to [`QueryHandler::answer_forwarded`].
    Forward(PendingForward),
}

/// A query on its way to the upstreams, with what its response must echo.
pub(crate) struct PendingForward {
    id: u16,
    request_flags: u16,
    question: Box<[u8]>,
    cache_key: Box<[u8]>,
    edns: Option<Edns>,
    /// The client's EDNS options that go upstream. An answer to a query with options (a client
    /// subnet, say) may be meant for that client only: it is neither cached nor shared.
    options: Box<[u8]>,
    limit: usize,
    _permit: OwnedSemaphorePermit,
    _share: ClientShare,
}

/// One upstream exchange that identical queries arriving meanwhile wait for instead of asking
/// again. None: no upstream answered.
type InFlight = Arc<OnceCell<Option<Arc<ForwardedAnswer>>>>;

pub(crate) struct QueryHandler {
    pub(crate) snapshots: SnapshotReader,
    pub(crate) cache: AnswerCache,
    pub(crate) forwarder: Forwarder,
    pub(crate) forward_permits: Arc<Semaphore>,
    /// Each client's part of those permits.
    pub(crate) client_shares: Arc<ClientShares>,
    /// Upstream exchanges in progress, by cache key.
    pub(crate) in_flight: Mutex<HashMap<Box<[u8]>, InFlight>>,
    pub(crate) metrics: Arc<DnsMetrics>,
    pub(crate) default_ttl: u32,
    pub(crate) udp_payload: u16,
}

impl QueryHandler {
    /// The handler `config` describes, asking `upstreams` (settled from the configuration).
    pub(crate) fn new(
        config: &DnsConfig,
        upstreams: &[Upstream],
        snapshots: SnapshotReader,
        metrics: Arc<DnsMetrics>,
    ) -> Result<Self, DnsError> {
        Ok(QueryHandler {
            snapshots,
            cache: AnswerCache::new(config.cache_bytes),
            forwarder: Forwarder {
                routes: routes(upstreams, &config.upstream_ca, &metrics)?,
                attempt_timeout: config.upstream_attempt_timeout,
                total_timeout: config.upstream_timeout,
                udp_payload: config.udp_payload,
                max_ttl: config.cache_max_ttl,
                metrics: Arc::clone(&metrics),
            },
            forward_permits: Arc::new(Semaphore::new(config.max_forwarded_in_flight)),
            client_shares: ClientShares::new(config.max_forwarded_per_client),
            in_flight: Default::default(),
            metrics,
            default_ttl: config.default_ttl,
            udp_payload: config.udp_payload,
        })
    }

    /// Answers `packet` into `out` (cleared first) if that needs no upstream. `client` says who
    /// sent it, when a query must go upstream.
    pub(crate) fn answer_now(
        &self,
        packet: &[u8],
        transport: Transport,
        client: impl FnOnce() -> IpAddr,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        self.metrics.count_query(transport);
        let query = match Query::parse(packet) {
            Ok(query) => query,
            Err(Rejection::Drop) => {
                self.metrics.count_drop(DropReason::Malformed);
                return Outcome::Ignored;
            }
            Err(Rejection::Reply { reply, rcode }) => {
                self.answer_error(out, &reply, rcode);
                return Outcome::Answered;
            }
        };
        let limit = match transport {
            Transport::Udp => query.reply.udp_limit(self.udp_payload),
            Transport::Tcp | Transport::Tls | Transport::Https => MAX_TCP_MESSAGE,
        };
        if query.qclass == CLASS_IN {
            let mut name = [0u8; MAX_NAME_LEN];
            if let Some(name) = query.rule_name(&mut name) {
                let snapshot = self.snapshots.load();
                if let Some(answers) = snapshot.dns_answers(name) {
                    let params = LocalAnswerParams {
                        default_ttl: self.default_ttl,
                        serial: snapshot.version as u32,
                        udp_payload: self.udp_payload,
                    };
                    write_local(out, &query, answers, params, limit);
                    self.metrics
                        .count_response(AnswerSource::Local, rcode::NOERROR);
                    return Outcome::Answered;
                }
            }
        }
        // Most options a client sends (a cookie) stay on this hop; the cache answers those.
        let mut forwards_options = false;
        if query
            .for_each_forwardable_option(|_| forwards_options = true)
            .is_none()
        {
            self.answer_error(out, &query.reply, rcode::FORMERR);
            return Outcome::Answered;
        }
        if !forwards_options {
            if let Some((answer, age)) = self.cache.get(query.cache_key(), Instant::now()) {
                answer.write(out, &query.reply, limit, age, self.udp_payload);
                self.metrics
                    .count_response(AnswerSource::Cache, answer.rcode());
                return Outcome::Answered;
            }
        }
        let Some(share) = self.client_shares.try_take(client()) else {
            self.metrics.count_forward_refused(ForwardLimit::Client);
            self.answer_error(out, &query.reply, rcode::SERVFAIL);
            return Outcome::Answered;
        };
        let Ok(permit) = self.forward_permits.clone().try_acquire_owned() else {
            self.metrics.count_forward_refused(ForwardLimit::Total);
            self.answer_error(out, &query.reply, rcode::SERVFAIL);
            return Outcome::Answered;
        };
        let mut options = Vec::new();
        query.for_each_forwardable_option(|o| options.extend_from_slice(o));
        Outcome::Forward(PendingForward {
            id: query.reply.id,
            request_flags: query.reply.request_flags,
            question: query.reply.question.unwrap_or_default().into(),
            cache_key: query.cache_key().into(),
            edns: query.reply.edns,
            options: options.into(),
            limit,
            _permit: permit,
            _share: share,
        })
    }

    /// Asks the upstreams and writes their answer (or SERVFAIL) into `out` (cleared first).
    pub(crate) async fn answer_forwarded(&self, pending: PendingForward, out: &mut Vec<u8>) {
        out.clear();
        let reply = ReplyTo {
            id: pending.id,
            request_flags: pending.request_flags,
            question: Some(&pending.question),
            edns: pending.edns,
        };
        let shared = pending.options.is_empty();
        let exchange = if shared {
            let mut in_flight = self.lock_in_flight();
            let cell = in_flight.entry(pending.cache_key.clone()).or_default();
            Exchange {
                cell: Arc::clone(cell),
                listed: Some((self, &pending.cache_key)),
            }
        } else {
            Exchange {
                cell: InFlight::default(),
                listed: None,
            }
        };
        let dnssec_ok = pending.edns.is_some_and(|e| e.dnssec_ok);
        let answer = exchange
            .cell
            .get_or_init(|| async {
                let result = self
                    .forwarder
                    .forward(
                        &pending.question,
                        pending.request_flags,
                        dnssec_ok,
                        &pending.options,
                    )
                    .await;
                match result {
                    Ok(answer) => {
                        let answer = Arc::new(answer);
                        if shared {
                            self.cache.insert(&pending.cache_key, Arc::clone(&answer));
                            self.metrics.set_cache_entries(self.cache.len());
                        }
                        Some(answer)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "forwarded DNS query failed");
                        None
                    }
                }
            })
            .await
            .clone();
        match answer {
            Some(answer) => {
                answer.write(out, &reply, pending.limit, 0, self.udp_payload);
                self.metrics
                    .count_response(AnswerSource::Upstream, answer.rcode());
            }
            None => self.answer_error(out, &reply, rcode::SERVFAIL),
        }
    }

    /// Upstream exchanges in progress.
    pub(crate) fn forwards_in_flight(&self) -> usize {
        self.lock_in_flight().len()
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn answer_error(&self, out: &mut Vec<u8>, reply: &ReplyTo<'_>, rcode: u16) {
        write_error(out, reply, rcode, self.udp_payload);
        self.metrics.count_response(AnswerSource::Error, rcode);
    }
}

/// One waiter's share of an upstream exchange. Dropped, it takes the exchange out of the
/// in-flight map once it has its answer, or when this was its last waiter (a DoH client that went
/// away cancels its query): no entry outlives its queries.
struct Exchange<'a> {
    cell: InFlight,
    /// Where the exchange is listed, if it is shared.
    listed: Option<(&'a QueryHandler, &'a [u8])>,
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        let Some((handler, key)) = self.listed else {
            return;
        };
        let mut in_flight = handler.lock_in_flight();
        let ours = in_flight
            .get(key)
            .is_some_and(|cell| Arc::ptr_eq(cell, &self.cell));
        // The map's reference and ours are the last two: nobody else waits.
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 2) {
            in_flight.remove(key);
        }
    }
}
