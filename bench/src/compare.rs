//! `--compare freeradius`: the same scenario against Portcullis and against FreeRADIUS 3, in
//! one run, alternating (P, F, P, F, ... for `--rounds` rounds), both servers pinned to the same
//! `--server-cpu`, the load generator to `--client-cpu`, and the ratio printed.
//!
//! Both servers are started before the first round and run side by side for the whole
//! comparison (the one not under load is idle), so each round meets the same machine state.
//! Throughput ratio = median Portcullis req/s / median FreeRADIUS req/s over the rounds; per core =
//! the same with each rate divided by the server's CPU use (both are pinned to one core, so
//! this only differs when one of them did not use its core fully). Closed loop by default
//! (saturation throughput); with `--rate N` both get the same open-loop rate and the latencies
//! are what to compare, each run followed by the machine stall probe ([`crate::stall`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use portcullis_proto::SharedSecret;
use serde::Serialize;

use crate::freeradius::FreeRadius;
use crate::load::LoadConfig;
use crate::report::Report;
use crate::request::{Expect, Users};
use crate::runner::{self, Target};
use crate::server::OwnServer;
use crate::stall;
use crate::{parse_cpu_list, plot, portcullis_bin, udp, Cli, Scenario};
use crate::{OWN_SECRET, TIMEOUT, WARMUP};

/// How often a round disturbed by other processes is run again.
const MAX_RETRIES: u32 = 5;
/// Before each round, the longest wait for the pinned CPUs to be free of other work.
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The ratio targets of the benchmark issue, by scenario.
fn target_ratio(scenario: Scenario) -> Option<f64> {
    match scenario {
        Scenario::Pap => Some(5.0),
        Scenario::Accounting => Some(3.0),
        _ => None,
    }
}

#[derive(Debug, Serialize)]
pub struct Side {
    pub server: &'static str,
    /// Medians over the rounds (a round disturbed by other work on the machine moves a mean,
    /// not a median of three or more).
    pub median_requests_per_s: f64,
    pub median_server_cpu_percent: Option<f64>,
    /// Requests per second per fully used core (median req/s ÷ median server CPU share).
    pub requests_per_core_s: Option<f64>,
    pub worst_p99_us: u64,
    pub lost: u64,
    pub wrong: u64,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub scenario: Scenario,
    pub rounds: u32,
    pub freeradius_threads: u32,
    pub runs: Vec<Report>,
    pub portcullis: Side,
    pub freeradius: Side,
    /// Portcullis ÷ FreeRADIUS throughput.
    pub ratio: f64,
    /// The same per fully used core.
    pub ratio_per_core: Option<f64>,
    pub target_ratio: Option<f64>,
    pub note: String,
    /// Accounting: records acknowledged vs found in each server's files after the runs.
    pub records: Option<Records>,
}

#[derive(Debug, Serialize)]
pub struct Records {
    pub portcullis_acknowledged: u64,
    pub portcullis_on_disk: u64,
    pub freeradius_acknowledged: u64,
    pub freeradius_in_detail_file: u64,
}

/// Lines (records) of the JSON-lines files in `dir`.
fn jsonl_records(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            n += text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        }
    }
    Ok(n)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn side(server: &'static str, runs: &[&Report]) -> Side {
    let rps = median(runs.iter().map(|r| r.requests_per_s).collect()).unwrap_or(0.0);
    let cpu = runs
        .iter()
        .map(|r| r.server_cpu_percent)
        .collect::<Option<Vec<f64>>>()
        .and_then(median);
    Side {
        server,
        median_requests_per_s: rps,
        median_server_cpu_percent: cpu,
        requests_per_core_s: cpu.filter(|&c| c > 1.0).map(|c| rps / (c / 100.0)),
        worst_p99_us: runs.iter().map(|r| r.latency_us.p99).max().unwrap_or(0),
        lost: runs.iter().map(|r| r.lost).sum(),
        wrong: runs.iter().map(|r| r.wrong).sum(),
    }
}

fn note(scenario: Scenario) -> String {
    let mut n = String::from(
        "Same users (Portcullis's {SSHA512} hashes as SSHA2-512-Password, NT hashes as \
         NT-Password), same client and secret, Message-Authenticator required by both and added \
         to every reply by both; logging off, no debug; both pinned to the same CPU.",
    );
    if scenario == Scenario::Accounting {
        n.push_str(
            " Accounting: Portcullis answers once the record is durable (its journal entry \
             synced; the JSON-lines file at each checkpoint); \
             FreeRADIUS's detail module writes without fsync, so its acknowledged records can \
             be lost on a crash or power cut: the ratio compares unequal guarantees, in \
             FreeRADIUS's favour.",
        );
    }
    if scenario == Scenario::Chap {
        n.push_str(
            " CHAP: FreeRADIUS reads the password as Cleartext-Password; Portcullis decrypts \
             its reversibly encrypted copy.",
        );
    }
    n
}

