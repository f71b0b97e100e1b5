//! The operator CLI over Mm5: `mep apps`, `mep apps show ID`, `mep rules [--app ID]`,
//! `mep services`, `mep tasks ID` and `mep dns test NAME`, as tables or (`--json`) as the
//! server's JSON. It finds Mm5 from `--mm5-url` / `MEP_MM5_URL`, else from the same
//! configuration `mep serve` reads (its `mm5_addr`, its generated CA when Mm5 is HTTPS), and
//! sends the operator token (`--mm5-token` / `MEP_MM5_TOKEN` / `mm5_token`).

use std::fmt::Write as _;
use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::{Config, ServeArgs};

/// Where Mm5 is and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Mm5's base URL, e.g. http://127.0.0.1:8088 [default: from the configuration's mm5_addr]
    #[arg(long, env = "MEP_MM5_URL", global = true)]
    pub mm5_url: Option<String>,
    /// The Mm5 operator token [default: the configuration's mm5_token]
    #[arg(long, env = "MEP_MM5_TOKEN", hide_env_values = true, global = true)]
    pub mm5_token: Option<String>,
    /// The configuration file `mep serve` uses, to find Mm5 and its token.
    #[arg(long, env = "MEP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What the CLI asks.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Query {
    /// Configured application instances, their rule counts and readiness.
    Apps {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        show: Option<AppsShow>,
    },
    /// Traffic and DNS rules, of one application instance or of all.
    Rules {
        #[command(flatten)]
        target: Target,
        /// Only this application instance's.
        #[arg(long)]
        app: Option<String>,
    },
    /// Registered services (Mm5 capabilities) and who consumes them.
    Services {
        #[command(flatten)]
        target: Target,
    },
    /// The progress of a configuration task.
    Tasks {
        #[command(flatten)]
        target: Target,
        task_id: String,
    },
    /// DNS questions.
    Dns {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: DnsQuery,
    },
}

