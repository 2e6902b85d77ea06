//! The latency plot of a run (`--plot FILE.svg`): a self-contained SVG written by hand, three
//! panels one above the other, one line per run:
//!
//! 1. the latency distribution (percentile curve, logarithmic both ways: 0 %, 90 %, 99 %,
//!    99.9 %, ... to the maximum), from the run's hdrhistogram of the measured interval;
//! 2. p99 latency over time, per 250 ms bin by due time (warm-up included, shaded);
//! 3. correct replies per second over time, same bins.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::load::BIN;
use crate::report::Report;

const WIDTH: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;
/// How far right the percentile axis goes: 10^-5, i.e. 99.999 %.
const NINES: f64 = 5.0;
/// Line colours: Portcullis runs in blues/greens, FreeRADIUS runs in reds/oranges.
const COLD: [&str; 4] = ["#1f5fbf", "#2a9d8f", "#4c78a8", "#264653"];
const WARM: [&str; 4] = ["#d62728", "#f28e2b", "#b5361c", "#e15759"];

/// One line of the plot.
pub struct Series<'a> {
    pub label: String,
    pub report: &'a Report,
}

/// A linear or base-10 logarithmic axis mapping data values to pixels.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    px_lo: f64,
    px_hi: f64,
}

impl Axis {
    fn map(&self, v: f64) -> f64 {
        let (lo, hi, v) = if self.log {
            (self.lo.log10(), self.hi.log10(), v.max(self.lo).log10())
        } else {
            (self.lo, self.hi, v)
        };
        let f = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
        self.px_lo + f.clamp(0.0, 1.0) * (self.px_hi - self.px_lo)
    }
}

/// Log axis bounds covering `lo..=hi` µs in whole decades.
fn decades(lo: u64, hi: u64) -> (f64, f64) {
    let lo = 10f64.powf((lo.max(1) as f64).log10().floor());
    let mut hi = 10f64.powf((hi.max(2) as f64).log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    (lo, hi)
}

fn us_label(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{} ms", us / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn polyline(out: &mut String, points: &[(f64, f64)], color: &str, dashed: bool) {
    if points.is_empty() {
        return;
    }
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    let dash = if dashed {
        " stroke-dasharray=\"5,3\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<path d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash}/>"
    );
}

struct Panel {
    top: f64,
    x: Axis,
    y: Axis,
}

impl Panel {
    fn frame(&self, out: &mut String, title: &str, x_label: &str, y_label: &str) {
        let (x0, x1) = (self.x.px_lo, self.x.px_hi);
        let (y0, y1) = (self.y.px_hi, self.y.px_lo);
        let _ = writeln!(
            out,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#999\"/>",
            x1 - x0,
            y1 - y0
        );
        let _ = writeln!(
            out,
            "<text x=\"{x0}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
            self.top - 10.0,
            escape(title)
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            (x0 + x1) / 2.0,
            y1 + 34.0,
            escape(x_label)
        );
        let _ = writeln!(
            out,
            "<text x=\"18\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>",
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape(y_label)
        );
    }

    fn y_tick(&self, out: &mut String, v: f64, label: &str) {
        let y = self.y.map(v);
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            self.x.px_lo,
            self.x.px_hi,
            self.x.px_lo - 6.0,
            y + 4.0,
            escape(label)
        );
    }

    fn x_tick(&self, out: &mut String, v: f64, label: &str) {
        let x = self.x.map(v);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            self.y.px_hi,
            self.y.px_lo,
            self.y.px_lo + 16.0,
            escape(label)
        );
    }

    fn log_y_ticks(&self, out: &mut String) {
        let mut v = self.y.lo;
        while v <= self.y.hi * 1.0001 {
            self.y_tick(out, v, &us_label(v));
            v *= 10.0;
        }
    }
}

