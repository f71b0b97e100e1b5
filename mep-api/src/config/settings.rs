//! The one definition of mep's configuration keys: [`Settings`]. Each field is a key of the TOML
//! file, a flag of `mep serve` (its name with `-`), and a `MEP_*` environment variable (its name
//! in capitals); its doc comment is the flag's help and the README's text, and
//! [`Settings::defaults`] holds every default. [`table`] renders the README's table from them, and
//! a test keeps the README in step.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::model::service::TransportInfo;

/// A configured secret (a bearer token): `Debug` shows `[REDACTED]` and reading it takes
/// [`secrecy::ExposeSecret::expose_secret`]. Serialized only to merge configuration layers.
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct Secret(secrecy::SecretString);

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl secrecy::ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use secrecy::ExposeSecret as _;
        serializer.serialize_str(self.0.expose_secret())
    }
}

/// Every key of `mep serve`. All are optional here: flags and variables, the file and the
/// defaults are layered over each other (flag > variable > file > default) and the result has
/// every key that has a default.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Keys (also MEP_* variables and TOML keys)")]
pub struct Settings {
    /// TOML file with any of the keys below (names with `_` instead of `-`).
    #[arg(long, env = "MEP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Directory of the embedded store.
    #[arg(long, env = "MEP_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Where mep keeps its state: redb (an embedded file in data_dir, one host) or etcd (a
    /// cluster shared by several mep nodes of a site).
    #[arg(long, env = "MEP_STORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Client URLs of the etcd members (store = etcd; comma-separated or repeated).
    #[arg(
        long = "etcd-endpoints",
        env = "MEP_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Key prefix of mep's records in etcd; the nodes of one site share it.
    #[arg(long, env = "MEP_ETCD_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_prefix: Option<String>,
    /// PEM CA of the etcd members' certificates (https endpoints).
    #[arg(long, env = "MEP_ETCD_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (with etcd_key_file).
    #[arg(long, env = "MEP_ETCD_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of etcd_cert_file.
    #[arg(long, env = "MEP_ETCD_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key_file: Option<PathBuf>,
    /// Milliseconds one etcd request may take before the next endpoint is tried.
    #[arg(long, env = "MEP_ETCD_REQUEST_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_request_timeout_ms: Option<u64>,
    /// Seconds a write keeps trying the etcd endpoints before it is answered 503; longer than
    /// an etcd leader election (a member's death) takes.
    #[arg(long, env = "MEP_ETCD_WRITE_DEADLINE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_write_deadline: Option<u64>,
    /// This node's id among the mep nodes on one etcd cluster (store = etcd). Default: the host
    /// name.
    #[arg(long, env = "MEP_NODE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// File of the 32-byte key that seals application secrets; required with store = etcd,
    /// where every node is given the same file (it never goes into etcd). Default:
    /// data_dir/auth/master.key, made at first start.
    #[arg(long, env = "MEP_MASTER_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Address of the Mp1 listener for MEC applications.
    #[arg(long, env = "MEP_MP1_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp1_addr: Option<SocketAddr>,
    /// Address of the Mm5 listener for the platform manager, health and metrics.
    #[arg(long, env = "MEP_MM5_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm5_addr: Option<SocketAddr>,
    /// Serve Mp1 (and an off-loopback Mm5) as plain HTTP instead of HTTPS.
    #[arg(long, env = "MEP_INSECURE_HTTP", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
    /// Scheme, host and port applications use to reach Mp1; the root of every `_links` href and
    /// `Location` [default: derived from mp1_addr].
    #[arg(long, env = "MEP_API_ROOT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_root: Option<String>,
    /// Largest request body in bytes (413 from the `Content-Length` alone).
    #[arg(long, env = "MEP_MAX_BODY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Largest request body on Mm5 in bytes: an `appd_configuration` of many rules is large.
    #[arg(long, env = "MEP_MM5_MAX_BODY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm5_max_body_bytes: Option<usize>,
    /// Longest request target (path and query) in bytes.
    #[arg(long, env = "MEP_MAX_URI_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uri_bytes: Option<usize>,
    /// Seconds a client has to send a request head, on a new connection and between keep-alive
    /// requests.
    #[arg(long, env = "MEP_HTTP_HEADER_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_timeout: Option<u64>,
    /// Seconds a request body has to arrive whole once its head has; then 408.
    #[arg(long, env = "MEP_HTTP_BODY_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_body_timeout: Option<u64>,
    /// Seconds a connection with no request in flight may stay silent while its listener is at
    /// most half full; it falls to 1 s as the listener fills.
    #[arg(long, env = "MEP_HTTP_IDLE_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_idle_timeout: Option<u64>,
    /// Seconds a request may take before it is answered 503 (termination requests get at least
    /// max_graceful_timeout + 30).
    #[arg(long, env = "MEP_HTTP_REQUEST_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request_timeout: Option<u64>,
    /// Connections Mp1 holds at once, at most its share of the descriptor budget.
    #[arg(long, env = "MEP_MP1_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp1_max_connections: Option<usize>,
    /// Connections Mm5 holds at once, kept apart from Mp1's.
    #[arg(long, env = "MEP_MM5_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm5_max_connections: Option<usize>,
    /// Connections one client (an IPv4 address or IPv6 /64) holds on one listener.
    #[arg(long, env = "MEP_HTTP_MAX_CONNECTIONS_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_max_connections_per_client: Option<usize>,
    /// Services one application instance may register.
    #[arg(long, env = "MEP_SERVICES_PER_APP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_per_app: Option<usize>,
    /// Service availability subscriptions per application instance.
    #[arg(long, env = "MEP_SUBSCRIPTIONS_PER_APP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_per_app: Option<usize>,
    /// Shortest heartbeat interval granted, in seconds.
    #[arg(long, env = "MEP_LIVENESS_MIN_INTERVAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_min_interval: Option<u32>,
    /// Longest heartbeat interval granted, in seconds.
    #[arg(long, env = "MEP_LIVENESS_MAX_INTERVAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_max_interval: Option<u32>,
    /// Timeout of one notification attempt, in milliseconds.
    #[arg(long, env = "MEP_NOTIFY_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_timeout_ms: Option<u64>,
    /// Retries of a failed notification.
    #[arg(long, env = "MEP_NOTIFY_RETRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_retries: Option<u32>,
    /// Notifications queued per subscription; beyond that the oldest are dropped.
    #[arg(long, env = "MEP_NOTIFY_QUEUE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_queue: Option<usize>,
    /// Bytes of notifications queued over all subscriptions; beyond that the oldest of the fullest
    /// queue are dropped.
    #[arg(long, env = "MEP_NOTIFY_QUEUE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_queue_bytes: Option<usize>,
    /// Failed delivery attempts in a row after which a subscription is failing (one attempt per
    /// notification, a short queue).
    #[arg(long, env = "MEP_NOTIFY_FAILING_AFTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_failing_after: Option<u32>,
    /// Data plane that receives rule changes: none, upf-http or xdp.
    #[arg(long, env = "MEP_DATAPLANE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<String>,
    /// Interfaces facing the UPF that the xdp data plane attaches to (repeatable).
    #[arg(long = "xdp-iface", env = "MEP_XDP_IFACES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_ifaces: Option<Vec<String>>,
    /// Interfaces, besides the attached ones, that the xdp data plane may redirect into natively (NICs whose
    /// drivers take XDP frames); forwarding to others goes through TC (repeatable).
    #[arg(
        long = "xdp-native-target",
        env = "MEP_XDP_NATIVE_TARGETS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_native_targets: Option<Vec<String>>,
    /// Answer UDP queries for local DNS names in the xdp data plane's program (XDP_TX) on its
    /// interfaces, for the DNS server's address and port; everything else reaches the server.
    #[arg(long, env = "MEP_DNS_XDP", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_xdp: Option<bool>,
    /// Base URL of the UPF controller of the upf-http data plane.
    #[arg(long, env = "MEP_UPF_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upf_endpoint: Option<String>,
    /// PEM file of a CA that signs the UPF controller's certificate (besides the public roots).
    #[arg(long, env = "MEP_UPF_CA_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upf_ca_cert: Option<PathBuf>,
    /// Bearer token sent to the UPF controller.
    #[arg(long, env = "MEP_UPF_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upf_token: Option<Secret>,
    /// Traffic plus DNS rules per application instance.
    #[arg(long, env = "MEP_RULES_PER_APP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_per_app: Option<usize>,
    /// Seconds app termination waits for confirm_termination.
    #[arg(long, env = "MEP_MAX_GRACEFUL_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_graceful_timeout: Option<u64>,
    /// NTP servers advertised in timing_caps (repeatable).
    #[arg(long = "ntp-server", env = "MEP_NTP_SERVERS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp_servers: Option<Vec<String>>,
    /// PTP master addresses advertised in timing_caps (repeatable).
    #[arg(long = "ptp-master", env = "MEP_PTP_MASTERS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptp_masters: Option<Vec<IpAddr>>,
    /// Transports offered besides the built-in REST one, as `[[transports]]` tables of
    /// `TransportInfo` members (file only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transports: Option<Vec<TransportInfo>>,
    /// UDP and TCP address of the DNS server (production: 0.0.0.0:53).
    #[arg(long, env = "MEP_DNS_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_addr: Option<SocketAddr>,
    /// Address of DNS over TLS (RFC 7858, e.g. 0.0.0.0:853), with the certificate of Mp1 and Mm5
    /// (tls_cert, or the generated one); off unless set.
    #[arg(long, env = "MEP_DNS_TLS_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_tls_addr: Option<SocketAddr>,
    /// Address of DNS over HTTPS (RFC 8484, GET and POST at /dns-query, e.g. 0.0.0.0:443), with the
    /// certificate of Mp1 and Mm5; off unless set.
    #[arg(long, env = "MEP_DNS_HTTPS_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_https_addr: Option<SocketAddr>,
    /// Upstream resolvers for names no DNS rule covers: ADDR, or tls://ADDR#NAME for DNS over TLS
    /// to a resolver whose certificate names NAME (repeatable)
    /// [default: the nameservers of /etc/resolv.conf].
    #[arg(
        long = "dns-upstream",
        env = "MEP_DNS_UPSTREAMS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_upstreams: Option<Vec<String>>,
    /// PEM CA certificates trusted for DNS-over-TLS upstreams besides the public roots.
    #[arg(long, env = "MEP_DNS_UPSTREAM_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_upstream_ca: Option<PathBuf>,
    /// DNS-over-TCP connections held at once; at a full table a newcomer takes the place of the
    /// longest-idle one.
    #[arg(long, env = "MEP_DNS_TCP_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_tcp_max_connections: Option<usize>,
    /// DNS-over-TCP connections of one client (an IPv4 address or IPv6 /64).
    #[arg(long, env = "MEP_DNS_TCP_MAX_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_tcp_max_per_client: Option<usize>,
    /// Forwarded DNS queries of one client (an IPv4 address or IPv6 /64) waiting for an upstream
    /// at once; beyond that the client gets SERVFAIL at once, and others keep theirs.
    #[arg(long, env = "MEP_DNS_MAX_FORWARDED_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_max_forwarded_per_client: Option<usize>,
    /// Milliseconds a DNS-over-TCP connection may wait for its next query; falls to 500 as the
    /// table fills.
    #[arg(long, env = "MEP_DNS_TCP_IDLE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_tcp_idle_timeout_ms: Option<u64>,
    /// Trust every Mp1 caller without a token (local testing only).
    #[arg(long, env = "MEP_NO_AUTH", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_auth: Option<bool>,
    /// Lifetime of access tokens in seconds.
    #[arg(long, env = "MEP_TOKEN_TTL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<u64>,
    /// `iss` of access tokens.
    #[arg(long, env = "MEP_TOKEN_ISSUER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_issuer: Option<String>,
    /// Rotate the token signing key at this age in seconds; 0 only on request.
    #[arg(long, env = "MEP_TOKEN_KEY_MAX_AGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_key_max_age: Option<u64>,
    /// Largest distance of x-sdk-date from the clock, in seconds.
    #[arg(long, env = "MEP_SIGNATURE_MAX_SKEW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_max_skew: Option<u64>,
    /// Failed token requests that lock an access key for their source.
    #[arg(long, env = "MEP_LOCKOUT_FAILURES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_failures: Option<u32>,
    /// Seconds within which those failures count.
    #[arg(long, env = "MEP_LOCKOUT_WINDOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_window: Option<u64>,
    /// Seconds an access key stays locked for that source.
    #[arg(long, env = "MEP_LOCKOUT_DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockout_duration: Option<u64>,
    /// Restrict global discovery to the caller's requiredServices.
    #[arg(long, env = "MEP_RESTRICT_DISCOVERY", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restrict_discovery: Option<bool>,
    /// Allowed notification callback destinations: CIDRs, addresses, host names, `*.domain`
    /// (comma-separated on the command line) [default: any].
    #[arg(long, env = "MEP_CALLBACK_ALLOW", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_allow: Option<Vec<String>>,
    /// PEM certificate chain of the TLS listeners [default: generated in the data directory's tls/].
    #[arg(long, env = "MEP_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls_cert.
    #[arg(long, env = "MEP_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates of Mm5 clients: Mm5 then requires mutual TLS.
    #[arg(long, env = "MEP_MM5_CLIENT_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm5_client_ca: Option<PathBuf>,
    /// Bearer token every Mm5 request but the probes must carry (at least 16 characters).
    #[arg(long, env = "MEP_MM5_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm5_token: Option<Secret>,
}