/// Runs the comparison; `Ok(false)` when a run found wrong replies or none at all.
pub fn run(cli: &Cli, rate: Option<f64>, plot_path: Option<&Path>) -> Result<bool> {
    if cli.server.is_some() {
        bail!("--compare starts both servers itself: --server is not supported");
    }
    if matches!(cli.scenario, Scenario::Flood) {
        bail!("--compare does not apply to --scenario flood");
    }
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    let server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
    if client_cpus.iter().any(|c| server_cpus.contains(c)) {
        eprintln!("[bench] warning: --client-cpu and --server-cpu overlap");
    }
    let mut watched = client_cpus.clone();
    watched.extend(&server_cpus);
    watched.sort_unstable();
    watched.dedup();
    let users = Users::new(cli.users);
    let secret = SharedSecret::new(OWN_SECRET.as_bytes()).context("the shared secret")?;

    let bin = portcullis_bin()?;
    eprintln!(
        "[bench] starting Portcullis ({}) and FreeRADIUS on CPU {}",
        bin.display(),
        cli.server_cpu
    );
    let pc = OwnServer::start_with(
        &bin,
        &cli.server_cpu,
        server_cpus.len(),
        cli.users,
        OWN_SECRET,
        &cli.server_opts(),
    )?;
    let fr = FreeRadius::start(
        &cli.server_cpu,
        &users,
        &pc.users_text,
        cli.scenario,
        OWN_SECRET,
        cli.freeradius_threads,
    )?;
    udp::pin_current_thread(&client_cpus)
        .with_context(|| format!("cannot pin the load generator to CPU {}", cli.client_cpu))?;
    let pick = |auth, acct| match cli.scenario {
        Scenario::Accounting => acct,
        _ => auth,
    };
    let targets = [
        ("portcullis", pc.pid(), pick(pc.auth, pc.acct), false),
        ("freeradius", fr.pid(), pick(fr.auth, fr.acct), true),
    ];
    eprintln!(
        "[bench] {} Portcullis vs FreeRADIUS ({}): {} round(s) of {} s (+{} s warm-up) each, {}",
        cli.scenario.name(),
        match cli.freeradius_threads {
            0 => "no thread pool".to_owned(),
            n => format!("{n} worker thread(s)"),
        },
        cli.rounds,
        cli.duration,
        WARMUP.as_secs(),
        match rate {
            Some(r) => format!("open loop at {r:.0} requests/s"),
            None => format!("closed loop, window {}", cli.window),
        }
    );
    let mut runs = Vec::new();
    let mut acknowledged: std::collections::BTreeMap<&str, u64> = Default::default();
    for round in 1..=cli.rounds {
        for &(name, pid, target, ma_anywhere) in &targets {
            let cfg = LoadConfig {
                target,
                window: cli.window as usize,
                sockets: cli.sockets as usize,
                warmup: WARMUP,
                duration: std::time::Duration::from_secs(cli.duration),
                timeout: TIMEOUT,
                rate,
                label: format!("{name} #{round}"),
                spin: cli.spin,
            };
            let t = Target {
                server: name,
                pid: Some(pid),
                ma_anywhere,
                status_expect: Expect::Accept,
                server_cpus: &server_cpus,
                watched: &watched,
                helper_threads: &[],
            };
            // A round disturbed by other processes on the pinned CPUs is run again (bounded):
            // the machine may be shared, and a ratio of one clean and one disturbed run says
            // nothing.
            runner::wait_quiet(&watched, QUIET_WAIT);
            crate::check_interrupted()?;
            let mut attempt = 0;
            let mut r = loop {
                attempt += 1;
                let r = runner::measure(&cfg, cli.scenario, &secret, &users, &t)?;
                // Every attempt's records reached the server, kept or not.
                *acknowledged.entry(name).or_default() += r.ok_total;
                let disturbed = r.other_cpu_percent.unwrap_or(0.0) > crate::OTHER_CPU_WARNING;
                if !disturbed || attempt > MAX_RETRIES {
                    break r;
                }
                eprintln!(
                    "[bench] round {round} {name}: other processes used {:.0} % of a core on the \
                     pinned CPUs; running it again ({attempt}/{MAX_RETRIES})",
                    r.other_cpu_percent.unwrap_or(0.0)
                );
                runner::wait_quiet(&watched, QUIET_WAIT);
            };
            if let Some(d) = cli.stall_probe().filter(|_| rate.is_some()) {
                r.machine_stalls = stall::after_run(&server_cpus, &client_cpus, d);
                crate::check_interrupted()?;
            }
            eprintln!(
                "[bench] round {round} {name:<10} {:>8.0} req/s  p50 {:>6} µs  p99 {:>6} µs  \
                 server CPU {:>5.1} %  lost {}  wrong {}  other work {:.0} %{}",
                r.requests_per_s,
                r.latency_us.p50,
                r.latency_us.p99,
                r.server_cpu_percent.unwrap_or(f64::NAN),
                r.lost,
                r.wrong,
                r.other_cpu_percent.unwrap_or(f64::NAN),
                if r.other_cpu_percent.unwrap_or(0.0) > crate::OTHER_CPU_WARNING {
                    "  (DISTURBED by other processes)"
                } else {
                    ""
                }
            );
            runs.push(r);
        }
    }
    let problems = fr.problems();
    let records = if cli.scenario == Scenario::Accounting {
        let acked = |name: &str| acknowledged.get(name).copied().unwrap_or(0);
        Some(Records {
            portcullis_acknowledged: acked("portcullis"),
            portcullis_on_disk: jsonl_records(&pc.data_dir().join("accounting"))?,
            freeradius_acknowledged: acked("freeradius"),
            freeradius_in_detail_file: fr.detail_records()?,
        })
    } else {
        None
    };
    fr.stop().context("stopping FreeRADIUS")?;
    let pc_log = pc.stop().context("stopping Portcullis")?.log;

    let of = |name: &str| runs.iter().filter(|r| r.server == name).collect::<Vec<_>>();
    let p = side("portcullis", &of("portcullis"));
    let f = side("freeradius", &of("freeradius"));
    let ratio = if f.median_requests_per_s > 0.0 {
        p.median_requests_per_s / f.median_requests_per_s
    } else {
        0.0
    };
    let ratio_per_core = match (p.requests_per_core_s, f.requests_per_core_s) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let cmp = Comparison {
        scenario: cli.scenario,
        rounds: cli.rounds,
        freeradius_threads: cli.freeradius_threads,
        portcullis: p,
        freeradius: f,
        ratio,
        ratio_per_core,
        target_ratio: if rate.is_none() {
            target_ratio(cli.scenario)
        } else {
            None
        },
        note: note(cli.scenario),
        records,
        runs,
    };

    for r in &cmp.runs {
        println!("{}\n", r.table());
    }
    let per_core = |s: &Side| {
        s.requests_per_core_s
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
    };
    println!(
        "{} over {} round(s), medians: Portcullis {:.0} req/s ({} per core, worst p99 {} µs), FreeRADIUS \
         {:.0} req/s ({} per core, worst p99 {} µs)",
        cli.scenario.name(),
        cli.rounds,
        cmp.portcullis.median_requests_per_s,
        per_core(&cmp.portcullis),
        cmp.portcullis.worst_p99_us,
        cmp.freeradius.median_requests_per_s,
        per_core(&cmp.freeradius),
        cmp.freeradius.worst_p99_us,
    );
    println!(
        "ratio Portcullis / FreeRADIUS: {:.2}x throughput{}{}",
        cmp.ratio,
        cmp.ratio_per_core
            .map_or_else(String::new, |r| format!(", {r:.2}x per core")),
        match cmp.target_ratio {
            Some(t) => format!(
                " (target >= {t}x: {})",
                if cmp.ratio >= t && cmp.ratio_per_core.unwrap_or(cmp.ratio) >= t {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            None => String::new(),
        }
    );
    println!("({})", cmp.note);
    if let Some(r) = &cmp.records {
        println!(
            "accounting records: Portcullis acknowledged {} and has {} in its files (each \
             durable, its journal entry synced, before its Accounting-Response); FreeRADIUS \
             acknowledged {} and has {} in its detail file (written, never fsynced)",
            r.portcullis_acknowledged,
            r.portcullis_on_disk,
            r.freeradius_acknowledged,
            r.freeradius_in_detail_file
        );
    }
    if !problems.is_empty() {
        eprintln!(
            "[bench] FreeRADIUS logged {} problem line(s):",
            problems.len()
        );
        for l in problems.iter().take(10) {
            eprintln!("  {l}");
        }
    }
    if !pc_log.trim().is_empty() {
        eprintln!("[bench] Portcullis logged (level warn):");
        for l in pc_log.lines().take(10) {
            eprintln!("  {l}");
        }
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&cmp).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("[bench] results written to {}", path.display());
    }
    if let Some(path) = plot_path {
        let series: Vec<plot::Series<'_>> = cmp
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| plot::Series {
                label: format!("{} #{}", r.server, i / 2 + 1),
                report: r,
            })
            .collect();
        plot::write(
            path,
            &format!(
                "{}: Portcullis vs FreeRADIUS, {} (ratio {:.2}x)",
                cli.scenario.name(),
                cmp.runs.first().map(Report::mode_text).unwrap_or_default(),
                cmp.ratio
            ),
            &series,
        )?;
        eprintln!("[bench] plot written to {}", path.display());
    }
    let mut ok = true;
    if let Some(r) = cmp
        .records
        .as_ref()
        .filter(|r| r.portcullis_on_disk < r.portcullis_acknowledged)
    {
        eprintln!(
            "[bench] FAILED: Portcullis acknowledged {} accounting records but its files hold {}",
            r.portcullis_acknowledged, r.portcullis_on_disk
        );
        ok = false;
    }
    for r in &cmp.runs {
        if r.wrong > 0 {
            eprintln!(
                "[bench] FAILED: {} wrong replies from {}: {:?}",
                r.wrong, r.server, r.wrong_reasons
            );
            ok = false;
        }
        if r.ok == 0 {
            eprintln!("[bench] FAILED: no correct reply from {}", r.server);
            ok = false;
        }
    }
    Ok(ok)
}
