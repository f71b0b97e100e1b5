//! Settings of the DNS server, and the system resolver configuration it falls back on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::DnsError;

/// Where the host's resolvers are listed when no upstream is configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// How many upstream resolvers are tried at most (as with resolv.conf, the first ones count).
pub const MAX_UPSTREAMS: usize = 16;

/// An upstream resolver: plain DNS (UDP, and TCP when an answer is truncated), or DNS over TLS
/// when `tls_name` names the certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub tls_name: Option<String>,
}

impl From<SocketAddr> for Upstream {
    fn from(addr: SocketAddr) -> Self {
        Upstream {
            addr,
            tls_name: None,
        }
    }
}

/// `ADDR` (port 53 when left out) or `tls://ADDR#NAME` (port 853 when left out).
impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let addr = |text: &str, default_port: u16| {
            let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
            text.parse::<SocketAddr>()
                .or_else(|_| {
                    bare.unwrap_or(text)
                        .parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, default_port))
                })
                .map_err(|_| format!("{text:?} is not an IP address with an optional port"))
        };
        match s.strip_prefix("tls://") {
            Some(rest) => {
                let (at, name) = rest.split_once('#').ok_or_else(|| {
                    format!("{s:?}: a DNS-over-TLS upstream is tls://ADDR#NAME, NAME being the name on its certificate")
                })?;
                if name.is_empty() {
                    return Err(format!("{s:?}: the certificate name after # is empty"));
                }
                Ok(Upstream {
                    addr: addr(at, 853)?,
                    tls_name: Some(name.to_owned()),
                })
            }
            None => Ok(addr(s, 53)?.into()),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls_name {
            Some(name) => write!(f, "tls://{}#{name}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Settings of the DNS server. [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP address; port 0 picks a free port (see [`crate::DnsHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Upstream resolvers, tried in order; empty means the nameservers of `/etc/resolv.conf`.
    pub upstreams: Vec<Upstream>,
    /// Certificates trusted for DNS-over-TLS upstreams besides the public roots (webpki-roots).
    pub upstream_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// TTL of answers from DNS rules without `ttl`. 300 s: a rule can be deactivated at any
    /// moment (an app moves), and clients should not keep a stale address for long.
    pub default_ttl: u32,
    /// Memory budget of the cache of forwarded answers in bytes; 0 turns caching off.
    pub cache_bytes: usize,
    /// Longest time a forwarded answer is cached, whatever its TTL says.
    pub cache_max_ttl: u32,
    /// Time after which a forwarded query is answered with SERVFAIL.
    pub upstream_timeout: Duration,
    /// Time one upstream gets before the next one (or the same one again) is asked.
    pub upstream_attempt_timeout: Duration,
    /// Forwarded queries waiting for an upstream at once; beyond that, SERVFAIL at once.
    pub max_forwarded_in_flight: usize,
    /// Forwarded queries of one client (an IPv4 address or an IPv6 /64) waiting at once; beyond
    /// that, SERVFAIL at once for that client, so that one client flooding names the cache
    /// cannot answer (random subdomains, a hung zone) cannot take every forwarding slot. The
    /// default, a quarter of the slots, leaves room for a busy client's bursts (dnsperf warming
    /// a cache sends 100 at once) and three quarters for everyone else.
    pub max_forwarded_per_client: usize,
    /// Open client TCP connections at once. A new connection at a full table closes the
    /// longest-idle one; it is refused only when every connection has a query in flight.
    pub max_tcp_connections: usize,
    /// Open TCP connections of one client (an IPv4 address or an IPv6 /64) at once.
    pub max_tcp_per_client: usize,
    /// A TCP connection without a query for this long is closed, while at most half the
    /// connection slots are taken; beyond that the limit falls linearly to `tcp_min_idle_timeout`.
    pub tcp_idle_timeout: Duration,
    /// The idle limit when every TCP connection slot is taken.
    pub tcp_min_idle_timeout: Duration,
    /// Time a query has to arrive whole once its length prefix has, and its answer to be written.
    pub tcp_message_timeout: Duration,
    /// Our EDNS UDP payload size, towards clients and upstreams. 1232 avoids IP fragmentation
    /// on common paths (DNS flag day 2020).
    pub udp_payload: u16,
    /// Tasks that read the UDP socket: one waits for queries, the others join it only while
    /// its queue stays deep (DNS load beyond one core); 0 means one per CPU.
    pub udp_readers: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8053)),
            upstreams: Vec::new(),
            upstream_ca: Vec::new(),
            default_ttl: 300,
            cache_bytes: 32 << 20,
            cache_max_ttl: 86_400,
            upstream_timeout: Duration::from_secs(2),
            upstream_attempt_timeout: Duration::from_millis(700),
            max_forwarded_in_flight: 1024,
            max_forwarded_per_client: 256,
            max_tcp_connections: 1024,
            max_tcp_per_client: 32,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_min_idle_timeout: Duration::from_millis(500),
            tcp_message_timeout: Duration::from_secs(2),
            udp_payload: 1232,
            udp_readers: 0,
        }
    }
}

