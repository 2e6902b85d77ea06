//! Counters. Each shard owns one [`ShardStats`] and is its only writer (relaxed atomics, no
//! shared cache line between shards); readers (the control socket) sum them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

macro_rules! counters {
    ($($name:ident => $label:literal,)*) => {
        /// Every hot-path counter, by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $($name,)* }
        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            pub fn label(self) -> &'static str {
                match self { $(Counter::$name => $label,)* }
            }
        }
    };
}

counters! {
    Received => "received",
    AccessAccept => "access_accept",
    AccessReject => "access_reject",
    AccessChallenge => "access_challenge",
    AccountingResponse => "accounting_response",
    StatusServer => "status_server",
    DuplicateResent => "duplicate_resent",
    DuplicateInProgress => "duplicate_in_progress",
    IdentifierReused => "identifier_reused",
    Dropped => "dropped",
    SendErrors => "send_errors",
    MfaPushes => "mfa_pushes_sent",
    MfaPolls => "mfa_status_polls",
}

/// Per-shard levels (not counters): summed over the shards when shown.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// Push logins waiting for their answer.
    PendingLogins,
    /// MFA provider calls running.
    ProviderCalls,
}

impl Gauge {
    const ALL: [Gauge; 2] = [Gauge::PendingLogins, Gauge::ProviderCalls];
    fn label(self) -> &'static str {
        match self {
            Gauge::PendingLogins => "mfa_pending_logins",
            Gauge::ProviderCalls => "mfa_provider_calls",
        }
    }
}

/// Per-shard counters, padded so two shards never share a cache line.
#[repr(align(128))]
pub struct ShardStats {
    counters: [AtomicU64; Counter::ALL.len()],
    gauges: [AtomicU64; Gauge::ALL.len()],
    /// Drops by reason (unknown client, each decode error, bad authenticator, ...). Only the
    /// drop path touches it; the owning shard is the only writer, so the lock is uncontended.
    drops: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            gauges: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ShardStats {
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.counters[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dropped datagram and its reason.
    pub fn drop_reason(&self, reason: &'static str) {
        self.inc(Counter::Dropped);
        if let Ok(mut m) = self.drops.lock() {
            *m.entry(reason).or_insert(0) += 1;
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    pub fn set_gauge(&self, g: Gauge, value: usize) {
        self.gauges[g as usize].store(value as u64, Ordering::Relaxed);
    }

    pub fn gauge(&self, g: Gauge) -> u64 {
        self.gauges[g as usize].load(Ordering::Relaxed)
    }
}

/// Sums the shards into `name value` lines (the control socket's format, stable for scripts).
pub fn render(shards: &[std::sync::Arc<ShardStats>]) -> String {
    let mut out = String::new();
    for &c in Counter::ALL {
        let total: u64 = shards.iter().map(|s| s.get(c)).sum();
        let _ = writeln!(out, "{} {}", c.label(), total);
    }
    for g in Gauge::ALL {
        let total: u64 = shards.iter().map(|s| s.gauge(g)).sum();
        let _ = writeln!(out, "{} {}", g.label(), total);
    }
    if let Some(bytes) = heap_in_use() {
        let _ = writeln!(out, "heap_in_use_bytes {bytes}");
    }
    let mut drops: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in shards {
        if let Ok(m) = s.drops.lock() {
            for (k, v) in m.iter() {
                *drops.entry(k).or_insert(0) += v;
            }
        }
    }
    for (k, v) in drops {
        let _ = writeln!(out, "drop.{k} {v}");
    }
    out
}

/// Bytes the allocator has handed out and not got back (glibc's `mallinfo2`): what the
/// process's data structures really hold, unlike RSS, which keeps freed pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn render_sums_shards() {
        let a = Arc::new(ShardStats::default());
        let b = Arc::new(ShardStats::default());
        a.inc(Counter::Received);
        b.inc(Counter::Received);
        b.drop_reason("unknown_client");
        let text = render(&[a, b]);
        assert!(text.contains("received 2\n"), "{text}");
        assert!(text.contains("dropped 1\n"), "{text}");
        assert!(text.contains("drop.unknown_client 1\n"), "{text}");
    }
}
