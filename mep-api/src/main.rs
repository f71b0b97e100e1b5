//! The `mep` command.

// Input and I/O paths never unwrap; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mep_api::config::{settings, Config, ServeArgs};
use mep_api::Mep;
use tracing_subscriber::EnvFilter;

/// mep: an ETSI MEC platform (Mp1 service registry, application support, DNS and data plane).
#[derive(Debug, Parser)]
#[command(name = "mep", version)]
struct Cli {
    /// Log lines as text or as one JSON object per line (for log shippers).
    #[arg(long, global = true, env = "MEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stdout at the `RUST_LOG` level (default info): colour only on a terminal, so journald
/// and log files get plain text; or JSON lines.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: Mp1 and Mm5 listeners on an embedded store.
    Serve(Box<ServeArgs>),
    #[command(flatten)]
    Query(mep_api::cli::Query),
    /// Print the configuration keys.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect the XDP data plane of a running mep.
    #[cfg(feature = "xdp")]
    Xdp {
        #[command(subcommand)]
        command: XdpCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Every key with its default, as a TOML file to start from.
    Defaults,
    /// The keys as the README's Markdown table.
    Table,
}

#[cfg(feature = "xdp")]
#[derive(Debug, Subcommand)]
enum XdpCommand {
    /// Interfaces, attach mode and per-rule counters, read from the pinned maps.
    Status {
        /// bpffs directory the data plane pinned its maps in.
        #[arg(long, default_value = mep_ebpf::DEFAULT_PIN_PATH)]
        pin_path: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // The serve flags' help names each default, from the one definition of the keys.
    let matches = Cli::command()
        .mut_subcommand("serve", settings::command)
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Query(query) => {
                print!("{}", mep_api::cli::run(&query).await?);
                Ok(())
            }
            Command::Config { command } => {
                print!(
                    "{}",
                    match command {
                        ConfigCommand::Defaults => settings::defaults_toml(),
                        ConfigCommand::Table => settings::table(),
                    }
                );
                Ok(())
            }
            #[cfg(feature = "xdp")]
            Command::Xdp {
                command: XdpCommand::Status { pin_path },
            } => {
                print!("{}", mep_ebpf::status_text(&pin_path)?);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, leaving out a cause that the message before it
/// already carries (most of mep's error messages name their source).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let mep = Mep::start(config).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    mep.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start the DNS server: {0}")]
    struct Embeds(#[from] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load state")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::other("upstream name \"bad!\": invalid dns name");
        assert_eq!(
            error_chain(&Embeds(io()).into()),
            "cannot start the DNS server: upstream name \"bad!\": invalid dns name"
        );
        assert_eq!(
            error_chain(&anyhow::Error::new(Wraps(io())).context("mep serve")),
            "mep serve: cannot load state: upstream name \"bad!\": invalid dns name"
        );
    }
}
