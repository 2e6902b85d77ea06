//! RFC 5080 §2.2.2 duplicate detection and reply cache, one per shard.
//!
//! A request is identified by the client's source address and port, the listener it reached,
//! the RADIUS Identifier and the Request Authenticator. A retransmission (same key, same
//! authenticator) is never processed twice: while the first copy is still being worked on it is
//! dropped, afterwards it gets the cached reply byte for byte. A packet with the same key but a
//! different authenticator is a new request from the NAS (it reused the identifier), so the
//! old entry is discarded and the new packet processed.
//!
//! The cache is sans-IO: the caller passes `now`, so tests drive it with a simulated clock.
//! Entries expire `window` after they were answered; the cache is bounded, evicting the oldest.
//! Memory is bounded by the number of entries, not by the request rate: a NAS reuses its 256
//! identifiers, so most entries are replaced long before their deadline, and the deadline
//! queues drop the items of replaced entries whenever those outnumber the live ones.
//! Requests are verified (Message-Authenticator / Request Authenticator) *before* they reach the
//! cache, so a forged packet cannot evict or poison an entry.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub from: SocketAddr,
    /// Index of the listener socket (auth and accounting ports have separate ID spaces).
    pub listener: u16,
    pub identifier: u8,
}

#[derive(Debug)]
enum State {
    InProgress,
    Answered(Box<[u8]>),
}

/// A deadline queue item: (deadline, key, generation of the entry it was queued for).
type Deadline = (Instant, Key, u64);

/// Items a deadline queue may hold beyond twice the number of entries before it is compacted.
const QUEUE_SLACK: usize = 1024;

#[derive(Debug)]
struct Entry {
    authenticator: [u8; 16],
    state: State,
    /// Generation stamp, so a stale expiry-queue item cannot remove a newer entry.
    generation: u64,
}

/// What to do with an incoming (already verified) request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not seen before (or a new request reusing the identifier): process it.
    New { replaced: bool },
    /// A retransmission of a request still being processed: drop it, the answer will come.
    InProgress,
    /// A retransmission of an answered request: send these bytes again.
    Cached(&'a [u8]),
}

pub struct DedupCache {
    /// foldhash (randomly seeded) rather than SipHash: it is hashed several times per request,
    /// and only verified requests (the peer knows the shared secret) ever insert a key.
    map: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// (deadline, key, generation) of in-progress entries; the limit is constant, so appends
    /// keep the queue sorted.
    pending_expiry: VecDeque<Deadline>,
    /// The same for answered entries, with the cache window.
    answered_expiry: VecDeque<Deadline>,
    window: Duration,
    in_progress_limit: Duration,
    max_entries: usize,
    generation: u64,
    /// The reply buffer of the last entry dropped, for the next answer of the same length:
    /// in the steady state every answer replaces an older entry (the NAS reuses its
    /// identifiers), so answers stop costing an allocation and a free each.
    spare: Option<Box<[u8]>>,
}

impl DedupCache {
    /// `window`: how long an answer stays cached. `in_progress_limit`: how long an unanswered
    /// entry may stay (a request whose processing failed without an answer must not block its
    /// retransmissions forever).
    pub fn new(window: Duration, in_progress_limit: Duration, max_entries: usize) -> Self {
        DedupCache {
            map: HashMap::default(),
            pending_expiry: VecDeque::new(),
            answered_expiry: VecDeque::new(),
            window,
            in_progress_limit,
            max_entries: max_entries.max(1),
            generation: 0,
            spare: None,
        }
    }

    /// A copy of `reply` to cache, in the spare buffer when it has the right length.
    fn boxed(&mut self, reply: &[u8]) -> Box<[u8]> {
        match self.spare.take() {
            Some(mut b) if b.len() == reply.len() => {
                b.copy_from_slice(reply);
                b
            }
            _ => reply.into(),
        }
    }

