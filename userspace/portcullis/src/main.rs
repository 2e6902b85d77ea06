//! The `portcullis` command: `serve`, `check-config`, `stats`, `users`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use portcullis::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Portcullis RADIUS appliance")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve RADIUS (the embedded default configuration unless --config is given).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file (and the users file it names); exit non-zero with
    /// file:line: reason when it is not valid.
    CheckConfig { file: PathBuf },
    /// Print the counters of a running server (read from its control socket).
    Stats {
        /// The server's configuration (to find its control socket); default: embedded.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The control socket path, overriding the configuration.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Manage the local user store.
    Users(portcullis::users::UsersArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Serve { config } => serve(config),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Stats { config, socket } => stats(config, socket),
        Cmd::Users(args) => portcullis::users::cli(args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: Option<PathBuf>) -> Result<Config> {
    Ok(match config {
        Some(p) => Config::load(&p)?,
        None => Config::embedded()?,
    })
}

fn serve(config: Option<PathBuf>) -> Result<()> {
    let config = load(config)?;
    // Held until serve returns: dropping it flushes the log writer.
    let _log_guard = init_logging(&config.log.level, config.log.format);
    portcullis::server::serve(config)
}

fn check_config(file: &std::path::Path) -> Result<()> {
    let config = Config::load(file)?;
    portcullis::server::check(&config)?;
    println!(
        "{}: OK ({} clients, {} auth and {} accounting listeners)",
        file.display(),
        config.clients.len(),
        config.server.auth_listen.len(),
        config.server.acct_listen.len()
    );
    if config.clients.is_empty() {
        println!("warning: no [[client]] configured: every request will be dropped");
    }
    Ok(())
}

fn stats(config: Option<PathBuf>, socket: Option<PathBuf>) -> Result<()> {
    let path = match socket {
        Some(s) => s,
        None => load(config)?.server.control_socket,
    };
    let text = portcullis::control::read(&path).with_context(|| {
        format!(
            "cannot read the control socket {} (is the server running?)",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(())
}

/// Logs (audit lines included) go to stderr through a writer thread, so a shard never waits
/// on the pipe to journald; the writer blocks rather than drops when its queue is full, because
/// an audit line must not be lost.
fn init_logging(level: &str, format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    // Colour only on a terminal: journald and log files get plain `key=value` lines.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
    guard
}
