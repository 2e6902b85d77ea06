//! The per-shard table of logins waiting for a second factor.
//!
//! An Access-Request that passed primary authentication and policy may have to wait 60-120 s
//! for a push approval. Each shard owns one [`PendingTable`] holding those waits: the login it
//! belongs to, the server's value (`V`, e.g. the MFA transaction) and every request waiting for
//! the answer (`W`, e.g. what is needed to build the reply). The table is single-threaded:
//! the kernel's SO_REUSEPORT 4-tuple hash sends a NAS port to one shard, that shard alone
//! touches its table, so the hot path needs no lock and no atomic.
//!
//! What it does:
//! - [`begin`](PendingTable::begin) admits a new wait, bounded per shard, per client and per
//!   user; over a limit it answers [`Refused`] with the limit that was hit, so the server rejects
//!   with a reason instead of exhausting memory.
//! - [`join_request`](PendingTable::join_request) recognises a retransmission (same RFC 5080
//!   identity: source, listener, identifier, Request Authenticator) of a waiting request: the
//!   server drops it and never starts a second push.
//! - [`join_login`](PendingTable::join_login) attaches a *new* attempt by the same user on the
//!   same client to the wait already running, bounded per entry; all waiters are answered
//!   together.
//! - [`complete`](PendingTable::complete), [`expire`](PendingTable::expire) and
//!   [`drain_all`](PendingTable::drain_all) remove entries and hand back the value and all the
//!   waiters, so every waiting request is answered (accept/reject, reject "timeout", reject on
//!   shutdown) and none is dropped silently.
//! - Entry ids carry a generation, so a late answer for an entry that already expired (or whose
//!   slot now holds another login) is recognised and returns `None`.
//!
//! How: entries live in a slab (`Vec` of slots and a free list, no box per entry); the request
//! and login indexes are hash tables of 4-8 byte slab references that hash the keys stored in
//! the slab, so no key is stored twice. Deadlines sit in a hashed timer wheel of
//! [`WHEEL_SLOTS`] slots of [`TICK`] each (a span of 512 s); later deadlines wait in an overflow
//! list that is re-sorted into the wheel once per revolution. Insert and cancel are O(1) (an
//! entry knows its wheel position), expiry is amortised O(1) per entry. The server calls
//! [`expire`](PendingTable::expire) about once a second, or when
//! [`next_deadline`](PendingTable::next_deadline) says so: the table has no timer of its own.
//!
//! What it does not do:
//! - No I/O, no clock, no tokio: every call that needs the time takes `now`, so tests drive it
//!   with a simulated clock.
//! - It does not remember completed requests. After an answer, retransmissions are the duplicate
//!   cache's business (RFC 5080, `server/dedup.rs`): the server records each waiter's reply there
//!   ([`Completed::waiters`] carries every [`RequestKey`]) and the cache resends it. While a
//!   request waits, the duplicate cache drops retransmissions for its in-progress limit (a few
//!   seconds); after that they reach this table and [`join_request`](PendingTable::join_request)
//!   keeps them from starting a second push.
//! - It does not normalise user names or decide whether new attempts should join: the server
//!   builds [`LoginKey`]s (case folding, alternate login-id) and calls
//!   [`join_login`](PendingTable::join_login) only when joining is configured. `client` must be
//!   an id that stays stable across a configuration reload (the table itself survives reloads;
//!   [`set_limits`](PendingTable::set_limits) applies new limits to new admissions only).
//! - It does not give memory back after a peak: slab, indexes and wheel keep their capacity.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use portcullis_pending::{Limits, LoginKey, PendingTable, RequestKey};
//!
//! let mut table: PendingTable<&str, u8> = PendingTable::new(Limits::default());
//! let now = Instant::now();
//! let request = RequestKey {
//!     from: "192.0.2.10:40000".parse().unwrap(),
//!     listener: 0,
//!     identifier: 7,
//!     authenticator: [1; 16],
//! };
//! let login = LoginKey::new(3, "alice");
//! let id = table
//!     .begin(login, request, 0, "push sent", now + Duration::from_secs(120), now)
//!     .unwrap();
//! // The NAS retransmits: drop it, no second push.
//! assert_eq!(table.join_request(&request), Some(id));
//! // The phone approves: answer every waiter.
//! let done = table.complete(id).unwrap();
//! assert_eq!(done.waiters.len(), 1);
//! // Nothing left to time out; a late second answer is ignored.
//! assert!(table.expire(now + Duration::from_secs(121)).is_empty());
//! assert!(table.complete(id).is_none());
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

/// Width of one timer-wheel slot.
pub const TICK: Duration = Duration::from_secs(1);
/// Number of timer-wheel slots; deadlines further than `WHEEL_SLOTS * TICK` ahead wait in the
/// overflow list.
pub const WHEEL_SLOTS: usize = 512;

/// Index of the overflow list among the wheel's vectors.
const OVERFLOW: u32 = WHEEL_SLOTS as u32;
/// Slab indexes are `u32`, with `u32::MAX` never used.
const OVERFLOW_SLAB: usize = u32::MAX as usize;

/// The RFC 5080 identity of one request: a retransmission has the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    pub from: SocketAddr,
    /// Index of the listener socket the request reached.
    pub listener: u16,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

/// Who is logging in where: a new attempt with the same key may join a pending entry.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoginKey {
    /// A client id that stays stable across configuration reloads.
    pub client: u32,
    /// The MFA identity as the server normalised it.
    pub user: Box<str>,
}

impl LoginKey {
    pub fn new(client: u32, user: impl Into<Box<str>>) -> Self {
        LoginKey {
            client,
            user: user.into(),
        }
    }
}

impl fmt::Debug for LoginKey {
    /// The user name is escaped (`{:?}` of a `str`), never printed raw.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginKey")
            .field("client", &self.client)
            .field("user", &&*self.user)
            .finish()
    }
}

/// Handle of a pending entry. It goes stale when the entry is completed, expired or drained,
/// and stays stale when the slot is reused (the generation differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    index: u32,
    generation: u32,
}

/// Admission limits. Counted in entries (pending logins), except `max_waiters_per_entry`,
/// which counts the requests attached to one entry, the first included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pending logins in this shard.
    pub max_entries: usize,
    /// Pending logins of one client in this shard.
    pub max_per_client: usize,
    /// Pending logins of one user name (across clients) in this shard.
    pub max_per_user: usize,
    /// Requests answered by one entry: the first plus those that joined.
    pub max_waiters_per_entry: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 500_000,
            max_per_client: 100_000,
            max_per_user: 4,
            max_waiters_per_entry: 8,
        }
    }
}