/// The colour of series `i` (FreeRADIUS runs warm, everything else cold).
fn color(series: &[Series<'_>], i: usize) -> &'static str {
    let warm = series[i].report.server == "freeradius";
    let nth = series[..i]
        .iter()
        .filter(|s| (s.report.server == "freeradius") == warm)
        .count();
    if warm {
        WARM[nth % WARM.len()]
    } else {
        COLD[nth % COLD.len()]
    }
}

/// The SVG text of the plot of `series` (titled `title`).
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let height = TOP + 3.0 * PANEL_H + 2.0 * GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"15\">{}</text>",
        escape(title)
    );
    let x_px = (LEFT, WIDTH - RIGHT);
    let panel = |i: usize, x: (f64, f64, bool), y: (f64, f64, bool)| {
        let top = TOP + 20.0 + i as f64 * (PANEL_H + GAP);
        Panel {
            top,
            x: Axis {
                lo: x.0,
                hi: x.1,
                log: x.2,
                px_lo: x_px.0,
                px_hi: x_px.1,
            },
            y: Axis {
                lo: y.0,
                hi: y.1,
                log: y.2,
                px_lo: top + PANEL_H - 40.0,
                px_hi: top,
            },
        }
    };

    // 1. Percentile curve.
    let min = series
        .iter()
        .map(|s| s.report.histogram.min())
        .min()
        .unwrap_or(1);
    let max = series
        .iter()
        .map(|s| s.report.histogram.max())
        .max()
        .unwrap_or(10);
    let (lo, hi) = decades(min, max);
    let p = panel(0, (0.0, NINES, false), (lo, hi, true));
    p.frame(
        &mut out,
        "Latency distribution (measured interval)",
        "percentile",
        "latency",
    );
    p.log_y_ticks(&mut out);
    for (n, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        p.x_tick(&mut out, n as f64, label);
    }
    for (i, s) in series.iter().enumerate() {
        let h = &s.report.histogram;
        if h.is_empty() {
            continue;
        }
        let mut pts = Vec::new();
        let steps = 200;
        for k in 0..=steps {
            let x = NINES * k as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-x);
            // Beyond what the sample size can tell, stop at the maximum.
            if (1.0 - q) * (h.len() as f64) < 1.0 {
                pts.push((p.x.map(x), p.y.map(h.max() as f64)));
                break;
            }
            pts.push((p.x.map(x), p.y.map(h.value_at_quantile(q) as f64)));
        }
        polyline(&mut out, &pts, color(series, i), false);
    }

    // 2. p99 over time and 3. throughput over time.
    let t_max = series
        .iter()
        .map(|s| s.report.timeline.len() as f64 * BIN.as_secs_f64())
        .fold(1.0, f64::max);
    let warmup = series
        .first()
        .map(|s| s.report.timeline.len() as f64 * BIN.as_secs_f64() - s.report.duration_s)
        .unwrap_or(0.0)
        .max(0.0);
    let (tmin, tmax) = series
        .iter()
        .flat_map(|s| s.report.timeline.iter())
        .filter(|b| b.replies_per_s > 0.0)
        .fold((u64::MAX, 1), |(a, b), bin| {
            (a.min(bin.p99_us), b.max(bin.p99_us))
        });
    let (lo, hi) = decades(tmin.min(tmax), tmax);
    let p2 = panel(1, (0.0, t_max, false), (lo, hi, true));
    p2.frame(
        &mut out,
        "p99 latency over time (250 ms bins, by due time; shaded: warm-up)",
        "seconds since the start of the run",
        "p99 latency",
    );
    p2.log_y_ticks(&mut out);
    let rps_max = series
        .iter()
        .flat_map(|s| s.report.timeline.iter())
        .map(|b| b.replies_per_s)
        .fold(1.0, f64::max);
    let p3 = panel(2, (0.0, t_max, false), (0.0, rps_max * 1.1, false));
    p3.frame(
        &mut out,
        "Correct replies per second over time",
        "seconds since the start of the run",
        "replies/s",
    );
    for k in 0..=4 {
        let v = rps_max * 1.1 * k as f64 / 4.0;
        p3.y_tick(&mut out, v, &format!("{:.0}k", v / 1000.0));
    }
    let step = if t_max > 30.0 {
        10.0
    } else {
        1.0_f64.max((t_max / 10.0).ceil())
    };
    for p in [&p2, &p3] {
        let mut t = 0.0;
        while t <= t_max + 1e-9 {
            p.x_tick(&mut out, t, &format!("{t:.0}"));
            t += step;
        }
        if warmup > 0.0 {
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"#000\" fill-opacity=\"0.06\"/>",
                p.x.px_lo,
                p.y.px_hi,
                p.x.map(warmup) - p.x.px_lo,
                p.y.px_lo - p.y.px_hi
            );
        }
    }
    for (i, s) in series.iter().enumerate() {
        let c = color(series, i);
        let bins = &s.report.timeline;
        let half = BIN.as_secs_f64() / 2.0;
        let lat: Vec<(f64, f64)> = bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.replies_per_s > 0.0)
            .map(|(k, b)| {
                let t = k as f64 * BIN.as_secs_f64() + half;
                (p2.x.map(t), p2.y.map(b.p99_us as f64))
            })
            .collect();
        polyline(&mut out, &lat, c, false);
        let rps: Vec<(f64, f64)> = bins
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let t = k as f64 * BIN.as_secs_f64() + half;
                (p3.x.map(t), p3.y.map(b.replies_per_s))
            })
            .collect();
        polyline(&mut out, &rps, c, false);
    }

    // Legend, right of the first panel.
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 30.0 + i as f64 * 34.0;
        let x = WIDTH - RIGHT + 12.0;
        let r = s.report;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#555\">{:.0}/s, p99 {} µs</text>",
            x + 18.0,
            color(series, i),
            x + 24.0,
            y + 4.0,
            escape(&s.label),
            x + 24.0,
            y + 17.0,
            r.requests_per_s,
            r.latency_us.p99,
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Writes the plot to `path`.
pub fn write(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    std::fs::write(path, svg(title, series))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load::{Bin, LoadConfig, LoadResult};
    use hdrhistogram::Histogram;
    use std::time::Duration;

    fn report(server: &str, latencies: &[u64]) -> Report {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for &l in latencies {
            h.record(l).unwrap();
        }
        let bin = |t: f64| Bin {
            t_s: t,
            replies_per_s: 1000.0,
            p50_us: 100,
            p99_us: 900,
            max_us: 1000,
            lost: 0,
        };
        let r = LoadResult {
            measured: Duration::from_secs(1),
            rate: None,
            sent: latencies.len() as u64,
            ok: latencies.len() as u64,
            ok_total: latencies.len() as u64,
            accepts: 0,
            rejects: 0,
            lost: 0,
            lost_measured: 0,
            late: 0,
            wrong: 0,
            wrong_reasons: Default::default(),
            socket_errors: 0,
            unsent: 0,
            backlog_max: 0,
            latency_us: h,
            send_lag_us: Histogram::new(3).unwrap(),
            timeline: (0..8).map(|i| bin(i as f64 * 0.25)).collect(),
        };
        let cfg = LoadConfig {
            target: "127.0.0.1:1812".parse().unwrap(),
            window: 64,
            sockets: 8,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            rate: None,
            label: String::new(),
            spin: false,
        };
        Report::new(crate::Scenario::Pap, &cfg, &r, None, None, None, None).for_server(server)
    }

    #[test]
    fn svg_has_a_line_per_series_and_panel() {
        let a = report("portcullis", &[100, 200, 300, 5000]);
        let b = report("freeradius", &[1000, 2000]);
        let text = svg(
            "a <title> & more",
            &[
                Series {
                    label: "P".into(),
                    report: &a,
                },
                Series {
                    label: "F".into(),
                    report: &b,
                },
            ],
        );
        assert!(text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"));
        assert!(text.contains("a &lt;title&gt; &amp; more"));
        // Three panels, two series each.
        assert_eq!(text.matches("<path ").count(), 6);
        assert!(text.contains(COLD[0]) && text.contains(WARM[0]));
        assert!(!text.contains("NaN"));
    }
}
