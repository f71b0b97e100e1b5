//! Counters of the DNS server for Prometheus. Every counter the query path touches is created
//! up front, so counting is one atomic add with no map lookup or lock.

use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::wire::rcode;

/// Where a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerSource {
    /// An ACTIVE DNS rule (or NODATA for a name that rules cover).
    Local,
    /// The cache of forwarded answers.
    Cache,
    /// An upstream resolver, just now.
    Upstream,
    /// The server itself: a malformed or unsupported query, or no upstream answered in time.
    Error,
}

impl AnswerSource {
    const ALL: [AnswerSource; 4] = [Self::Local, Self::Cache, Self::Upstream, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Cache => "cache",
            Self::Upstream => "upstream",
            Self::Error => "error",
        }
    }
}

/// Why a packet got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than a header, or a response rather than a query.
    Malformed,
    /// The UDP send buffer was full.
    SendBufferFull,
}

impl DropReason {
    const ALL: [DropReason; 2] = [Self::Malformed, Self::SendBufferFull];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SendBufferFull => "send_buffer_full",
        }
    }
}

/// Why the server refused or closed a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpClose {
    /// Refused: its client already holds its share of connections.
    ClientLimit,
    /// Refused: every connection slot holds a connection with a query in flight.
    TableFull,
    /// Closed to make room: it was the longest idle when the table was full.
    Evicted,
    /// Closed: no query for longer than the idle limit (which shrinks as the table fills).
    Idle,
    /// Closed: a message (query in, or answer out) was not complete within the message timeout.
    MessageTimeout,
}

impl TcpClose {
    const ALL: [TcpClose; 5] = [
        Self::ClientLimit,
        Self::TableFull,
        Self::Evicted,
        Self::Idle,
        Self::MessageTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientLimit => "client_limit",
            Self::TableFull => "table_full",
            Self::Evicted => "evicted",
            Self::Idle => "idle",
            Self::MessageTimeout => "message_timeout",
        }
    }
}

/// How a query went to an upstream resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UpstreamTransport {
    Udp,
    Tcp,
    Tls,
}

/// How an exchange with an upstream resolver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UpstreamOutcome {
    Answer,
    Timeout,
    Error,
}

/// The transport a query came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
}

impl Transport {
    const ALL: [Transport; 4] = [Self::Udp, Self::Tcp, Self::Tls, Self::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }
}

/// The RCODEs counted one by one; everything else is counted as `OTHER`.
const RCODE_LABELS: [(u16, &str); 8] = [
    (rcode::NOERROR, "NOERROR"),
    (rcode::FORMERR, "FORMERR"),
    (rcode::SERVFAIL, "SERVFAIL"),
    (rcode::NXDOMAIN, "NXDOMAIN"),
    (rcode::NOTIMP, "NOTIMP"),
    (rcode::REFUSED, "REFUSED"),
    (rcode::BADVERS, "BADVERS"),
    (u16::MAX, "OTHER"),
];

fn rcode_slot(code: u16) -> usize {
    RCODE_LABELS
        .iter()
        .position(|(c, _)| *c == code)
        .unwrap_or(RCODE_LABELS.len() - 1)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    source: &'static str,
    rcode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpCloseLabels {
    reason: &'static str,
}

/// Which limit refused to forward a query (it got SERVFAIL at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardLimit {
    /// The client's share, `max_forwarded_per_client`.
    Client,
    /// Every client's together, `max_forwarded_in_flight`.
    Total,
}

impl ForwardLimit {
    const ALL: [ForwardLimit; 2] = [Self::Client, Self::Total];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Total => "total",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    transport: &'static str,
    outcome: &'static str,
}

