//! Outstanding OTP challenges, keyed by the RADIUS State attribute we sent in Access-Challenge.
//!
//! The State is 16 random bytes (from the OS CSPRNG), single-use, bound to the client and the
//! user it was issued to, and expires. The table is shared by all shards: the NAS may send the
//! answer from another source port, which SO_REUSEPORT can hash to another shard. It is striped
//! (a small mutex per stripe, picked by the State's first byte), so shards do not contend on one
//! lock, and bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Number of stripes (a power of two).
const STRIPES: usize = 64;

pub type StateId = [u8; 16];

/// Why an answer to a challenge cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such State: never issued, already used, or forgotten after expiry.
    Unknown,
    Expired,
    /// Issued to another client or user than the one answering.
    WrongPeer,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown or already used State",
            Refusal::Expired => "challenge expired",
            Refusal::WrongPeer => "State issued to another client or user",
        }
    }
}

struct Entry<T> {
    client: u32,
    user: Box<str>,
    expires: Instant,
    value: T,
}

pub struct ChallengeTable<T> {
    stripes: Vec<Mutex<HashMap<StateId, Entry<T>>>>,
    max_per_stripe: usize,
}

impl<T> ChallengeTable<T> {
    pub fn new(max_entries: usize) -> Self {
        ChallengeTable {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_stripe: max_entries.div_ceil(STRIPES).max(1),
        }
    }

    fn stripe(&self, id: &StateId) -> &Mutex<HashMap<StateId, Entry<T>>> {
        &self.stripes[usize::from(id[0]) % STRIPES]
    }

    /// Records a challenge; `false` when the table is full (the caller refuses the login).
    pub fn insert(
        &self,
        id: StateId,
        client: u32,
        user: &str,
        expires: Instant,
        value: T,
        now: Instant,
    ) -> bool {
        let Ok(mut m) = self.stripe(&id).lock() else {
            return false;
        };
        if m.len() >= self.max_per_stripe {
            m.retain(|_, e| e.expires > now);
            if m.len() >= self.max_per_stripe {
                return false;
            }
        }
        m.insert(
            id,
            Entry {
                client,
                user: user.into(),
                expires,
                value,
            },
        );
        true
    }

    /// Takes the challenge answered by a request carrying `state` from `client` for `user`.
    /// The entry is removed whatever the outcome: a State is good for one answer only.
    pub fn take(&self, state: &[u8], client: u32, user: &str, now: Instant) -> Result<T, Refusal> {
        let Ok(id) = <StateId>::try_from(state) else {
            return Err(Refusal::Unknown);
        };
        let e = self
            .stripe(&id)
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&id))
            .ok_or(Refusal::Unknown)?;
        if e.expires <= now {
            return Err(Refusal::Expired);
        }
        if e.client != client || &*e.user != user {
            return Err(Refusal::WrongPeer);
        }
        Ok(e.value)
    }

    /// Whether `state` looks like one of ours (right length and present), without taking it.
    pub fn contains(&self, state: &[u8]) -> bool {
        <StateId>::try_from(state)
            .ok()
            .and_then(|id| self.stripe(&id).lock().ok().map(|m| m.contains_key(&id)))
            .unwrap_or(false)
    }

    /// Forgets expired challenges; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut n = 0;
        for s in &self.stripes {
            if let Ok(mut m) = s.lock() {
                let before = m.len();
                m.retain(|_, e| e.expires > now);
                n += before - m.len();
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fresh State value from the OS CSPRNG.
pub fn new_state() -> StateId {
    use rand::RngCore;
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn single_use_bound_to_client_and_user_and_expiring() {
        let t: ChallengeTable<u32> = ChallengeTable::new(1000);
        let now = Instant::now();
        let later = now + Duration::from_secs(120);
        let a = new_state();
        assert!(t.insert(a, 1, "bob", later, 7, now));
        assert!(t.contains(&a));
        assert_eq!(t.take(&a, 1, "bob", now), Ok(7));
        assert_eq!(
            t.take(&a, 1, "bob", now),
            Err(Refusal::Unknown),
            "reused State"
        );

        let b = new_state();
        t.insert(b, 1, "bob", later, 8, now);
        assert_eq!(t.take(&b, 2, "bob", now), Err(Refusal::WrongPeer));
        assert_eq!(
            t.take(&b, 1, "bob", now),
            Err(Refusal::Unknown),
            "a refused State is spent"
        );

        let c = new_state();
        t.insert(c, 1, "bob", later, 9, now);
        assert_eq!(t.take(&c, 1, "alice", now), Err(Refusal::WrongPeer));

        let d = new_state();
        t.insert(d, 1, "bob", later, 10, now);
        assert_eq!(t.take(&d, 1, "bob", later), Err(Refusal::Expired));
        assert_eq!(t.take(&[1, 2, 3], 1, "bob", now), Err(Refusal::Unknown));
    }

    #[test]
    fn bounded_and_swept() {
        let t: ChallengeTable<()> = ChallengeTable::new(64);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        // Fill one stripe (first byte 0) to its bound of 1.
        let mut id = [0u8; 16];
        assert!(t.insert(id, 1, "u", soon, (), now));
        id[1] = 1;
        assert!(!t.insert(id, 1, "u", soon, (), now), "stripe full");
        // Once the first expires, there is room again.
        assert!(t.insert(id, 1, "u", soon + Duration::from_secs(5), (), soon));
        assert_eq!(t.sweep(soon + Duration::from_secs(10)), 1);
        assert!(t.is_empty());
    }
}