/// Why a request was not admitted. The server answers it with Access-Reject and this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("too many pending MFA logins on this shard (limit {limit})")]
    ShardFull { limit: usize },
    #[error("too many pending MFA logins from this client (limit {limit})")]
    ClientLimit { limit: usize },
    #[error("too many pending MFA logins for this user (limit {limit})")]
    UserLimit { limit: usize },
    #[error("too many requests joined to one pending MFA login (limit {limit})")]
    WaiterLimit { limit: usize },
    /// The request itself is already waiting (a retransmission): the caller should have asked
    /// [`PendingTable::join_request`] first. Nothing was changed.
    #[error("request is already waiting for MFA")]
    AlreadyPending { id: EntryId },
}

impl Refused {
    /// A short stable name for counters and audit lines.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::ShardFull { .. } => "pending_shard_full",
            Refused::ClientLimit { .. } => "pending_client_limit",
            Refused::UserLimit { .. } => "pending_user_limit",
            Refused::WaiterLimit { .. } => "pending_waiter_limit",
            Refused::AlreadyPending { .. } => "pending_duplicate",
        }
    }
}

/// One request waiting for an entry's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter<W> {
    pub request: RequestKey,
    pub payload: W,
}

/// The requests of one entry, in arrival order. The first is stored inline: most entries
/// never get a second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiters<W> {
    first: Waiter<W>,
    /// Boxed: an empty `Vec` would cost 24 bytes in every entry, this costs 8 (the extra
    /// allocation is only made for the rare entry that gets a second waiter).
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Waiter<W>>>>,
}

impl<W> Waiters<W> {
    fn one(first: Waiter<W>) -> Self {
        Waiters { first, more: None }
    }

    pub fn len(&self) -> usize {
        1 + self.more.as_ref().map_or(0, |m| m.len())
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The request that began the entry.
    pub fn first(&self) -> &Waiter<W> {
        &self.first
    }

    pub fn get(&self, i: usize) -> Option<&Waiter<W>> {
        match i {
            0 => Some(&self.first),
            _ => self.more.as_ref()?.get(i - 1),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Waiter<W>> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.iter()))
    }
}

impl<W> IntoIterator for Waiters<W> {
    type Item = Waiter<W>;
    type IntoIter = std::iter::Chain<std::iter::Once<Waiter<W>>, std::vec::IntoIter<Waiter<W>>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.more.map(|m| *m).unwrap_or_default())
    }
}

/// An entry taken out of the table, with everything needed to answer it.
#[derive(Debug)]
pub struct Completed<V, W> {
    pub id: EntryId,
    pub login: LoginKey,
    pub value: V,
    pub waiters: Waiters<W>,
    pub deadline: Instant,
    /// Retransmissions seen by [`PendingTable::join_request`].
    pub retransmissions: u32,
}

struct Entry<V, W> {
    login: LoginKey,
    waiters: Waiters<W>,
    value: V,
    deadline: Instant,
    /// Wheel vector (0..WHEEL_SLOTS, or OVERFLOW) and position in it.
    wheel_slot: u32,
    wheel_pos: u32,
    retransmissions: u32,
    /// Whether the login index points at this entry (it points at the latest begun entry of a
    /// login; older ones exist only when the server begins without joining).
    login_indexed: bool,
}

struct Slot<V, W> {
    /// Bumped on every removal, so ids of earlier occupants go stale.
    generation: u32,
    entry: Option<Entry<V, W>>,
}

/// A request index item: waiter `waiter` of the entry in slab slot `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestRef {
    slot: u32,
    waiter: u32,
}

fn request_of<V, W>(slots: &[Slot<V, W>], r: RequestRef) -> Option<&RequestKey> {
    slots
        .get(r.slot as usize)?
        .entry
        .as_ref()?
        .waiters
        .get(r.waiter as usize)
        .map(|w| &w.request)
}

fn login_of<V, W>(slots: &[Slot<V, W>], slot: u32) -> Option<&LoginKey> {
    slots.get(slot as usize)?.entry.as_ref().map(|e| &e.login)
}

/// Hashed timer wheel of slab indexes.
struct Wheel {
    /// Time of tick 0; set by the first call that passes `now`.
    origin: Option<Instant>,
    /// Every tick before this one has been expired; vector `tick % WHEEL_SLOTS` holds the
    /// entries of this tick (and of earlier ticks inserted late).
    tick: u64,
    /// `WHEEL_SLOTS` slot vectors, then the overflow list.
    slots: Box<[Vec<u32>]>,
}

impl Wheel {
    fn new() -> Self {
        Wheel {
            origin: None,
            tick: 0,
            slots: (0..=WHEEL_SLOTS).map(|_| Vec::new()).collect(),
        }
    }

    fn observe(&mut self, now: Instant) {
        if self.origin.is_none() {
            self.origin = Some(now);
        }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        let since = self
            .origin
            .map_or(Duration::ZERO, |o| t.saturating_duration_since(o));
        let ticks = since.as_nanos() / TICK.as_nanos();
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Where an entry with this deadline goes now.
    fn slot_for(&self, deadline: Instant) -> u32 {
        let t = self.tick_of(deadline).max(self.tick);
        if t - self.tick < WHEEL_SLOTS as u64 {
            (t % WHEEL_SLOTS as u64) as u32
        } else {
            OVERFLOW
        }
    }

    fn push(&mut self, slot: u32, index: u32) -> u32 {
        let v = &mut self.slots[slot as usize];
        v.push(index);
        (v.len() - 1) as u32
    }

    /// Removes position `pos` of `slot`; returns the index moved into `pos`, if any.
    fn unlink(&mut self, slot: u32, pos: u32) -> Option<u32> {
        let v = &mut self.slots[slot as usize];
        let pos = pos as usize;
        if pos >= v.len() {
            return None;
        }
        v.swap_remove(pos);
        v.get(pos).copied()
    }

    fn heap_bytes(&self) -> usize {
        self.slots.len() * mem::size_of::<Vec<u32>>()
            + self
                .slots
                .iter()
                .map(|v| v.capacity() * mem::size_of::<u32>())
                .sum::<usize>()
    }
}

/// Logins waiting for a second factor, owned by one shard. See the crate documentation.
pub struct PendingTable<V, W> {
    limits: Limits,
    slots: Vec<Slot<V, W>>,
    free: Vec<u32>,
    len: usize,
    hasher: DefaultHashBuilder,
    by_request: HashTable<RequestRef>,
    by_login: HashTable<u32>,
    per_client: HashMap<u32, u32>,
    per_user: HashMap<Box<str>, u32>,
    wheel: Wheel,
    /// Bytes of user names owned by live entries and by `per_user` keys.
    name_bytes: usize,
    /// Capacity (in waiters) of the spill vectors of live entries.
    spilled_waiters: usize,
}

impl<V, W> fmt::Debug for PendingTable<V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTable")
            .field("len", &self.len)
            .field("limits", &self.limits)
            .field("tick", &self.wheel.tick)
            .finish_non_exhaustive()
    }
}

