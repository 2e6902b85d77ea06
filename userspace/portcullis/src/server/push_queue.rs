//! When a shard talks to the MFA providers about its pending push logins.
//!
//! A pending push costs no task and no timer of its own while it waits: its entry in the
//! pending table holds the provider's handle, and this queue says when to ask the provider
//! again. The shard runs what [`PushQueue::take`] hands out as short-lived local tasks:
//!
//! - **begin**: send the push (first in, first out, as soon as a call slot is free);
//! - **poll**: one status call ([`MfaProvider::poll_push`]) for a login whose push is out,
//!   due `poll_interval` after its previous poll.
//!
//! Two bounds keep a large table from turning into a storm against the provider or a starved
//! RADIUS loop: at most `max_in_flight` push sends and as many status polls at once per shard
//! (separately, so polls a provider holds open — Duo's long-poll — never delay a push), and at
//! most `polls_per_second` status polls per shard (a token bucket; pushes are not
//! rate-limited, a push is what the user waits for). With many logins pending the polls of each are spaced
//! further apart than `poll_interval`; how far behind the queue is shows in `lag`.
//!
//! Entries that were answered or expired meanwhile are skipped when they come up (their ids
//! no longer match the table). Sans-IO: time comes in as `now`.
//!
//! [`MfaProvider::poll_push`]: portcullis_mfa::MfaProvider::poll_push

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use portcullis_pending::EntryId;

/// Provider work to start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Send the push of this login.
    Begin(EntryId),
    /// Ask whether the push of this login was answered.
    Poll(EntryId),
}

/// Polls due at one interval: pushed in time order, so the front is always the earliest.
struct Lane {
    interval_ms: u32,
    due: VecDeque<(u32, EntryId)>,
}

pub struct PushQueue {
    /// Times are kept as milliseconds since this instant (12 bytes per queued poll).
    origin: Instant,
    begins: VecDeque<EntryId>,
    lanes: Vec<Lane>,
    begins_in_flight: usize,
    polls_in_flight: usize,
    max_in_flight: usize,
    polls_per_second: u32,
    /// Token bucket for polls, in thousandths of a poll.
    tokens_milli: u64,
    refilled_ms: u32,
    /// How late the last poll handed out was, against its due time.
    lag_ms: u32,
}

impl PushQueue {
    pub fn new(max_in_flight: usize, polls_per_second: u32, now: Instant) -> Self {
        let mut q = PushQueue {
            origin: now,
            begins: VecDeque::new(),
            lanes: Vec::new(),
            begins_in_flight: 0,
            polls_in_flight: 0,
            max_in_flight: 1,
            polls_per_second: 1,
            tokens_milli: 0,
            refilled_ms: 0,
            lag_ms: 0,
        };
        q.set_limits(max_in_flight, polls_per_second);
        q.tokens_milli = q.bucket_milli();
        q
    }

    /// New limits (a configuration reload); calls in flight stay in flight.
    pub fn set_limits(&mut self, max_in_flight: usize, polls_per_second: u32) {
        self.max_in_flight = max_in_flight.max(1);
        self.polls_per_second = polls_per_second.max(1);
        self.tokens_milli = self.tokens_milli.min(self.bucket_milli());
    }

    /// A burst of a tenth of a second's polls (at least one).
    fn bucket_milli(&self) -> u64 {
        u64::from(self.polls_per_second / 10).max(1) * 1000
    }

    fn ms(&self, t: Instant) -> u32 {
        u32::try_from(t.saturating_duration_since(self.origin).as_millis()).unwrap_or(u32::MAX)
    }

    /// The push of `id` should be sent.
    pub fn begin(&mut self, id: EntryId) {
        self.begins.push_back(id);
    }

