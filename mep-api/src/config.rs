//! Configuration of `mep serve`: command-line flags, `MEP_*` environment variables and a TOML file
//! hold the same keys. A flag beats its variable, which beats the file, which beats the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::ExposeSecret;
use serde::Deserialize;

use mep_dns::DnsConfig;

use crate::apps::AppsConfig;
use crate::auth::{AuthConfig, CallbackPolicy};
use crate::http::HttpLimits;
use crate::model::service::TransportInfo;
use crate::notify::NotifyConfig;
use crate::registry::{Limits, LivenessPolicy};
use crate::tls::TlsConfig;

/// Flags of `mep serve`. Every one is optional so that the file and defaults can fill the gaps.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the keys below (names with `_` instead of `-`).
    #[arg(long, env = "MEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: /var/lib/mep].
    #[arg(long, env = "MEP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the Mp1 listener for MEC applications [default: 0.0.0.0:8443].
    #[arg(long, env = "MEP_MP1_ADDR")]
    pub mp1_addr: Option<SocketAddr>,
    /// Address of the Mm5 listener for the platform manager, health and metrics [default: 127.0.0.1:8088].
    #[arg(long, env = "MEP_MM5_ADDR")]
    pub mm5_addr: Option<SocketAddr>,
    /// Serve Mp1 as plain HTTP (for local testing).
    #[arg(long, env = "MEP_INSECURE_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_http: Option<bool>,
    /// Scheme, host and port that applications use to reach Mp1; the root of every `_links` href
    /// and `Location` [default: derived from --mp1-addr].
    #[arg(long, env = "MEP_API_ROOT")]
    pub api_root: Option<String>,
    /// Largest accepted request body in bytes [default: 65536].
    #[arg(long, env = "MEP_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest accepted request target (path and query) in bytes [default: 8192].
    #[arg(long, env = "MEP_MAX_URI_BYTES")]
    pub max_uri_bytes: Option<usize>,
    /// Seconds a client has to send a request head, on a new connection and between keep-alive
    /// requests [default: 10].
    #[arg(long, env = "MEP_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<u64>,
    /// Seconds a request body has to arrive whole once its head has; then 408 [default: 10].
    #[arg(long, env = "MEP_HTTP_BODY_TIMEOUT")]
    pub http_body_timeout: Option<u64>,
    /// Seconds a connection with no request in flight may stay silent while its listener is at
    /// most half full; it falls to 1 s as the listener fills [default: 60].
    #[arg(long, env = "MEP_HTTP_IDLE_TIMEOUT")]
    pub http_idle_timeout: Option<u64>,
    /// Connections Mp1 holds at once, at most what the descriptor budget allows [default: 4096].
    #[arg(long, env = "MEP_MP1_MAX_CONNECTIONS")]
    pub mp1_max_connections: Option<usize>,
    /// Connections Mm5 holds at once; kept apart from Mp1's [default: 128].
    #[arg(long, env = "MEP_MM5_MAX_CONNECTIONS")]
    pub mm5_max_connections: Option<usize>,
    /// Connections one client (an IPv4 address or IPv6 /64) holds on one listener [default: 256].
    #[arg(long, env = "MEP_HTTP_MAX_CONNECTIONS_PER_CLIENT")]
    pub http_max_connections_per_client: Option<usize>,
    /// Services one application instance may register [default: 1000].
    #[arg(long, env = "MEP_SERVICES_PER_APP")]
    pub services_per_app: Option<usize>,
    /// Service availability subscriptions per application instance [default: 100].
    #[arg(long, env = "MEP_SUBSCRIPTIONS_PER_APP")]
    pub subscriptions_per_app: Option<usize>,
    /// Shortest heartbeat interval granted, in seconds [default: 1].
    #[arg(long, env = "MEP_LIVENESS_MIN_INTERVAL")]
    pub liveness_min_interval: Option<u32>,
    /// Longest heartbeat interval granted, in seconds [default: 3600].
    #[arg(long, env = "MEP_LIVENESS_MAX_INTERVAL")]
    pub liveness_max_interval: Option<u32>,
    /// Timeout of one notification attempt, in milliseconds [default: 5000].
    #[arg(long, env = "MEP_NOTIFY_TIMEOUT_MS")]
    pub notify_timeout_ms: Option<u64>,
    /// Retries of a failed notification [default: 4].
    #[arg(long, env = "MEP_NOTIFY_RETRIES")]
    pub notify_retries: Option<u32>,
    /// Notifications queued per subscription; beyond that the oldest are dropped [default: 1024].
    #[arg(long, env = "MEP_NOTIFY_QUEUE")]
    pub notify_queue: Option<usize>,
    /// Bytes of notifications queued over all subscriptions; beyond that the oldest of the
    /// fullest queue are dropped [default: 33554432].
    #[arg(long, env = "MEP_NOTIFY_QUEUE_BYTES")]
    pub notify_queue_bytes: Option<usize>,
    /// Failed delivery attempts in a row after which a subscription is failing (one attempt per
    /// notification, a short queue, a quarter of the connections) [default: 5].
    #[arg(long, env = "MEP_NOTIFY_FAILING_AFTER")]
    pub notify_failing_after: Option<u32>,
    /// Data plane that receives rule changes: none, upf-http, xdp [default: none].
    #[arg(long, env = "MEP_DATAPLANE")]
    pub dataplane: Option<String>,
    /// Interface facing the UPF that the xdp data plane attaches to (repeatable).
    #[arg(long = "xdp-iface", env = "MEP_XDP_IFACES", value_delimiter = ',')]
    pub xdp_ifaces: Option<Vec<String>>,
    /// Base URL of the UPF controller for the upf-http data plane.
    #[arg(long, env = "MEP_UPF_ENDPOINT")]
    pub upf_endpoint: Option<String>,
    /// PEM file of a CA that signs the UPF controller's certificate (besides the public roots).
    #[arg(long, env = "MEP_UPF_CA_CERT")]
    pub upf_ca_cert: Option<PathBuf>,
    /// Bearer token sent to the UPF controller.
    #[arg(long, env = "MEP_UPF_TOKEN", hide_env_values = true)]
    pub upf_token: Option<Secret>,
    /// Traffic plus DNS rules per application instance [default: 64].
    #[arg(long, env = "MEP_RULES_PER_APP")]
    pub rules_per_app: Option<usize>,
    /// Seconds app termination waits for confirm_termination [default: 10].
    #[arg(long, env = "MEP_MAX_GRACEFUL_TIMEOUT")]
    pub max_graceful_timeout: Option<u64>,
    /// NTP server advertised in timing_caps (repeatable).
    #[arg(long = "ntp-server", env = "MEP_NTP_SERVERS", value_delimiter = ',')]
    pub ntp_servers: Option<Vec<String>>,
    /// IP address of a PTP master advertised in timing_caps (repeatable).
    #[arg(long = "ptp-master", env = "MEP_PTP_MASTERS", value_delimiter = ',')]
    pub ptp_masters: Option<Vec<std::net::IpAddr>>,
    /// UDP and TCP address of the DNS server [default: 0.0.0.0:8053; production: 0.0.0.0:53].
    #[arg(long, env = "MEP_DNS_ADDR")]
    pub dns_addr: Option<SocketAddr>,
    /// Upstream resolver for names no DNS rule covers (repeatable) [default: /etc/resolv.conf].
    #[arg(
        long = "dns-upstream",
        env = "MEP_DNS_UPSTREAMS",
        value_delimiter = ','
    )]
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    /// DNS-over-TCP connections held at once; a full table closes the longest-idle one for a
    /// newcomer [default: 1024].
    #[arg(long, env = "MEP_DNS_TCP_MAX_CONNECTIONS")]
    pub dns_tcp_max_connections: Option<usize>,
    /// DNS-over-TCP connections of one client (IPv4 address or IPv6 /64) [default: 32].
    #[arg(long, env = "MEP_DNS_TCP_MAX_PER_CLIENT")]
    pub dns_tcp_max_per_client: Option<usize>,
    /// Milliseconds a DNS-over-TCP connection may wait for its next query, falling to 500 as the
    /// table fills [default: 10000].
    #[arg(long, env = "MEP_DNS_TCP_IDLE_TIMEOUT_MS")]
    pub dns_tcp_idle_timeout_ms: Option<u64>,
    /// Trust every Mp1 caller without a token (local testing only).
    #[arg(long, env = "MEP_NO_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub no_auth: Option<bool>,
    /// Lifetime of access tokens in seconds [default: 3600].
    #[arg(long, env = "MEP_TOKEN_TTL")]
    pub token_ttl: Option<u64>,
    /// `iss` of access tokens [default: mep].
    #[arg(long, env = "MEP_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// Rotate the token signing key when it is this many seconds old; 0 never [default: 2592000].
    #[arg(long, env = "MEP_TOKEN_KEY_MAX_AGE")]
    pub token_key_max_age: Option<u64>,
    /// Largest accepted distance of x-sdk-date from the clock, in seconds [default: 300].
    #[arg(long, env = "MEP_SIGNATURE_MAX_SKEW")]
    pub signature_max_skew: Option<u64>,
    /// Failed token requests that lock an access key [default: 3].
    #[arg(long, env = "MEP_LOCKOUT_FAILURES")]
    pub lockout_failures: Option<u32>,
    /// Seconds within which those failures count [default: 300].
    #[arg(long, env = "MEP_LOCKOUT_WINDOW")]
    pub lockout_window: Option<u64>,
    /// Seconds an access key stays locked [default: 900].
    #[arg(long, env = "MEP_LOCKOUT_DURATION")]
    pub lockout_duration: Option<u64>,
    /// Restrict global discovery to the caller's requiredServices.
    #[arg(long, env = "MEP_RESTRICT_DISCOVERY", num_args = 0..=1, default_missing_value = "true")]
    pub restrict_discovery: Option<bool>,
    /// Allowed notification callback destinations: CIDRs, addresses, host names, `*.domain`
    /// (comma-separated) [default: any].
    #[arg(long, env = "MEP_CALLBACK_ALLOW", value_delimiter = ',')]
    pub callback_allow: Option<Vec<String>>,
    /// PEM certificate chain of the TLS listeners [default: generated in <data_dir>/tls].
    #[arg(long, env = "MEP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MEP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates of Mm5 clients: Mm5 then requires mutual TLS.
    #[arg(long, env = "MEP_MM5_CLIENT_CA")]
    pub mm5_client_ca: Option<PathBuf>,
    /// Bearer token every Mm5 request but /health must carry (at least 16 characters).
    #[arg(long, env = "MEP_MM5_TOKEN", hide_env_values = true)]
    pub mm5_token: Option<Secret>,
}

