//! The sockets of a `mep` process: the Mp1 and Mm5 listeners, their TLS acceptors, the root of
//! the links they hand out, their connection tables, and the descriptor budget shared with DNS.

use std::net::SocketAddr;
use std::sync::Arc;

use mep_net::{fd, ConnLimits, ConnTable};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::StartError;
use crate::config::Config;
use crate::links::Links;
use crate::tls;

/// Mm5 off loopback needs mutual TLS or an operator token.
pub(super) fn check_mm5_protection(config: &Config) -> Result<(), StartError> {
    let exposed = !config.mm5_addr.ip().is_loopback();
    if exposed && config.tls.mm5_client_ca.is_none() && config.mm5_token.is_none() {
        return Err(StartError::Mm5Unprotected(config.mm5_addr));
    }
    Ok(())
}

/// The bound listeners and the addresses they got.
pub(super) struct Bound {
    pub(super) mp1: TcpListener,
    pub(super) mm5: TcpListener,
    pub(super) mp1_addr: SocketAddr,
    pub(super) mm5_addr: SocketAddr,
}

impl Bound {
    pub(super) async fn bind(config: &Config) -> Result<Self, StartError> {
        let mp1 = bind(config.mp1_addr).await?;
        let mm5 = bind(config.mm5_addr).await?;
        Ok(Bound {
            mp1_addr: local_addr(&mp1, config.mp1_addr)?,
            mm5_addr: local_addr(&mm5, config.mm5_addr)?,
            mp1,
            mm5,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// The root of every link: `api_root`, or the scheme and address Mp1 listens on.
pub(super) fn links(config: &Config, mp1_addr: SocketAddr) -> Links {
    Links::new(&config.api_root.clone().unwrap_or_else(|| {
        let host = if mp1_addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            match mp1_addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let scheme = if config.insecure_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}:{}", mp1_addr.port())
    }))
}

/// The TLS acceptors of the listeners that serve TLS: Mp1 unless `insecure_http`; Mm5 when it
/// asks for client certificates or listens off loopback. `identity` is the certificate every
/// TLS listener (DNS over TLS and HTTPS too) presents.
pub(super) struct TlsAcceptors {
    pub(super) mp1: Option<TlsAcceptor>,
    pub(super) mm5: Option<TlsAcceptor>,
    pub(super) identity: Option<tls::Identity>,
}

impl TlsAcceptors {
    pub(super) fn new(config: &Config, mp1_addr: SocketAddr) -> Result<Self, StartError> {
        let mm5_exposed = !config.mm5_addr.ip().is_loopback();
        let api_tls = !config.insecure_http || config.tls.mm5_client_ca.is_some();
        let dns_tls = config.dns_tls_addr.is_some() || config.dns_https_addr.is_some();
        let identity = if api_tls || dns_tls {
            Some(tls::identity(
                &config.tls,
                &config.data_dir,
                &tls::default_names(config.api_root.as_deref(), mp1_addr),
            )?)
        } else {
            None
        };
        let mp1 = match (&identity, config.insecure_http) {
            (Some(identity), false) => Some(tls::acceptor(identity, None)?),
            _ => None,
        };
        let mm5 = match &identity {
            Some(identity) if config.tls.mm5_client_ca.is_some() || mm5_exposed => Some(
                tls::acceptor(identity, config.tls.mm5_client_ca.as_deref())?,
            ),
            _ => None,
        };
        Ok(TlsAcceptors { mp1, mm5, identity })
    }
}

/// The connection table of an HTTP listener.
pub(super) fn conn_table(
    config: &Config,
    name: &'static str,
    max_connections: usize,
) -> Arc<ConnTable> {
    ConnTable::new(
        name,
        ConnLimits {
            max_connections,
            max_per_client: config.http.max_connections_per_client,
            idle_timeout: config.http.idle_timeout,
            min_idle_timeout: config.http.min_idle_timeout,
            // hyper times request heads once it reads them; this covers the time before (the
            // TLS handshake, the protocol sniff) on a new connection.
            first_request_timeout: Some(config.http.header_timeout),
        },
    )
}

/// Raises the descriptor limit to the hard limit and divides it between the listeners (Mm5
/// first, so the platform manager and `/health` answer however Mp1 is flooded).
pub(super) fn descriptor_budget(config: &Config) -> fd::Budget {
    let limit = match fd::raise_to_hard() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise RLIMIT_NOFILE; assuming 1024");
            fd::FdLimit {
                soft: 1024,
                hard: 1024,
                raised_from: None,
            }
        }
    };
    let open = fd::open_now();
    let budget = fd::divide(
        limit.soft,
        open,
        fd::Wanted {
            mp1: config.http.mp1_max_connections,
            mm5: config.http.mm5_max_connections,
            dns_tcp: config.dns.max_tcp_connections,
            notify: config.notify.max_in_flight,
        },
    );
    tracing::info!(
        soft = limit.soft,
        hard = limit.hard,
        raised_from = ?limit.raised_from,
        open,
        mp1 = budget.mp1,
        mm5 = budget.mm5,
        dns_tcp = budget.dns_tcp,
        notify = budget.notify,
        reserve = budget.reserve,
        "descriptor budget"
    );
    budget
}
