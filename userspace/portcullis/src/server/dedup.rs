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
//! Requests are verified (Message-Authenticator / Request Authenticator) *before* they reach the
//! cache, so a forged packet cannot evict or poison an entry.
//!
//! Entries live in a slab; the hash map holds slab indexes. An entry with a deadline is linked
//! into one of two lists threaded through the slab, one for in-progress deadlines and one for
//! answers; each list's durations are constant, so appending keeps it sorted and its head is
//! the next to expire (or the oldest to evict). A NAS reuses its 256 identifiers within
//! seconds, so most entries are replaced long before their deadline: replacing unlinks the old
//! deadline in O(1). Memory is bounded by the number of entries, not by the request rate, and
//! no operation ever walks the cache.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
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

/// "No node" in the slab's links.
const NIL: u32 = u32::MAX;

/// Which deadline list a node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    None,
    Pending,
    Answered,
}

#[derive(Debug)]
struct Node {
    key: Key,
    authenticator: [u8; 16],
    state: State,
    /// Meaningful while `on` is not `None`.
    deadline: Instant,
    on: On,
    prev: u32,
    next: u32,
}

impl Node {
    /// A node on no list.
    fn new(key: Key, authenticator: [u8; 16], state: State, now: Instant) -> Node {
        Node {
            key,
            authenticator,
            state,
            deadline: now,
            on: On::None,
            prev: NIL,
            next: NIL,
        }
    }
}

/// Puts `node` in a free slot of the slab, or a new one; returns its index. The cache holds at
/// most `max_entries` (< `NIL`) nodes at once, so the index fits.
fn alloc(nodes: &mut Vec<Node>, free: &mut Vec<u32>, node: Node) -> u32 {
    match free.pop() {
        Some(i) => {
            nodes[i as usize] = node;
            i
        }
        None => {
            nodes.push(node);
            (nodes.len() - 1) as u32
        }
    }
}