    /// Keeps the reply buffer of a dropped or replaced state as the spare.
    fn recycle(spare: &mut Option<Box<[u8]>>, dropped: State) {
        if let State::Answered(b) = dropped {
            *spare = Some(b);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks a verified request up and, when it is new, records it as in progress. The caller
    /// then answers it ([`answered`](Self::answered)), drops it ([`forget`](Self::forget)) or,
    /// if the answer comes later, calls [`deferred`](Self::deferred).
    pub fn check(&mut self, key: Key, authenticator: &[u8; 16], now: Instant) -> Lookup<'_> {
        self.expire(now);
        // Room for a new key, when full (rare: one more lookup).
        if self.map.len() >= self.max_entries && !self.map.contains_key(&key) {
            while self.map.len() >= self.max_entries {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        self.generation += 1;
        let entry = Entry {
            authenticator: *authenticator,
            state: State::InProgress,
            generation: self.generation,
        };
        // One lookup for the common cases (a new key, or a key whose identifier was reused).
        match self.map.entry(key) {
            MapEntry::Occupied(o) if &o.get().authenticator == authenticator => {
                // A retransmission; the generation taken above is simply not used.
                match &o.into_mut().state {
                    State::InProgress => Lookup::InProgress,
                    State::Answered(bytes) => Lookup::Cached(bytes),
                }
            }
            MapEntry::Occupied(mut o) => {
                Self::recycle(&mut self.spare, o.insert(entry).state);
                Lookup::New { replaced: true }
            }
            MapEntry::Vacant(v) => {
                v.insert(entry);
                Lookup::New { replaced: false }
            }
        }
    }

    /// Marks a request reported as new as waiting for something (accounting durability, a
    /// second factor): it gets the in-progress deadline. Requests answered in the same call as
    /// [`check`](Self::check) never need one, so the common path queues nothing here.
    pub fn deferred(&mut self, key: Key, authenticator: &[u8; 16], now: Instant) {
        if let Some(e) = self.map.get(&key) {
            if &e.authenticator == authenticator {
                let item = (now + self.in_progress_limit, key, e.generation);
                push_deadline(&mut self.pending_expiry, item, &self.map);
            }
        }
    }

    /// Stores the reply for a request that [`check`](Self::check) reported as new. A reply for an
    /// entry that has since been replaced (the NAS moved on to a new request) is not stored.
    ///
    /// A request the cache does not hold (it waited elsewhere, in the pending MFA table) is
    /// added as answered; one whose identifier a newer request took meanwhile is left alone.
    pub fn answered(&mut self, key: Key, authenticator: &[u8; 16], reply: &[u8], now: Instant) {
        let window = self.window;
        self.generation += 1;
        let generation = self.generation;
        let bytes = self.boxed(reply);
        match self.map.get_mut(&key) {
            Some(e) if &e.authenticator == authenticator => {
                let old = std::mem::replace(&mut e.state, State::Answered(bytes));
                Self::recycle(&mut self.spare, old);
                e.generation = generation;
            }
            Some(_) => {
                self.spare = Some(bytes);
                return;
            }
            None => {
                while self.map.len() >= self.max_entries {
                    if !self.evict_oldest() {
                        break;
                    }
                }
                self.map.insert(
                    key,
                    Entry {
                        authenticator: *authenticator,
                        state: State::Answered(bytes),
                        generation,
                    },
                );
            }
        }
        push_deadline(
            &mut self.answered_expiry,
            (now + window, key, generation),
            &self.map,
        );
    }

    /// Forgets a request that was not answered (dropped after all), so that a retransmission is
    /// processed afresh.
    pub fn forget(&mut self, key: Key, authenticator: &[u8; 16]) {
        if self
            .map
            .get(&key)
            .is_some_and(|e| &e.authenticator == authenticator)
        {
            self.map.remove(&key);
        }
    }

    /// Drops every entry whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        for queue in [&mut self.pending_expiry, &mut self.answered_expiry] {
            while let Some(&(deadline, key, generation)) = queue.front() {
                if deadline > now {
                    break;
                }
                queue.pop_front();
                if let MapEntry::Occupied(o) = self.map.entry(key) {
                    if o.get().generation == generation {
                        Self::recycle(&mut self.spare, o.remove().state);
                    }
                }
            }
        }
    }

    /// Items in the deadline queues, live or not (tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.pending_expiry.len() + self.answered_expiry.len()
    }