impl<V, W> PendingTable<V, W> {
    pub fn new(limits: Limits) -> Self {
        PendingTable {
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            hasher: DefaultHashBuilder::default(),
            by_request: HashTable::new(),
            by_login: HashTable::new(),
            per_client: HashMap::new(),
            per_user: HashMap::new(),
            wheel: Wheel::new(),
            name_bytes: 0,
            spilled_waiters: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// New limits (after a configuration reload) apply to admissions from now on; entries
    /// already pending stay even when they exceed them.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Pending entries (logins), not counting joined waiters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len_for_client(&self, client: u32) -> usize {
        self.per_client.get(&client).map_or(0, |&n| n as usize)
    }

    /// Pending entries of this user name, across clients.
    pub fn len_for_user(&self, user: &str) -> usize {
        self.per_user.get(user).map_or(0, |&n| n as usize)
    }

    /// Whether `id` still names a pending entry.
    pub fn contains(&self, id: EntryId) -> bool {
        self.entry(id).is_some()
    }

    pub fn value(&self, id: EntryId) -> Option<&V> {
        self.entry(id).map(|e| &e.value)
    }

    pub fn value_mut(&mut self, id: EntryId) -> Option<&mut V> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut().map(|e| &mut e.value)
    }

    pub fn login(&self, id: EntryId) -> Option<&LoginKey> {
        self.entry(id).map(|e| &e.login)
    }

    pub fn waiters(&self, id: EntryId) -> Option<&Waiters<W>> {
        self.entry(id).map(|e| &e.waiters)
    }

    pub fn deadline(&self, id: EntryId) -> Option<Instant> {
        self.entry(id).map(|e| e.deadline)
    }