/// A doubly linked list of slab nodes, oldest deadline first.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
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
    map: HashMap<Key, u32, foldhash::fast::RandomState>,
    nodes: Vec<Node>,
    /// Slab indexes of removed nodes, reused first.
    free: Vec<u32>,
    /// In-progress entries waiting elsewhere (accounting durability, a second factor), by
    /// deadline.
    pending: List,
    /// Answered entries, by deadline (the cache window).
    answered: List,
    window: Duration,
    in_progress_limit: Duration,
    max_entries: usize,
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
            nodes: Vec::new(),
            free: Vec::new(),
            pending: List::EMPTY,
            answered: List::EMPTY,
            window,
            in_progress_limit,
            // Slab indexes are u32 and NIL is reserved.
            max_entries: max_entries.clamp(1, (NIL - 1) as usize),
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

    fn list_mut(&mut self, on: On) -> Option<&mut List> {
        match on {
            On::None => None,
            On::Pending => Some(&mut self.pending),
            On::Answered => Some(&mut self.answered),
        }
    }

    /// Takes node `i` off its deadline list, if it is on one.
    fn unlink(&mut self, i: u32) {
        let (on, prev, next) = {
            let n = &self.nodes[i as usize];
            (n.on, n.prev, n.next)
        };
        if on == On::None {
            return;
        }
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if let Some(list) = self.list_mut(on) {
            if list.head == i {
                list.head = next;
            }
            if list.tail == i {
                list.tail = prev;
            }
        }
        let n = &mut self.nodes[i as usize];
        n.on = On::None;
        n.prev = NIL;
        n.next = NIL;
    }

    /// Appends node `i` (on no list) to list `on` with `deadline`. Every deadline of a list is
    /// "now + the list's constant duration", so the list stays sorted.
    fn link(&mut self, i: u32, on: On, deadline: Instant) {
        let Some(list) = self.list_mut(on) else {
            return;
        };
        let tail = list.tail;
        list.tail = i;
        if list.head == NIL {
            list.head = i;
        }
        if tail != NIL {
            self.nodes[tail as usize].next = i;
        }
        let n = &mut self.nodes[i as usize];
        n.on = on;
        n.deadline = deadline;
        n.prev = tail;
        n.next = NIL;
    }

    /// Removes node `i` and its key; its slot goes to the free list.
    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let n = &mut self.nodes[i as usize];
        let key = n.key;
        let state = std::mem::replace(&mut n.state, State::InProgress);
        Self::recycle(&mut self.spare, state);
        self.map.remove(&key);
        self.free.push(i);
    }

    /// Looks a verified request up and, when it is new, records it as in progress. The caller
    /// then answers it ([`answered`](Self::answered)), drops it ([`forget`](Self::forget)) or,
    /// if the answer comes later, calls [`deferred`](Self::deferred).
    pub fn check(&mut self, key: Key, authenticator: &[u8; 16], now: Instant) -> Lookup<'_> {
        self.expire(now);
        // Room for a new key, when full (rare: one more lookup).
        if self.map.len() >= self.max_entries && !self.map.contains_key(&key) {
            self.make_room();
        }
        // One lookup for the common cases (a new key, or a key whose identifier was reused).
        match self.map.entry(key) {
            MapEntry::Occupied(o) => {
                let i = *o.get();
                if &self.nodes[i as usize].authenticator == authenticator {
                    // A retransmission.
                    return match &self.nodes[i as usize].state {
                        State::InProgress => Lookup::InProgress,
                        State::Answered(bytes) => Lookup::Cached(bytes),
                    };
                }
                // The NAS reused the identifier: a new request in the same node.
                self.unlink(i);
                let n = &mut self.nodes[i as usize];
                n.authenticator = *authenticator;
                let old = std::mem::replace(&mut n.state, State::InProgress);
                Self::recycle(&mut self.spare, old);
                Lookup::New { replaced: true }
            }
            MapEntry::Vacant(v) => {
                let node = Node::new(key, *authenticator, State::InProgress, now);
                let i = alloc(&mut self.nodes, &mut self.free, node);
                v.insert(i);
                Lookup::New { replaced: false }
            }
        }
    }

    /// Evicts the oldest entries until there is room for one more.
    fn make_room(&mut self) {
        while self.map.len() >= self.max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// The slab index of `key`'s entry if it is for this request.
    fn find(&self, key: &Key, authenticator: &[u8; 16]) -> Option<u32> {
        self.map
            .get(key)
            .copied()
            .filter(|&i| &self.nodes[i as usize].authenticator == authenticator)
    }

    /// Marks a request reported as new as waiting for something (accounting durability, a
    /// second factor): it gets the in-progress deadline. Requests answered in the same call as
    /// [`check`](Self::check) never need one, so the common path links nothing here. A request
    /// already waiting keeps its first deadline.
    pub fn deferred(&mut self, key: Key, authenticator: &[u8; 16], now: Instant) {
        if let Some(i) = self.find(&key, authenticator) {
            let n = &self.nodes[i as usize];
            if matches!(n.state, State::InProgress) && n.on == On::None {
                self.link(i, On::Pending, now + self.in_progress_limit);
            }
        }
    }

    /// Stores the reply for a request that [`check`](Self::check) reported as new. A reply for an
    /// entry that has since been replaced (the NAS moved on to a new request) is not stored.
    ///
    /// A request the cache does not hold (it waited elsewhere, in the pending MFA table) is
    /// added as answered; one whose identifier a newer request took meanwhile is left alone.
    pub fn answered(&mut self, key: Key, authenticator: &[u8; 16], reply: &[u8], now: Instant) {
        let deadline = now + self.window;
        let i = match self.map.get(&key).copied() {
            Some(i) if &self.nodes[i as usize].authenticator == authenticator => {
                let bytes = self.boxed(reply);
                self.unlink(i);
                let old =
                    std::mem::replace(&mut self.nodes[i as usize].state, State::Answered(bytes));
                Self::recycle(&mut self.spare, old);
                i
            }
            Some(_) => return,
            None => {
                self.make_room();
                let bytes = self.boxed(reply);
                let node = Node::new(key, *authenticator, State::Answered(bytes), now);
                let i = alloc(&mut self.nodes, &mut self.free, node);
                self.map.insert(key, i);
                i
            }
        };
        self.link(i, On::Answered, deadline);
    }

    /// Forgets a request that was not answered (dropped after all), so that a retransmission is
    /// processed afresh.
    pub fn forget(&mut self, key: Key, authenticator: &[u8; 16]) {
        if let Some(i) = self.find(&key, authenticator) {
            self.remove(i);
        }
    }

    /// Drops every entry whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        for on in [On::Pending, On::Answered] {
            while let Some(head) = self.list_mut(on).map(|l| l.head).filter(|&h| h != NIL) {
                if self.nodes[head as usize].deadline > now {
                    break;
                }
                self.remove(head);
            }
        }
    }

    /// Removes the oldest answered entry, or failing that the oldest in-progress one.
    fn evict_oldest(&mut self) -> bool {
        for head in [self.answered.head, self.pending.head] {
            if head != NIL {
                self.remove(head);
                return true;
            }
        }
        false
    }

    /// Entries on the in-progress and the answer list, and slab nodes allocated (tests).
    #[cfg(test)]
    fn queued(&self) -> (usize, usize, usize) {
        let count = |list: List| {
            let (mut i, mut n) = (list.head, 0);
            while i != NIL {
                (i, n) = (self.nodes[i as usize].next, n + 1);
            }
            n
        };
        (count(self.pending), count(self.answered), self.nodes.len())
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
        assert_eq!(c.queued(), (0, 1000, 1000));
    }

    #[test]
    fn memory_is_bounded_by_the_entries_not_the_request_rate() {
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
        // Each entry is on the answer list once, in a slab of 2048 nodes.
        assert_eq!(c.queued(), (0, 2048, 2048));
        // The live deadlines survived compaction: every entry is still cached, and all expire
        // at the end of the window.
        for n in 200_000 - 2048..200_000u32 {
            let k = key((n % 8) as u16, (n / 8 % 256) as u8);
            assert_eq!(c.check(k, &authenticator(n), t0), Lookup::Cached(b"r"));
        }
        c.expire(t0 + Duration::from_secs(3601));
        assert_eq!(c.len(), 0);
        assert_eq!(c.queued(), (0, 0, 2048));
    }

    #[test]
    fn eviction_takes_the_oldest_answer_after_identifiers_were_reused() {
        // Capacity 3000: when full, the oldest answer goes first, also after other keys were
        // reused (their old deadlines unlinked from the middle of the list).
        let mut c = DedupCache::new(Duration::from_secs(3600), Duration::from_secs(3600), 3000);
        let t0 = Instant::now();
        // Keys 0..2999 answered in order, then keys 1000..2999 reused 3 times each; keys 0..999
        // are now the oldest answers.
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
        assert_eq!(c.queued(), (0, 3000, 3000));
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

    /// Checks the slab's lists against the map: every linked node is the map's node for its
    /// key, links are consistent both ways, deadlines are sorted, and every entry marked as on
    /// a list is reachable on it.
    fn check_invariants(c: &DedupCache) {
        for (on, list) in [(On::Pending, c.pending), (On::Answered, c.answered)] {
            let (mut i, mut prev, mut n, mut last) = (list.head, NIL, 0, None);
            while i != NIL {
                let node = &c.nodes[i as usize];
                assert_eq!(node.on, on);
                assert_eq!(node.prev, prev);
                assert_eq!(c.map.get(&node.key), Some(&i));
                if let Some(d) = last {
                    assert!(node.deadline >= d, "list out of order");
                }
                last = Some(node.deadline);
                (prev, i, n) = (i, node.next, n + 1);
            }
            assert_eq!(list.tail, prev);
            // Every entry marked as on this list is on it.
            let marked = c.map.values().filter(|&&i| c.nodes[i as usize].on == on);
            assert_eq!(marked.count(), n);
        }
        for (key, &i) in &c.map {
            assert_eq!(&c.nodes[i as usize].key, key);
            assert!(!c.free.contains(&i));
        }
        assert_eq!(c.map.len() + c.free.len(), c.nodes.len());
    }

    /// A model entry: (authenticator, reply if answered, (list, deadline, link order) if linked).
    type ModelEntry = ([u8; 16], Option<Vec<u8>>, Option<(On, Instant, u64)>);

    /// The reference: the same rules written as plainly as possible (every operation scans).
    #[derive(Default)]
    struct Model {
        entries: HashMap<Key, ModelEntry>,
        links: u64,
    }

    impl Model {
        fn head(&self, on: On) -> Option<(Key, Instant)> {
            self.entries
                .iter()
                .filter_map(|(k, (_, _, l))| l.filter(|l| l.0 == on).map(|l| (l.2, *k, l.1)))
                .min_by_key(|&(order, _, _)| order)
                .map(|(_, k, d)| (k, d))
        }
        fn link(&mut self, key: Key, on: On, deadline: Instant) {
            self.links += 1;
            if let Some(e) = self.entries.get_mut(&key) {
                e.2 = Some((on, deadline, self.links));
            }
        }
        fn expire(&mut self, now: Instant) {
            for on in [On::Pending, On::Answered] {
                while let Some((k, d)) = self.head(on) {
                    if d > now {
                        break;
                    }
                    self.entries.remove(&k);
                }
            }
        }
        fn make_room(&mut self, max: usize) {
            while self.entries.len() >= max {
                match self.head(On::Answered).or_else(|| self.head(On::Pending)) {
                    Some((k, _)) => {
                        self.entries.remove(&k);
                    }
                    None => break,
                }
            }
        }
    }

    #[test]
    fn random_operations_agree_with_a_plain_model() {
        const MAX: usize = 16;
        let (window, limit) = (Duration::from_secs(10), Duration::from_secs(5));
        let mut c = DedupCache::new(window, limit, MAX);
        let mut m = Model::default();
        let mut now = Instant::now();
        // xorshift64: deterministic, so a failure replays.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..50_000 {
            if rand(4) == 0 {
                // Whole seconds, so deadlines often fall exactly on `now`.
                now += Duration::from_secs(rand(4));
            }
            let k = key(rand(6) as u16, rand(5) as u8);
            let a = [rand(3) as u8; 16];
            match rand(4) {
                0 => {
                    let got = c.check(k, &a, now);
                    m.expire(now);
                    if m.entries.len() >= MAX && !m.entries.contains_key(&k) {
                        m.make_room(MAX);
                    }
                    let want = match m.entries.get_mut(&k) {
                        Some(e) if e.0 == a => match &e.1 {
                            Some(r) => Lookup::Cached(r),
                            None => Lookup::InProgress,
                        },
                        Some(e) => {
                            *e = (a, None, None);
                            Lookup::New { replaced: true }
                        }
                        None => {
                            m.entries.insert(k, (a, None, None));
                            Lookup::New { replaced: false }
                        }
                    };
                    assert_eq!(got, want, "step {step}");
                }
                1 => {
                    c.deferred(k, &a, now);
                    if let Some(e) = m.entries.get(&k) {
                        if e.0 == a && e.1.is_none() && e.2.is_none() {
                            m.link(k, On::Pending, now + limit);
                        }
                    }
                }
                2 => {
                    let reply = vec![rand(256) as u8; 1 + rand(3) as usize];
                    c.answered(k, &a, &reply, now);
                    match m.entries.get_mut(&k) {
                        Some(e) if e.0 == a => {
                            e.1 = Some(reply);
                            m.link(k, On::Answered, now + window);
                        }
                        Some(_) => {}
                        None => {
                            m.make_room(MAX);
                            m.entries.insert(k, (a, Some(reply), None));
                            m.link(k, On::Answered, now + window);
                        }
                    }
                }
                _ => {
                    c.forget(k, &a);
                    if m.entries.get(&k).is_some_and(|e| e.0 == a) {
                        m.entries.remove(&k);
                    }
                }
            }
            assert_eq!(c.len(), m.entries.len(), "step {step}");
            check_invariants(&c);
        }
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
