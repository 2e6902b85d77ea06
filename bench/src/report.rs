//! The results: a table for people, JSON for machines.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use hdrhistogram::Histogram;

use crate::load::{Bin, LoadConfig, LoadResult};
use crate::stall::{self, CpuStalls};
use crate::Scenario;

/// The quantiles listed in the JSON (and drawn in the plot).
const CURVE: [f64; 13] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    /// The server under load: `portcullis`, `freeradius` or `external`.
    pub server: String,
    pub target: String,
    /// `closed` (a window of outstanding requests) or `open` (a fixed request rate).
    pub mode: &'static str,
    /// Open loop: the rate asked for, requests/s.
    pub rate: Option<f64>,
    /// The load generator polled without sleeping (`--spin`).
    pub spin: bool,
    /// Closed loop: requests outstanding; open loop: the most that may be outstanding.
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
    /// Correct replies in the whole run, warm-up and drain included (for accounting: the
    /// records the server acknowledged).
    pub ok_total: u64,
    pub accepts: u64,
    pub rejects: u64,
    /// Latency of the correct replies to the requests of the measured interval, µs: from send
    /// (closed loop) or from the due time (open loop) to receive.
    pub latency_us: Latency,
    /// (quantile, µs) points of the latency distribution.
    pub latency_percentiles_us: Vec<(f64, u64)>,
    /// Requests unanswered after 2 s, whole run.
    pub lost: u64,
    /// Of `lost`, requests of the measured interval.
    pub lost_measured: u64,
    /// Open loop: requests due that never went out because every identifier was in use.
    pub unsent: u64,
    /// Open loop: the most due requests waiting for an identifier at once.
    pub backlog_max: u64,
    /// Open loop: the load generator's own lag behind the schedule, p99 and max, µs.
    pub send_lag_p99_us: Option<u64>,
    pub send_lag_max_us: Option<u64>,
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
    /// Softirq time of the server's CPUs (kernel receive processing, XDP) over the measured
    /// interval, % of one core; not part of `server_cpu_percent`.
    pub server_cpus_softirq_percent: Option<f64>,
    /// Open loop against a server of the bench's own: the gaps in the pinned CPUs'
    /// availability, probed just after the run ([`crate::stall`]); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_stalls: Option<Vec<CpuStalls>>,
    /// Latency and throughput over time, by due time, warm-up included.
    pub timeline: Vec<Bin>,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
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
        let open = r.rate.is_some();
        Self {
            scenario,
            server: "portcullis".to_owned(),
            target: cfg.target.to_string(),
            mode: if open { "open" } else { "closed" },
            spin: cfg.spin,
            rate: r.rate,
            window: cfg.max_outstanding(),
            sockets: cfg.sockets,
            duration_s: secs,
            requests_per_s: if secs > 0.0 { r.ok as f64 / secs } else { 0.0 },
            sent: r.sent,
            ok: r.ok,
            ok_total: r.ok_total,
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
            latency_percentiles_us: CURVE.iter().map(|&q| (q, h.value_at_quantile(q))).collect(),
            lost: r.lost,
            lost_measured: r.lost_measured,
            unsent: r.unsent,
            backlog_max: r.backlog_max,
            send_lag_p99_us: open.then(|| r.send_lag_us.value_at_quantile(0.99)),
            send_lag_max_us: open.then(|| r.send_lag_us.max()),
            late: r.late,
            wrong: r.wrong,
            wrong_reasons: r.wrong_reasons.clone(),
            socket_errors: r.socket_errors,
            server_cpu_percent,
            server_rss_mib: server_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
            client_cpu_percent,
            other_cpu_percent,
            server_cpus_softirq_percent: None,
            machine_stalls: None,
            timeline: r.timeline.clone(),
            histogram: h.clone(),
        }
    }

    /// The same report for another server (name shown in tables and plots).
    pub fn for_server(mut self, server: &str) -> Self {
        self.server = server.to_owned();
        self
    }

    /// `closed w64` or `open 80000/s`.
    pub fn mode_text(&self) -> String {
        let mut m = match self.rate {
            Some(r) => format!("open {r:.0}/s"),
            None => format!("closed w{}", self.window),
        };
        if self.spin {
            m.push_str(" spin");
        }
        m
    }

    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, prec: usize| match v {
            Some(v) => format!("{v:.prec$}"),
            None => "-".to_owned(),
        };
        let l = &self.latency_us;
        let header = [
            "scenario",
            "server",
            "load",
            "secs",
            "req/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "lost",
            "late",
            "wrong",
            "srv CPU %",
            "srv RSS MiB",
        ];
        let row = [
            self.scenario.name().to_owned(),
            self.server.clone(),
            self.mode_text(),
            format!("{:.1}", self.duration_s),
            format!("{:.0}", self.requests_per_s),
            l.p50.to_string(),
            l.p99.to_string(),
            l.p99_9.to_string(),
            l.max.to_string(),
            self.lost.to_string(),
            self.late.to_string(),
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
        let mut text = format!(
            "{}\n{}\n({} sent, {} ok: {} accept / {} reject; {} of the lost in the measured \
             interval; at most {} outstanding over {} sockets; client CPU {} %, other work on the \
             pinned CPUs {} %)",
            line(header.iter().map(|h| (*h).to_owned()).collect()),
            line(row.to_vec()),
            self.sent,
            self.ok,
            self.accepts,
            self.rejects,
            self.lost_measured,
            self.window,
            self.sockets,
            opt(self.client_cpu_percent, 1),
            opt(self.other_cpu_percent, 1),
        );
        if let (Some(p99), Some(max)) = (self.send_lag_p99_us, self.send_lag_max_us) {
            text.push_str(&format!(
                "\n(open loop: the generator sent p99 {p99} µs / max {max} µs after the due time; \
                 {} due requests never sent, backlog at most {})",
                self.unsent, self.backlog_max
            ));
        }
        if let Some(stalls) = &self.machine_stalls {
            text.push('\n');
            text.push_str(&stall::summary_line(stalls));
        }
        text
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }
}
