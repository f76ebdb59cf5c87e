//! The `stepflow-gateway` command: `serve` runs the daemon.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stepflow_gateway::config::LogFormat;
use stepflow_gateway::{Config, Gateway};
use tracing_subscriber::EnvFilter;

mod validate;

/// Every message is allocated on one thread and freed on another (an HTTP
/// worker, the broker connection's actor, the call-log writer). Profiled
/// under load, glibc's allocator took about a fifth of the gateway's CPU
/// samples and mimalloc under a tenth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// StepFlow Gateway: an AsyncAPI-driven message router.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway until Ctrl-C or SIGTERM.
    Serve {
        /// The TOML configuration file; a missing file means the defaults.
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Writes process logs as JSON objects, one per line, whatever
        /// `logging.format` says.
        #[arg(long)]
        log_json: bool,
    },
    /// Issues an API key and prints it; it is shown only this once.
    IssueKey {
        /// The TOML configuration file, for the database.
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// The principal the key authenticates as.
        #[arg(long)]
        name: String,
        /// A role of the principal (`admin` for the management API); may
        /// be repeated.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Checks AsyncAPI documents and prints every problem as
    /// `file:line:col rule pointer message`; exits 1 when one has errors.
    Validate {
        /// The documents; files they refer to are read from their folders.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: validate::Format,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_json } => serve(config, log_json).await,
        Command::IssueKey {
            config,
            name,
            roles,
        } => issue_key(config, name, roles).await,
        Command::Validate { files, format } => {
            let all_valid = validate::run(&files, format);
            std::process::exit(if all_valid { 0 } else { 1 });
        }
    }
}

async fn issue_key(path: PathBuf, name: String, roles: Vec<String>) -> anyhow::Result<()> {
    let config = Config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let db = stepflow_gateway::store::connect(&config.database.url, 1)
        .await
        .context("opening the database")?;
    let (row, key) = stepflow_gateway::http::auth::new_key(name, roles);
    stepflow_gateway::store::api_keys::insert(&db, row.clone())
        .await
        .context("storing the key")?;
    println!("{key}");
    eprintln!(
        "key {} for `{}` issued; it is not shown again",
        row.id, row.name
    );
    Ok(())
}

async fn serve(path: PathBuf, log_json: bool) -> anyhow::Result<()> {
    let mut config = Config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    if log_json {
        config.logging.format = LogFormat::Json;
    }
    init_logging(&config);
    let gateway = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&config.logging.filter));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
