//! One measured load run against one server process: the load loop plus the CPU time of the
//! server, of the load generator and of the pinned CPUs over the measured interval, and the
//! server's RSS at the end.

use std::time::{Duration, Instant};

use anyhow::Result;
use portcullis_proto::SharedSecret;

use crate::load::{self, LoadConfig, Mark};
use crate::procfs;
use crate::report::Report;
use crate::request::{Expect, Generator, Users};
use crate::Scenario;

/// Where the load goes and what is watched meanwhile.
pub struct Target<'a> {
    /// Name in tables and plots.
    pub server: &'a str,
    /// The server's pid, when it is a process of ours (CPU time, RSS).
    pub pid: Option<u32>,
    /// Replies need not carry Message-Authenticator first (servers other than Portcullis).
    pub ma_anywhere: bool,
    /// What Status-Server must be answered with.
    pub status_expect: Expect,
    /// The server's CPUs (their softirq time is reported).
    pub server_cpus: &'a [usize],
    /// Every pinned CPU (server, load generator, flood): busy time not spent in the server or
    /// the load generator is reported as other work.
    pub watched: &'a [usize],
    /// Kernel threads that work for the experiment on the pinned CPUs (the flood scenario's
    /// NAPI thread): their time is not other work.
    pub helper_threads: &'a [u32],
}

/// Runs `cfg` with a fresh generator of `scenario` against `t` and reports it.
pub fn measure(
    cfg: &LoadConfig,
    scenario: Scenario,
    secret: &SharedSecret,
    users: &Users,
    t: &Target<'_>,
) -> Result<Report> {
    let mut generator = Generator::new(scenario, secret, users, t.status_expect);
    if t.ma_anywhere {
        generator = generator.ma_anywhere();
    }
    let stat = t.pid.map(|p| format!("/proc/{p}/stat"));
    let mut server_cpu = (None, None);
    let mut client_cpu = (None, None);
    let mut busy = (None, None);
    let mut softirq = (None, None);
    let result = load::run(cfg, &mut generator, secret, users, |m| {
        let server = stat
            .as_deref()
            .and_then(|s| procfs::process_cpu_seconds(s).ok());
        let client = procfs::process_cpu_seconds("/proc/self/stat").ok();
        let all = procfs::cpus_busy_seconds(t.watched)
            .ok()
            .map(|b| b - procfs::threads_cpu_seconds(t.helper_threads));
        let si = procfs::cpus_softirq_seconds(t.server_cpus).ok();
        let slot = match m {
            Mark::MeasureStart => 0,
            Mark::MeasureEnd => 1,
        };
        let set = |pair: &mut (Option<f64>, Option<f64>), v| {
            if slot == 0 {
                pair.0 = v
            } else {
                pair.1 = v
            }
        };
        set(&mut server_cpu, server);
        set(&mut client_cpu, client);
        set(&mut busy, all);
        set(&mut softirq, si);
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
    let rss = t.pid.and_then(|p| procfs::rss_bytes(p).ok());
    let mut report = Report::new(
        scenario, cfg, &result, server_cpu, client_cpu, other_cpu, rss,
    )
    .for_server(t.server);
    report.server_cpus_softirq_percent = percent(softirq);
    Ok(report)
}

/// Waits (at most `max`) until `cpus` were less than 10 % of a core busy, all together, over
/// two seconds: other processes on a shared machine disturb a measurement. Returns whether they
/// were.
pub fn wait_quiet(cpus: &[usize], max: Duration) -> bool {
    const SAMPLE: Duration = Duration::from_secs(2);
    let deadline = Instant::now() + max;
    let mut said = false;
    loop {
        if crate::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let (Ok(a), t) = (procfs::cpus_busy_seconds(cpus), Instant::now()) else {
            return false;
        };
        std::thread::sleep(SAMPLE);
        let Ok(b) = procfs::cpus_busy_seconds(cpus) else {
            return false;
        };
        let busy = (b - a) / t.elapsed().as_secs_f64() * 100.0;
        if busy < 10.0 {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("[bench] the pinned CPUs are still {busy:.0} % busy; measuring anyway");
            return false;
        }
        if !said {
            eprintln!(
                "[bench] the pinned CPUs are {busy:.0} % busy with other work: waiting (at most \
                 {} s)",
                max.as_secs()
            );
            said = true;
        }
    }
}
