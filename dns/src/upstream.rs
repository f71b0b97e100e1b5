//! Asking the upstream resolvers: over UDP from a fresh socket (random source port and ID), over
//! TCP when the UDP answer is truncated, or over TLS (one long-lived connection per upstream,
//! `upstream_tls`), each upstream in turn until one answers or the overall time is up.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use crate::config::Upstream;
use crate::upstream_tls::TlsUpstream;

use crate::forwarded::{ForwardedAnswer, UpstreamAnswerError};
use crate::metrics::{DnsMetrics, UpstreamOutcome, UpstreamTransport};
use crate::wire::{
    push_header, push_opt_with, put_u16, rcode, FLAG_AD, FLAG_CD, FLAG_RD, HEADER_LEN,
};

/// Receive buffer for UDP answers: our EDNS size is at most this much below it, and upstreams
/// that ignore EDNS stay within 512.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// No upstream gave a usable answer.
#[derive(Debug, thiserror::Error)]
#[error("no upstream resolver answered within {0:?}")]
pub(crate) struct NoUpstreamAnswer(Duration);

enum AttemptError {
    Timeout,
    Io(io::Error),
    Answer(UpstreamAnswerError),
}

/// How one upstream is asked.
pub(crate) enum Route {
    /// Over UDP, and TCP when the answer is truncated.
    Plain(SocketAddr),
    /// Over TLS, on the upstream's long-lived connection.
    Tls(TlsUpstream),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Plain(addr) => write!(f, "{addr}"),
            Route::Tls(tls) => write!(f, "{tls}"),
        }
    }
}

pub(crate) struct Forwarder {
    /// The upstreams, in the order they are asked.
    pub(crate) routes: Box<[Route]>,
    pub(crate) attempt_timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) udp_payload: u16,
    pub(crate) max_ttl: u32,
    pub(crate) metrics: Arc<DnsMetrics>,
}

impl Forwarder {
    /// Asks the upstreams about `question` (as the client sent it), passing on the client's CD
    /// bit, its DO bit and `options` (its EDNS options that are not hop-by-hop); a client that
    /// wants DNSSEC also asks for AD. An upstream that fails outright or answers SERVFAIL,
    /// NOTIMP or REFUSED is not asked again; one that times out is asked again in the next round.
    /// The last failure answer is relayed if no upstream does better.
    pub(crate) async fn forward(
        &self,
        question: &[u8],
        request_flags: u16,
        dnssec_ok: bool,
        options: &[u8],
    ) -> Result<ForwardedAnswer, NoUpstreamAnswer> {
        let mut query = Vec::with_capacity(HEADER_LEN + question.len() + 11 + options.len());
        let mut flags = FLAG_RD | (request_flags & (FLAG_CD | FLAG_AD));
        if dnssec_ok {
            flags |= FLAG_AD;
        }
        push_header(&mut query, 0, flags, [1, 0, 0, 1]);
        query.extend_from_slice(question);
        push_opt_with(
            &mut query,
            self.udp_payload.min(UDP_RECEIVE_BUFFER as u16),
            rcode::NOERROR,
            dnssec_ok,
            options,
        );

        let deadline = Instant::now() + self.total_timeout;
        let mut given_up = 0u32;
        let mut fallback: Option<ForwardedAnswer> = None;
        loop {
            let mut asked = false;
            for (index, upstream) in self.routes.iter().enumerate() {
                if given_up & (1 << index) != 0 {
                    continue;
                }
                let now = Instant::now();
                if now >= deadline {
                    return fallback.ok_or(NoUpstreamAnswer(self.total_timeout));
                }
                asked = true;
                let attempt_deadline = deadline.min(now + self.attempt_timeout);
                match self
                    .ask(upstream, &mut query, question, attempt_deadline)
                    .await
                {
                    Ok(answer) if answer.is_upstream_failure() => {
                        given_up |= 1 << index;
                        fallback = Some(answer);
                    }
                    Ok(answer) => return Ok(answer),
                    Err(AttemptError::Timeout) => {}
                    Err(AttemptError::Io(e)) => {
                        tracing::debug!(%upstream, error = %e, "upstream DNS query failed");
                        given_up |= 1 << index;
                    }
                    Err(AttemptError::Answer(e)) => {
                        tracing::debug!(%upstream, error = %e, "unusable upstream DNS answer");
                        given_up |= 1 << index;
                    }
                }
            }
            if !asked {
                return fallback.ok_or(NoUpstreamAnswer(self.total_timeout));
            }
        }
    }