/// A configured secret (a bearer token): `Debug` shows `[REDACTED]`, and reading it takes an
/// explicit `expose_secret()`.
pub type Secret = secrecy::SecretString;

/// The same keys, read from the TOML file. Unknown keys are errors, so typos do not pass silently.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    mp1_addr: Option<SocketAddr>,
    mm5_addr: Option<SocketAddr>,
    insecure_http: Option<bool>,
    api_root: Option<String>,
    max_body_bytes: Option<usize>,
    max_uri_bytes: Option<usize>,
    http_header_timeout: Option<u64>,
    http_body_timeout: Option<u64>,
    http_idle_timeout: Option<u64>,
    mp1_max_connections: Option<usize>,
    mm5_max_connections: Option<usize>,
    http_max_connections_per_client: Option<usize>,
    services_per_app: Option<usize>,
    subscriptions_per_app: Option<usize>,
    liveness_min_interval: Option<u32>,
    liveness_max_interval: Option<u32>,
    notify_timeout_ms: Option<u64>,
    notify_retries: Option<u32>,
    notify_queue: Option<usize>,
    notify_queue_bytes: Option<usize>,
    notify_failing_after: Option<u32>,
    dataplane: Option<String>,
    xdp_ifaces: Option<Vec<String>>,
    upf_endpoint: Option<String>,
    upf_ca_cert: Option<PathBuf>,
    upf_token: Option<Secret>,
    rules_per_app: Option<usize>,
    max_graceful_timeout: Option<u64>,
    ntp_servers: Option<Vec<String>>,
    ptp_masters: Option<Vec<std::net::IpAddr>>,
    /// Transports the operator provisions besides the built-in REST one (TOML only: a list of
    /// tables).
    transports: Option<Vec<TransportInfo>>,
    dns_addr: Option<SocketAddr>,
    dns_upstreams: Option<Vec<SocketAddr>>,
    dns_tcp_max_connections: Option<usize>,
    dns_tcp_max_per_client: Option<usize>,
    dns_tcp_idle_timeout_ms: Option<u64>,
    no_auth: Option<bool>,
    token_ttl: Option<u64>,
    token_issuer: Option<String>,
    token_key_max_age: Option<u64>,
    signature_max_skew: Option<u64>,
    lockout_failures: Option<u32>,
    lockout_window: Option<u64>,
    lockout_duration: Option<u64>,
    restrict_discovery: Option<bool>,
    callback_allow: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    mm5_client_ca: Option<PathBuf>,
    mm5_token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid api_root {0:?}: it must be an absolute http or https URL")]
    ApiRoot(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    CallbackAllow(String),
    #[error("invalid [[transports]] entry: {0}")]
    Transport(String),
}