impl Settings {
    /// Every default. Keys without one here (optional paths, tokens, `api_root`) are off unless
    /// set; their doc comment says what stands in for them.
    pub fn defaults() -> Settings {
        let addr = |s: &str| s.parse::<SocketAddr>().ok();
        Settings {
            config: None,
            data_dir: Some(PathBuf::from("/var/lib/mep")),
            store: Some("redb".into()),
            etcd_endpoints: Some(Vec::new()),
            etcd_prefix: Some("/mep/v1".into()),
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_request_timeout_ms: Some(2000),
            etcd_write_deadline: Some(5),
            node_id: None,
            master_key_file: None,
            mp1_addr: addr("0.0.0.0:8443"),
            mm5_addr: addr("127.0.0.1:8088"),
            insecure_http: Some(false),
            api_root: None,
            max_body_bytes: Some(64 * 1024),
            mm5_max_body_bytes: Some(4 << 20),
            max_uri_bytes: Some(8192),
            http_header_timeout: Some(10),
            http_body_timeout: Some(10),
            http_idle_timeout: Some(60),
            http_request_timeout: Some(60),
            mp1_max_connections: Some(4096),
            mm5_max_connections: Some(128),
            http_max_connections_per_client: Some(256),
            services_per_app: Some(1000),
            subscriptions_per_app: Some(100),
            liveness_min_interval: Some(1),
            liveness_max_interval: Some(3600),
            notify_timeout_ms: Some(5000),
            notify_retries: Some(4),
            notify_queue: Some(1024),
            notify_queue_bytes: Some(32 << 20),
            notify_failing_after: Some(5),
            dataplane: Some("none".into()),
            xdp_ifaces: Some(Vec::new()),
            xdp_native_targets: Some(Vec::new()),
            dns_xdp: Some(false),
            upf_endpoint: None,
            upf_ca_cert: None,
            upf_token: None,
            rules_per_app: Some(1000),
            max_graceful_timeout: Some(10),
            ntp_servers: Some(Vec::new()),
            ptp_masters: Some(Vec::new()),
            transports: Some(Vec::new()),
            dns_addr: addr("0.0.0.0:8053"),
            dns_tls_addr: None,
            dns_https_addr: None,
            dns_upstreams: Some(Vec::new()),
            dns_upstream_ca: None,
            dns_tcp_max_connections: Some(1024),
            dns_tcp_max_per_client: Some(32),
            dns_max_forwarded_per_client: Some(256),
            dns_tcp_idle_timeout_ms: Some(10_000),
            no_auth: Some(false),
            token_ttl: Some(3600),
            token_issuer: Some("mep".into()),
            token_key_max_age: Some(30 * 86_400),
            signature_max_skew: Some(300),
            lockout_failures: Some(3),
            lockout_window: Some(300),
            lockout_duration: Some(900),
            restrict_discovery: Some(false),
            callback_allow: Some(Vec::new()),
            tls_cert: None,
            tls_key: None,
            mm5_client_ca: None,
            mm5_token: None,
        }
    }
}