impl DnsConfig {
    /// Checks the settings and settles the upstreams: the configured ones, or those of
    /// `resolv_conf` (the text of `/etc/resolv.conf`, read by the caller). Upstreams that are
    /// this server itself are left out, since forwarding to them would loop.
    pub(crate) fn resolved_upstreams(
        &self,
        resolv_conf: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<Vec<Upstream>, DnsError> {
        let invalid = |why: String| Err(DnsError::InvalidConfig(why));
        if self.upstream_timeout.is_zero() || self.upstream_attempt_timeout.is_zero() {
            return invalid("upstream timeouts must be positive".into());
        }
        if self.max_forwarded_in_flight == 0
            || self.max_forwarded_per_client == 0
            || self.max_tcp_connections == 0
            || self.max_tcp_per_client == 0
        {
            return invalid(
                "max_forwarded_in_flight, max_forwarded_per_client, max_tcp_connections and \
                 max_tcp_per_client must be positive"
                    .into(),
            );
        }
        if self.tcp_idle_timeout.is_zero() || self.tcp_message_timeout.is_zero() {
            return invalid("TCP idle and message timeouts must be positive".into());
        }
        if self.udp_payload < 512 {
            return invalid(format!("udp_payload {} is below 512", self.udp_payload));
        }
        for upstream in &self.upstreams {
            if upstream.addr.port() == 0 || upstream.addr.ip().is_unspecified() {
                return invalid(format!("upstream {upstream} is not a resolver address"));
            }
        }
        let candidates = if self.upstreams.is_empty() {
            let text = resolv_conf().map_err(|source| DnsError::ResolvConf {
                path: RESOLV_CONF,
                source,
            })?;
            nameservers(&text).into_iter().map(Upstream::from).collect()
        } else {
            self.upstreams.clone()
        };
        let usable: Vec<Upstream> = candidates
            .into_iter()
            .filter(|u| !self.is_this_server(u.addr))
            .take(MAX_UPSTREAMS)
            .collect();
        if usable.is_empty() {
            return Err(DnsError::NoUpstreams);
        }
        Ok(usable)
    }

    fn is_this_server(&self, upstream: SocketAddr) -> bool {
        upstream.port() == self.listen.port()
            && (upstream.ip() == self.listen.ip()
                || (self.listen.ip().is_unspecified() && upstream.ip().is_loopback()))
    }
}

/// The `nameserver` addresses of a resolv.conf text, on port 53. Addresses with a zone index
/// (`fe80::1%eth0`) are left out.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver ::1\nnameserver fe80::1%eth0\noptions ndots:2\n";
        assert_eq!(
            nameservers(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn falls_back_on_resolv_conf_and_avoids_loops() {
        let config = DnsConfig {
            listen: "0.0.0.0:53".parse().unwrap(),
            ..DnsConfig::default()
        };
        let got = config
            .resolved_upstreams(|| Ok("nameserver 127.0.0.1\nnameserver 192.0.2.1\n".into()))
            .unwrap();
        assert_eq!(
            got,
            vec![Upstream::from(
                "192.0.2.1:53".parse::<SocketAddr>().unwrap()
            )]
        );
        assert!(matches!(
            config.resolved_upstreams(|| Ok("nameserver 127.0.0.1\n".into())),
            Err(DnsError::NoUpstreams)
        ));
        let explicit = DnsConfig {
            upstreams: vec!["127.0.0.1:5353".parse().unwrap()],
            ..config.clone()
        };
        let unread = || -> std::io::Result<String> { panic!("resolv.conf must not be read") };
        assert_eq!(explicit.resolved_upstreams(unread).unwrap().len(), 1);
        let bad = DnsConfig {
            upstreams: vec!["0.0.0.0:53".parse().unwrap()],
            ..config
        };
        assert!(matches!(
            bad.resolved_upstreams(unread),
            Err(DnsError::InvalidConfig(_))
        ));
    }

    #[test]
    fn upstreams_are_plain_or_tls() {
        let plain: Upstream = "192.0.2.53".parse().unwrap();
        assert_eq!(plain.addr, "192.0.2.53:53".parse().unwrap());
        assert_eq!(plain.tls_name, None);
        let tls: Upstream = "tls://[2001:db8::53]#dns.example".parse().unwrap();
        assert_eq!(tls.addr, "[2001:db8::53]:853".parse().unwrap());
        assert_eq!(tls.tls_name.as_deref(), Some("dns.example"));
        assert_eq!(tls.to_string(), "tls://[2001:db8::53]:853#dns.example");
        let back: Upstream = tls.to_string().parse().unwrap();
        assert_eq!(back, tls);
        for bad in [
            "tls://192.0.2.1",
            "tls://192.0.2.1#",
            "dns.example",
            "tls://x#y",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }
}