/// The resolved configuration of a `mep` process.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub mp1_addr: SocketAddr,
    pub mm5_addr: SocketAddr,
    pub insecure_http: bool,
    pub api_root: Option<String>,
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    /// Timeouts and connection caps of the Mp1 and Mm5 listeners.
    pub http: HttpLimits,
    pub limits: Limits,
    pub liveness: LivenessPolicy,
    /// How often overdue heartbeats are looked for.
    pub liveness_sweep: Duration,
    pub notify: NotifyConfig,
    pub dataplane: DataPlaneChoice,
    pub apps: AppsConfig,
    pub ntp_servers: Vec<String>,
    pub ptp_masters: Vec<std::net::IpAddr>,
    /// Transports offered besides the built-in REST one (`[[transports]]`).
    pub transports: Vec<TransportInfo>,
    /// The built-in DNS server.
    pub dns: DnsConfig,
    pub auth: AuthConfig,
    pub callback_allow: CallbackPolicy,
    pub tls: TlsConfig,
    /// Bearer token required on Mm5.
    pub mm5_token: Option<Secret>,
}

/// Which data plane receives rule changes.
#[derive(Debug, Clone)]
pub enum DataPlaneChoice {
    None,
    UpfHttp {
        endpoint: String,
        ca_cert: Option<PathBuf>,
        token: Option<Secret>,
    },
    Xdp {
        interfaces: Vec<String>,
    },
}