/// One key as the README and `--help` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: String,
    /// `--flag`, or `-` for a file-only key.
    pub flag: String,
    pub env: Option<String>,
    pub default: DefaultDoc,
    pub meaning: String,
}

/// What a key is when it is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultDoc {
    /// A value, as the file would spell it.
    Value(String),
    /// What stands in for the key (its doc comment's `[default: ...]`).
    Note(String),
    /// Off.
    None,
}

impl std::fmt::Display for DefaultDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefaultDoc::Value(v) | DefaultDoc::Note(v) => f.write_str(v),
            DefaultDoc::None => f.write_str("none"),
        }
    }
}

fn default_doc(value: &serde_json::Value, note: Option<String>) -> DefaultDoc {
    match (render(value), note) {
        (Some(v), _) => DefaultDoc::Value(v),
        (None, Some(note)) => DefaultDoc::Note(note),
        (None, None) => DefaultDoc::None,
    }
}

/// The note `[default: ...]` in a doc comment, and the text without it.
fn split_default_note(help: &str) -> (String, Option<String>) {
    match help.find("[default: ") {
        Some(at) => {
            let rest = &help[at + "[default: ".len()..];
            let end = rest.find(']').unwrap_or(rest.len());
            let text = format!("{}{}", &help[..at], &rest[(end + 1).min(rest.len())..]);
            (text.trim().to_owned(), Some(rest[..end].to_owned()))
        }
        None => (help.trim().to_owned(), None),
    }
}

