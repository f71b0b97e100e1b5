//! Configuration of `mep serve`. The keys are defined once, in [`settings::Settings`]: each is a
//! command-line flag, a `MEP_*` environment variable and a key of the TOML file, with its default
//! in [`settings::Settings::defaults`]. A flag beats its variable, which beats the file, which
//! beats the default (the layers are merged by figment); [`Config::resolve`] then turns the keys
//! into the nested configuration the parts of mep take.

pub mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use secrecy::ExposeSecret;

use mep_dns::DnsConfig;

use crate::apps::AppsConfig;
use crate::auth::lockout::LockoutPolicy;
use crate::auth::{AuthConfig, CallbackPolicy};
use crate::http::HttpLimits;
use crate::model::service::TransportInfo;
use crate::notify::NotifyConfig;
use crate::registry::{Limits, LivenessPolicy};
use crate::tls::TlsConfig;

pub use settings::{Secret, Settings};

/// The flags of `mep serve`: the keys of [`Settings`].
pub type ServeArgs = Settings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("key {0} has no default and no value")]
    Missing(&'static str),
    #[error("invalid api_root {0:?}: it must be an absolute http or https URL")]
    ApiRoot(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    CallbackAllow(String),
    #[error("invalid [[transports]] entry: {0}")]
    Transport(String),
    #[error("invalid {key}: {reason}")]
    Key { key: &'static str, reason: String },
}

/// The resolved configuration of a `mep` process.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub store: StoreChoice,
    /// The key that seals application secrets, if not `data_dir/auth/master.key`.
    pub master_key_file: Option<PathBuf>,
    pub mp1_addr: SocketAddr,
    pub mm5_addr: SocketAddr,
    pub insecure_http: bool,
    pub api_root: Option<String>,
    /// Largest request body on Mp1.
    pub max_body_bytes: usize,
    /// Largest request body on Mm5.
    pub mm5_max_body_bytes: usize,
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
    /// Where the DNS server also answers over TLS.
    pub dns_tls_addr: Option<SocketAddr>,
    /// Where DNS over HTTPS is served.
    pub dns_https_addr: Option<SocketAddr>,
    pub auth: AuthConfig,
    pub callback_allow: CallbackPolicy,
    pub tls: TlsConfig,
    /// Bearer token required on Mm5.
    pub mm5_token: Option<Secret>,
}

/// The value of a key that has a default.
macro_rules! key {
    ($s:ident . $key:ident) => {
        $s.$key
            .take()
            .ok_or(ConfigError::Missing(stringify!($key)))?
    };
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The embedded redb file in `data_dir`.
    Redb,
    /// An etcd cluster shared by the nodes of a site.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        node_id: String,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        /// How long one request may take before the next endpoint is tried.
        request_timeout: Duration,
        /// How long a write keeps trying before it is answered as unavailable.
        write_deadline: Duration,
    },
}