impl Query {
    fn target(&self) -> &Target {
        match self {
            Query::Apps { target, .. }
            | Query::Rules { target, .. }
            | Query::Services { target }
            | Query::Tasks { target, .. }
            | Query::Dns { target, .. } => target,
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AppsShow {
    /// One application instance's configuration.
    Show { app_instance_id: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DnsQuery {
    /// What mep would answer for NAME (type A and AAAA) and why.
    Test { name: String },
}

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(String),
    #[error("Mm5 at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{status}: {detail}")]
    Refused { status: u16, detail: String },
}

/// A client of one Mm5 listener.
struct Mm5 {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Mm5 {
    fn from_target(target: &Target) -> Result<Self, CliError> {
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        let (base, config_token) = match &target.mm5_url {
            Some(url) => (url.trim_end_matches('/').to_owned(), None),
            None => {
                let config = Config::resolve(ServeArgs {
                    config: target.config.clone(),
                    ..Default::default()
                })?;
                let addr = config.mm5_addr;
                let https = !addr.ip().is_loopback() || config.tls.mm5_client_ca.is_some();
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    addr.ip().to_string()
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                if https {
                    let ca = config
                        .tls
                        .cert
                        .clone()
                        .unwrap_or_else(|| config.data_dir.join("tls/ca.pem"));
                    let pem = std::fs::read(&ca)
                        .map_err(|e| CliError::Tls(format!("{}: {e}", ca.display())))?;
                    let cert = reqwest::Certificate::from_pem(&pem)
                        .map_err(|e| CliError::Tls(format!("{}: {e}", ca.display())))?;
                    http = http.add_root_certificate(cert);
                }
                let scheme = if https { "https" } else { "http" };
                let token = config.mm5_token.map(|t| t.expose_secret().to_owned());
                (format!("{scheme}://{host}:{}", addr.port()), token)
            }
        };
        let http = http
            .build()
            .map_err(|e| CliError::Tls(format!("the HTTP client: {e}")))?;
        Ok(Mm5 {
            base,
            token: target.mm5_token.clone().or(config_token),
            http,
        })
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let http_error = |source| CliError::Http {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(http_error)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(http_error)?;
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail").to_owned();
            return Err(CliError::Refused {
                status: status.as_u16(),
                detail,
            });
        }
        Ok(body)
    }
}

const APPS: &str = "/mepcfg/app_lcm/v1/applications";

/// Runs `query` and answers what to print.
pub async fn run(query: &Query) -> Result<String, CliError> {
    let target = query.target();
    let mm5 = Mm5::from_target(target)?;
    let (json, table) = match query {
        Query::Apps { show: None, .. } => {
            let apps = mm5.get(APPS).await?;
            let rows = rows(&apps, |a| {
                vec![
                    text(&a["appInstanceId"]),
                    text(&a["appName"]),
                    text(&a["trafficRules"]),
                    text(&a["dnsRules"]),
                    text(&a["ready"]),
                ]
            });
            let t = table(&["APP INSTANCE", "NAME", "TRAFFIC", "DNS", "READY"], rows);
            (apps, t)
        }
        Query::Apps {
            show: Some(AppsShow::Show { app_instance_id }),
            ..
        } => {
            let config = app_config(&mm5, app_instance_id).await?;
            let t = format!(
                "{} ({})\n\n{}",
                app_instance_id,
                text(&config["appName"]),
                rules_table(app_instance_id, &config)
            );
            (config, t)
        }
        Query::Rules { app, .. } => {
            let ids: Vec<String> = match app {
                Some(id) => vec![id.clone()],
                None => mm5
                    .get(APPS)
                    .await?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| text(&a["appInstanceId"]))
                    .collect(),
            };
            let mut all = serde_json::Map::new();
            let mut out = String::new();
            for id in ids {
                let config = app_config(&mm5, &id).await?;
                out.push_str(&rules_table(&id, &config));
                all.insert(id, config);
            }
            (Value::Object(all), out)
        }
        Query::Services { .. } => {
            let caps = mm5
                .get("/mepcfg/mec_platform_config/v1/capabilities")
                .await?;
            let rows = rows(&caps, |c| {
                let consumers: Vec<String> = c["consumers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| text(&x["applicationInstanceId"]))
                    .collect();
                vec![
                    text(&c["capabilityId"]),
                    text(&c["capabilityName"]),
                    text(&c["version"]),
                    text(&c["status"]),
                    consumers.join(","),
                ]
            });
            let t = table(&["SERVICE", "NAME", "VERSION", "STATE", "CONSUMERS"], rows);
            (caps, t)
        }
        Query::Tasks { task_id, .. } => {
            let path = format!(
                "/mepcfg/app_lcm/v1/tasks/{}/appd_configuration",
                segment(task_id)
            );
            let task = mm5.get(&path).await?;
            let mut t = String::new();
            if let Some(fields) = task.as_object() {
                for (k, v) in fields {
                    let _ = writeln!(t, "{k}: {}", text(v));
                }
            }
            (task, t)
        }
        Query::Dns {
            command: DnsQuery::Test { name },
            ..
        } => {
            let path = format!("/mepcfg/dns/v1/answers?name={}", segment(name));
            let answer = mm5.get(&path).await?;
            (answer.clone(), dns_explanation(&answer))
        }
    };
    Ok(if target.json {
        let mut s = serde_json::to_string_pretty(&json).unwrap_or_default();
        s.push('\n');
        s
    } else {
        table
    })
}

async fn app_config(mm5: &Mm5, app: &str) -> Result<Value, CliError> {
    mm5.get(&format!("{APPS}/{}/appd_configuration", segment(app)))
        .await
}

fn dns_explanation(answer: &Value) -> String {
    let name = text(&answer["name"]);
    match answer["source"].as_str() {
        Some("local") => {
            let rows = rows(&answer["answers"], |a| {
                vec![
                    text(&a["address"]),
                    text(&a["ttl"]),
                    text(&a["appInstanceId"]),
                    text(&a["dnsRuleId"]),
                ]
            });
            format!(
                "{name}: answered by mep from ACTIVE DNS rules (authoritative)\n\n{}",
                table(&["ADDRESS", "TTL", "APP INSTANCE", "DNS RULE"], rows)
            )
        }
        _ => format!("{name}: no ACTIVE DNS rule covers it; forwarded to the upstream resolvers\n"),
    }
}

fn rules_table(app: &str, config: &Value) -> String {
    let traffic = rows(&config["appTrafficRule"], |r| {
        vec![
            app.to_owned(),
            "traffic".into(),
            text(&r["trafficRuleId"]),
            text(&r["priority"]),
            text(&r["action"]),
            text(&r["state"]),
        ]
    });
    let dns = rows(&config["appDNSRule"], |r| {
        vec![
            app.to_owned(),
            "dns".into(),
            text(&r["dnsRuleId"]),
            String::new(),
            format!("{} {}", text(&r["domainName"]), text(&r["ipAddress"])),
            text(&r["state"]),
        ]
    });
    table(
        &[
            "APP INSTANCE",
            "KIND",
            "ID",
            "PRIORITY",
            "ACTION / ANSWER",
            "STATE",
        ],
        traffic.into_iter().chain(dns).collect(),
    )
}

fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A path segment or query value, percent-encoded.
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
