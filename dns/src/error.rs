//! Why the DNS server cannot start.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid DNS server configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot read {path}: {source}")]
    ResolvConf {
        path: &'static str,
        source: std::io::Error,
    },
    #[error(
        "no upstream resolver: none is configured and resolv.conf names none besides this server"
    )]
    NoUpstreams,
    #[error("the certificate for DNS over TLS and HTTPS: {0}")]
    Tls(String),
    #[error("DNS-over-TLS upstreams: {0}")]
    UpstreamTls(String),
    #[error("cannot listen for DNS over {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}
