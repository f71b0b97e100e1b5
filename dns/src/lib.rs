//! mep's built-in DNS server: authoritative answers from the ACTIVE DNS rules of the newest rule
//! snapshot, forwarding with a cache for every other name.
//!
//! Start it with [`DnsServer::start`]; register [`DnsMetrics`] (from [`DnsHandle::metrics`])
//! with the process's Prometheus registry.
//!
//! Queries are parsed and answered on their wire bytes (hickory-proto decodes only the rare
//! upstream answers it must re-encode): a local answer or cache hit is one lock-free snapshot
//! load (or one sharded cache read), a copy into a reused buffer and one send. Forwarding passes
//! DNSSEC through (DO, CD, EDNS options up; signatures and AD back) and merges identical queries
//! in flight.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod cache;
mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod differential;
mod encrypted;
mod error;
mod forwarded;
mod handler;
mod metrics;
mod query;
mod response;
mod server;
mod tcp;
mod udp;
mod upstream;
mod upstream_tls;
mod wire;

pub use config::{nameservers, DnsConfig, Upstream, MAX_UPSTREAMS, RESOLV_CONF};
pub use encrypted::EncryptedDns;
pub use error::DnsError;
pub use metrics::{AnswerSource, DnsMetrics, DropReason, ForwardLimit, TcpClose, Transport};
pub use response::local_answer_records;
pub use server::{DnsAnswerer, DnsHandle, DnsServer};