    /// Removes the oldest answered entry, or failing that the oldest in-progress one.
    fn evict_oldest(&mut self) -> bool {
        for queue in [&mut self.answered_expiry, &mut self.pending_expiry] {
            while let Some((_, key, generation)) = queue.pop_front() {
                if self
                    .map
                    .get(&key)
                    .is_some_and(|e| e.generation == generation)
                {
                    self.map.remove(&key);
                    return true;
                }
            }
        }
        false
    }
}

/// Appends `item` to a deadline queue. An item whose entry was replaced by a newer request
/// with the same key, answered (it then has an item in the other queue) or removed is dead: it
/// only waits for its deadline to be popped. A NAS reuses its identifiers within seconds, so
/// without compaction a queue would hold a dead item for every request of the last window
/// (a window of 10 s at 300 k requests/s: 3 M items, 190 MB). When dead items may outnumber the
/// entries, the queue keeps only the live ones, in order; each compaction leaves at most one
/// item per entry and follows at least as many appends as it scans items, so it costs O(1) per
/// append, amortised.
fn push_deadline(
    queue: &mut VecDeque<Deadline>,
    item: Deadline,
    map: &HashMap<Key, Entry, foldhash::fast::RandomState>,
) {
    queue.push_back(item);
    let bound = 2 * map.len() + QUEUE_SLACK;
    if queue.len() > bound {
        queue.retain(|(_, key, generation)| {
            map.get(key).is_some_and(|e| e.generation == *generation)
        });
        if queue.capacity() > 2 * bound {
            queue.shrink_to(bound);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_reply_buffer_holds_the_new_reply() {
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), Duration::from_secs(60), 16);
        let k = key(1000, 7);
        assert_eq!(c.check(k, &[1; 16], now), Lookup::New { replaced: false });
        c.answered(k, &[1; 16], b"first", now);
        // The NAS reuses the identifier: the old answer's buffer becomes the spare...
        assert_eq!(c.check(k, &[2; 16], now), Lookup::New { replaced: true });
        c.answered(k, &[2; 16], b"again", now);
        assert_eq!(c.check(k, &[2; 16], now), Lookup::Cached(b"again"));
        // ...and a reply of another length is not squeezed into it.
        assert_eq!(c.check(k, &[3; 16], now), Lookup::New { replaced: true });
        c.answered(k, &[3; 16], b"a longer reply", now);
        assert_eq!(c.check(k, &[3; 16], now), Lookup::Cached(b"a longer reply"));
        // An answer for an entry replaced meanwhile is still not stored.
        assert_eq!(c.check(k, &[4; 16], now), Lookup::New { replaced: true });
        c.answered(k, &[3; 16], b"stale", now);
        assert_eq!(c.check(k, &[4; 16], now), Lookup::InProgress);
    }

    #[test]
    fn an_answer_to_a_request_held_elsewhere_is_cached_for_its_retransmissions() {
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(30), Duration::from_secs(60), 16);
        let k = key(1000, 7);
        // Seen, then parked in the pending table (forgotten here).
        assert_eq!(c.check(k, &[1; 16], now), Lookup::New { replaced: false });
        c.forget(k, &[1; 16]);
        assert!(c.is_empty());
        c.answered(k, &[1; 16], b"reply", now);
        assert_eq!(c.check(k, &[1; 16], now), Lookup::Cached(b"reply"));
        // A newer request that took the identifier meanwhile is not overwritten.
        let k2 = key(1000, 8);
        assert_eq!(c.check(k2, &[2; 16], now), Lookup::New { replaced: false });
        c.answered(k2, &[3; 16], b"late", now);
        assert_eq!(c.check(k2, &[2; 16], now), Lookup::InProgress);
        // Answers expire after the window like any other.
        let later = now + Duration::from_secs(31);
        assert_eq!(c.check(k, &[1; 16], later), Lookup::New { replaced: false });
    }

    fn key(port: u16, id: u8) -> Key {
        Key {
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            listener: 0,
            identifier: id,
        }
    }

    fn cache() -> DedupCache {
        DedupCache::new(Duration::from_secs(30), Duration::from_secs(5), 1000)
    }

    #[test]
    fn retransmission_while_in_progress_is_dropped_then_answered_from_cache() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [1u8; 16];
        assert_eq!(
            c.check(key(1000, 7), &a, t0),
            Lookup::New { replaced: false }
        );
        assert_eq!(c.check(key(1000, 7), &a, t0), Lookup::InProgress);
        c.answered(key(1000, 7), &a, b"reply", t0);
        assert_eq!(
            c.check(key(1000, 7), &a, t0 + Duration::from_secs(29)),
            Lookup::Cached(b"reply")
        );
    }

    #[test]
    fn same_identifier_new_authenticator_is_a_new_request() {
        let mut c = cache();
        let t0 = Instant::now();
        c.check(key(1000, 7), &[1; 16], t0);
        c.answered(key(1000, 7), &[1; 16], b"old", t0);
        assert_eq!(
            c.check(key(1000, 7), &[2; 16], t0),
            Lookup::New { replaced: true }
        );
        // A late answer for the replaced request must not be cached under the new one.
        c.answered(key(1000, 7), &[1; 16], b"stale", t0);
        assert_eq!(c.check(key(1000, 7), &[2; 16], t0), Lookup::InProgress);
    }

    #[test]
    fn different_source_port_or_listener_is_a_different_request() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [1u8; 16];
        c.check(key(1000, 7), &a, t0);
        assert_eq!(
            c.check(key(1001, 7), &a, t0),
            Lookup::New { replaced: false }
        );
        let mut k = key(1000, 7);
        k.listener = 1;
        assert_eq!(c.check(k, &a, t0), Lookup::New { replaced: false });
    }

    #[test]
    fn answers_expire_after_the_window() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [3u8; 16];
        c.check(key(1, 1), &a, t0);
        c.answered(key(1, 1), &a, b"r", t0);
        assert_eq!(
            c.check(key(1, 1), &a, t0 + Duration::from_secs(31)),
            Lookup::New { replaced: false }
        );
    }

    #[test]
    fn unanswered_entries_expire_after_the_in_progress_limit() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [3u8; 16];
        c.check(key(1, 1), &a, t0);
        c.deferred(key(1, 1), &a, t0);
        assert_eq!(
            c.check(key(1, 1), &a, t0 + Duration::from_secs(4)),
            Lookup::InProgress
        );
        assert_eq!(
            c.check(key(1, 1), &a, t0 + Duration::from_secs(6)),
            Lookup::New { replaced: false }
        );
    }

    #[test]
    fn answered_entry_outlives_its_in_progress_deadline() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [3u8; 16];
        c.check(key(1, 1), &a, t0);
        c.deferred(key(1, 1), &a, t0);
        c.answered(key(1, 1), &a, b"r", t0 + Duration::from_secs(1));
        // The in-progress deadline (t0+5) passes; the answer (deadline t0+31) must stay.
        assert_eq!(
            c.check(key(1, 1), &a, t0 + Duration::from_secs(10)),
            Lookup::Cached(b"r")
        );
    }

    #[test]
    fn synchronous_answers_queue_no_in_progress_deadline() {
        let mut c = cache();
        let t0 = Instant::now();
        for i in 0..1000u16 {
            let a = [i as u8; 16];
            c.check(key(i, 1), &a, t0);
            c.answered(key(i, 1), &a, b"r", t0);
        }
        assert_eq!(c.pending_expiry.len(), 0);
        assert_eq!(c.answered_expiry.len(), 1000);
    }

    #[test]
    fn deadline_queues_stay_bounded_by_the_entries_not_the_request_rate() {
        // 8 NAS ports reusing all 256 identifiers, every request deferred (accounting) and then
        // answered, 200 000 requests within one window.
        let mut c = DedupCache::new(
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            1 << 18,
        );
        let t0 = Instant::now();
        for n in 0..200_000u32 {
            let k = key((n % 8) as u16, (n / 8 % 256) as u8);
            let a = authenticator(n);
            assert_eq!(
                c.check(k, &a, t0),
                Lookup::New {
                    replaced: n >= 2048
                }
            );
            c.deferred(k, &a, t0);
            c.answered(k, &a, b"r", t0);
        }
        assert_eq!(c.len(), 2048);
        assert!(
            c.queued() <= 2 * (2 * 2048 + QUEUE_SLACK),
            "{} items queued for {} entries",
            c.queued(),
            c.len()
        );
        // The live deadlines survived compaction: every entry is still cached, and all expire
        // at the end of the window.
        for n in 200_000 - 2048..200_000u32 {
            let k = key((n % 8) as u16, (n / 8 % 256) as u8);
            assert_eq!(c.check(k, &authenticator(n), t0), Lookup::Cached(b"r"));
        }
        c.expire(t0 + Duration::from_secs(3601));
        assert_eq!(c.len(), 0);
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn compaction_keeps_the_eviction_order() {
        // Capacity 3000: when full, the oldest live entry goes first, also after the queue
        // dropped the dead items of reused keys.
        let mut c = DedupCache::new(Duration::from_secs(3600), Duration::from_secs(3600), 3000);
        let t0 = Instant::now();
        // Keys 0..2999 answered in order, then keys 1000..2999 reused 3 times each (their dead
        // items trigger compactions); keys 0..999 are now the oldest live entries.
        for n in 0..3000u32 {
            let k = key(n as u16, 0);
            c.check(k, &authenticator(n), t0);
            c.answered(k, &authenticator(n), b"r", t0);
        }
        for round in 1..=3u32 {
            for n in 1000..3000u32 {
                let k = key(n as u16, 0);
                let a = authenticator(n + round * 10_000);
                c.check(k, &a, t0);
                c.answered(k, &a, b"r", t0);
            }
        }
        assert!(c.queued() <= 2 * 3000 + QUEUE_SLACK, "{}", c.queued());
        // A new key evicts key 0, the oldest; key 1 stays.
        c.check(key(5000, 0), &authenticator(5000), t0);
        assert_eq!(c.len(), 3000);
        assert_eq!(
            c.check(key(1, 0), &authenticator(1), t0),
            Lookup::Cached(b"r")
        );
        assert_eq!(
            c.check(key(0, 0), &authenticator(0), t0),
            Lookup::New { replaced: false }
        );
    }

    /// A distinct Request Authenticator per request number.
    fn authenticator(n: u32) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&n.to_be_bytes());
        a
    }

    #[test]
    fn forget_lets_a_retransmission_be_processed() {
        let mut c = cache();
        let t0 = Instant::now();
        let a = [3u8; 16];
        c.check(key(1, 1), &a, t0);
        c.forget(key(1, 1), &a);
        assert_eq!(c.check(key(1, 1), &a, t0), Lookup::New { replaced: false });
    }

    #[test]
    fn bounded_evicting_the_oldest() {
        let mut c = DedupCache::new(Duration::from_secs(30), Duration::from_secs(5), 3);
        let t0 = Instant::now();
        for p in 0..5u16 {
            let t = t0 + Duration::from_millis(p.into());
            c.check(key(p, 0), &[p as u8; 16], t);
            c.deferred(key(p, 0), &[p as u8; 16], t);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.check(key(0, 0), &[0; 16], t0 + Duration::from_millis(10)),
            Lookup::New { replaced: false }
        );
        assert_eq!(
            c.check(key(4, 0), &[4; 16], t0 + Duration::from_millis(10)),
            Lookup::InProgress
        );
    }
}