    /// The push of `id` is out: ask about it `interval` from `now`.
    pub fn poll_after(&mut self, id: EntryId, interval: Duration, now: Instant) {
        let interval_ms = u32::try_from(interval.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let due = self.ms(now).saturating_add(interval_ms);
        let lane = match self
            .lanes
            .iter_mut()
            .position(|l| l.interval_ms == interval_ms)
        {
            Some(i) => &mut self.lanes[i],
            None => {
                self.lanes.push(Lane {
                    interval_ms,
                    due: VecDeque::new(),
                });
                self.lanes.last_mut().unwrap_or_else(|| unreachable!())
            }
        };
        lane.due.push_back((due, id));
    }

    /// A call handed out by [`take`](Self::take) finished.
    pub fn finished(&mut self, job: Job) {
        match job {
            Job::Begin(_) => self.begins_in_flight = self.begins_in_flight.saturating_sub(1),
            Job::Poll(_) => self.polls_in_flight = self.polls_in_flight.saturating_sub(1),
        }
    }

    /// Provider calls running (push sends and polls).
    pub fn in_flight(&self) -> usize {
        self.begins_in_flight + self.polls_in_flight
    }

    /// Begins and polls queued (including those of logins answered since).
    pub fn queued(&self) -> usize {
        self.begins.len() + self.lanes.iter().map(|l| l.due.len()).sum::<usize>()
    }

    /// How late (behind its due time) the most recent poll started.
    pub fn lag(&self) -> Duration {
        Duration::from_millis(u64::from(self.lag_ms))
    }

    fn refill(&mut self, now_ms: u32) {
        let elapsed = u64::from(now_ms.saturating_sub(self.refilled_ms));
        if elapsed > 0 {
            self.refilled_ms = now_ms;
            let add = elapsed.saturating_mul(u64::from(self.polls_per_second));
            self.tokens_milli = self
                .tokens_milli
                .saturating_add(add)
                .min(self.bucket_milli());
        }
    }

    /// The next job to start now, if a call slot is free and something is due; `alive` says
    /// whether an entry is still pending (stale ids are dropped here, free of charge).
    pub fn take(&mut self, now: Instant, alive: impl Fn(EntryId) -> bool) -> Option<Job> {
        if self.begins_in_flight < self.max_in_flight {
            while let Some(id) = self.begins.pop_front() {
                if alive(id) {
                    self.begins_in_flight += 1;
                    return Some(Job::Begin(id));
                }
            }
        }
        if self.polls_in_flight >= self.max_in_flight {
            return None;
        }
        let now_ms = self.ms(now);
        self.refill(now_ms);
        loop {
            // The lane whose front is due earliest.
            let lane = self
                .lanes
                .iter_mut()
                .filter(|l| l.due.front().is_some_and(|&(due, _)| due <= now_ms))
                .min_by_key(|l| l.due.front().map(|&(due, _)| due))?;
            let &(due, id) = lane.due.front()?;
            if !alive(id) {
                lane.due.pop_front();
                continue;
            }
            if self.tokens_milli < 1000 {
                return None;
            }
            lane.due.pop_front();
            self.tokens_milli -= 1000;
            self.polls_in_flight += 1;
            self.lag_ms = now_ms - due;
            return Some(Job::Poll(id));
        }
    }

    /// When [`take`](Self::take) may next hand out a job (None: nothing queued or all call
    /// slots busy, so only a finishing call or a new login changes that).
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.begins.is_empty() && self.begins_in_flight < self.max_in_flight {
            return Some(now);
        }
        if self.polls_in_flight >= self.max_in_flight {
            return None;
        }
        let earliest = self
            .lanes
            .iter()
            .filter_map(|l| l.due.front().map(|&(due, _)| due))
            .min()?;
        let mut at = self.origin + Duration::from_millis(u64::from(earliest));
        if self.tokens_milli < 1000 {
            // Out of tokens: not before the next one.
            let wait_ms = (1000 - self.tokens_milli).div_ceil(u64::from(self.polls_per_second));
            let refilled = self.origin + Duration::from_millis(u64::from(self.refilled_ms));
            at = at.max(refilled + Duration::from_millis(wait_ms));
        }
        Some(at.max(now))
    }