/// The DNS server's metrics; [`DnsMetrics::register`] adds them to a registry.
#[derive(Debug)]
pub struct DnsMetrics {
    queries: Family<TransportLabels, Counter>,
    query_counters: [Counter; Transport::ALL.len()],
    responses: Family<ResponseLabels, Counter>,
    response_counters: [[Counter; RCODE_LABELS.len()]; AnswerSource::ALL.len()],
    dropped: Family<DropLabels, Counter>,
    dropped_counters: [Counter; DropReason::ALL.len()],
    upstream: Family<UpstreamLabels, Counter>,
    /// By [`UpstreamTransport`], then [`UpstreamOutcome`].
    upstream_counters: [[Counter; 3]; 3],
    cache_entries: Gauge,
    tcp_closed: Family<TcpCloseLabels, Counter>,
    tcp_closed_counters: [Counter; TcpClose::ALL.len()],
    tcp_connections: Gauge,
    udp_helper_calls: Counter,
    upstream_tls_connections: Counter,
    forwards_refused: Family<ForwardLimitLabels, Counter>,
    forwards_refused_counters: [Counter; ForwardLimit::ALL.len()],
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsMetrics {
    pub fn new() -> Self {
        let queries = Family::<TransportLabels, Counter>::default();
        let query_counters = Transport::ALL.map(|t| {
            queries
                .get_or_create(&TransportLabels {
                    transport: t.as_str(),
                })
                .clone()
        });
        let responses = Family::<ResponseLabels, Counter>::default();
        let response_counters = AnswerSource::ALL.map(|source| {
            RCODE_LABELS.map(|(_, rcode)| {
                responses
                    .get_or_create(&ResponseLabels {
                        source: source.as_str(),
                        rcode,
                    })
                    .clone()
            })
        });
        let dropped = Family::<DropLabels, Counter>::default();
        let dropped_counters = DropReason::ALL.map(|reason| {
            dropped
                .get_or_create(&DropLabels {
                    reason: reason.as_str(),
                })
                .clone()
        });
        let tcp_closed = Family::<TcpCloseLabels, Counter>::default();
        let tcp_closed_counters = TcpClose::ALL.map(|reason| {
            tcp_closed
                .get_or_create(&TcpCloseLabels {
                    reason: reason.as_str(),
                })
                .clone()
        });
        let forwards_refused = Family::<ForwardLimitLabels, Counter>::default();
        let forwards_refused_counters = ForwardLimit::ALL.map(|limit| {
            forwards_refused
                .get_or_create(&ForwardLimitLabels {
                    limit: limit.as_str(),
                })
                .clone()
        });
        let upstream = Family::<UpstreamLabels, Counter>::default();
        let upstream_counters = ["udp", "tcp", "tls"].map(|transport| {
            ["answer", "timeout", "error"].map(|outcome| {
                upstream
                    .get_or_create(&UpstreamLabels { transport, outcome })
                    .clone()
            })
        });
        DnsMetrics {
            queries,
            query_counters,
            responses,
            response_counters,
            dropped,
            dropped_counters,
            upstream,
            upstream_counters,
            cache_entries: Gauge::default(),
            tcp_closed,
            tcp_closed_counters,
            tcp_connections: Gauge::default(),
            udp_helper_calls: Counter::default(),
            upstream_tls_connections: Counter::default(),
            forwards_refused,
            forwards_refused_counters,
        }
    }

    /// Registers `dns_queries_total{transport}`, `dns_responses_total{source,rcode}`,
    /// `dns_dropped_total{reason}`,
    /// `dns_upstream_queries_total{transport,outcome}`, `dns_cache_entries`,
    /// `dns_tcp_closed_total{reason}`, `dns_tcp_connections`, `dns_udp_helper_calls_total`,
    /// `dns_upstream_tls_connections_total` and `dns_forwards_refused_total{limit}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dns_queries",
            "DNS queries received, by transport (udp, tcp, tls, https)",
            self.queries.clone(),
        );
        registry.register(
            "dns_responses",
            "DNS responses sent, by answer source and RCODE",
            self.responses.clone(),
        );
        registry.register(
            "dns_dropped",
            "DNS packets left without a response, by reason",
            self.dropped.clone(),
        );
        registry.register(
            "dns_upstream_queries",
            "Queries sent to upstream resolvers, by transport and outcome",
            self.upstream.clone(),
        );
        registry.register(
            "dns_forwards_refused",
            "Queries not forwarded because a limit was reached (they got SERVFAIL), by limit \
             (client, total)",
            self.forwards_refused.clone(),
        );
        registry.register(
            "dns_upstream_tls_connections",
            "Connections opened to DNS-over-TLS upstreams (each one carries many queries)",
            self.upstream_tls_connections.clone(),
        );
        registry.register(
            "dns_cache_entries",
            "Forwarded answers held in the cache",
            self.cache_entries.clone(),
        );
        registry.register(
            "dns_tcp_closed",
            "TCP connections the server refused or closed, by reason",
            self.tcp_closed.clone(),
        );
        registry.register(
            "dns_tcp_connections",
            "Open DNS-over-TCP connections",
            self.tcp_connections.clone(),
        );
        registry.register(
            "dns_udp_helper_calls",
            "Times a second UDP reader was called in because the queue stayed deep: DNS load beyond one core",
            self.udp_helper_calls.clone(),
        );
    }

    /// Times a UDP helper reader was called in so far.
    pub fn udp_helper_calls(&self) -> u64 {
        self.udp_helper_calls.get()
    }

    pub(crate) fn count_udp_helper_call(&self) {
        self.udp_helper_calls.inc();
    }

    /// TCP connections refused or closed so far for `reason`.
    pub fn tcp_closed(&self, reason: TcpClose) -> u64 {
        self.tcp_closed_counters[reason as usize].get()
    }

    pub(crate) fn count_tcp_close(&self, reason: TcpClose) {
        self.tcp_closed_counters[reason as usize].inc();
    }

    pub(crate) fn tcp_connection_opened(&self) {
        self.tcp_connections.inc();
    }

    pub(crate) fn tcp_connection_closed(&self) {
        self.tcp_connections.dec();
    }

    /// Queries received so far over `transport`.
    pub fn queries(&self, transport: Transport) -> u64 {
        self.query_counters[transport as usize].get()
    }

    pub(crate) fn count_query(&self, transport: Transport) {
        self.query_counters[transport as usize].inc();
    }

    /// Responses sent so far from `source` with `rcode`.
    pub fn responses(&self, source: AnswerSource, rcode: ResponseCode) -> u64 {
        self.response_counters[source as usize][rcode_slot(u16::from(rcode))].get()
    }

    /// Packets dropped so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_counters[reason as usize].get()
    }

    pub(crate) fn count_response(&self, source: AnswerSource, rcode: u16) {
        self.response_counters[source as usize][rcode_slot(rcode)].inc();
    }

    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.dropped_counters[reason as usize].inc();
    }

    pub(crate) fn count_upstream(&self, transport: UpstreamTransport, outcome: UpstreamOutcome) {
        self.upstream_counters[transport as usize][outcome as usize].inc();
    }

    pub(crate) fn count_upstream_tls_connection(&self) {
        self.upstream_tls_connections.inc();
    }

    pub(crate) fn count_forward_refused(&self, limit: ForwardLimit) {
        self.forwards_refused_counters[limit as usize].inc();
    }

    /// Queries not forwarded because `limit` was reached.
    pub fn forwards_refused(&self, limit: ForwardLimit) -> u64 {
        self.forwards_refused_counters[limit as usize].get()
    }

    pub(crate) fn set_cache_entries(&self, entries: usize) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn counts_show_up_under_their_labels() {
        let metrics = DnsMetrics::new();
        metrics.count_response(AnswerSource::Upstream, rcode::NXDOMAIN);
        metrics.count_response(AnswerSource::Error, 23);
        metrics.count_drop(DropReason::Malformed);
        metrics.count_upstream_tls_connection();
        metrics.count_forward_refused(ForwardLimit::Client);
        let mut registry = Registry::with_prefix("mep");
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"mep_dns_responses_total{source="upstream",rcode="NXDOMAIN"} 1"#));
        assert!(text.contains(r#"mep_dns_responses_total{source="error",rcode="OTHER"} 1"#));
        assert!(text.contains(r#"mep_dns_dropped_total{reason="malformed"} 1"#));
        assert!(text.contains("mep_dns_cache_entries 0"));
        assert!(text.contains("mep_dns_upstream_tls_connections_total 1"));
        assert!(text.contains(r#"mep_dns_forwards_refused_total{limit="client"} 1"#));
        assert_eq!(metrics.forwards_refused(ForwardLimit::Total), 0);
        assert_eq!(
            metrics.responses(AnswerSource::Upstream, ResponseCode::NXDomain),
            1
        );
        assert_eq!(
            metrics.responses(AnswerSource::Local, ResponseCode::NoError),
            0
        );
    }
}
