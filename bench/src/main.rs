//! # portcullis-bench: a RADIUS load generator
//!
//! Closed loop (default): keeps `--window` requests outstanding over `--sockets` UDP sockets
//! for `--duration` seconds (after a one-second warm-up). Open loop (`--rate N`): sends N
//! requests per second on a fixed schedule and measures latency from each request's due time,
//! so that a server (or client) stall shows up in the latencies instead of being hidden
//! (coordinated omission); `--rate 50%` first measures the saturation rate with the closed
//! loop, then runs the open loop at that share of it. Every reply is checked (identifier,
//! Response Authenticator, Message-Authenticator, expected code, MS-CHAP2-Success) and the run
//! reports throughput, p50/p99/p99.9/max latency, lost, late and wrong replies, and the
//! server's CPU and memory: a table on stdout, `--json FILE`, `--plot FILE.svg`, and a progress
//! bar on a terminal. After an open-loop run against a server of its own, it spins a thread
//! on each pinned CPU for a few seconds and reports the gaps in the machine's availability
//! next to the latencies (see [`stall`]).
//!
//! `--compare freeradius` runs the same scenario against Portcullis and a FreeRADIUS 3 the
//! bench configures itself, alternating, and prints the ratio (see [`compare`]).
//!
//! By default it starts its own Portcullis (`$PORTCULLIS_BIN`, as `cargo xtask bench` sets it)
//! on free loopback ports with `--users` generated users, pinned to `--server-cpu`, and pins
//! itself to `--client-cpu`. With `--server ADDR:PORT --secret S` it loads a server that is
//! already running instead; that server must know the users `user0000`... with the passwords
//! of [`request::password`] (`Bench#0000pw`, ...).
//!
//! What it does not do (yet): EAP.
//!
//! Exit status: non-zero on any wrong reply (a wrong answer is a bug, not a statistic), on a
//! server that does not stop cleanly, and on errors.

mod compare;
mod ethtool;
mod flood;
mod freeradius;
mod load;
mod mfa;
mod plot;
mod procfs;
mod progress;
mod report;
mod request;
mod runner;
mod server;
mod stall;
mod udp;
mod xdp_gen;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use portcullis_proto::SharedSecret;

use crate::load::LoadConfig;
use crate::request::{Expect, Users};
use crate::runner::Target;
use crate::server::OwnServer;

/// Per-request timeout: an answer later than this counts as lost (and, if it comes, late).
const TIMEOUT: Duration = Duration::from_secs(2);
/// Warm-up before the measured interval.
const WARMUP: Duration = Duration::from_secs(1);
/// Other work on the pinned CPUs (% of one core) above which the results are flagged.
const OTHER_CPU_WARNING: f64 = 15.0;
/// Before a measured run, the longest wait for the pinned CPUs to be free of other work.
const QUIET_WAIT: Duration = Duration::from_secs(60);
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
    /// A million push logins pending at once (Duo stand-in): memory per pending login, and
    /// PAP throughput with the pending table empty and full.
    Mfa,
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
            Scenario::Mfa => "mfa",
        }
    }
}