    /// Memory held by the queue (for the memory report), in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.begins.capacity() * std::mem::size_of::<EntryId>()
            + self
                .lanes
                .iter()
                .map(|l| l.due.capacity() * std::mem::size_of::<(u32, EntryId)>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use portcullis_pending::{Limits, LoginKey, PendingTable, RequestKey};

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    /// Real entry ids (they are only made by a table).
    fn ids(n: usize, t0: Instant) -> (PendingTable<(), ()>, Vec<EntryId>) {
        let mut table = PendingTable::new(Limits {
            max_entries: 1000,
            max_per_client: 1000,
            max_per_user: 1000,
            ..Default::default()
        });
        let ids = (0..n)
            .map(|i| {
                let rk = RequestKey {
                    from: "127.0.0.1:1000".parse().unwrap(),
                    listener: 0,
                    identifier: u8::try_from(i).unwrap(),
                    authenticator: [0; 16],
                };
                table
                    .begin(
                        LoginKey::new(0, format!("u{i}")),
                        rk,
                        (),
                        (),
                        t0 + 120 * S,
                        t0,
                    )
                    .unwrap()
            })
            .collect();
        (table, ids)
    }

    #[test]
    fn begins_first_then_polls_when_due() {
        let t0 = Instant::now();
        let (_t, id) = ids(3, t0);
        let mut q = PushQueue::new(10, 1000, t0);
        q.begin(id[0]);
        q.poll_after(id[1], S, t0);
        assert_eq!(q.take(t0, |_| true), Some(Job::Begin(id[0])));
        assert_eq!(q.take(t0, |_| true), None, "the poll is not due yet");
        assert_eq!(q.next_due(t0), Some(t0 + S));
        assert_eq!(q.take(t0 + S - MS, |_| true), None);
        assert_eq!(q.take(t0 + S, |_| true), Some(Job::Poll(id[1])));
        assert_eq!(q.in_flight(), 2);
        assert_eq!(q.next_due(t0 + S), None, "nothing queued");
    }

    #[test]
    fn in_flight_cap_holds_work_back_until_a_call_finishes() {
        let t0 = Instant::now();
        let (_t, id) = ids(3, t0);
        let mut q = PushQueue::new(2, 1000, t0);
        for &i in &id {
            q.begin(i);
        }
        assert_eq!(q.take(t0, |_| true), Some(Job::Begin(id[0])));
        assert_eq!(q.take(t0, |_| true), Some(Job::Begin(id[1])));
        assert_eq!(q.take(t0, |_| true), None);
        assert_eq!(q.next_due(t0), None, "only a finishing call frees a slot");
        q.finished(Job::Begin(id[0]));
        assert_eq!(q.next_due(t0), Some(t0));
        assert_eq!(q.take(t0, |_| true), Some(Job::Begin(id[2])));
    }

    #[test]
    fn polls_held_open_never_delay_a_push() {
        let t0 = Instant::now();
        let (_t, id) = ids(3, t0);
        let mut q = PushQueue::new(1, 1000, t0);
        q.poll_after(id[0], S, t0);
        q.poll_after(id[1], S, t0);
        assert_eq!(q.take(t0 + S, |_| true), Some(Job::Poll(id[0])));
        assert_eq!(q.take(t0 + S, |_| true), None, "the poll slot is taken");
        // A long-polled call is still out; a new login's push goes out anyway.
        q.begin(id[2]);
        assert_eq!(q.take(t0 + S, |_| true), Some(Job::Begin(id[2])));
        assert_eq!(q.in_flight(), 2);
        q.finished(Job::Poll(id[0]));
        assert_eq!(q.take(t0 + S, |_| true), Some(Job::Poll(id[1])));
    }

    #[test]
    fn stale_ids_are_skipped_without_using_a_slot_or_a_token() {
        let t0 = Instant::now();
        let (_t, id) = ids(3, t0);
        let mut q = PushQueue::new(1, 10, t0);
        q.begin(id[0]);
        q.poll_after(id[1], S, t0);
        q.poll_after(id[2], S, t0);
        let alive = |i: EntryId| i == id[2];
        assert_eq!(q.take(t0 + S, alive), Some(Job::Poll(id[2])));
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn polls_are_rate_limited_and_lag_is_reported() {
        let t0 = Instant::now();
        let (_t, id) = ids(30, t0);
        // 100 polls/s: a burst of 10, then one every 10 ms.
        let mut q = PushQueue::new(1000, 100, t0);
        for &i in &id {
            q.poll_after(i, S, t0);
        }
        let at = t0 + S;
        let mut got = 0;
        while q.take(at, |_| true).is_some() {
            got += 1;
        }
        assert_eq!(got, 10, "the burst");
        assert_eq!(q.next_due(at), Some(at + 10 * MS));
        assert_eq!(q.take(at + 9 * MS, |_| true), None);
        assert_eq!(q.take(at + 10 * MS, |_| true), Some(Job::Poll(id[10])));
        assert_eq!(q.lag(), 10 * MS);
        // After 100 ms, ten more tokens.
        let later = at + 110 * MS;
        let mut more = 0;
        while q.take(later, |_| true).is_some() {
            more += 1;
        }
        assert_eq!(more, 10);
        assert_eq!(q.lag(), 110 * MS);
    }

    #[test]
    fn lanes_of_different_intervals_are_served_in_due_order() {
        let t0 = Instant::now();
        let (_t, id) = ids(2, t0);
        let mut q = PushQueue::new(10, 1000, t0);
        q.poll_after(id[0], 2 * S, t0);
        q.poll_after(id[1], S, t0 + 500 * MS);
        assert_eq!(q.next_due(t0), Some(t0 + 1500 * MS));
        assert_eq!(q.take(t0 + 3 * S, |_| true), Some(Job::Poll(id[1])));
        assert_eq!(q.take(t0 + 3 * S, |_| true), Some(Job::Poll(id[0])));
    }
}
