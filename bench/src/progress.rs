//! A one-line progress bar on stderr while a load run is going, drawn only when both stdout
//! and stderr are terminals and `CI` is not set (logs and pipes get the results only).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);
/// Width of the bar in characters.
const WIDTH: usize = 30;

/// Whether progress bars are drawn in this process.
pub fn enabled() -> bool {
    std::env::var_os("CI").is_none()
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal()
}

pub struct Progress {
    enabled: bool,
    label: String,
    start: Instant,
    total: Duration,
    next_draw: Instant,
    last: (Instant, u64),
    rate: f64,
    drawn: bool,
}

impl Progress {
    /// A bar for a run of `total` (warm-up and measured interval) called `label`.
    pub fn new(label: &str, total: Duration) -> Self {
        let now = Instant::now();
        Self {
            enabled: enabled(),
            label: label.to_owned(),
            start: now,
            total,
            next_draw: now,
            last: (now, 0),
            rate: 0.0,
            drawn: false,
        }
    }

    /// Redraws (at most every [`REDRAW`]) with the replies so far and the error counts.
    pub fn update(&mut self, now: Instant, phase: &str, replies: u64, lost: u64, wrong: u64) {
        if !self.enabled || now < self.next_draw {
            return;
        }
        self.next_draw = now + REDRAW;
        let dt = now.saturating_duration_since(self.last.0).as_secs_f64();
        if dt > 0.0 {
            self.rate = replies.saturating_sub(self.last.1) as f64 / dt;
        }
        self.last = (now, replies);
        let elapsed = now.saturating_duration_since(self.start);
        let frac = if self.total.is_zero() {
            1.0
        } else {
            (elapsed.as_secs_f64() / self.total.as_secs_f64()).min(1.0)
        };
        let filled = (frac * WIDTH as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(WIDTH - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} [{bar}] {:>5.1}/{:.0} s {:<9} {:>8.1}k replies/s  lost {lost}  wrong {wrong}",
            self.label,
            elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            phase,
            self.rate / 1000.0,
        );
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
