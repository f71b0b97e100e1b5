//! DNS over TLS (RFC 7858), served by hickory-server with mep's certificate: hickory-server owns
//! the TLS handshakes, the framing and the per-connection timeouts; every query it decodes goes
//! through the same [`QueryHandler`] as UDP and TCP, so a name gets the same answer on every
//! transport. (DNS over HTTPS is not served by hickory-server: its DoH handler refuses GET, which
//! RFC 8484 requires.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::error::DnsError;
use crate::handler::{Outcome, QueryHandler};
use crate::metrics::Transport;

/// Time a client has to finish the TLS handshake; a connection that sends no query for this long
/// is closed too.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and with which certificate to serve DNS over TLS.
pub struct EncryptedDns {
    /// DNS over TLS, e.g. `0.0.0.0:853`.
    pub tls_addr: SocketAddr,
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for EncryptedDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDns")
            .field("tls_addr", &self.tls_addr)
            .finish_non_exhaustive()
    }
}

/// Answers hickory-server's requests with mep's query handler.
struct Bridge {
    handler: Arc<QueryHandler>,
}

#[async_trait::async_trait]
impl RequestHandler for Bridge {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let transport = match request.protocol() {
            Protocol::Https => Transport::Https,
            _ => Transport::Tls,
        };
        let mut out = Vec::new();
        match self
            .handler
            .answer_now(request.as_slice(), transport, &mut out)
        {
            Outcome::Answered => {}
            Outcome::Ignored => return failed(request),
            Outcome::Forward(pending) => self.handler.answer_forwarded(pending, &mut out).await,
        }
        let Ok(answer) = Message::from_vec(&out) else {
            return failed(request);
        };
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = answer.edns.as_ref() {
            builder.edns(edns);
        }
        let message = builder.build(
            answer.metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending an encrypted DNS response failed");
                failed(request)
            }
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    }
    .into()
}

/// A rustls config for one ALPN protocol with the ring provider, TLS 1.2 and 1.3.
fn tls_config(settings: &EncryptedDns, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, DnsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(settings.cert_chain.clone(), settings.key.clone_key())
        })
        .map_err(|e| DnsError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Binds the DNS-over-TLS listener and hands it to a hickory-server `Server`; answers the
/// address it is bound to.
pub(crate) async fn start(
    settings: &EncryptedDns,
    handler: Arc<QueryHandler>,
) -> Result<(Server<impl RequestHandler>, SocketAddr), DnsError> {
    let addr = settings.tls_addr;
    let bind_error = |source| DnsError::Bind {
        transport: "TLS",
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let mut server = Server::new(Bridge { handler });
    server
        .register_tls_listener_with_tls_config(
            listener,
            HANDSHAKE_TIMEOUT,
            tls_config(settings, b"dot")?,
        )
        .map_err(bind_error)?;
    Ok((server, bound))
}
