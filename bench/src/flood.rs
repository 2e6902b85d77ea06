//! `--scenario flood`: legitimate PAP load while a flood of forged packets hits the server,
//! with the XDP pre-filter on and off.
//!
//! Everything happens inside a network namespace the bench creates (`pc-bench-<pid>`, with
//! `lo` up and a second loopback address 127.1.0.1 as the unknown source) and deletes at the
//! end, also on errors (a guard; a SIGKILL leaves it behind, and the next run with the same pid
//! removes it). The bench enters the namespace with `setns(2)` before it opens any socket, and
//! starts each server there with `ip netns exec`, so no packet leaves the namespace.
//!
//! Three runs, each with a fresh server (one shard, pinned to --server-cpu), whose only client
//! is 127.0.0.1/32 with Message-Authenticator required:
//! (a) PAP alone, XDP on (`mode = "generic"` on `lo`, `required = true`);
//! (b) PAP and the flood, XDP on;
//! (c) PAP and the flood, XDP off.
//!
//! The flood is one thread (pinned to --flood-cpu, by default the load generator's CPU) that
//! sends, with `sendmmsg` batches and as fast as it can, alternately a batch of correctly
//! signed Access-Requests from the unknown source 127.1.0.1 and a batch of Access-Requests
//! from the known source signed with the wrong secret (bad Message-Authenticator). It runs
//! through the warm-up and the measured interval and stops at the end of the measured interval,
//! at its deadline or after --flood-max packets, whichever comes first.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use portcullis_proto::SharedSecret;
use serde::Serialize;

use crate::load::{self, LoadConfig, Mark};
use crate::report::Report;
use crate::request::{Expect, Generator, Users};
use crate::server::{OwnServer, ServerOpts};
use crate::{parse_cpu_list, portcullis_bin, procfs, udp, Cli, Scenario};
use crate::{OWN_SECRET, TIMEOUT, WARMUP};

/// Longest measured interval of one flood run, seconds.
const MAX_DURATION: u64 = 60;
/// The unknown source, a second loopback address inside the namespace.
const UNKNOWN_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// The secret the bad-Message-Authenticator packets are signed with.
const FORGED_SECRET: &str = "not-the-portcullis-bench-secret";
/// Datagrams per flood `sendmmsg`.
const FLOOD_BATCH: usize = 64;
/// The counters read from the control socket at the end of each run.
const COUNTERS: [&str; 5] = [
    "xdp.lo.drop_unknown_client_v4",
    "xdp.lo.drop_bad_ma",
    "xdp.lo.pass_ma_verified",
    "drop.unknown_client",
    "drop.bad_message_authenticator",
];
/// The throughput ratio (flood, XDP on) / (no flood) the XDP issue asks for.
const TARGET_RATIO: f64 = 0.9;

/// A network namespace of our own, deleted when dropped.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !st.success() {
        bail!("ip {} failed ({st})", args.join(" "));
    }
    Ok(())
}

impl Netns {
    fn create() -> Result<Self> {
        let name = format!("pc-bench-{}", std::process::id());
        // A leftover of a killed run with the same pid, if any.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&["ip", "addr", "add", "127.1.0.1/32", "dev", "lo"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread (and the threads and processes it starts later) into the
    /// namespace.
    fn enter(&self) -> Result<()> {
        let path = Path::new("/run/netns").join(&self.name);
        let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: setns(2) on an open namespace file descriptor; it only changes the calling
        // thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns into {} failed: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .status()
        {
            Ok(st) if st.success() => eprintln!("[bench] network namespace {} deleted", self.name),
            _ => eprintln!(
                "[bench] warning: could not delete network namespace {} (ip netns del {0})",
                self.name
            ),
        }
    }
}

/// Flood packets sent so far, shared with the flood thread.
#[derive(Default)]
struct FloodCounts {
    unknown: AtomicU64,
    bad_ma: AtomicU64,
    errors: AtomicU64,
}

impl FloodCounts {
    fn total(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed) + self.bad_ma.load(Ordering::Relaxed)
    }
}