/// A default value as the README writes it.
fn render(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.is_empty() => None,
        serde_json::Value::Array(a) => {
            Some(a.iter().filter_map(render).collect::<Vec<_>>().join(", "))
        }
        other => Some(other.to_string()),
    }
}

/// Keys that only the file can hold (no flag, no variable): their meaning.
const FILE_ONLY: &[(&str, &str)] = &[(
    "transports",
    "Transports offered besides the built-in REST one, as `[[transports]]` tables of `TransportInfo` members (file only).",
)];

/// Every key, in the order of [`Settings`] (file-only keys last), with its flag, variable,
/// default and meaning.
pub fn keys() -> Vec<KeyDoc> {
    let defaults = serde_json::to_value(Settings::defaults()).unwrap_or_default();
    let command = Settings::augment_args(clap::Command::new("serve"));
    let mut out: Vec<KeyDoc> = command
        .get_arguments()
        .filter(|a| a.get_id().as_str() != "config")
        .map(|arg| {
            let key = arg.get_id().as_str().to_owned();
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let (meaning, note) = split_default_note(&help);
            KeyDoc {
                default: default_doc(&defaults[&key], note),
                flag: arg
                    .get_long()
                    .map_or_else(|| "-".to_owned(), |l| format!("--{l}")),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                meaning: meaning.replace('\n', " "),
                key,
            }
        })
        .collect();
    for (key, meaning) in FILE_ONLY {
        out.push(KeyDoc {
            key: (*key).to_owned(),
            flag: "-".to_owned(),
            env: None,
            default: default_doc(&defaults[*key], None),
            meaning: (*meaning).to_owned(),
        });
    }
    out
}

