//! CPU time from /proc: of a process (`/proc/PID/stat`) and of whole CPUs (`/proc/stat`).

use std::fs;

use anyhow::{Context, Result};

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// utime + stime of a process or thread from its `stat` file, in seconds.
pub fn process_cpu_seconds(stat_path: &str) -> Result<f64> {
    let stat = fs::read_to_string(stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {stat_path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("malformed {stat_path}"))
    };
    let total = ticks(14)? + ticks(15)?;
    Ok(total as f64 / ticks_per_second())
}

/// CPU seconds used so far by the threads (or processes) `pids` together; one that is gone
/// counts 0.
pub fn threads_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| process_cpu_seconds(&format!("/proc/{pid}/stat")).ok())
        .sum()
}

/// Busy time (everything but idle and iowait) of `cpus` together since boot, in seconds.
pub fn cpus_busy_seconds(cpus: &[usize]) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let mut busy = 0u64;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|f| f.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        let values: Vec<u64> = fields.filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let sum: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        busy += sum.saturating_sub(idle);
    }
    Ok(busy as f64 / ticks_per_second())
}

/// Softirq time of `cpus` together since boot, in seconds (receive processing of network
/// traffic, XDP included, is accounted here when it does not run in a process's context).
pub fn cpus_softirq_seconds(cpus: &[usize]) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let mut ticks = 0u64;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|f| f.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if cpus.contains(&cpu) {
            // user nice system idle iowait irq softirq
            ticks += fields
                .nth(6)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ticks as f64 / ticks_per_second())
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_times() {
        assert!(process_cpu_seconds("/proc/self/stat").unwrap() >= 0.0);
        assert!(cpus_busy_seconds(&[0]).unwrap() > 0.0);
        assert!(cpus_softirq_seconds(&[0]).unwrap() >= 0.0);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