    async fn ask(
        &self,
        route: &Route,
        query: &mut [u8],
        question: &[u8],
        deadline: Instant,
    ) -> Result<ForwardedAnswer, AttemptError> {
        let upstream = match route {
            Route::Plain(addr) => *addr,
            Route::Tls(tls) => {
                let tls = timeout_at(deadline, self.ask_tls(tls, query, question))
                    .await
                    .unwrap_or(Err(AttemptError::Timeout));
                self.metrics
                    .count_upstream(UpstreamTransport::Tls, outcome_of(&tls));
                return tls;
            }
        };
        let id = rand::random::<u16>();
        put_u16(query, 0, id);
        let udp = timeout_at(deadline, self.ask_udp(upstream, query, id, question)).await;
        let result = match udp {
            Err(_) => Err(AttemptError::Timeout),
            Ok(Err(AttemptError::Answer(UpstreamAnswerError::Truncated))) => {
                self.metrics
                    .count_upstream(UpstreamTransport::Udp, UpstreamOutcome::Answer);
                let tcp = timeout_at(deadline, self.ask_tcp(upstream, query, id, question)).await;
                let result = tcp.unwrap_or(Err(AttemptError::Timeout));
                self.metrics
                    .count_upstream(UpstreamTransport::Tcp, outcome_of(&result));
                return result;
            }
            Ok(result) => result,
        };
        self.metrics
            .count_upstream(UpstreamTransport::Udp, outcome_of(&result));
        result
    }

    async fn ask_tls(
        &self,
        upstream: &TlsUpstream,
        query: &mut [u8],
        question: &[u8],
    ) -> Result<ForwardedAnswer, AttemptError> {
        let (id, answer) = upstream.exchange(query).await.map_err(AttemptError::Io)?;
        ForwardedAnswer::parse(&answer, id, question, self.max_ttl).map_err(AttemptError::Answer)
    }

    async fn ask_udp(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        id: u16,
        question: &[u8],
    ) -> Result<ForwardedAnswer, AttemptError> {
        let local: SocketAddr = if upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await.map_err(AttemptError::Io)?;
        socket.connect(upstream).await.map_err(AttemptError::Io)?;
        socket.send(query).await.map_err(AttemptError::Io)?;
        let mut buf = vec![0u8; UDP_RECEIVE_BUFFER];
        loop {
            let len = socket.recv(&mut buf).await.map_err(AttemptError::Io)?;
            match ForwardedAnswer::parse(&buf[..len], id, question, self.max_ttl) {
                // A stray or forged datagram: keep waiting for the real answer.
                Err(UpstreamAnswerError::Mismatch) => continue,
                other => return other.map_err(AttemptError::Answer),
            }
        }
    }

    async fn ask_tcp(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        id: u16,
        question: &[u8],
    ) -> Result<ForwardedAnswer, AttemptError> {
        let stream = TcpStream::connect(upstream)
            .await
            .map_err(AttemptError::Io)?;
        stream.set_nodelay(true).map_err(AttemptError::Io)?;
        exchange_framed(stream, query, id, question, self.max_ttl).await
    }
}

/// One length-prefixed query and its answer on a stream (TCP or TLS).
async fn exchange_framed<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    query: &[u8],
    id: u16,
    question: &[u8],
    max_ttl: u32,
) -> Result<ForwardedAnswer, AttemptError> {
    stream
        .write_all(&framed(query))
        .await
        .map_err(AttemptError::Io)?;
    stream.flush().await.map_err(AttemptError::Io)?;
    let answer = read_framed(&mut stream).await.map_err(AttemptError::Io)?;
    ForwardedAnswer::parse(&answer, id, question, max_ttl).map_err(AttemptError::Answer)
}

/// `message` with the two-byte length in front that streams carry (RFC 1035 §4.2.2).
pub(crate) fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// The next length-prefixed message on a stream.
pub(crate) async fn read_framed<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Vec<u8>> {
    let len = reader.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    reader.read_exact(&mut message).await?;
    Ok(message)
}

/// How each of `upstreams` is asked; a TLS client (trusting `extra_ca` too) only if one of them
/// is a DNS-over-TLS upstream.
pub(crate) fn routes(
    upstreams: &[Upstream],
    extra_ca: &[rustls::pki_types::CertificateDer<'static>],
    metrics: &Arc<DnsMetrics>,
) -> Result<Box<[Route]>, crate::DnsError> {
    let connector = upstreams
        .iter()
        .any(|u| u.tls_name.is_some())
        .then(|| tls_connector(extra_ca))
        .transpose()?;
    upstreams
        .iter()
        .map(|u| match (u.tls_name.as_deref(), &connector) {
            (Some(name), Some(connector)) => {
                TlsUpstream::new(u.addr, name, connector.clone(), Arc::clone(metrics))
                    .map(Route::Tls)
            }
            _ => Ok(Route::Plain(u.addr)),
        })
        .collect()
}

/// A TLS client for DNS-over-TLS upstreams: the public roots plus `extra` (ALPN `dot`).
fn tls_connector(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<TlsConnector, crate::DnsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| crate::DnsError::UpstreamTls(format!("upstream CA: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| crate::DnsError::UpstreamTls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn outcome_of(result: &Result<ForwardedAnswer, AttemptError>) -> UpstreamOutcome {
    match result {
        Ok(_) => UpstreamOutcome::Answer,
        Err(AttemptError::Timeout) => UpstreamOutcome::Timeout,
        Err(_) => UpstreamOutcome::Error,
    }
}