/// The README's configuration table.
pub fn table() -> String {
    let mut out = String::from("| key | flag | default | meaning |\n|---|---|---|---|\n");
    for k in keys() {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            k.key,
            k.flag,
            match &k.default {
                DefaultDoc::Value(v) => format!("`{v}`"),
                other => other.to_string(),
            },
            k.meaning
        ));
    }
    out
}

/// Every default as a TOML file, to start a configuration from.
pub fn defaults_toml() -> String {
    let mut out = String::from(
        "# mep's configuration keys with their defaults (mep config defaults).\n\
         # A flag beats its MEP_* variable, which beats this file, which beats the default.\n\n",
    );
    for k in keys() {
        let key = &k.key;
        if key == "transports" {
            continue;
        }
        out.push_str(&format!("# {}\n", k.meaning));
        let value = serde_json::to_value(Settings::defaults())
            .ok()
            .and_then(|v| v.get(key.as_str()).cloned())
            .unwrap_or_default();
        match toml_value(&value) {
            Some(v) => out.push_str(&format!("{key} = {v}\n\n")),
            None => out.push_str(&format!("# {key} =\n\n")),
        }
    }
    out
}

fn toml_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(format!("{s:?}")),
        serde_json::Value::Array(a) => Some(format!(
            "[{}]",
            a.iter()
                .filter_map(toml_value)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        other => Some(other.to_string()),
    }
}

/// `Settings` as the `serve` subcommand's flags, with each key's default in its help.
pub fn command(serve: clap::Command) -> clap::Command {
    let keys = keys();
    serve.mut_args(|arg| {
        let Some(k) = keys.iter().find(|k| k.key == arg.get_id().as_str()) else {
            return arg;
        };
        let help = format!("{} [default: {}]", k.meaning, k.default);
        arg.help(help)
    })
}
