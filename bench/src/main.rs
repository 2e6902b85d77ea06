//! # portcullis-bench: a closed-loop RADIUS load generator
//!
//! Keeps `--window` requests outstanding over `--sockets` UDP sockets for `--duration`
//! seconds (after a one-second warm-up), checks every reply (identifier, Response
//! Authenticator, Message-Authenticator, expected code, MS-CHAP2-Success) and reports
//! throughput, latency percentiles, lost and wrong replies, and the server's CPU and memory.
//!
//! By default it starts its own Portcullis (`$PORTCULLIS_BIN`, as `cargo xtask bench` sets it)
//! on free loopback ports with `--users` generated users, pinned to `--server-cpu`, and pins
//! itself to `--client-cpu`. With `--server ADDR:PORT --secret S` it loads a server that is
//! already running instead; that server must know the users `user0000`... with the passwords
//! of [`request::password`] (`Bench#0000pw`, ...).
//!
//! What it does not do (yet): compare with FreeRADIUS, open-loop (fixed rate) load, EAP.
//!
//! Exit status: non-zero on any wrong reply (a wrong answer is a bug, not a statistic), on a
//! server that does not stop cleanly, and on errors.

mod flood;
mod load;
mod procfs;
mod report;
mod request;
mod server;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use portcullis_proto::SharedSecret;

use crate::load::{LoadConfig, Mark};
use crate::request::{Expect, Generator, Users};
use crate::server::OwnServer;

/// Per-request timeout: an answer later than this counts as lost (and, if it comes, late).
const TIMEOUT: Duration = Duration::from_secs(2);
/// Warm-up before the measured interval.
const WARMUP: Duration = Duration::from_secs(1);
/// Other work on the pinned CPUs (% of one core) above which the results are flagged.
const OTHER_CPU_WARNING: f64 = 15.0;
/// The shared secret of the server the bench starts.
const OWN_SECRET: &str = "portcullis-bench-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Access-Request with User-Password.
    Pap,
    /// Access-Request with CHAP-Password (challenge: the Request Authenticator).
    Chap,
    /// Access-Request with MS-CHAP-Challenge and MS-CHAP2-Response.
    Mschapv2,
    /// Accounting-Request Start / Interim-Update / Stop (fsynced by the server).
    Accounting,
    /// Status-Server.
    Status,
    /// PAP with and without a flood of forged packets (unknown source, bad
    /// Message-Authenticator), with XDP on and off, inside a network namespace of its own.
    Flood,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pap => "pap",
            Scenario::Chap => "chap",
            Scenario::Mschapv2 => "mschapv2",
            Scenario::Accounting => "accounting",
            Scenario::Status => "status",
            Scenario::Flood => "flood",
        }
    }
}

/// Closed-loop RADIUS load generator for Portcullis.
#[derive(Debug, Parser)]
#[command(name = "portcullis-bench", version)]
struct Cli {
    /// What to send.
    #[arg(long, value_enum, default_value_t = Scenario::Pap)]
    scenario: Scenario,
    /// Measured seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    duration: u64,
    /// Requests outstanding at any time (at most 256 per socket).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    window: u32,
    /// UDP sockets (source ports) the window is spread over; each has its own 256 identifiers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    sockets: u32,
    /// Users to create (and cycle through): user0000, user0001, ...
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    users: u32,
    /// CPUs for the server the bench starts (taskset list, e.g. `0` or `0,2-3`); one shard per CPU.
    #[arg(long, default_value = "0")]
    server_cpu: String,
    /// CPUs the load generator is pinned to (same syntax).
    #[arg(long, default_value = "1")]
    client_cpu: String,
    /// Load a server that is already running instead of starting one.
    #[arg(long, requires = "secret")]
    server: Option<SocketAddr>,
    /// The shared secret of `--server`.
    #[arg(long, requires = "server")]
    secret: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// `--scenario flood`: CPUs of the flood thread (default: the --client-cpu list, shared
    /// with the load generator).
    #[arg(long)]
    flood_cpu: Option<String>,
    /// `--scenario flood`: the most forged packets one run sends.
    #[arg(long, default_value_t = 500_000_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000_000))]
    flood_max: u64,
}