    fn entry(&self, id: EntryId) -> Option<&Entry<V, W>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn id_of(&self, index: u32) -> EntryId {
        EntryId {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    fn find_request(&self, request: &RequestKey) -> Option<u32> {
        let hash = self.hasher.hash_one(request);
        let slots = &self.slots;
        self.by_request
            .find(hash, |&r| request_of(slots, r) == Some(request))
            .map(|r| r.slot)
    }

    fn find_login(&self, login: &LoginKey) -> Option<u32> {
        let hash = self.hasher.hash_one(login);
        let slots = &self.slots;
        self.by_login
            .find(hash, |&i| login_of(slots, i) == Some(login))
            .copied()
    }

    /// The entry `login` is waiting in, if any (lets the caller decide between
    /// [`join_login`](Self::join_login) and [`begin`](Self::begin) before handing over a waiter).
    pub fn pending_login(&self, login: &LoginKey) -> Option<EntryId> {
        self.find_login(login).map(|i| self.id_of(i))
    }

    /// Admits a new wait for `login`, answered by `request` (and any request that joins later)
    /// when [`complete`](Self::complete)d, or by [`expire`](Self::expire) once `deadline` passed.
    /// Checks, in this order: the request is not already waiting, then the shard, client and
    /// user limits.
    pub fn begin(
        &mut self,
        login: LoginKey,
        request: RequestKey,
        waiter: W,
        value: V,
        deadline: Instant,
        now: Instant,
    ) -> Result<EntryId, Refused> {
        self.wheel.observe(now);
        if let Some(index) = self.find_request(&request) {
            return Err(Refused::AlreadyPending {
                id: self.id_of(index),
            });
        }
        let limits = self.limits;
        if self.len >= limits.max_entries
            || (self.free.is_empty() && self.slots.len() >= OVERFLOW_SLAB)
        {
            return Err(Refused::ShardFull {
                limit: limits.max_entries,
            });
        }
        if self.len_for_client(login.client) >= limits.max_per_client {
            return Err(Refused::ClientLimit {
                limit: limits.max_per_client,
            });
        }
        if self.len_for_user(&login.user) >= limits.max_per_user {
            return Err(Refused::UserLimit {
                limit: limits.max_per_user,
            });
        }

        // Counters.
        *self.per_client.entry(login.client).or_insert(0) += 1;
        match self.per_user.get_mut(&*login.user) {
            Some(n) => *n += 1,
            None => {
                self.name_bytes += login.user.len();
                self.per_user.insert(login.user.clone(), 1);
            }
        }
        self.name_bytes += login.user.len();

        // Slab slot and wheel position.
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let wheel_slot = self.wheel.slot_for(deadline);
        let wheel_pos = self.wheel.push(wheel_slot, index);
        let request_hash = self.hasher.hash_one(request);
        let login_hash = self.hasher.hash_one(&login);
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(Entry {
            login,
            waiters: Waiters::one(Waiter {
                request,
                payload: waiter,
            }),
            value,
            deadline,
            wheel_slot,
            wheel_pos,
            retransmissions: 0,
            login_indexed: true,
        });
        let generation = slot.generation;
        self.len += 1;

        // Indexes; the entry is in the slab already, so rehashing can read every key.
        let (slots, hasher) = (&mut self.slots, &self.hasher);
        self.by_request.insert_unique(
            request_hash,
            RequestRef {
                slot: index,
                waiter: 0,
            },
            |&r| request_of(slots, r).map_or(0, |k| hasher.hash_one(k)),
        );
        let login_ref = slots[index as usize].entry.as_ref().map(|e| &e.login);
        let previous = self.by_login.find_mut(login_hash, |&i| {
            i != index && login_of(slots, i) == login_ref
        });
        match previous {
            Some(i) => {
                let old = mem::replace(i, index);
                if let Some(e) = slots[old as usize].entry.as_mut() {
                    e.login_indexed = false;
                }
            }
            None => {
                self.by_login.insert_unique(login_hash, index, |&i| {
                    login_of(slots, i).map_or(0, |k| hasher.hash_one(k))
                });
            }
        }
        Ok(EntryId { index, generation })
    }

    /// A retransmission of a waiting request: returns its entry (the caller drops the datagram;
    /// the answer goes out when the entry completes) and counts it. `None`: not waiting here.
    pub fn join_request(&mut self, request: &RequestKey) -> Option<EntryId> {
        let index = self.find_request(request)?;
        let slot = &mut self.slots[index as usize];
        let e = slot.entry.as_mut()?;
        e.retransmissions = e.retransmissions.saturating_add(1);
        Some(EntryId {
            index,
            generation: slot.generation,
        })
    }

    /// A new attempt (different identifier or authenticator) by a login that is already
    /// waiting: attaches `request` to that entry, to be answered with it. The deadline is not
    /// extended. `Ok(None)`: no entry to join, begin one. Checks, in this order: the request
    /// is not already waiting, an entry exists, it has room for another waiter.
    pub fn join_login(
        &mut self,
        login: &LoginKey,
        request: RequestKey,
        waiter: W,
    ) -> Result<Option<EntryId>, Refused> {
        if let Some(index) = self.find_request(&request) {
            return Err(Refused::AlreadyPending {
                id: self.id_of(index),
            });
        }
        let Some(index) = self.find_login(login) else {
            return Ok(None);
        };
        let max = self.limits.max_waiters_per_entry;
        let slot = &mut self.slots[index as usize];
        let generation = slot.generation;
        let Some(e) = slot.entry.as_mut() else {
            return Ok(None);
        };
        if e.waiters.len() >= max {
            return Err(Refused::WaiterLimit { limit: max });
        }
        let waiter_index = e.waiters.len() as u32;
        let more = e.waiters.more.get_or_insert_with(Box::default);
        let before = more.capacity();
        more.push(Waiter {
            request,
            payload: waiter,
        });
        self.spilled_waiters += more.capacity() - before;

        let request_hash = self.hasher.hash_one(request);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_request.insert_unique(
            request_hash,
            RequestRef {
                slot: index,
                waiter: waiter_index,
            },
            |&r| request_of(slots, r).map_or(0, |k| hasher.hash_one(k)),
        );
        Ok(Some(EntryId { index, generation }))
    }

    /// Removes the entry to answer it (the second factor resolved). `None` when `id` is stale:
    /// the entry already completed, expired or was drained, so the late answer is ignored.
    pub fn complete(&mut self, id: EntryId) -> Option<Completed<V, W>> {
        self.entry(id)?;
        self.remove(id.index, true)
    }

    /// Removes and returns every entry whose deadline is at or before `now` (the server answers
    /// them with Access-Reject "timeout").
    pub fn expire(&mut self, now: Instant) -> Vec<Completed<V, W>> {
        let mut out = Vec::new();
        self.expire_into(now, &mut out);
        out
    }

    /// [`expire`](Self::expire) appending to a vector the caller reuses.
    pub fn expire_into(&mut self, now: Instant, out: &mut Vec<Completed<V, W>>) {
        self.wheel.observe(now);
        let now_tick = self.wheel.tick_of(now);
        while self.wheel.tick < now_tick {
            if self.len == 0 {
                // Nothing anywhere (overflow included): skip the idle ticks.
                self.wheel.tick = now_tick;
                break;
            }
            // Every entry of this tick has a deadline before `now_tick` began.
            let s = (self.wheel.tick % WHEEL_SLOTS as u64) as usize;
            let mut due = mem::take(&mut self.wheel.slots[s]);
            for &index in &due {
                out.extend(self.remove(index, false));
            }
            due.clear();
            self.wheel.slots[s] = due;
            self.wheel.tick += 1;
            if self.wheel.tick % WHEEL_SLOTS as u64 == 0 {
                self.cascade();
            }
        }
        // The current tick: only those already due.
        let s = (self.wheel.tick % WHEEL_SLOTS as u64) as usize;
        let mut pos = 0;
        while let Some(&index) = self.wheel.slots[s].get(pos) {
            let due = self.slots[index as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.deadline <= now);
            if due {
                out.extend(self.remove(index, true));
            } else {
                pos += 1;
            }
        }
    }

    /// Moves the overflow entries that now fall within the wheel's span into their slots.
    fn cascade(&mut self) {
        let overflow = mem::take(&mut self.wheel.slots[OVERFLOW as usize]);
        for index in overflow {
            let Some(e) = self.slots[index as usize].entry.as_mut() else {
                continue;
            };
            let slot = self.wheel.slot_for(e.deadline);
            e.wheel_slot = slot;
            e.wheel_pos = self.wheel.push(slot, index);
        }
    }

    /// The earliest deadline of a pending entry: call [`expire`](Self::expire) then. It may be
    /// in the past when `expire` has not been called for a while.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let earliest = |v: &Vec<u32>| {
            v.iter()
                .filter_map(|&i| self.slots[i as usize].entry.as_ref())
                .map(|e| e.deadline)
                .min()
        };
        // The first non-empty slot holds the wheel's earliest deadlines. The overflow list is
        // scanned too: entries that entered the wheel since the last cascade may lie beyond
        // some of it. (With timeouts shorter than the span it is empty.)
        let in_wheel = (0..WHEEL_SLOTS as u64)
            .map(|k| &self.wheel.slots[((self.wheel.tick + k) % WHEEL_SLOTS as u64) as usize])
            .find(|v| !v.is_empty())
            .and_then(earliest);
        let in_overflow = earliest(&self.wheel.slots[OVERFLOW as usize]);
        match (in_wheel, in_overflow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes every entry (shutdown): the server answers each waiter with a reject rather than
    /// dropping it. The table stays usable.
    pub fn drain_all(&mut self) -> Vec<Completed<V, W>> {
        let mut out = Vec::with_capacity(self.len);
        for index in 0..self.slots.len() as u32 {
            if self.slots[index as usize].entry.is_some() {
                out.extend(self.remove(index, false));
            }
        }
        for v in self.wheel.slots.iter_mut() {
            v.clear();
        }
        out
    }

    /// Takes the entry out of slot `index` and out of every index; `unlink_wheel` is false when
    /// the caller already took the wheel vector holding it.
    fn remove(&mut self, index: u32, unlink_wheel: bool) -> Option<Completed<V, W>> {
        let slot = self.slots.get_mut(index as usize)?;
        let entry = slot.entry.take()?;
        let id = EntryId {
            index,
            generation: slot.generation,
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;

        if unlink_wheel {
            if let Some(moved) = self.wheel.unlink(entry.wheel_slot, entry.wheel_pos) {
                if let Some(m) = self.slots[moved as usize].entry.as_mut() {
                    m.wheel_pos = entry.wheel_pos;
                }
            }
        }
        for (w, waiter) in entry.waiters.iter().enumerate() {
            let hash = self.hasher.hash_one(waiter.request);
            let wanted = RequestRef {
                slot: index,
                waiter: w as u32,
            };
            if let Ok(found) = self.by_request.find_entry(hash, |&r| r == wanted) {
                found.remove();
            }
        }
        if entry.login_indexed {
            let hash = self.hasher.hash_one(&entry.login);
            if let Ok(found) = self.by_login.find_entry(hash, |&i| i == index) {
                found.remove();
            }
        }
        if let Some(n) = self.per_client.get_mut(&entry.login.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.login.client);
            }
        }
        if let Some(n) = self.per_user.get_mut(&*entry.login.user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&*entry.login.user);
                self.name_bytes -= entry.login.user.len();
            }
        }
        self.name_bytes -= entry.login.user.len();
        self.spilled_waiters -= entry.waiters.more.as_ref().map_or(0, |m| m.capacity());