/// `count` Access-Requests with distinct identifiers, signed with `secret`.
fn build_packets(secret: &SharedSecret, users: &Users, count: usize) -> Result<Vec<Vec<u8>>> {
    let mut g = Generator::new(Scenario::Pap, secret, users, Expect::Accept);
    (0..count)
        .map(|i| {
            let mut buf = Vec::with_capacity(128);
            g.build(i as u8, &mut buf)?;
            Ok(buf)
        })
        .collect()
}

fn flood_socket(source: Ipv4Addr, target: SocketAddr) -> Result<UdpSocket> {
    let s = UdpSocket::bind((source, 0))
        .with_context(|| format!("cannot bind a flood socket to {source}"))?;
    s.connect(target)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The flood loop (runs on its own thread).
#[allow(clippy::too_many_arguments)]
fn flood(
    unknown: &UdpSocket,
    forged: &UdpSocket,
    unknown_pkts: &[Vec<u8>],
    forged_pkts: &[Vec<u8>],
    stop: &AtomicBool,
    deadline: Instant,
    max: u64,
    counts: &FloodCounts,
) -> Result<()> {
    let mut total = 0u64;
    let mut turn = false;
    while !stop.load(Ordering::Relaxed) && total < max && Instant::now() < deadline {
        turn = !turn;
        let take = (max - total).min(FLOOD_BATCH as u64) as usize;
        let (sock, pkts, counter) = if turn {
            (unknown, unknown_pkts, &counts.unknown)
        } else {
            (forged, forged_pkts, &counts.bad_ma)
        };
        match udp::send_batch(sock.as_raw_fd(), &pkts[..take]) {
            Ok(n) => {
                total += n as u64;
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED) | Some(libc::ENOBUFS)
                ) =>
            {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(e).context("flood sendmmsg failed"),
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct FloodRun {
    pub name: &'static str,
    pub xdp: bool,
    pub flood: bool,
    /// The legitimate PAP load.
    pub pap: Report,
    /// Flood packets sent in the measured interval, and per second.
    pub flood_sent: u64,
    pub flood_pps: f64,
    /// Flood packets sent in the whole run (warm-up included), by kind.
    pub flood_unknown_source_total: u64,
    pub flood_bad_ma_total: u64,
    /// `sendmmsg` calls of the flood that failed with ECONNREFUSED or ENOBUFS.
    pub flood_send_errors: u64,
    /// The server's counters at the end of the run (0 when absent).
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub duration_s: u64,
    pub server_cpu: String,
    pub client_cpu: String,
    pub flood_cpu: String,
    /// The flood thread shares a CPU with the load generator.
    pub flood_shares_client_cpu: bool,
    pub runs: Vec<FloodRun>,
    /// Legitimate throughput (b) / (a): flood with XDP on vs no flood.
    pub ratio_flood_xdp_on: f64,
    /// Legitimate throughput (c) / (a): flood with XDP off vs no flood.
    pub ratio_flood_xdp_off: f64,
    pub target_ratio: f64,
}

struct RunSpec {
    name: &'static str,
    xdp: bool,
    flood: bool,
}

struct Ctx<'a> {
    cli: &'a Cli,
    bin: &'a Path,
    ns: &'a Netns,
    users: &'a Users,
    secret: &'a SharedSecret,
    unknown_pkts: &'a [Vec<u8>],
    forged_pkts: &'a [Vec<u8>],
    client_cpus: &'a [usize],
    flood_cpus: &'a [usize],
    shards: usize,
}

fn one_run(ctx: &Ctx<'_>, spec: &RunSpec) -> Result<FloodRun> {
    let cli = ctx.cli;
    let xdp = if spec.xdp {
        "[xdp]\nmode = \"generic\"\ninterfaces = [\"lo\"]\nrequired = true\n"
    } else {
        "[xdp]\nmode = \"off\"\n"
    };
    eprintln!(
        "[bench] run {}: XDP {}, flood {}",
        spec.name,
        if spec.xdp { "on (generic, lo)" } else { "off" },
        if spec.flood { "on" } else { "off" }
    );
    let server = OwnServer::start_with(
        ctx.bin,
        &cli.server_cpu,
        ctx.shards,
        cli.users,
        OWN_SECRET,
        &ServerOpts {
            netns: Some(ctx.ns.name.clone()),
            client_address: "127.0.0.1/32".to_owned(),
            xdp: xdp.to_owned(),
        },
    )?;
    let active = server.stats()?.get("xdp.active").cloned();
    let want = if spec.xdp { "1" } else { "0" };
    if active.as_deref() != Some(want) {
        bail!("the server reports xdp.active {active:?}, expected {want}");
    }
    let target = server.auth;
    let cfg = LoadConfig {
        target,
        window: cli.window as usize,
        sockets: cli.sockets as usize,
        warmup: WARMUP,
        duration: Duration::from_secs(cli.duration),
        timeout: TIMEOUT,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let flooder = if spec.flood {
        let unknown = flood_socket(UNKNOWN_SOURCE, target)?;
        let forged = flood_socket(Ipv4Addr::LOCALHOST, target)?;
        let unknown_pkts = ctx.unknown_pkts.to_vec();
        let forged_pkts = ctx.forged_pkts.to_vec();
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        let cpus = ctx.flood_cpus.to_vec();
        let deadline = Instant::now() + WARMUP + cfg.duration + Duration::from_secs(1);
        let max = cli.flood_max;
        Some(
            thread::Builder::new()
                .name("flood".into())
                .spawn(move || -> Result<()> {
                    udp::pin_current_thread(&cpus).context("cannot pin the flood thread")?;
                    flood(
                        &unknown,
                        &forged,
                        &unknown_pkts,
                        &forged_pkts,
                        &stop,
                        deadline,
                        max,
                        &counts,
                    )
                })
                .context("cannot start the flood thread")?,
        )
    } else {
        None
    };

    let mut watched: Vec<usize> = ctx.client_cpus.to_vec();
    watched.extend(parse_cpu_list(&cli.server_cpu)?);
    watched.extend(ctx.flood_cpus);
    watched.sort_unstable();
    watched.dedup();
    let mut server_cpu = (None, None);
    let mut client_cpu = (None, None);
    let mut busy = (None, None);
    let mut flood_at = (0u64, 0u64);
    let mut generator = Generator::new(Scenario::Pap, ctx.secret, ctx.users, Expect::Accept);
    let result = load::run(&cfg, &mut generator, ctx.secret, ctx.users, |m| {
        let s = server.cpu_seconds().ok();
        let c = procfs::process_cpu_seconds("/proc/self/stat").ok();
        let all = procfs::cpus_busy_seconds(&watched).ok();
        match m {
            Mark::MeasureStart => {
                server_cpu.0 = s;
                client_cpu.0 = c;
                busy.0 = all;
                flood_at.0 = counts.total();
            }
            Mark::MeasureEnd => {
                server_cpu.1 = s;
                client_cpu.1 = c;
                busy.1 = all;
                flood_at.1 = counts.total();
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = flooder {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("the flood thread panicked"),
        }
    }
    let result = result?;
    // Let the last flood packets reach the counters.
    thread::sleep(Duration::from_millis(200));
    let stats = server.stats()?;
    let counters: BTreeMap<String, u64> = COUNTERS
        .iter()
        .map(|&k| {
            let v = stats.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            (k.to_owned(), v)
        })
        .collect();

    let secs = result.measured.as_secs_f64();
    let percent = |(a, b): (Option<f64>, Option<f64>)| match (a, b) {
        (Some(a), Some(b)) if secs > 0.0 => Some((b - a) / secs * 100.0),
        _ => None,
    };
    let server_cpu = percent(server_cpu);
    let client_cpu = percent(client_cpu);
    let other_cpu =
        percent(busy).map(|b| (b - server_cpu.unwrap_or(0.0) - client_cpu.unwrap_or(0.0)).max(0.0));
    let rss = server.rss_bytes().ok();
    let log = server.stop().context("stopping the server")?.log;
    if !log.trim().is_empty() {
        eprintln!("[bench] the server logged (level warn):");
        for l in log.lines().take(10) {
            eprintln!("  {l}");
        }
    }
    let pap = Report::new(
        Scenario::Pap,
        &cfg,
        &result,
        server_cpu,
        client_cpu,
        other_cpu,
        rss,
    );
    let flood_sent = flood_at.1.saturating_sub(flood_at.0);
    Ok(FloodRun {
        name: spec.name,
        xdp: spec.xdp,
        flood: spec.flood,
        pap,
        flood_sent,
        flood_pps: if secs > 0.0 {
            flood_sent as f64 / secs
        } else {
            0.0
        },
        flood_unknown_source_total: counts.unknown.load(Ordering::Relaxed),
        flood_bad_ma_total: counts.bad_ma.load(Ordering::Relaxed),
        flood_send_errors: counts.errors.load(Ordering::Relaxed),
        counters,
    })
}

fn table(runs: &[FloodRun]) -> String {
    let header = [
        "run",
        "XDP",
        "flood",
        "req/s",
        "p50 µs",
        "p99 µs",
        "lost",
        "wrong",
        "flood sent",
        "flood pps",
        "srv CPU %",
        "cli CPU %",
        "other %",
        "xdp unk",
        "xdp bad MA",
        "us unk",
        "us bad MA",
    ];
    let c = |r: &FloodRun, k: &str| r.counters.get(k).copied().unwrap_or(0).to_string();
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.name.to_owned(),
                if r.xdp { "on" } else { "off" }.to_owned(),
                if r.flood { "yes" } else { "no" }.to_owned(),
                format!("{:.0}", r.pap.requests_per_s),
                r.pap.latency_us.p50.to_string(),
                r.pap.latency_us.p99.to_string(),
                r.pap.lost.to_string(),
                r.pap.wrong.to_string(),
                r.flood_sent.to_string(),
                format!("{:.0}", r.flood_pps),
                opt(r.pap.server_cpu_percent),
                opt(r.pap.client_cpu_percent),
                opt(r.pap.other_cpu_percent),
                c(r, "xdp.lo.drop_unknown_client_v4"),
                c(r, "xdp.lo.drop_bad_ma"),
                c(r, "drop.unknown_client"),
                c(r, "drop.bad_message_authenticator"),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&header.map(str::to_owned));
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// Runs the three runs; `Ok(false)` when one found wrong replies or none at all.
pub fn run(cli: &Cli) -> Result<bool> {
    if cli.server.is_some() {
        bail!("--scenario flood starts its own servers: --server is not supported");
    }
    if cli.duration > MAX_DURATION {
        bail!("--scenario flood: --duration is at most {MAX_DURATION} s");
    }
    if cli.window > cli.sockets * 256 {
        bail!("--window {} needs more --sockets", cli.window);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("--scenario flood needs root (network namespace, XDP)");
    }
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    let server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
    let flood_cpu = cli
        .flood_cpu
        .clone()
        .unwrap_or_else(|| cli.client_cpu.clone());
    let flood_cpus = parse_cpu_list(&flood_cpu).context("--flood-cpu")?;
    let shares = flood_cpus.iter().any(|c| client_cpus.contains(c));
    let bin = portcullis_bin()?;
    let users = Users::new(cli.users);
    let secret = SharedSecret::new(OWN_SECRET.as_bytes()).context("the shared secret")?;
    let forged_secret = SharedSecret::new(FORGED_SECRET.as_bytes()).context("the forged secret")?;
    let unknown_pkts = build_packets(&secret, &users, FLOOD_BATCH)?;
    let forged_pkts = build_packets(&forged_secret, &users, FLOOD_BATCH)?;

    let ns = Netns::create()?;
    ns.enter()?;
    eprintln!(
        "[bench] flood scenario in network namespace {}: server on CPU {}, PAP load on CPU {}, \
         flood thread on CPU {}{}",
        ns.name,
        cli.server_cpu,
        cli.client_cpu,
        flood_cpu,
        if shares {
            " (shared with the PAP load generator)"
        } else {
            ""
        }
    );
    udp::pin_current_thread(&client_cpus)
        .with_context(|| format!("cannot pin the load generator to CPU {}", cli.client_cpu))?;
    let ctx = Ctx {
        cli,
        bin: &bin,
        ns: &ns,
        users: &users,
        secret: &secret,
        unknown_pkts: &unknown_pkts,
        forged_pkts: &forged_pkts,
        client_cpus: &client_cpus,
        flood_cpus: &flood_cpus,
        shards: server_cpus.len(),
    };
    let specs = [
        RunSpec {
            name: "a",
            xdp: true,
            flood: false,
        },
        RunSpec {
            name: "b",
            xdp: true,
            flood: true,
        },
        RunSpec {
            name: "c",
            xdp: false,
            flood: true,
        },
    ];
    let mut runs = Vec::with_capacity(specs.len());
    for spec in &specs {
        runs.push(one_run(&ctx, spec)?);
    }
    let base = runs[0].pap.requests_per_s;
    let ratio = |r: &FloodRun| {
        if base > 0.0 {
            r.pap.requests_per_s / base
        } else {
            0.0
        }
    };
    let report = FloodReport {
        duration_s: cli.duration,
        server_cpu: cli.server_cpu.clone(),
        client_cpu: cli.client_cpu.clone(),
        flood_cpu,
        flood_shares_client_cpu: shares,
        ratio_flood_xdp_on: ratio(&runs[1]),
        ratio_flood_xdp_off: ratio(&runs[2]),
        target_ratio: TARGET_RATIO,
        runs,
    };
    println!("{}", table(&report.runs));
    println!(
        "legitimate throughput: (b)/(a) = {:.3} with XDP on (target >= {TARGET_RATIO}: {}), \
         (c)/(a) = {:.3} with XDP off",
        report.ratio_flood_xdp_on,
        if report.ratio_flood_xdp_on >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        },
        report.ratio_flood_xdp_off
    );
    println!(
        "(a) PAP alone, XDP on; (b) PAP + flood, XDP on; (c) PAP + flood, XDP off. Flood: \
         half unknown source {UNKNOWN_SOURCE}, half bad Message-Authenticator from 127.0.0.1; \
         the flood thread runs on CPU {}{}; cli CPU includes it. srv CPU is the whole server \
         process. xdp/us = the server's kernel (XDP) and userspace drop counters.",
        report.flood_cpu,
        if shares {
            ", shared with the PAP generator"
        } else {
            ""
        }
    );
    for r in &report.runs {
        if let Some(other) = r
            .pap
            .other_cpu_percent
            .filter(|&o| o > crate::OTHER_CPU_WARNING)
        {
            eprintln!(
                "[bench] warning: run {}: the pinned CPUs were {other:.0} % of a core busy with \
                 other work than the server and the bench (kernel softirq work of the traffic \
                 counts here too): the numbers are disturbed",
                r.name
            );
        }
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("[bench] results written to {}", path.display());
    }
    let mut ok = true;
    for r in &report.runs {
        if r.pap.wrong > 0 {
            eprintln!(
                "[bench] FAILED: run {}: {} wrong replies: {:?}",
                r.name, r.pap.wrong, r.pap.wrong_reasons
            );
            ok = false;
        }
        if r.pap.ok == 0 {
            eprintln!("[bench] FAILED: run {}: no correct reply", r.name);
            ok = false;
        }
    }
    Ok(ok)
}
