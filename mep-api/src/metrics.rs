//! Prometheus metrics, exposed in text format at `GET /metrics` on the Mm5 listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the HTTP request metrics. `route` is the matched route template, never the raw path,
/// so ids do not explode the label space.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub listener: &'static str,
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of the request latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: &'static str,
    pub method: String,
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Labels of the per-rule data-plane counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub app_instance_id: String,
    pub traffic_rule_id: String,
}

/// Labels of the data plane's forwarding outcome counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Labels of a listener's connection gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// Labels of refused and closed connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnCloseLabels {
    pub listener: &'static str,
    /// `client_limit`, `table_full` (refused), `evicted`, `idle`, `no_request` (closed by the
    /// server).
    pub reason: &'static str,
}

/// All metrics of the process.
pub struct Metrics {
    /// Written only while components register their own metrics at start.
    registry: parking_lot::RwLock<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub notifications_delivered: Counter,
    pub notifications_failed: Counter,
    pub notification_attempts_failed: Counter,
    pub notifications_dropped: Counter,
    pub notification_queue_bytes: Gauge,
    pub notification_subscriptions_failing: Gauge,
    pub store_bytes: Gauge,
    pub store_applied_revision: Gauge,
    /// 1 while this node sends the site's notifications.
    pub notifier_leader: Gauge,
    pub services: Gauge,
    pub subscriptions: Gauge,
    pub active_traffic_rules: Gauge,
    pub active_dns_rules: Gauge,
    pub traffic_rule_packets: Family<RuleLabels, Gauge>,
    pub forwarded_packets: Family<OutcomeLabels, Gauge>,
    pub dataplane_dns_queries: Family<OutcomeLabels, Gauge>,
    pub traffic_rule_bytes: Family<RuleLabels, Gauge>,
    pub http_connections: Family<ListenerLabels, Gauge>,
    pub http_connections_closed: Family<ConnCloseLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mep");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener, method, route and status",
            http_requests.clone(),
        );
        let http_latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by listener, method and route",
            http_latency.clone(),
        );
        let notifications_delivered = Counter::default();
        registry.register(
            "notifications_delivered",
            "Notifications a subscriber acknowledged with 2xx",
            notifications_delivered.clone(),
        );
        let notifications_failed = Counter::default();
        registry.register(
            "notifications_failed",
            "Notifications given up after every retry",
            notifications_failed.clone(),
        );
        let notification_attempts_failed = Counter::default();
        registry.register(
            "notification_attempts_failed",
            "Delivery attempts that failed (each retry counts)",
            notification_attempts_failed.clone(),
        );
        let notifications_dropped = Counter::default();
        registry.register(
            "notifications_dropped",
            "Queued notifications dropped, oldest first, because a subscriber's queue or the queue budget was full",
            notifications_dropped.clone(),
        );
        let notification_queue_bytes = Gauge::default();
        registry.register(
            "notification_queue_bytes",
            "Bytes of notifications waiting for delivery, all subscriptions together",
            notification_queue_bytes.clone(),
        );
        let notification_subscriptions_failing = Gauge::default();
        registry.register(
            "notification_subscriptions_failing",
            "Subscriptions whose callback failed notify_failing_after attempts in a row",
            notification_subscriptions_failing.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Size of the embedded store file",
            store_bytes.clone(),
        );
        let store_applied_revision = Gauge::default();
        registry.register(
            "store_applied_revision",
            "Newest etcd revision this node has applied (0 for the embedded store)",
            store_applied_revision.clone(),
        );
        let notifier_leader = Gauge::default();
        registry.register(
            "notifier_leader",
            "1 while this node sends the notifications of the site (always on a single node)",
            notifier_leader.clone(),
        );
        let services = Gauge::default();
        registry.register("services", "Registered MEC services", services.clone());
        let subscriptions = Gauge::default();
        registry.register(
            "ser_availability_subscriptions",
            "Service availability subscriptions",
            subscriptions.clone(),
        );
        let active_traffic_rules = Gauge::default();
        registry.register(
            "active_traffic_rules",
            "ACTIVE traffic rules of all applications (in the newest rule snapshot)",
            active_traffic_rules.clone(),
        );
        let active_dns_rules = Gauge::default();
        registry.register(
            "active_dns_rules",
            "ACTIVE DNS rules of all applications (in the newest rule snapshot)",
            active_dns_rules.clone(),
        );
        let traffic_rule_packets = Family::<RuleLabels, Gauge>::default();
        registry.register(
            "traffic_rule_packets",
            "Packets an ACTIVE traffic rule matched in the data plane since it became ACTIVE",
            traffic_rule_packets.clone(),
        );
        let forwarded_packets = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "dataplane_forwarded_packets",
            "Packets matched by FORWARD rules, by how they left (xdp_redirect, tc_redirect) or why they were not delivered (no_route, tc_failed)",
            forwarded_packets.clone(),
        );
        let dataplane_dns_queries = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "dataplane_dns_queries",
            "UDP queries for the DNS service seen by a data plane that answers DNS itself (xdp with dns_xdp), by outcome: answered there, or passed to the DNS server",
            dataplane_dns_queries.clone(),
        );
        let traffic_rule_bytes = Family::<RuleLabels, Gauge>::default();
        registry.register(
            "traffic_rule_bytes",
            "Bytes an ACTIVE traffic rule matched in the data plane since it became ACTIVE",
            traffic_rule_bytes.clone(),
        );
        let http_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "http_connections",
            "Open HTTP connections, by listener",
            http_connections.clone(),
        );
        let http_connections_closed = Family::<ConnCloseLabels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "HTTP connections the server refused or closed, by listener and reason",
            http_connections_closed.clone(),
        );
        Self {
            registry: parking_lot::RwLock::new(registry),
            http_requests,
            http_latency,
            notifications_delivered,
            notifications_failed,
            notification_attempts_failed,
            notifications_dropped,
            notification_queue_bytes,
            notification_subscriptions_failing,
            store_bytes,
            store_applied_revision,
            notifier_leader,
            services,
            subscriptions,
            active_traffic_rules,
            active_dns_rules,
            traffic_rule_packets,
            forwarded_packets,
            dataplane_dns_queries,
            traffic_rule_bytes,
            http_connections,
            http_connections_closed,
        }
    }

    /// Lets a component (the DNS server) add its metrics under the same `mep` prefix.
    pub fn register_with(&self, register: impl FnOnce(&mut Registry)) {
        register(&mut self.registry.write());
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry.read()) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
