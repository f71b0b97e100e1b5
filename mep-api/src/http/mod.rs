//! HTTP plumbing shared by the Mp1 and Mm5 listeners: the connection loop, header spelling,
//! request extractors that fail with `ProblemDetails`, and cross-cutting middleware.

use std::time::Duration;

/// Timeouts and connection caps of an HTTP listener (Mp1 and Mm5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a request head: on a new connection (counted from accept) and
    /// between keep-alive requests on HTTP/1.1 (counted from the previous response).
    pub header_timeout: Duration,
    /// Time a request body has to arrive whole once its head has; then 408.
    pub body_timeout: Duration,
    /// Time a connection with no request in flight may stay silent while its listener is at most
    /// half full; it falls linearly to `min_idle_timeout` as the listener fills.
    pub idle_timeout: Duration,
    pub min_idle_timeout: Duration,
    /// Connections each listener holds at once, before the descriptor budget caps them.
    pub mp1_max_connections: usize,
    pub mm5_max_connections: usize,
    /// Connections one client (an IPv4 address or IPv6 /64) holds on one listener.
    pub max_connections_per_client: usize,
    /// Time a request may take before it is answered 503 (the work it started goes on).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            min_idle_timeout: Duration::from_secs(1),
            mp1_max_connections: 4096,
            mm5_max_connections: 128,
            max_connections_per_client: 256,
            request_timeout: Duration::from_secs(60),
        }
    }
}

pub mod extract;
pub mod header_case;
pub mod middleware;
pub mod serve;