impl DataPlaneChoice {
    fn parse(
        kind: Option<String>,
        xdp_ifaces: Option<Vec<String>>,
        upf_endpoint: Option<String>,
        ca_cert: Option<PathBuf>,
        token: Option<Secret>,
    ) -> Result<Self, ConfigError> {
        match kind.as_deref().unwrap_or("none") {
            "none" => Ok(DataPlaneChoice::None),
            "xdp" => Ok(DataPlaneChoice::Xdp {
                interfaces: xdp_ifaces.unwrap_or_default(),
            }),
            "upf-http" => match upf_endpoint {
                Some(endpoint) => Ok(DataPlaneChoice::UpfHttp {
                    endpoint,
                    ca_cert,
                    token,
                }),
                None => Err(ConfigError::Invalid(
                    "the upf-http data plane needs upf_endpoint",
                )),
            },
            _ => Err(ConfigError::Invalid(
                "dataplane must be none, upf-http or xdp",
            )),
        }
    }
}

impl Config {
    /// Defaults for a process whose store lives in `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            mp1_addr: SocketAddr::from(([0, 0, 0, 0], 8443)),
            mm5_addr: SocketAddr::from(([127, 0, 0, 1], 8088)),
            insecure_http: false,
            api_root: None,
            max_body_bytes: 64 * 1024,
            max_uri_bytes: 8192,
            http: HttpLimits::default(),
            limits: Limits {
                services_per_app: 1000,
                subscriptions_per_app: 100,
            },
            liveness: LivenessPolicy {
                min_interval: 1,
                max_interval: 3600,
            },
            liveness_sweep: Duration::from_millis(250),
            notify: NotifyConfig::default(),
            dataplane: DataPlaneChoice::None,
            apps: AppsConfig::default(),
            ntp_servers: Vec::new(),
            ptp_masters: Vec::new(),
            transports: Vec::new(),
            dns: DnsConfig::default(),
            auth: AuthConfig::default(),
            callback_allow: CallbackPolicy::default(),
            tls: TlsConfig::default(),
            mm5_token: None,
        }
    }

    /// Resolves flags and environment (already merged by clap) over the file over the defaults.
    pub fn resolve(mut args: ServeArgs) -> Result<Self, ConfigError> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let auth = auth_config(&args, &file, &AuthConfig::default());
        let callback_allow = CallbackPolicy::parse(
            &args
                .callback_allow
                .take()
                .or(file.callback_allow.take())
                .unwrap_or_default(),
        )
        .map_err(ConfigError::CallbackAllow)?;
        let tls = TlsConfig {
            cert: args.tls_cert.take().or(file.tls_cert.take()),
            key: args.tls_key.take().or(file.tls_key.take()),
            mm5_client_ca: args.mm5_client_ca.take().or(file.mm5_client_ca.take()),
        };
        let mm5_token = args.mm5_token.take().or(file.mm5_token.take());
        let d = Config::with_data_dir(
            args.data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("/var/lib/mep")),
        );
        let config = Config {
            mp1_addr: args.mp1_addr.or(file.mp1_addr).unwrap_or(d.mp1_addr),
            mm5_addr: args.mm5_addr.or(file.mm5_addr).unwrap_or(d.mm5_addr),
            insecure_http: args
                .insecure_http
                .or(file.insecure_http)
                .unwrap_or(d.insecure_http),
            api_root: args.api_root.or(file.api_root),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            max_uri_bytes: args
                .max_uri_bytes
                .or(file.max_uri_bytes)
                .unwrap_or(d.max_uri_bytes),
            http: HttpLimits {
                header_timeout: args
                    .http_header_timeout
                    .or(file.http_header_timeout)
                    .map_or(d.http.header_timeout, Duration::from_secs),
                body_timeout: args
                    .http_body_timeout
                    .or(file.http_body_timeout)
                    .map_or(d.http.body_timeout, Duration::from_secs),
                idle_timeout: args
                    .http_idle_timeout
                    .or(file.http_idle_timeout)
                    .map_or(d.http.idle_timeout, Duration::from_secs),
                mp1_max_connections: args
                    .mp1_max_connections
                    .or(file.mp1_max_connections)
                    .unwrap_or(d.http.mp1_max_connections),
                mm5_max_connections: args
                    .mm5_max_connections
                    .or(file.mm5_max_connections)
                    .unwrap_or(d.http.mm5_max_connections),
                max_connections_per_client: args
                    .http_max_connections_per_client
                    .or(file.http_max_connections_per_client)
                    .unwrap_or(d.http.max_connections_per_client),
                ..d.http
            },
            limits: Limits {
                services_per_app: args
                    .services_per_app
                    .or(file.services_per_app)
                    .unwrap_or(d.limits.services_per_app),
                subscriptions_per_app: args
                    .subscriptions_per_app
                    .or(file.subscriptions_per_app)
                    .unwrap_or(d.limits.subscriptions_per_app),
            },
            liveness: LivenessPolicy {
                min_interval: args
                    .liveness_min_interval
                    .or(file.liveness_min_interval)
                    .unwrap_or(d.liveness.min_interval),
                max_interval: args
                    .liveness_max_interval
                    .or(file.liveness_max_interval)
                    .unwrap_or(d.liveness.max_interval),
            },
            notify: NotifyConfig {
                timeout: args
                    .notify_timeout_ms
                    .or(file.notify_timeout_ms)
                    .map_or(d.notify.timeout, Duration::from_millis),
                retries: args
                    .notify_retries
                    .or(file.notify_retries)
                    .unwrap_or(d.notify.retries),
                queue_capacity: args
                    .notify_queue
                    .or(file.notify_queue)
                    .unwrap_or(d.notify.queue_capacity),
                queue_bytes: args
                    .notify_queue_bytes
                    .or(file.notify_queue_bytes)
                    .unwrap_or(d.notify.queue_bytes),
                failing_after: args
                    .notify_failing_after
                    .or(file.notify_failing_after)
                    .unwrap_or(d.notify.failing_after),
                ..d.notify.clone()
            },
            dataplane: DataPlaneChoice::parse(
                args.dataplane.or(file.dataplane),
                args.xdp_ifaces.or(file.xdp_ifaces),
                args.upf_endpoint.or(file.upf_endpoint),
                args.upf_ca_cert.or(file.upf_ca_cert),
                args.upf_token.or(file.upf_token),
            )?,
            apps: AppsConfig {
                rules_per_app: args
                    .rules_per_app
                    .or(file.rules_per_app)
                    .unwrap_or(d.apps.rules_per_app),
                max_graceful_timeout: args
                    .max_graceful_timeout
                    .or(file.max_graceful_timeout)
                    .map_or(d.apps.max_graceful_timeout, Duration::from_secs),
                ..d.apps.clone()
            },
            ntp_servers: args.ntp_servers.or(file.ntp_servers).unwrap_or_default(),
            ptp_masters: args.ptp_masters.or(file.ptp_masters).unwrap_or_default(),
            transports: file.transports.take().unwrap_or_default(),
            dns: DnsConfig {
                listen: args.dns_addr.or(file.dns_addr).unwrap_or(d.dns.listen),
                upstreams: args
                    .dns_upstreams
                    .or(file.dns_upstreams)
                    .unwrap_or_default(),
                max_tcp_connections: args
                    .dns_tcp_max_connections
                    .or(file.dns_tcp_max_connections)
                    .unwrap_or(d.dns.max_tcp_connections),
                max_tcp_per_client: args
                    .dns_tcp_max_per_client
                    .or(file.dns_tcp_max_per_client)
                    .unwrap_or(d.dns.max_tcp_per_client),
                tcp_idle_timeout: args
                    .dns_tcp_idle_timeout_ms
                    .or(file.dns_tcp_idle_timeout_ms)
                    .map_or(d.dns.tcp_idle_timeout, Duration::from_millis),
                ..d.dns.clone()
            },
            auth,
            callback_allow,
            tls,
            mm5_token,
            ..d
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(root) = &self.api_root {
            match url::Url::parse(root) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return Err(ConfigError::ApiRoot(root.clone())),
            }
        }
        if self.liveness.min_interval == 0
            || self.liveness.min_interval > self.liveness.max_interval
        {
            return Err(ConfigError::Invalid(
                "liveness_min_interval must be at least 1 and at most liveness_max_interval",
            ));
        }
        if self.apps.max_graceful_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "max_graceful_timeout must be at least one second",
            ));
        }
        if self.auth.token_ttl.is_zero() || self.auth.lockout.max_failures == 0 {
            return Err(ConfigError::Invalid(
                "token_ttl and lockout_failures must be at least 1",
            ));
        }
        if self
            .mm5_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            return Err(ConfigError::Invalid(
                "mm5_token must be at least 16 characters",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for transport in &self.transports {
            transport.validate().map_err(|e| {
                ConfigError::Transport(format!("transport {:?}: {e}", transport.id))
            })?;
            if !ids.insert(transport.id.as_str()) {
                return Err(ConfigError::Transport(format!(
                    "transport id {:?} is used twice",
                    transport.id
                )));
            }
        }
        if self.notify.queue_capacity == 0
            || self.notify.queue_bytes == 0
            || self.notify.failing_after == 0
        {
            return Err(ConfigError::Invalid(
                "notify_queue, notify_queue_bytes and notify_failing_after must be positive",
            ));
        }
        let h = &self.http;
        if h.header_timeout.is_zero() || h.body_timeout.is_zero() || h.idle_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "http_header_timeout, http_body_timeout and http_idle_timeout must be at least 1",
            ));
        }
        if h.mp1_max_connections == 0
            || h.mm5_max_connections == 0
            || h.max_connections_per_client == 0
        {
            return Err(ConfigError::Invalid(
                "mp1_max_connections, mm5_max_connections and http_max_connections_per_client must be positive",
            ));
        }
        if self.max_body_bytes == 0 || self.max_uri_bytes < 64 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be positive and max_uri_bytes at least 64",
            ));
        }
        Ok(())
    }
}

