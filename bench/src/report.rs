//! The results: a table for people, JSON for machines.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::load::{LoadConfig, LoadResult};
use crate::Scenario;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub target: String,
    pub window: usize,
    pub sockets: usize,
    /// Measured interval, seconds (the warm-up and the drain are not in it).
    pub duration_s: f64,
    /// Correct replies per second in the measured interval.
    pub requests_per_s: f64,
    /// Requests sent in the measured interval.
    pub sent: u64,
    /// Correct replies received in the measured interval.
    pub ok: u64,
    pub accepts: u64,
    pub rejects: u64,
    /// Latency from send to receive of the correct replies in the measured interval, µs.
    pub latency_us: Latency,
    /// Requests unanswered after 2 s, whole run.
    pub lost: u64,
    /// Correct replies that came after the timeout, whole run.
    pub late: u64,
    /// Wrong replies (bad authenticator, unexpected code or identifier, ...), whole run.
    pub wrong: u64,
    pub wrong_reasons: BTreeMap<&'static str, u64>,
    /// ICMP errors (e.g. port unreachable) seen on the sockets.
    pub socket_errors: u64,
    /// Server CPU time over the measured interval, % of one core (only for a server the bench
    /// started).
    pub server_cpu_percent: Option<f64>,
    /// Server resident memory at the end, MiB (only for a server the bench started).
    pub server_rss_mib: Option<f64>,
    /// The load generator's own CPU time, % of one core: near 100 means the client, not the
    /// server, may be the limit.
    pub client_cpu_percent: Option<f64>,
    /// Busy time of the pinned CPUs that neither the server nor the load generator used, % of
    /// one core: other processes (or interrupts) disturbing the run.
    pub other_cpu_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl Report {
    pub fn new(
        scenario: Scenario,
        cfg: &LoadConfig,
        r: &LoadResult,
        server_cpu_percent: Option<f64>,
        client_cpu_percent: Option<f64>,
        other_cpu_percent: Option<f64>,
        server_rss: Option<u64>,
    ) -> Self {
        let secs = r.measured.as_secs_f64();
        let h = &r.latency_us;
        Self {
            scenario,
            target: cfg.target.to_string(),
            window: cfg.window,
            sockets: cfg.sockets,
            duration_s: secs,
            requests_per_s: if secs > 0.0 { r.ok as f64 / secs } else { 0.0 },
            sent: r.sent,
            ok: r.ok,
            accepts: r.accepts,
            rejects: r.rejects,
            latency_us: Latency {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p99_9: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            },
            lost: r.lost,
            late: r.late,
            wrong: r.wrong,
            wrong_reasons: r.wrong_reasons.clone(),
            socket_errors: r.socket_errors,
            server_cpu_percent,
            server_rss_mib: server_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
            client_cpu_percent,
            other_cpu_percent,
        }
    }

    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, prec: usize| match v {
            Some(v) => format!("{v:.prec$}"),
            None => "-".to_owned(),
        };
        let l = &self.latency_us;
        let header = [
            "scenario",
            "secs",
            "req/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "lost",
            "wrong",
            "srv CPU %",
            "srv RSS MiB",
        ];
        let row = [
            self.scenario.name().to_owned(),
            format!("{:.1}", self.duration_s),
            format!("{:.0}", self.requests_per_s),
            l.p50.to_string(),
            l.p99.to_string(),
            l.p99_9.to_string(),
            l.max.to_string(),
            self.lost.to_string(),
            self.wrong.to_string(),
            opt(self.server_cpu_percent, 1),
            opt(self.server_rss_mib, 1),
        ];
        let widths: Vec<usize> = header
            .iter()
            .zip(&row)
            .map(|(h, r)| h.chars().count().max(r.chars().count()))
            .collect();
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        format!(
            "{}\n{}\n({} sent, {} ok: {} accept / {} reject; late {}; window {} over {} sockets; \
             client CPU {} %, other work on the pinned CPUs {} %)",
            line(header.iter().map(|h| (*h).to_owned()).collect()),
            line(row.to_vec()),
            self.sent,
            self.ok,
            self.accepts,
            self.rejects,
            self.late,
            self.window,
            self.sockets,
            opt(self.client_cpu_percent, 1),
            opt(self.other_cpu_percent, 1),
        )
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }
}