        Some(Completed {
            id,
            login: entry.login,
            value: entry.value,
            waiters: entry.waiters,
            deadline: entry.deadline,
            retransmissions: entry.retransmissions,
        })
    }

    /// Estimated heap bytes owned by the table: slab, free list, indexes, counters, wheel, user
    /// names and spilled waiters. Heap owned *inside* `V` and `W` (and malloc's own overhead)
    /// is not counted; the `fill` example measures the whole process for comparison.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * mem::size_of::<Slot<V, W>>()
            + self.free.capacity() * mem::size_of::<u32>()
            + self.by_request.allocation_size()
            + self.by_login.allocation_size()
            + self.per_client.allocation_size()
            + self.per_user.allocation_size()
            + self.wheel.heap_bytes()
            + self.name_bytes
            + self.spilled_waiters * mem::size_of::<Waiter<W>>()
    }

    /// [`heap_bytes`](Self::heap_bytes) per pending entry (0 when empty), for metrics.
    pub fn approx_bytes_per_entry(&self) -> usize {
        self.heap_bytes().checked_div(self.len).unwrap_or(0)
    }

    /// Bytes of one slab slot for these payload types (the fixed part of an entry).
    pub fn slot_bytes() -> usize {
        mem::size_of::<Slot<V, W>>()
    }
}