/// The authentication keys, flags over file over `d`.
fn auth_config(args: &ServeArgs, file: &FileConfig, d: &AuthConfig) -> AuthConfig {
    let secs = |a: Option<u64>, f: Option<u64>, default: Duration| {
        a.or(f).map_or(default, Duration::from_secs)
    };
    AuthConfig {
        enabled: !args.no_auth.or(file.no_auth).unwrap_or(!d.enabled),
        issuer: args
            .token_issuer
            .clone()
            .or(file.token_issuer.clone())
            .unwrap_or_else(|| d.issuer.clone()),
        token_ttl: secs(args.token_ttl, file.token_ttl, d.token_ttl),
        max_clock_skew: secs(
            args.signature_max_skew,
            file.signature_max_skew,
            d.max_clock_skew,
        ),
        lockout: crate::auth::lockout::LockoutPolicy {
            max_failures: args
                .lockout_failures
                .or(file.lockout_failures)
                .unwrap_or(d.lockout.max_failures),
            window: secs(args.lockout_window, file.lockout_window, d.lockout.window),
            lock_for: secs(
                args.lockout_duration,
                file.lockout_duration,
                d.lockout.lock_for,
            ),
        },
        key_max_age: match args.token_key_max_age.or(file.token_key_max_age) {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => d.key_max_age,
        },
        restrict_discovery: args
            .restrict_discovery
            .or(file.restrict_discovery)
            .unwrap_or(d.restrict_discovery),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mep.toml");
        std::fs::write(
            &file,
            "data_dir = \"/tmp/from-file\"\nmm5_addr = \"127.0.0.1:9000\"\nservices_per_app = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            mm5_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(c.mm5_addr, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(c.limits.services_per_app, 7);
        assert_eq!(c.mp1_addr, "0.0.0.0:8443".parse().unwrap());
    }

    #[test]
    fn unknown_keys_and_bad_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mep.toml");
        std::fs::write(&file, "data_dri = \"/x\"\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Config::resolve(ServeArgs {
            api_root: Some("mep.local".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::ApiRoot(_)));
    }

    #[test]
    fn the_upf_token_is_hidden_from_help_and_debug() {
        use clap::{Args as _, Command};
        // SAFETY: the variable is unique to this test; no other test reads it.
        unsafe { std::env::set_var("MEP_UPF_TOKEN", "upf-s3cret-from-env") };
        let help = ServeArgs::augment_args(Command::new("serve"))
            .render_long_help()
            .to_string();
        assert!(help.contains("MEP_UPF_TOKEN"), "{help}");
        assert!(!help.contains("upf-s3cret-from-env"), "{help}");
        unsafe { std::env::remove_var("MEP_UPF_TOKEN") };
        let c = Config::resolve(ServeArgs {
            dataplane: Some("upf-http".into()),
            upf_endpoint: Some("https://upf.example".into()),
            upf_token: Some(Secret::from("upf-s3cret-in-flag")),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("upf-s3cret"), "{c:?}");
    }

    #[test]
    fn security_keys_resolve_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mep.toml");
        std::fs::write(
            &file,
            "no_auth = true\ntoken_ttl = 600\ntoken_key_max_age = 0\nlockout_failures = 5\n\
             callback_allow = [\"10.0.0.0/8\"]\nmm5_token = \"0123456789abcdef-from-file\"\n",
        )
        .unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(file.clone()),
            token_ttl: Some(120),
            ..Default::default()
        })
        .unwrap();
        assert!(!c.auth.enabled);
        assert_eq!(c.auth.token_ttl, Duration::from_secs(120));
        assert_eq!(c.auth.key_max_age, None);
        assert_eq!(c.auth.lockout.max_failures, 5);
        assert!(c.callback_allow.check("http://10.1.1.1/n").is_ok());
        assert!(c.callback_allow.check("http://192.0.2.1/n").is_err());
        assert_eq!(
            c.mm5_token.as_ref().map(|t| t.expose_secret()),
            Some("0123456789abcdef-from-file")
        );
        assert!(
            !format!("{c:?}").contains("from-file\""),
            "Debug hides the token"
        );

        let defaults = Config::resolve(ServeArgs::default()).unwrap();
        assert!(defaults.auth.enabled);
        assert_eq!(defaults.auth.token_ttl, Duration::from_secs(3600));
        for bad in [
            ServeArgs {
                mm5_token: Some(Secret::from("short")),
                ..Default::default()
            },
            ServeArgs {
                callback_allow: Some(vec!["10.0.0.0/40".into()]),
                ..Default::default()
            },
            ServeArgs {
                token_ttl: Some(0),
                ..Default::default()
            },
        ] {
            assert!(Config::resolve(bad).is_err());
        }
    }
}
