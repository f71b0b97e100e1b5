//! DNS over TLS (RFC 7858): the DNS-over-TCP listener's framing and connection table inside
//! rustls, with mep's certificate. The answers are those of UDP and TCP byte for byte.
//!
//! hickory-server's TLS listener was tried first and measured: it re-encodes every answer without
//! name compression on stream transports (a one-address answer grew from 46 to 62 bytes, so the
//! same query got different bytes over TLS than over UDP), and it has no per-client or total
//! connection limit; mep's own stream listener has both right. Its DNS-over-HTTPS handler refuses
//! GET, which RFC 8484 requires, so DoH is served by the API server (`mep-api`'s `dns_https`).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::DnsError;

/// Where and with which certificate to serve DNS over TLS.
pub struct EncryptedDns {
    /// DNS over TLS, e.g. `0.0.0.0:853`.
    pub tls_addr: SocketAddr,
    /// Connections held at once (with the per-client share and idle limits of DNS over TCP).
    pub max_connections: usize,
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for EncryptedDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDns")
            .field("tls_addr", &self.tls_addr)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl EncryptedDns {
    /// A TLS 1.2/1.3 acceptor (ring, ALPN `dot`) for the certificate.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, DnsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            })
            .map_err(|e| DnsError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"dot".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