/// Parses a CPU list: `0`, `0,2`, `1-3`, `0,4-7`.
fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: usize = lo
            .parse()
            .with_context(|| format!("bad CPU list `{text}`"))?;
        let hi: usize = hi
            .parse()
            .with_context(|| format!("bad CPU list `{text}`"))?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            bail!("bad CPU list `{text}`");
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The portcullis binary: `$PORTCULLIS_BIN`, else `portcullis` next to this binary.
fn portcullis_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PORTCULLIS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("portcullis")));
    match sibling {
        Some(p) if p.is_file() => Ok(p),
        _ => bail!(
            "PORTCULLIS_BIN is not set and no portcullis binary is next to this one \
             (run `cargo xtask bench`, or set PORTCULLIS_BIN=target/release/portcullis)"
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("[bench] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` when the run completed but found wrong replies.
fn run(cli: &Cli) -> Result<bool> {
    if cli.scenario == Scenario::Flood {
        return flood::run(cli);
    }
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    if cli.window > cli.sockets * 256 {
        bail!(
            "--window {} needs at least {} sockets (256 identifiers each)",
            cli.window,
            cli.window.div_ceil(256)
        );
    }
    let users = Users::new(cli.users);

    // The CPUs whose busy time is watched for other processes disturbing the run.
    let mut watched = client_cpus.clone();
    let (own, target, secret_text, status_expect) = match (&cli.server, &cli.secret) {
        (Some(addr), Some(secret)) => (None, *addr, secret.clone(), Expect::StatusAny),
        _ => {
            let server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
            watched.extend(&server_cpus);
            let bin = portcullis_bin()?;
            eprintln!(
                "[bench] starting {} on CPU {} ({} shard(s))",
                bin.display(),
                cli.server_cpu,
                server_cpus.len()
            );
            let s = OwnServer::start(
                &bin,
                &cli.server_cpu,
                server_cpus.len(),
                cli.users,
                OWN_SECRET,
            )?;
            let target = match cli.scenario {
                Scenario::Accounting => s.acct,
                _ => s.auth,
            };
            (Some(s), target, OWN_SECRET.to_owned(), Expect::Accept)
        }
    };
    let secret = SharedSecret::new(secret_text.as_bytes()).context("the shared secret")?;

    // Pinned after the server started, so that taskset alone decides where the server runs.
    udp::pin_current_thread(&client_cpus)
        .with_context(|| format!("cannot pin the load generator to CPU {}", cli.client_cpu))?;

    eprintln!(
        "[bench] {} against {target}: window {}, {} sockets, {} users, {} s (+{} s warm-up)",
        cli.scenario.name(),
        cli.window,
        cli.sockets,
        cli.users,
        cli.duration,
        WARMUP.as_secs()
    );
    let cfg = LoadConfig {
        target,
        window: cli.window as usize,
        sockets: cli.sockets as usize,
        warmup: WARMUP,
        duration: Duration::from_secs(cli.duration),
        timeout: TIMEOUT,
    };
    let mut generator = Generator::new(cli.scenario, &secret, &users, status_expect);
    watched.sort_unstable();
    watched.dedup();
    let mut server_cpu = (None, None);
    let mut client_cpu = (None, None);
    let mut busy = (None, None);
    let result = load::run(&cfg, &mut generator, &secret, &users, |m| {
        let server = own.as_ref().and_then(|s| s.cpu_seconds().ok());
        let client = procfs::process_cpu_seconds("/proc/self/stat").ok();
        let all = procfs::cpus_busy_seconds(&watched).ok();
        match m {
            Mark::MeasureStart => {
                server_cpu.0 = server;
                client_cpu.0 = client;
                busy.0 = all;
            }
            Mark::MeasureEnd => {
                server_cpu.1 = server;
                client_cpu.1 = client;
                busy.1 = all;
            }
        }
    })?;

    let secs = result.measured.as_secs_f64();
    let percent = |(a, b): (Option<f64>, Option<f64>)| match (a, b) {
        (Some(a), Some(b)) if secs > 0.0 => Some((b - a) / secs * 100.0),
        _ => None,
    };
    let server_cpu = percent(server_cpu);
    let client_cpu = percent(client_cpu);
    // Busy time of the pinned CPUs not spent in the server or the load generator (interrupts
    // and softirqs not charged to them are in here too, so a few % is normal).
    let other_cpu =
        percent(busy).map(|b| (b - server_cpu.unwrap_or(0.0) - client_cpu.unwrap_or(0.0)).max(0.0));
    let server_rss = own.as_ref().and_then(|s| s.rss_bytes().ok());
    let server_log = match own {
        Some(s) => Some(s.stop().context("stopping the server")?.log),
        None => None,
    };

    let report = report::Report::new(
        cli.scenario,
        &cfg,
        &result,
        server_cpu,
        client_cpu,
        other_cpu,
        server_rss,
    );
    println!("{}", report.table());
    if let Some(other) = other_cpu.filter(|&o| o > OTHER_CPU_WARNING) {
        eprintln!(
            "[bench] warning: the pinned CPUs ({}) were {other:.0} % of a core busy with other \
             work than the server and the load generator: the numbers are disturbed",
            watched
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        eprintln!("[bench] results written to {}", path.display());
    }
    if let Some(log) = server_log.filter(|l| !l.trim().is_empty()) {
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "[bench] the server logged {} line(s) (level warn):",
            lines.len()
        );
        for l in lines.iter().take(20) {
            eprintln!("  {l}");
        }
        if lines.len() > 20 {
            eprintln!("  ...");
        }
    }
    if result.wrong > 0 {
        eprintln!("[bench] FAILED: {} wrong replies:", result.wrong);
        for (reason, n) in &result.wrong_reasons {
            eprintln!("  {n:>8}  {reason}");
        }
        return Ok(false);
    }
    if result.ok == 0 {
        eprintln!("[bench] FAILED: no correct reply in the measured interval");
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2-4,3").unwrap(), vec![0, 2, 3, 4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