/// RADIUS load generator for Portcullis (closed or open loop, optionally side by side with
/// FreeRADIUS).
#[derive(Debug, Parser)]
#[command(name = "portcullis-bench", version)]
struct Cli {
    /// `--scenario mfa`: push logins to hold pending at once.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=5_000_000))]
    mfa_logins: u32,
    /// `--scenario mfa`: logins sent per second while filling the pending table.
    #[arg(long, default_value_t = 12_000, value_parser = clap::value_parser!(u32).range(100..=200_000))]
    mfa_fill_rate: u32,
    /// `--scenario mfa`: the server's `mfa.max_status_polls_per_second_per_shard`.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    mfa_polls_per_second: u32,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Scenario::Pap)]
    scenario: Scenario,
    /// Measured seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    duration: u64,
    /// Closed loop: requests outstanding at any time (at most 256 per socket).
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
    /// Open loop: requests per second on a fixed schedule (`80000`), or a share of the
    /// saturation rate measured first with the closed loop (`50%`). Default: closed loop.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// The load generator never sleeps (polls its sockets without a timeout), so that the
    /// server does not pay loopback's wake-up of a sleeping client for every reply.
    #[arg(long)]
    spin: bool,
    /// Open loop against the bench's own server: after the run, spin a thread on each pinned
    /// CPU for this many seconds and report the gaps in the CPUs' availability under the table
    /// (default: the run's duration, at most 5 s; 0: no probe).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=300))]
    stall_probe: Option<u64>,
    /// The bench's own Portcullis: `[accounting] journal_mib` (default: the server's own, 64;
    /// 0 syncs each day's file after every batch instead), for comparing the two.
    #[arg(long, value_name = "MIB")]
    journal_mib: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also draw the latency plot (percentile curve, p99 and throughput over time) as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run the same scenario against this server too, alternating, and print the ratio.
    #[arg(long, value_enum)]
    compare: Option<Compare>,
    /// `--compare`: rounds (each runs Portcullis, then the other server); the medians are
    /// compared.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// `--compare freeradius`: worker threads of FreeRADIUS's pool (fixed size); 0: no pool,
    /// the receiving thread answers (`freeradius -t`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    freeradius_threads: u32,
    /// `--scenario flood`: CPUs of the flood thread (default: the --client-cpu list, shared
    /// with the load generator).
    #[arg(long)]
    flood_cpu: Option<String>,
    /// `--scenario flood`: the link to the server: `veth`, a veth pair between two network
    /// namespaces with XDP in native (driver) mode on the server's end; `lo`, one namespace's
    /// loopback with XDP in generic (skb) mode, after the kernel built an skb for every
    /// datagram.
    #[arg(long, value_enum, default_value_t = flood::FloodLink::Veth)]
    flood_link: flood::FloodLink,
    /// `--scenario flood`: where the kernel's receive processing runs: `sender` (the default)
    /// leaves it on the sending CPU (the kernel's default), as when the NIC's receive queues
    /// interrupt cores that run no worker shard, the deployment the README recommends;
    /// `server` puts it on the server's CPU, as on a one-core appliance whose NIC interrupts
    /// land on its only core (veth: its NAPI thread, XDP included, pinned there at
    /// interrupt-thread priority, and RPS for what arrives without XDP; lo: RPS, generic XDP
    /// included).
    #[arg(long, value_enum, default_value_t = flood::RxCpu::Sender)]
    flood_rx: flood::RxCpu,
    /// `--scenario flood`: how the flood is sent: `xdp` (the default on `veth`), whole
    /// Ethernet frames redirected into the client's end of the veth pair by an XDP program
    /// the bench runs with `BPF_PROG_TEST_RUN` live frames, as a NIC hands frames to XDP;
    /// `socket` (the default and the only choice on `lo`), UDP sockets and `sendmmsg`, an
    /// skb built for every datagram.
    #[arg(long, value_enum)]
    flood_gen: Option<flood::FloodGen>,
    /// `--scenario flood`: the most forged packets one run sends.
    #[arg(long, default_value_t = 500_000_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000_000))]
    flood_max: u64,
}

impl Cli {
    /// What the bench's own Portcullis is started with, from the options.
    fn server_opts(&self) -> server::ServerOpts {
        let mut o = server::ServerOpts::default();
        if let Some(mib) = self.journal_mib {
            o.extra = format!("[accounting]\njournal_mib = {mib}\n");
        }
        o
    }

    /// How long to probe the machine's stalls after an open-loop run (`--stall-probe`).
    fn stall_probe(&self) -> Option<Duration> {
        let secs = self
            .stall_probe
            .unwrap_or(self.duration.min(stall::DEFAULT_MAX.as_secs()));
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}

/// The other server of `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// FreeRADIUS 3 from Debian, configured by the bench.
    Freeradius,
}

/// `--rate`: a fixed rate or a share of the measured saturation rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    OfSaturation(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("`{text}`: a rate (`80000`) or a share of saturation (`50%`)");
    match text.strip_suffix('%') {
        Some(p) => {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 200.0) {
                return Err(bad());
            }
            Ok(Rate::OfSaturation(p / 100.0))
        }
        None => {
            let r: f64 = text.trim().parse().map_err(|_| bad())?;
            if !(1.0..=10_000_000.0).contains(&r) {
                return Err(bad());
            }
            Ok(Rate::PerSecond(r))
        }
    }
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