impl StoreChoice {
    fn parse(s: &mut Settings) -> Result<Self, ConfigError> {
        match key!(s.store).as_str() {
            "redb" => Ok(StoreChoice::Redb),
            "etcd" => {
                let endpoints = key!(s.etcd_endpoints);
                if endpoints.is_empty() {
                    return Err(ConfigError::Invalid(
                        "store = \"etcd\" needs etcd_endpoints",
                    ));
                }
                if s.master_key_file.is_none() {
                    return Err(ConfigError::Invalid(
                        "store = \"etcd\" needs master_key_file: every node seals and opens the applications' secrets with the same key",
                    ));
                }
                let node_id = match s.node_id.take() {
                    Some(id) => id,
                    None => hostname().ok_or(ConfigError::Invalid(
                        "node_id is not set and the host name cannot be read",
                    ))?,
                };
                if node_id.is_empty() || node_id.contains('/') {
                    return Err(ConfigError::Invalid(
                        "node_id must be non-empty and must not contain '/'",
                    ));
                }
                let request_timeout = Duration::from_millis(key!(s.etcd_request_timeout_ms));
                let write_deadline = Duration::from_secs(key!(s.etcd_write_deadline));
                if request_timeout < Duration::from_millis(100) || write_deadline < request_timeout
                {
                    return Err(ConfigError::Invalid(
                        "etcd_request_timeout_ms must be at least 100 and etcd_write_deadline at least as long",
                    ));
                }
                Ok(StoreChoice::Etcd {
                    endpoints,
                    request_timeout,
                    write_deadline,
                    prefix: key!(s.etcd_prefix),
                    node_id,
                    ca_file: s.etcd_ca_file.take(),
                    cert_file: s.etcd_cert_file.take(),
                    key_file: s.etcd_key_file.take(),
                })
            }
            _ => Err(ConfigError::Invalid("store must be redb or etcd")),
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
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
        native_targets: Vec<String>,
        /// Local DNS answers in the XDP program (`dns_xdp`).
        dns: bool,
    },
}

impl DataPlaneChoice {
    fn parse(
        kind: &str,
        xdp_ifaces: Vec<String>,
        native_targets: Vec<String>,
        dns_xdp: bool,
        upf_endpoint: Option<String>,
        ca_cert: Option<PathBuf>,
        token: Option<Secret>,
    ) -> Result<Self, ConfigError> {
        if dns_xdp && kind != "xdp" {
            return Err(ConfigError::Invalid(
                "dns_xdp answers DNS in the xdp data plane: it needs dataplane = \"xdp\"",
            ));
        }
        match kind {
            "none" => Ok(DataPlaneChoice::None),
            "xdp" => Ok(DataPlaneChoice::Xdp {
                interfaces: xdp_ifaces,
                native_targets,
                dns: dns_xdp,
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
    /// The defaults, with the store in `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let settings = Settings {
            data_dir: Some(data_dir.into()),
            ..Settings::defaults()
        };
        match Self::from_settings(settings) {
            Ok(config) => config,
            // The defaults resolve; a test (`defaults_resolve`) keeps it so.
            Err(e) => unreachable!("the default configuration does not resolve: {e}"),
        }
    }

    /// Layers the flags and variables (already merged by clap) over the file over the defaults,
    /// and resolves the result.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::defaults()));
        if let Some(path) = &args.config {
            if let Err(source) = std::fs::metadata(path) {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    source,
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(Serialized::defaults(&args))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        Self::from_settings(settings)
    }

    /// The configuration the keys describe.
    pub fn from_settings(mut s: Settings) -> Result<Self, ConfigError> {
        let secs = Duration::from_secs;
        let config = Config {
            data_dir: key!(s.data_dir),
            store: StoreChoice::parse(&mut s)?,
            master_key_file: s.master_key_file.take(),
            mp1_addr: key!(s.mp1_addr),
            mm5_addr: key!(s.mm5_addr),
            insecure_http: key!(s.insecure_http),
            api_root: s.api_root.take(),
            max_body_bytes: key!(s.max_body_bytes),
            mm5_max_body_bytes: key!(s.mm5_max_body_bytes),
            max_uri_bytes: key!(s.max_uri_bytes),
            http: http_limits(&mut s)?,
            limits: Limits {
                services_per_app: key!(s.services_per_app),
                subscriptions_per_app: key!(s.subscriptions_per_app),
            },
            liveness: LivenessPolicy {
                min_interval: key!(s.liveness_min_interval),
                max_interval: key!(s.liveness_max_interval),
            },
            liveness_sweep: Duration::from_millis(250),
            notify: notify_config(&mut s)?,
            dataplane: DataPlaneChoice::parse(
                &key!(s.dataplane),
                key!(s.xdp_ifaces),
                key!(s.xdp_native_targets),
                key!(s.dns_xdp),
                s.upf_endpoint.take(),
                s.upf_ca_cert.take(),
                s.upf_token.take(),
            )?,
            apps: AppsConfig {
                rules_per_app: key!(s.rules_per_app),
                max_graceful_timeout: secs(key!(s.max_graceful_timeout)),
                ..AppsConfig::default()
            },
            ntp_servers: key!(s.ntp_servers),
            ptp_masters: key!(s.ptp_masters),
            transports: key!(s.transports),
            dns: dns_config(&mut s)?,
            dns_tls_addr: s.dns_tls_addr.take(),
            dns_https_addr: s.dns_https_addr.take(),
            auth: auth_config(&mut s)?,
            callback_allow: CallbackPolicy::parse(&key!(s.callback_allow))
                .map_err(ConfigError::CallbackAllow)?,
            tls: TlsConfig {
                cert: s.tls_cert.take(),
                key: s.tls_key.take(),
                mm5_client_ca: s.mm5_client_ca.take(),
            },
            mm5_token: s.mm5_token.take(),
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
        if h.header_timeout.is_zero()
            || h.body_timeout.is_zero()
            || h.idle_timeout.is_zero()
            || h.request_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "http_header_timeout, http_body_timeout, http_idle_timeout and \
                 http_request_timeout must be at least 1",
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
        if self.max_body_bytes == 0 || self.mm5_max_body_bytes == 0 || self.max_uri_bytes < 64 {
            return Err(ConfigError::Invalid(
                "max_body_bytes and mm5_max_body_bytes must be positive and max_uri_bytes at least 64",
            ));
        }
        Ok(())
    }
}

/// The HTTP listeners' timeouts and connection caps.
fn http_limits(s: &mut Settings) -> Result<HttpLimits, ConfigError> {
    let secs = Duration::from_secs;
    Ok(HttpLimits {
        header_timeout: secs(key!(s.http_header_timeout)),
        body_timeout: secs(key!(s.http_body_timeout)),
        idle_timeout: secs(key!(s.http_idle_timeout)),
        request_timeout: secs(key!(s.http_request_timeout)),
        mp1_max_connections: key!(s.mp1_max_connections),
        mm5_max_connections: key!(s.mm5_max_connections),
        max_connections_per_client: key!(s.http_max_connections_per_client),
        ..HttpLimits::default()
    })
}

/// Notification delivery: timeouts, retries and queue bounds.
fn notify_config(s: &mut Settings) -> Result<NotifyConfig, ConfigError> {
    Ok(NotifyConfig {
        timeout: Duration::from_millis(key!(s.notify_timeout_ms)),
        retries: key!(s.notify_retries),
        queue_capacity: key!(s.notify_queue),
        queue_bytes: key!(s.notify_queue_bytes),
        failing_after: key!(s.notify_failing_after),
        ..NotifyConfig::default()
    })
}

/// The DNS server: addresses, upstreams and TCP connection limits.
fn dns_config(s: &mut Settings) -> Result<DnsConfig, ConfigError> {
    let upstreams = key!(s.dns_upstreams)
        .iter()
        .map(|u| u.parse::<mep_dns::Upstream>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| ConfigError::Key {
            key: "dns_upstreams",
            reason,
        })?;
    let upstream_ca = match s.dns_upstream_ca.take() {
        Some(path) => crate::tls::read_certs(&path).map_err(|e| ConfigError::Key {
            key: "dns_upstream_ca",
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };
    Ok(DnsConfig {
        listen: key!(s.dns_addr),
        upstreams,
        upstream_ca,
        max_tcp_connections: key!(s.dns_tcp_max_connections),
        max_tcp_per_client: key!(s.dns_tcp_max_per_client),
        max_forwarded_per_client: key!(s.dns_max_forwarded_per_client),
        tcp_idle_timeout: Duration::from_millis(key!(s.dns_tcp_idle_timeout_ms)),
        ..DnsConfig::default()
    })
}

/// Tokens, request signing and lockout.
fn auth_config(s: &mut Settings) -> Result<AuthConfig, ConfigError> {
    let secs = Duration::from_secs;
    Ok(AuthConfig {
        enabled: !key!(s.no_auth),
        issuer: key!(s.token_issuer),
        token_ttl: secs(key!(s.token_ttl)),
        max_clock_skew: secs(key!(s.signature_max_skew)),
        lockout: LockoutPolicy {
            max_failures: key!(s.lockout_failures),
            window: secs(key!(s.lockout_window)),
            lock_for: secs(key!(s.lockout_duration)),
        },
        key_max_age: match key!(s.token_key_max_age) {
            0 => None,
            age => Some(secs(age)),
        },
        restrict_discovery: key!(s.restrict_discovery),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_table_is_the_keys_table() {
        let readme = include_str!("../../../README.md");
        let start = "<!-- config-table: the output of `mep config table` -->\n";
        let at = readme
            .find(start)
            .expect("the README marks its configuration table")
            + start.len();
        let end = readme[at..]
            .find("<!-- /config-table -->")
            .expect("the table ends")
            + at;
        assert_eq!(
            &readme[at..end],
            settings::table(),
            "README.md's configuration table is out of date: paste `mep config table` there"
        );
    }

    #[test]
    fn every_key_is_a_flag_and_a_variable_of_its_name() {
        let plural_flags = [
            "xdp_ifaces",
            "xdp_native_targets",
            "ntp_servers",
            "ptp_masters",
            "dns_upstreams",
        ];
        for k in settings::keys() {
            if k.key == "transports" {
                assert_eq!(k.flag, "-");
                continue;
            }
            assert_eq!(
                k.env.as_deref(),
                Some(format!("MEP_{}", k.key.to_uppercase()).as_str()),
                "{}",
                k.key
            );
            let flag = format!("--{}", k.key.replace('_', "-"));
            if plural_flags.contains(&k.key.as_str()) {
                assert_eq!(format!("{}s", k.flag), flag, "{}", k.key);
            } else {
                assert_eq!(k.flag, flag);
            }
            assert!(!k.meaning.is_empty(), "{} needs a doc comment", k.key);
        }
    }

    #[test]
    fn defaults_resolve_and_the_parts_defaults_agree() {
        let c = Config::from_settings(Settings::defaults()).unwrap();
        let n = NotifyConfig::default();
        assert_eq!(
            (c.notify.timeout, c.notify.retries, c.notify.queue_capacity),
            (n.timeout, n.retries, n.queue_capacity)
        );
        assert_eq!(
            (c.notify.queue_bytes, c.notify.failing_after),
            (n.queue_bytes, n.failing_after)
        );
        assert_eq!(c.http, HttpLimits::default());
        let dns = DnsConfig::default();
        assert_eq!(c.dns.listen, dns.listen);
        assert_eq!(
            (
                c.dns.max_tcp_connections,
                c.dns.max_tcp_per_client,
                c.dns.tcp_idle_timeout,
                c.dns.max_forwarded_per_client
            ),
            (
                dns.max_tcp_connections,
                dns.max_tcp_per_client,
                dns.tcp_idle_timeout,
                dns.max_forwarded_per_client
            )
        );
        let a = AuthConfig::default();
        assert_eq!(
            (c.auth.enabled, c.auth.token_ttl, c.auth.key_max_age),
            (a.enabled, a.token_ttl, a.key_max_age)
        );
        assert_eq!(c.auth.lockout, a.lockout);
        let apps = AppsConfig::default();
        assert_eq!(
            (c.apps.rules_per_app, c.apps.max_graceful_timeout),
            (apps.rules_per_app, apps.max_graceful_timeout)
        );
        let file: Settings = toml::from_str(&settings::defaults_toml()).unwrap();
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::to_value(Settings {
                transports: None,
                ..Settings::defaults()
            })
            .unwrap(),
            "`mep config defaults` reads back as the defaults"
        );
    }

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
    fn dns_upstreams_are_plain_or_tls_and_bad_ones_are_named() {
        let c = Config::resolve(ServeArgs {
            dns_upstreams: Some(vec![
                "192.0.2.53".into(),
                "tls://192.0.2.54#dns.example".into(),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.dns.upstreams[0].addr.port(), 53);
        assert_eq!(c.dns.upstreams[1].tls_name.as_deref(), Some("dns.example"));
        let err = Config::resolve(ServeArgs {
            dns_upstreams: Some(vec!["tls://192.0.2.54".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("dns_upstreams"), "{err}");
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
