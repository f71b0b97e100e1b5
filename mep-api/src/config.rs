//! Configuration of `mep serve`: command-line flags, `MEP_*` environment variables and a TOML file
//! hold the same keys. A flag beats its variable, which beats the file, which beats the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::apps::AppsConfig;
use crate::notify::NotifyConfig;
use crate::registry::{Limits, LivenessPolicy};

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
    /// Notifications queued per subscription before new ones are dropped [default: 1024].
    #[arg(long, env = "MEP_NOTIFY_QUEUE")]
    pub notify_queue: Option<usize>,
    /// Data plane that receives rule changes: none, upf-http [default: none].
    #[arg(long, env = "MEP_DATAPLANE")]
    pub dataplane: Option<String>,
    /// Base URL of the UPF controller for the upf-http data plane.
    #[arg(long, env = "MEP_UPF_ENDPOINT")]
    pub upf_endpoint: Option<String>,
    /// PEM file of a CA that signs the UPF controller's certificate (besides the public roots).
    #[arg(long, env = "MEP_UPF_CA_CERT")]
    pub upf_ca_cert: Option<PathBuf>,
    /// Bearer token sent to the UPF controller.
    #[arg(long, env = "MEP_UPF_TOKEN")]
    pub upf_token: Option<String>,
    /// Traffic plus DNS rules per application instance [default: 64].
    #[arg(long, env = "MEP_RULES_PER_APP")]
    pub rules_per_app: Option<usize>,
    /// Seconds app termination waits for confirm_termination [default: 10].
    #[arg(long, env = "MEP_MAX_GRACEFUL_TIMEOUT")]
    pub max_graceful_timeout: Option<u64>,
    /// NTP server advertised in timing_caps (repeatable).
    #[arg(long = "ntp-server", env = "MEP_NTP_SERVERS", value_delimiter = ',')]
    pub ntp_servers: Option<Vec<String>>,
}

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
    services_per_app: Option<usize>,
    subscriptions_per_app: Option<usize>,
    liveness_min_interval: Option<u32>,
    liveness_max_interval: Option<u32>,
    notify_timeout_ms: Option<u64>,
    notify_retries: Option<u32>,
    notify_queue: Option<usize>,
    dataplane: Option<String>,
    upf_endpoint: Option<String>,
    upf_ca_cert: Option<PathBuf>,
    upf_token: Option<String>,
    rules_per_app: Option<usize>,
    max_graceful_timeout: Option<u64>,
    ntp_servers: Option<Vec<String>>,
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
    pub limits: Limits,
    pub liveness: LivenessPolicy,
    /// How often overdue heartbeats are looked for.
    pub liveness_sweep: Duration,
    pub notify: NotifyConfig,
    pub dataplane: DataPlaneChoice,
    pub apps: AppsConfig,
    pub ntp_servers: Vec<String>,
}

/// Which data plane receives rule changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPlaneChoice {
    None,
    UpfHttp {
        endpoint: String,
        ca_cert: Option<PathBuf>,
        token: Option<String>,
    },
}

impl DataPlaneChoice {
    fn parse(
        kind: Option<String>,
        upf_endpoint: Option<String>,
        ca_cert: Option<PathBuf>,
        token: Option<String>,
    ) -> Result<Self, ConfigError> {
        match kind.as_deref().unwrap_or("none") {
            "none" => Ok(DataPlaneChoice::None),
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
            _ => Err(ConfigError::Invalid("dataplane must be none or upf-http")),
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
        }
    }

    /// Resolves flags and environment (already merged by clap) over the file over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
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
                ..d.notify.clone()
            },
            dataplane: DataPlaneChoice::parse(
                args.dataplane.or(file.dataplane),
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
        if self.max_body_bytes == 0 || self.max_uri_bytes < 64 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be positive and max_uri_bytes at least 64",
            ));
        }
        Ok(())
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
}