/// Set by SIGINT / SIGTERM: the load loop stops, and the servers, temporary directories and
/// network namespaces of the run are cleaned up by their guards on the way out.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Fails when the run was interrupted.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
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
    if cli.scenario == Scenario::Mfa {
        return mfa::run(cli);
    }
    if cli.window > cli.sockets * 256 {
        bail!(
            "--window {} needs at least {} sockets (256 identifiers each)",
            cli.window,
            cli.window.div_ceil(256)
        );
    }
    if let Some(Compare::Freeradius) = cli.compare {
        let rate = match cli.rate {
            None => None,
            Some(Rate::PerSecond(r)) => Some(r),
            Some(Rate::OfSaturation(_)) => {
                bail!("--compare takes a fixed --rate (requests/s), not a share of saturation")
            }
        };
        return compare::run(cli, rate, cli.plot.as_deref());
    }
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    let users = Users::new(cli.users);

    // The CPUs whose busy time is watched for other processes disturbing the run.
    let mut watched = client_cpus.clone();
    let mut server_cpus = Vec::new();
    let (own, target, secret_text, status_expect) = match (&cli.server, &cli.secret) {
        (Some(addr), Some(secret)) => (None, *addr, secret.clone(), Expect::StatusAny),
        _ => {
            server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
            watched.extend(&server_cpus);
            let bin = portcullis_bin()?;
            eprintln!(
                "[bench] starting {} on CPU {} ({} shard(s))",
                bin.display(),
                cli.server_cpu,
                server_cpus.len()
            );
            let s = OwnServer::start_with(
                &bin,
                &cli.server_cpu,
                server_cpus.len(),
                cli.users,
                OWN_SECRET,
                &cli.server_opts(),
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
    watched.sort_unstable();
    watched.dedup();
    let server_name = if own.is_some() {
        "portcullis"
    } else {
        "external"
    };
    let t = Target {
        server: server_name,
        pid: own.as_ref().map(OwnServer::pid),
        ma_anywhere: false,
        status_expect,
        server_cpus: &server_cpus,
        watched: &watched,
        helper_threads: &[],
    };
    let cfg = |rate: Option<f64>, label: &str| LoadConfig {
        target,
        window: cli.window as usize,
        sockets: cli.sockets as usize,
        warmup: WARMUP,
        duration: Duration::from_secs(cli.duration),
        timeout: TIMEOUT,
        rate,
        label: label.to_owned(),
        spin: cli.spin,
    };
    let describe = |c: &LoadConfig| {
        eprintln!(
            "[bench] {} against {target}: {}, {} sockets, {} users, {} s (+{} s warm-up)",
            cli.scenario.name(),
            match c.rate {
                Some(r) => format!("open loop at {r:.0} requests/s"),
                None => format!("closed loop, window {}", c.window),
            },
            cli.sockets,
            cli.users,
            cli.duration,
            WARMUP.as_secs()
        );
    };
    let mut reports = Vec::new();
    let open_rate = match cli.rate {
        None => None,
        Some(Rate::PerSecond(r)) => Some(r),
        Some(Rate::OfSaturation(share)) => {
            let c = cfg(None, "saturation");
            describe(&c);
            runner::wait_quiet(&watched, QUIET_WAIT);
            let sat = runner::measure(&c, cli.scenario, &secret, &users, &t)?;
            println!("{}\n", sat.table());
            let rate = (sat.requests_per_s * share).round().max(1.0);
            eprintln!(
                "[bench] saturation {:.0} req/s; open loop at {:.0} % of it: {rate:.0} req/s",
                sat.requests_per_s,
                share * 100.0
            );
            reports.push(sat);
            Some(rate)
        }
    };
    let label = if open_rate.is_some() {
        "open loop"
    } else {
        "closed loop"
    };
    let c = cfg(open_rate, label);
    describe(&c);
    runner::wait_quiet(&watched, QUIET_WAIT);
    let mut last = runner::measure(&c, cli.scenario, &secret, &users, &t)?;
    // The server's CPUs are known only for a server of our own.
    if let Some(d) = cli
        .stall_probe()
        .filter(|_| own.is_some() && open_rate.is_some())
    {
        last.machine_stalls = stall::after_run(&server_cpus, &client_cpus, d);
        check_interrupted()?;
    }
    reports.push(last);
    let server_log = match own {
        Some(s) => Some(s.stop().context("stopping the server")?.log),
        None => None,
    };

    let report = reports.last().context("no run")?;
    println!("{}", report.table());
    for r in &reports {
        if let Some(other) = r.other_cpu_percent.filter(|&o| o > OTHER_CPU_WARNING) {
            eprintln!(
                "[bench] warning: the pinned CPUs ({}) were {other:.0} % of a core busy with \
                 other work than the server and the load generator ({} run): the numbers are \
                 disturbed",
                watched
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                r.mode_text()
            );
        }
    }
    if let Some(path) = &cli.json {
        // One run: its report; a saturation run and the open loop after it: both, in order.
        if reports.len() == 1 {
            report.write_json(path)?;
        } else {
            let text =
                serde_json::to_string_pretty(&reports).context("cannot encode the results")?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!("[bench] results written to {}", path.display());
    }
    if let Some(path) = &cli.plot {
        let series: Vec<plot::Series<'_>> = reports
            .iter()
            .map(|r| plot::Series {
                label: format!("{} {}", r.server, r.mode_text()),
                report: r,
            })
            .collect();
        plot::write(
            path,
            &format!("{} against {}", cli.scenario.name(), server_name),
            &series,
        )?;
        eprintln!("[bench] plot written to {}", path.display());
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
    let mut ok = true;
    for r in &reports {
        if r.wrong > 0 {
            let mode = r.mode_text();
            eprintln!("[bench] FAILED: {} wrong replies ({mode}):", r.wrong);
            for (reason, n) in &r.wrong_reasons {
                eprintln!("  {n:>8}  {reason}");
            }
            ok = false;
        }
        if r.ok == 0 {
            eprintln!(
                "[bench] FAILED: no correct reply in the measured interval ({})",
                r.mode_text()
            );
            ok = false;
        }
    }
    Ok(ok)
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
    fn rates() {
        assert_eq!(parse_rate("80000"), Ok(Rate::PerSecond(80000.0)));
        assert_eq!(parse_rate("50%"), Ok(Rate::OfSaturation(0.5)));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("0%").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