#[cfg(test)]
impl<V, W> PendingTable<V, W> {
    /// Every structure agrees with the slab.
    fn check_invariants(&self) {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].entry.is_some())
            .collect();
        assert_eq!(live.len(), self.len);
        assert_eq!(self.free.len() + self.len, self.slots.len());
        let mut in_wheel = 0;
        for (s, v) in self.wheel.slots.iter().enumerate() {
            for (pos, &i) in v.iter().enumerate() {
                let e = self.slots[i as usize]
                    .entry
                    .as_ref()
                    .expect("wheel holds a free slot");
                assert_eq!((e.wheel_slot as usize, e.wheel_pos as usize), (s, pos));
                let t = self.wheel.tick_of(e.deadline).max(self.wheel.tick);
                if s == OVERFLOW as usize {
                    assert!(
                        t >= self.wheel.tick + WHEEL_SLOTS as u64
                            - self.wheel.tick % WHEEL_SLOTS as u64
                    );
                } else {
                    assert!(t < self.wheel.tick + WHEEL_SLOTS as u64);
                    assert_eq!(t % WHEEL_SLOTS as u64, s as u64);
                }
                in_wheel += 1;
            }
        }
        assert_eq!(in_wheel, self.len);
        let waiters: usize = live
            .iter()
            .filter_map(|&i| self.slots[i as usize].entry.as_ref())
            .map(|e| e.waiters.len())
            .sum();
        assert_eq!(self.by_request.len(), waiters);
        let indexed = live
            .iter()
            .filter_map(|&i| self.slots[i as usize].entry.as_ref())
            .filter(|e| e.login_indexed)
            .count();
        assert_eq!(self.by_login.len(), indexed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Table = PendingTable<u64, u32>;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn req(port: u16, identifier: u8, a: u8) -> RequestKey {
        RequestKey {
            from: SocketAddr::from(([192, 0, 2, 1], port)),
            listener: 0,
            identifier,
            authenticator: [a; 16],
        }
    }

    fn login(client: u32, user: &str) -> LoginKey {
        LoginKey::new(client, user)
    }

    fn roomy() -> Limits {
        Limits {
            max_entries: 1000,
            max_per_client: 1000,
            max_per_user: 1000,
            max_waiters_per_entry: 8,
        }
    }

    fn values(done: &[Completed<u64, u32>]) -> Vec<u64> {
        let mut v: Vec<u64> = done.iter().map(|c| c.value).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn expires_exactly_at_the_deadline() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(10_500);
        let id = t
            .begin(login(1, "alice"), req(1, 1, 1), 7, 42, deadline, t0)
            .unwrap();
        assert_eq!(t.next_deadline(), Some(deadline));
        assert!(t.expire(t0 + secs(10)).is_empty());
        assert!(t.expire(t0 + Duration::from_millis(10_499)).is_empty());
        assert!(t.contains(id));
        let done = t.expire(deadline);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].id, id);
        assert_eq!(done[0].value, 42);
        assert_eq!(done[0].waiters.first().payload, 7);
        assert_eq!(done[0].deadline, deadline);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn each_entry_expires_in_its_own_slot() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        for s in 1..=20u64 {
            t.begin(
                login(1, &format!("u{s}")),
                req(s as u16, 0, 0),
                0,
                s,
                t0 + secs(s),
                t0,
            )
            .unwrap();
        }
        for s in 1..=20u64 {
            assert_eq!(t.next_deadline(), Some(t0 + secs(s)));
            assert!(t.expire(t0 + secs(s) - Duration::from_nanos(1)).is_empty());
            assert_eq!(values(&t.expire(t0 + secs(s))), vec![s]);
        }
    }

    #[test]
    fn deadlines_beyond_the_wheel_span() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let span = WHEEL_SLOTS as u64;
        let ds = [span - 1, span, span + 1, 2 * span - 1, 2 * span + 3, 5000];
        for (i, &d) in ds.iter().enumerate() {
            t.begin(login(1, "bob"), req(i as u16, 0, 0), 0, d, t0 + secs(d), t0)
                .unwrap();
        }
        assert_eq!(t.next_deadline(), Some(t0 + secs(span - 1)));
        // Step once a second, as the server does, and check each leaves on time.
        let mut expired = Vec::new();
        for s in 1..=5001u64 {
            for c in t.expire(t0 + secs(s)) {
                assert_eq!(c.value, s, "expired at {s}");
                expired.push(c.value);
            }
            if let Some(next) = t.next_deadline() {
                assert!(next > t0 + secs(s));
            }
        }
        assert_eq!(expired, ds.to_vec());
    }

    #[test]
    fn a_long_pause_expires_everything_due_and_nothing_else() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        for d in [5u64, 600, 1200, 3000, 3001] {
            t.begin(login(2, "x"), req(d as u16, 0, 0), 0, d, t0 + secs(d), t0)
                .unwrap();
        }
        assert_eq!(values(&t.expire(t0 + secs(3000))), vec![5, 600, 1200, 3000]);
        assert_eq!(t.next_deadline(), Some(t0 + secs(3001)));
        assert_eq!(values(&t.expire(t0 + secs(3001))), vec![3001]);
        // Idle for a day, then a new entry still expires on time.
        assert!(t.expire(t0 + secs(90_000)).is_empty());
        let now = t0 + secs(90_000);
        t.begin(login(2, "x"), req(1, 0, 0), 0, 1, now + secs(120), now)
            .unwrap();
        assert!(t.expire(now + secs(119)).is_empty());
        assert_eq!(values(&t.expire(now + secs(120))), vec![1]);
    }

    #[test]
    fn a_deadline_already_past_expires_at_the_next_call() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        assert!(t.expire(t0 + secs(100)).is_empty());
        t.begin(
            login(1, "a"),
            req(1, 0, 0),
            0,
            9,
            t0 + secs(3),
            t0 + secs(100),
        )
        .unwrap();
        assert_eq!(values(&t.expire(t0 + secs(100))), vec![9]);
    }

    #[test]
    fn retransmission_joins_and_never_begins_again() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let id = t
            .begin(login(1, "alice"), req(1000, 7, 1), 1, 0, t0 + secs(120), t0)
            .unwrap();
        assert_eq!(t.join_request(&req(1000, 7, 1)), Some(id));
        assert_eq!(t.join_request(&req(1000, 7, 1)), Some(id));
        // Same identifier, new authenticator: a new request, not a retransmission.
        assert_eq!(t.join_request(&req(1000, 7, 2)), None);
        assert_eq!(t.join_request(&req(1001, 7, 1)), None);
        assert_eq!(
            t.begin(login(1, "alice"), req(1000, 7, 1), 1, 0, t0 + secs(120), t0),
            Err(Refused::AlreadyPending { id })
        );
        assert_eq!(t.len(), 1);
        let done = t.complete(id).unwrap();
        assert_eq!(done.waiters.len(), 1);
        assert_eq!(done.retransmissions, 2);
        // After the answer, retransmissions are the duplicate cache's business.
        assert_eq!(t.join_request(&req(1000, 7, 1)), None);
    }

    #[test]
    fn a_new_attempt_by_the_same_login_joins_the_pending_entry() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let alice = login(1, "alice");
        assert_eq!(t.join_login(&alice, req(1000, 7, 1), 1), Ok(None));
        let id = t
            .begin(alice.clone(), req(1000, 7, 1), 1, 5, t0 + secs(120), t0)
            .unwrap();
        assert_eq!(t.join_login(&alice, req(1000, 8, 9), 2), Ok(Some(id)));
        assert_eq!(t.join_login(&alice, req(1002, 1, 3), 3), Ok(Some(id)));
        // Another client or another user does not join.
        assert_eq!(t.join_login(&login(2, "alice"), req(5, 0, 0), 0), Ok(None));
        assert_eq!(t.join_login(&login(1, "bob"), req(5, 0, 0), 0), Ok(None));
        // A retransmission of a joined request is recognised, and cannot join twice.
        assert_eq!(t.join_request(&req(1000, 8, 9)), Some(id));
        assert_eq!(
            t.join_login(&alice, req(1000, 8, 9), 2),
            Err(Refused::AlreadyPending { id })
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.waiters(id).unwrap().len(), 3);
        let done = t.complete(id).unwrap();
        let answered: Vec<(RequestKey, u32)> = done
            .waiters
            .into_iter()
            .map(|w| (w.request, w.payload))
            .collect();
        assert_eq!(
            answered,
            vec![
                (req(1000, 7, 1), 1),
                (req(1000, 8, 9), 2),
                (req(1002, 1, 3), 3)
            ]
        );
        for r in [req(1000, 7, 1), req(1000, 8, 9), req(1002, 1, 3)] {
            assert_eq!(t.join_request(&r), None);
        }
        assert_eq!(t.join_login(&alice, req(1, 1, 1), 0), Ok(None));
    }

    #[test]
    fn limits_refuse_with_the_limit_that_was_hit() {
        let mut t = Table::new(Limits {
            max_entries: 4,
            max_per_client: 3,
            max_per_user: 2,
            max_waiters_per_entry: 2,
        });
        let t0 = Instant::now();
        let d = t0 + secs(60);
        t.begin(login(1, "a"), req(1, 0, 0), 0, 0, d, t0).unwrap();
        let a2 = t.begin(login(2, "a"), req(2, 0, 0), 0, 0, d, t0).unwrap();
        // Third "a", on yet another client: per-user limit across clients.
        assert_eq!(
            t.begin(login(3, "a"), req(3, 0, 0), 0, 0, d, t0),
            Err(Refused::UserLimit { limit: 2 })
        );
        t.begin(login(1, "b"), req(4, 0, 0), 0, 0, d, t0).unwrap();
        t.begin(login(1, "c"), req(5, 0, 0), 0, 0, d, t0).unwrap();
        assert_eq!(t.len_for_client(1), 3);
        assert_eq!(
            t.begin(login(1, "d"), req(6, 0, 0), 0, 0, d, t0),
            Err(Refused::ShardFull { limit: 4 })
        );
        t.complete(a2).unwrap();
        assert_eq!(
            t.begin(login(1, "d"), req(6, 0, 0), 0, 0, d, t0),
            Err(Refused::ClientLimit { limit: 3 })
        );
        let e = t.begin(login(4, "d"), req(6, 0, 0), 0, 0, d, t0).unwrap();
        assert_eq!(t.join_login(&login(4, "d"), req(7, 0, 0), 0), Ok(Some(e)));
        assert_eq!(
            t.join_login(&login(4, "d"), req(8, 0, 0), 0),
            Err(Refused::WaiterLimit { limit: 2 })
        );
        assert_eq!(
            Refused::WaiterLimit { limit: 2 }.reason(),
            "pending_waiter_limit"
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t.len_for_user("a"), 1);
        assert_eq!(t.len_for_user("d"), 1);
        assert_eq!(t.len_for_client(4), 1);
        // Refusals changed nothing: the refused requests are unknown.
        assert_eq!(t.join_request(&req(3, 0, 0)), None);
        assert_eq!(t.join_request(&req(8, 0, 0)), None);
    }

    #[test]
    fn late_answer_after_expiry_is_ignored() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let id = t
            .begin(login(1, "a"), req(1, 0, 0), 0, 3, t0 + secs(120), t0)
            .unwrap();
        assert_eq!(values(&t.expire(t0 + secs(121))), vec![3]);
        assert!(t.complete(id).is_none());
        assert!(t.value(id).is_none());
        assert_eq!(t.join_request(&req(1, 0, 0)), None);
    }

    #[test]
    fn answer_before_expiry_cancels_the_timeout() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let id = t
            .begin(login(1, "a"), req(1, 0, 0), 0, 3, t0 + secs(120), t0)
            .unwrap();
        let keep = t
            .begin(login(1, "b"), req(2, 0, 0), 0, 4, t0 + secs(120), t0)
            .unwrap();
        *t.value_mut(id).unwrap() = 30;
        assert!(t.expire(t0 + secs(10)).is_empty());
        assert_eq!(t.complete(id).unwrap().value, 30);
        assert!(t.complete(id).is_none(), "answered twice");
        assert_eq!(values(&t.expire(t0 + secs(120))), vec![4]);
        assert!(t.complete(keep).is_none());
    }

    #[test]
    fn ids_go_stale_when_the_slot_is_reused() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let a = t
            .begin(login(1, "a"), req(1, 0, 0), 0, 1, t0 + secs(60), t0)
            .unwrap();
        t.complete(a).unwrap();
        let b = t
            .begin(login(1, "b"), req(2, 0, 0), 0, 2, t0 + secs(60), t0)
            .unwrap();
        assert_eq!(a.index, b.index, "the slot is reused");
        assert_ne!(a, b);
        assert!(t.complete(a).is_none());
        assert!(t.value(a).is_none());
        assert_eq!(t.complete(b).unwrap().value, 2);
    }

    #[test]
    fn drain_all_hands_back_every_waiter() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        for i in 0..10u16 {
            t.begin(
                login(1, &format!("u{i}")),
                req(i, 0, 0),
                0,
                u64::from(i),
                t0 + secs(u64::from(i) * 100),
                t0,
            )
            .unwrap();
        }
        t.join_login(&login(1, "u3"), req(99, 0, 0), 7).unwrap();
        let done = t.drain_all();
        assert_eq!(values(&done), (0..10).collect::<Vec<_>>());
        assert_eq!(done.iter().map(|c| c.waiters.len()).sum::<usize>(), 11);
        assert!(t.is_empty());
        assert_eq!(t.len_for_client(1), 0);
        assert_eq!(t.next_deadline(), None);
        assert!(t.expire(t0 + secs(10_000)).is_empty());
        // Still usable.
        t.begin(
            login(1, "u0"),
            req(0, 0, 0),
            0,
            5,
            t0 + secs(10_100),
            t0 + secs(10_000),
        )
        .unwrap();
        assert_eq!(values(&t.expire(t0 + secs(10_100))), vec![5]);
    }

    #[test]
    fn a_login_begun_twice_joins_the_latest() {
        let mut t = Table::new(roomy());
        let t0 = Instant::now();
        let a = login(1, "a");
        let first = t
            .begin(a.clone(), req(1, 0, 0), 0, 1, t0 + secs(60), t0)
            .unwrap();
        let second = t
            .begin(a.clone(), req(2, 0, 0), 0, 2, t0 + secs(60), t0)
            .unwrap();
        assert_eq!(t.len_for_user("a"), 2);
        assert_eq!(t.join_login(&a, req(3, 0, 0), 0), Ok(Some(second)));
        t.complete(first).unwrap();
        assert_eq!(t.join_login(&a, req(4, 0, 0), 0), Ok(Some(second)));
        t.complete(second).unwrap();
        assert_eq!(t.join_login(&a, req(5, 0, 0), 0), Ok(None));
    }

    #[test]
    fn heap_estimate_is_plausible() {
        let mut t = Table::new(roomy());
        assert_eq!(t.approx_bytes_per_entry(), 0);
        let t0 = Instant::now();
        for i in 0..500u16 {
            t.begin(
                login(1, &format!("user{i:05}@example.com")),
                req(i, 0, 0),
                0,
                0,
                t0 + secs(120),
                t0,
            )
            .unwrap();
        }
        let per = t.approx_bytes_per_entry();
        assert!(per >= Table::slot_bytes(), "{per}");
        assert!(per < 1024, "{per}");
        let before = t.heap_bytes();
        t.drain_all();
        assert!(t.heap_bytes() <= before);
    }

    #[test]
    fn debug_output_escapes_user_names() {
        let k = login(1, "ev\nil\u{1b}");
        let s = format!("{k:?}");
        assert!(!s.contains('\n') && !s.contains('\u{1b}'), "{s}");
    }

    // ---- model test against a plain reference implementation ----

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    struct RefEntry {
        login: LoginKey,
        waiters: Vec<(RequestKey, u32)>,
        deadline: Instant,
        retransmissions: u32,
    }

    /// The obvious implementation: a BTreeMap scanned on every call.
    struct Model {
        limits: Limits,
        entries: BTreeMap<u64, RefEntry>,
        latest: BTreeMap<LoginKey, u64>,
    }

    impl Model {
        fn holding(&self, r: &RequestKey) -> Option<u64> {
            self.entries
                .iter()
                .find(|(_, e)| e.waiters.iter().any(|(k, _)| k == r))
                .map(|(&s, _)| s)
        }

        fn remove(&mut self, serial: u64) -> Option<RefEntry> {
            let e = self.entries.remove(&serial)?;
            if self.latest.get(&e.login) == Some(&serial) {
                self.latest.remove(&e.login);
            }
            Some(e)
        }
    }

    fn random_request(rng: &mut Rng) -> RequestKey {
        req(rng.below(6) as u16, rng.below(4) as u8, rng.below(2) as u8)
    }

    fn random_login(rng: &mut Rng) -> LoginKey {
        login(
            rng.below(3) as u32,
            ["a", "b", "c", "d"][rng.below(4) as usize],
        )
    }

    fn check_same(t: &Table, m: &Model, serial_of: &BTreeMap<EntryId, u64>) {
        assert_eq!(t.len(), m.entries.len());
        for c in 0..3 {
            let n = m.entries.values().filter(|e| e.login.client == c).count();
            assert_eq!(t.len_for_client(c), n);
        }
        for u in ["a", "b", "c", "d"] {
            let n = m.entries.values().filter(|e| &*e.login.user == u).count();
            assert_eq!(t.len_for_user(u), n);
        }
        assert_eq!(
            t.next_deadline(),
            m.entries.values().map(|e| e.deadline).min()
        );
        for (id, serial) in serial_of {
            assert_eq!(t.contains(*id), m.entries.contains_key(serial));
        }
    }

    fn assert_matches(done: Completed<u64, u32>, e: RefEntry) {
        assert_eq!(done.login, e.login);
        assert_eq!(done.deadline, e.deadline);
        assert_eq!(done.retransmissions, e.retransmissions);
        let got: Vec<(RequestKey, u32)> = done
            .waiters
            .into_iter()
            .map(|w| (w.request, w.payload))
            .collect();
        assert_eq!(got, e.waiters);
    }

    #[test]
    fn behaves_like_the_reference_model() {
        for seed in 0..40u64 {
            let mut rng = Rng(seed);
            let limits = Limits {
                max_entries: 1 + rng.below(14) as usize,
                max_per_client: 1 + rng.below(7) as usize,
                max_per_user: 1 + rng.below(5) as usize,
                max_waiters_per_entry: 1 + rng.below(4) as usize,
            };
            let mut t = Table::new(limits);
            let mut m = Model {
                limits,
                entries: BTreeMap::new(),
                latest: BTreeMap::new(),
            };
            let t0 = Instant::now();
            let mut now = t0;
            let mut next_serial = 0u64;
            // Every id ever handed out (the value of an entry is its serial).
            let mut serial_of: BTreeMap<EntryId, u64> = BTreeMap::new();
            let mut id_of: BTreeMap<u64, EntryId> = BTreeMap::new();

            for step in 0..1500 {
                match rng.below(100) {
                    0..=34 => {
                        let lk = random_login(&mut rng);
                        let r = random_request(&mut rng);
                        let deadline = match rng.below(10) {
                            0 => now.checked_sub(secs(rng.below(5))).unwrap_or(now),
                            1..=2 => now + Duration::from_millis(rng.below(1_500_000)),
                            _ => now + Duration::from_millis(rng.below(150_000)),
                        };
                        let payload = rng.below(1000) as u32;
                        let serial = next_serial;
                        next_serial += 1;
                        let got = t.begin(lk.clone(), r, payload, serial, deadline, now);
                        let ml = m.limits;
                        let want = if let Some(s) = m.holding(&r) {
                            Err(Refused::AlreadyPending { id: id_of[&s] })
                        } else if m.entries.len() >= ml.max_entries {
                            Err(Refused::ShardFull {
                                limit: ml.max_entries,
                            })
                        } else if m
                            .entries
                            .values()
                            .filter(|e| e.login.client == lk.client)
                            .count()
                            >= ml.max_per_client
                        {
                            Err(Refused::ClientLimit {
                                limit: ml.max_per_client,
                            })
                        } else if m
                            .entries
                            .values()
                            .filter(|e| e.login.user == lk.user)
                            .count()
                            >= ml.max_per_user
                        {
                            Err(Refused::UserLimit {
                                limit: ml.max_per_user,
                            })
                        } else {
                            Ok(())
                        };
                        match (got, want) {
                            (Ok(id), Ok(())) => {
                                assert!(!serial_of.contains_key(&id), "id reused");
                                serial_of.insert(id, serial);
                                id_of.insert(serial, id);
                                m.latest.insert(lk.clone(), serial);
                                m.entries.insert(
                                    serial,
                                    RefEntry {
                                        login: lk,
                                        waiters: vec![(r, payload)],
                                        deadline,
                                        retransmissions: 0,
                                    },
                                );
                            }
                            (got, want) => {
                                assert_eq!(got.map(|_| ()), want, "seed {seed} step {step}")
                            }
                        }
                    }
                    35..=49 => {
                        let r = random_request(&mut rng);
                        let got = t.join_request(&r);
                        let want = m.holding(&r);
                        if let Some(s) = want {
                            m.entries.get_mut(&s).unwrap().retransmissions += 1;
                        }
                        assert_eq!(got, want.map(|s| id_of[&s]), "seed {seed} step {step}");
                    }
                    50..=64 => {
                        let lk = random_login(&mut rng);
                        let r = random_request(&mut rng);
                        let payload = rng.below(1000) as u32;
                        let got = t.join_login(&lk, r, payload);
                        let want = if let Some(s) = m.holding(&r) {
                            Err(Refused::AlreadyPending { id: id_of[&s] })
                        } else if let Some(&s) = m.latest.get(&lk) {
                            let e = m.entries.get_mut(&s).unwrap();
                            if e.waiters.len() >= m.limits.max_waiters_per_entry {
                                Err(Refused::WaiterLimit {
                                    limit: m.limits.max_waiters_per_entry,
                                })
                            } else {
                                e.waiters.push((r, payload));
                                Ok(Some(id_of[&s]))
                            }
                        } else {
                            Ok(None)
                        };
                        assert_eq!(got, want, "seed {seed} step {step}");
                    }
                    65..=79 => {
                        // Complete a random id ever issued: live, or stale (late answers).
                        if serial_of.is_empty() {
                            continue;
                        }
                        let k = rng.below(serial_of.len() as u64) as usize;
                        let (&id, &serial) = serial_of.iter().nth(k).unwrap();
                        match (t.complete(id), m.remove(serial)) {
                            (None, None) => {}
                            (Some(done), Some(e)) => {
                                assert_eq!(done.id, id);
                                assert_eq!(done.value, serial);
                                assert_matches(done, e);
                            }
                            (got, want) => panic!(
                                "seed {seed} step {step}: complete {:?} vs model {}",
                                got.map(|c| c.value),
                                want.is_some()
                            ),
                        }
                    }
                    80..=97 => {
                        now += match rng.below(20) {
                            0 => secs(rng.below(1200)),
                            _ => Duration::from_millis(rng.below(3000)),
                        };
                        let mut got = t.expire(now);
                        got.sort_by_key(|c| c.value);
                        let due: Vec<u64> = m
                            .entries
                            .iter()
                            .filter(|(_, e)| e.deadline <= now)
                            .map(|(&s, _)| s)
                            .collect();
                        assert_eq!(
                            got.iter().map(|c| c.value).collect::<Vec<_>>(),
                            due,
                            "seed {seed} step {step}"
                        );
                        for done in got {
                            let e = m.remove(done.value).unwrap();
                            assert_matches(done, e);
                        }
                    }
                    _ => {
                        let mut got = t.drain_all();
                        got.sort_by_key(|c| c.value);
                        let all: Vec<u64> = m.entries.keys().copied().collect();
                        assert_eq!(got.iter().map(|c| c.value).collect::<Vec<_>>(), all);
                        for done in got {
                            let e = m.remove(done.value).unwrap();
                            assert_matches(done, e);
                        }
                    }
                }
                check_same(&t, &m, &serial_of);
                t.check_invariants();
            }
        }
    }
}
