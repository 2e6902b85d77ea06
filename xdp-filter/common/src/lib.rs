//! Types shared by the Portcullis XDP program (`xdp-filter/ebpf`) and its userspace loader
//! (`portcullis-xdp-loader`): map names, map key and value layouts, and the counter reasons.
//!
//! Everything here is `no_std` and `#[repr(C)]`, so the eBPF program and userspace agree on the
//! bytes in each map. The `user` feature implements `aya::Pod` for the value types so userspace
//! can read and write the maps with aya.
//!
//! What this crate does not do: any parsing or map access. The filter logic lives in the eBPF
//! crate; loading, attaching and map filling live in the loader.
//!
//! # Maps
//!
//! | name            | kind                         | key                | value            |
//! |-----------------|------------------------------|--------------------|------------------|
//! | [`MAP_CLIENTS_V4`] | LPM trie                  | `Key<ClientKeyV4>` | [`ClientInfo`]   |
//! | [`MAP_CLIENTS_V6`] | LPM trie                  | `Key<ClientKeyV6>` | [`ClientInfo`]   |
//! | [`MAP_PORTS`]   | array, 1 entry               | `u32` (0)          | [`PortConfig`]   |
//! | [`MAP_CLIENT_KEYS`] | array, [`CLIENT_KEY_SLOTS`] entries | `u32` ([`ClientInfo::slot`]) | [`ClientKeys`] |
//! | [`MAP_COUNTERS`] | per-CPU array, [`Reason::COUNT`] entries | `u32` (reason) | `u64` packets |
//! | [`MAP_CLIENT_COUNTERS`] | per-CPU array, [`CLIENT_KEY_SLOTS`] entries | `u32` ([`ClientInfo::slot`]) | [`ClientCounters`] |
//! | [`MAP_GLOBAL_LIMIT`] | array, 1 entry          | `u32` (0)          | [`RateLimit`]    |
//! | [`MAP_BUCKETS`] | per-CPU array, [`BUCKETS`] entries | `u32` (slot, or [`GLOBAL_BUCKET`]) | [`TokenBucket`] |
//!
//! # Rate limits
//!
//! Before any RADIUS parsing or HMAC work, a datagram from a known client takes one token from
//! the client's bucket (limit in [`ClientKeys::limit`]) and then one from the global bucket
//! (limit in [`MAP_GLOBAL_LIMIT`]); without a token it is dropped as
//! [`Reason::DropRateLimited`]. The buckets are per CPU ([`MAP_BUCKETS`] is a per-CPU array),
//! so they need no locks or atomics: the loader divides each configured rate and burst by the
//! number of possible CPUs (rounding up, see [`RateLimit::per_cpu`]) and the program refills
//! from `bpf_ktime_get_ns` with [`TokenBucket::take`]. The cost of that choice: traffic that
//! lands on fewer CPUs than exist (one NAS is usually one flow, so one RX queue) gets only its
//! CPUs' share of the configured rate. A rate of 0 means unlimited.
//!
//! The filter only ever looks at UDP datagrams sent to one of the configured ports. Of those, a
//! datagram whose source address is in no client trie is dropped. From a known client, the
//! RADIUS packet is checked: its Length against the UDP payload, the attribute walk, and then,
//! with the client's keys from [`MAP_CLIENT_KEYS`], the Message-Authenticator of an
//! Access-Request or Status-Server (HMAC-MD5 from precomputed key states, see [`SecretKey`])
//! or the Request Authenticator of an Accounting-Request (MD5 over the packet and the secret).
//! A client may have two secrets during a change-over; a packet passes if either verifies.
//! Every packet the filter cannot judge (fragments, truncated headers, IPv6 extension headers,
//! codes it does not verify, ...) passes: userspace validates every request anyway.
//!
//! [`md5`] holds the MD5 compression function both sides use: the program to hash packets,
//! the loader to precompute the HMAC key states.

#![no_std]

pub mod md5;

/// Name of the LPM trie of known IPv4 clients.
pub const MAP_CLIENTS_V4: &str = "CLIENTS_V4";
/// Name of the LPM trie of known IPv6 clients.
pub const MAP_CLIENTS_V6: &str = "CLIENTS_V6";
/// Name of the one-entry array holding the [`PortConfig`].
pub const MAP_PORTS: &str = "PORTS";
/// Name of the per-CPU array of packet counters, indexed by [`Reason`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the per-CPU array of per-client counters ([`ClientCounters`]), indexed by
/// [`ClientInfo::slot`].
pub const MAP_CLIENT_COUNTERS: &str = "CLIENT_COUNTERS";
/// Name of the one-entry array holding the global [`RateLimit`] (per CPU).
pub const MAP_GLOBAL_LIMIT: &str = "GLOBAL_LIMIT";
/// Name of the per-CPU array of [`TokenBucket`]s: one per client slot, then the global one.
pub const MAP_BUCKETS: &str = "BUCKETS";
/// Name of the array of per-client keys ([`ClientKeys`]), indexed by [`ClientInfo::slot`].
pub const MAP_CLIENT_KEYS: &str = "CLIENT_KEYS";

/// Maximum number of entries in each client trie.
pub const MAX_CLIENTS: u32 = 65_536;
/// Maximum number of RADIUS ports the filter watches.
pub const MAX_PORTS: usize = 8;
/// The only index of the [`MAP_PORTS`] array.
pub const PORTS_INDEX: u32 = 0;
/// Maximum number of clients (configuration entries, each with its own keys) per generation.
pub const MAX_KEYED_CLIENTS: u32 = 4096;
/// Entries of [`MAP_CLIENT_KEYS`]: two generations of [`MAX_KEYED_CLIENTS`], so a reload
/// writes the new keys beside the old ones and switches each trie entry over in one update.
pub const CLIENT_KEY_SLOTS: u32 = 2 * MAX_KEYED_CLIENTS;
/// Index of the global bucket in [`MAP_BUCKETS`] (after the client slots).
pub const GLOBAL_BUCKET: u32 = CLIENT_KEY_SLOTS;
/// Entries of [`MAP_BUCKETS`].
pub const BUCKETS: u32 = CLIENT_KEY_SLOTS + 1;
/// Secrets per client: the current one and, during a change-over, the next one.
pub const MAX_SECRETS: usize = 2;
/// Longest shared secret, in bytes (the configuration allows no more).
pub const MAX_SECRET_LEN: usize = 128;
/// Largest RADIUS packet (RFC 2865 §3): the filter checks packets up to this Length.
pub const MAX_RADIUS_LEN: usize = 4096;
/// [`ClientKeys::flags`] bit: drop an Access-Request without Message-Authenticator.
pub const FLAG_REQUIRE_MESSAGE_AUTHENTICATOR: u32 = 1;

/// Data of an IPv4 client trie key: the address in network byte order (`Ipv4Addr::octets`).
/// The prefix length travels beside it in the LPM key (`aya::maps::lpm_trie::Key`).
pub type ClientKeyV4 = [u8; 4];
/// Data of an IPv6 client trie key: the address in network byte order (`Ipv6Addr::octets`).
pub type ClientKeyV6 = [u8; 16];

/// Value of a client trie entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Position of the client in the configuration, for per-client state keyed by it.
    pub index: u32,
    /// Index of the client's [`ClientKeys`] in [`MAP_CLIENT_KEYS`]. It is `index` plus the base
    /// of the current generation, so it changes on every reload.
    pub slot: u32,
}

/// One shared secret in the form the filter uses it.
///
/// `inner` and `outer` are the MD5 chaining values after the first block of HMAC-MD5
/// (RFC 2104): after `K ^ ipad` and after `K ^ opad`, where `K` is the secret (or its MD5 when
/// longer than 64 bytes) padded with zeros to 64 bytes. With them the filter does only the
/// blocks of the message itself. `bytes[..len]` is the plain secret, which the Accounting
/// Request Authenticator (RFC 2866 §3) needs after the packet.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretKey {
    /// MD5 state after the `K ^ ipad` block.
    pub inner: [u32; 4],
    /// MD5 state after the `K ^ opad` block.
    pub outer: [u32; 4],
    /// Length of the secret in bytes, 1..=[`MAX_SECRET_LEN`].
    pub len: u32,
    /// Explicit padding, always zero.
    pub reserved: u32,
    /// The secret, zero after `len`.
    pub bytes: [u8; MAX_SECRET_LEN],
}

impl SecretKey {
    /// An unused secret slot.
    pub const EMPTY: SecretKey = SecretKey {
        inner: [0; 4],
        outer: [0; 4],
        len: 0,
        reserved: 0,
        bytes: [0; MAX_SECRET_LEN],
    };
}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key material: it is as good as the secret.
        f.debug_struct("SecretKey")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Value of a [`MAP_CLIENT_KEYS`] entry: the secrets and policy of one client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientKeys {
    /// The secrets; only the first `count` are used, the current one first.
    pub secrets: [SecretKey; MAX_SECRETS],
    /// How many of `secrets` are in use (0 = no keys: the filter checks nothing).
    pub count: u32,
    /// Policy bits, e.g. [`FLAG_REQUIRE_MESSAGE_AUTHENTICATOR`].
    pub flags: u32,
    /// The client's rate limit, per CPU ([`RateLimit::UNLIMITED`] for none).
    pub limit: RateLimit,
}

impl ClientKeys {
    /// No keys: the filter passes this client's packets unchecked.
    pub const EMPTY: ClientKeys = ClientKeys {
        secrets: [SecretKey::EMPTY; MAX_SECRETS],
        count: 0,
        flags: 0,
        limit: RateLimit::UNLIMITED,
    };
}

/// A token-bucket limit as the program applies it on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens (packets) added per second; 0 = unlimited.
    pub rate_pps: u32,
    /// Bucket size in packets (at least 1 when `rate_pps > 0`).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit {
        rate_pps: 0,
        burst: 0,
    };

    /// The share of one CPU of a limit of `rate_pps` packets per second with a bucket of
    /// `burst` packets, spread over `cpus` per-CPU buckets: both divided by `cpus`, rounded
    /// up. `rate_pps == 0` is unlimited; `burst == 0` means one second's worth (`rate_pps`).
    pub const fn per_cpu(rate_pps: u32, burst: u32, cpus: u32) -> RateLimit {
        if rate_pps == 0 {
            return RateLimit::UNLIMITED;
        }
        let cpus = if cpus == 0 { 1 } else { cpus };
        let burst = if burst == 0 { rate_pps } else { burst };
        RateLimit {
            rate_pps: rate_pps.div_ceil(cpus),
            burst: burst.div_ceil(cpus),
        }
    }
}

/// One nanosecond-scaled token: a packet costs this many units of [`TokenBucket::tokens`].
pub const TOKEN: u64 = 1_000_000_000;

/// State of one token bucket (one CPU's share of a limit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens times [`TOKEN`]: a rate of `r` packets per second adds `r` units per nanosecond.
    pub tokens: u64,
    /// `bpf_ktime_get_ns` of the last update; 0 for a bucket never used (it starts full).
    pub last_ns: u64,
}

impl TokenBucket {
    /// Refill for the time since the last call, then take one token if there is one.
    /// Returns whether the packet may pass. Unlimited (`rate_pps == 0`) always passes and
    /// leaves the bucket alone. No division by zero, no overflow: the bucket holds at most
    /// `burst * TOKEN` < 2^63 units, and the refill multiplies only an elapsed time shorter
    /// than the time to fill the bucket from empty.
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, limit: RateLimit) -> bool {
        if limit.rate_pps == 0 {
            return true;
        }
        let rate = limit.rate_pps as u64;
        let burst = if limit.burst == 0 {
            1
        } else {
            limit.burst as u64
        };
        let cap = burst * TOKEN;
        let tokens = if self.last_ns == 0 || now_ns < self.last_ns {
            // Never used (or a clock that went back): start full.
            if self.last_ns == 0 {
                cap
            } else {
                self.tokens
            }
        } else {
            let elapsed = now_ns - self.last_ns;
            if elapsed >= cap / rate {
                cap
            } else {
                let t = self.tokens + elapsed * rate;
                if t > cap {
                    cap
                } else {
                    t
                }
            }
        };
        self.last_ns = if now_ns == 0 { 1 } else { now_ns };
        if tokens >= TOKEN {
            self.tokens = tokens - TOKEN;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }
}

/// Packets from one client (one [`MAP_CLIENT_COUNTERS`] entry), by outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Passed to userspace, verified or not.
    pub passed: u64,
    /// See [`Reason::DropMalformed`].
    pub drop_malformed: u64,
    /// See [`Reason::DropBadMa`].
    pub drop_bad_ma: u64,
    /// See [`Reason::DropMissingMa`].
    pub drop_missing_ma: u64,
    /// See [`Reason::DropBadAcctAuth`].
    pub drop_bad_acct_auth: u64,
    /// See [`Reason::DropRateLimited`].
    pub drop_rate_limited: u64,
}

impl ClientCounters {
    /// Count one packet with verdict `reason`.
    #[inline(always)]
    pub fn record(&mut self, reason: Reason) {
        match reason {
            Reason::DropMalformed => self.drop_malformed += 1,
            Reason::DropBadMa => self.drop_bad_ma += 1,
            Reason::DropMissingMa => self.drop_missing_ma += 1,
            Reason::DropBadAcctAuth => self.drop_bad_acct_auth += 1,
            Reason::DropRateLimited => self.drop_rate_limited += 1,
            // Unknown-client drops never reach a client's counters.
            Reason::DropUnknownClientV4 | Reason::DropUnknownClientV6 => {}
            _ => self.passed += 1,
        }
    }

    /// Add another set (wrapping), e.g. another CPU's.
    pub fn add(&mut self, other: &ClientCounters) {
        self.passed = self.passed.wrapping_add(other.passed);
        self.drop_malformed = self.drop_malformed.wrapping_add(other.drop_malformed);
        self.drop_bad_ma = self.drop_bad_ma.wrapping_add(other.drop_bad_ma);
        self.drop_missing_ma = self.drop_missing_ma.wrapping_add(other.drop_missing_ma);
        self.drop_bad_acct_auth = self
            .drop_bad_acct_auth
            .wrapping_add(other.drop_bad_acct_auth);
        self.drop_rate_limited = self.drop_rate_limited.wrapping_add(other.drop_rate_limited);
    }

    /// (name, count) for every field, in declaration order.
    pub fn iter(&self) -> [(&'static str, u64); 6] {
        [
            ("passed", self.passed),
            ("drop_malformed", self.drop_malformed),
            ("drop_bad_ma", self.drop_bad_ma),
            ("drop_missing_ma", self.drop_missing_ma),
            ("drop_bad_acct_auth", self.drop_bad_acct_auth),
            ("drop_rate_limited", self.drop_rate_limited),
        ]
    }
}

/// The RADIUS UDP ports to filter (authentication and accounting, at most [`MAX_PORTS`]).
///
/// Ports are in host byte order. Only the first `count` entries count; the rest are ignored.
/// With `count == 0` the filter watches no port and passes everything.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The ports, host byte order.
    pub ports: [u16; MAX_PORTS],
    /// How many of `ports` are in use.
    pub count: u16,
    /// Explicit padding, always zero.
    pub reserved: u16,
}

impl PortConfig {
    /// An empty configuration: no port is filtered.
    pub const EMPTY: PortConfig = PortConfig {
        ports: [0; MAX_PORTS],
        count: 0,
        reserved: 0,
    };

    /// Build from a slice of ports; returns `None` when there are more than [`MAX_PORTS`].
    pub fn from_ports(ports: &[u16]) -> Option<PortConfig> {
        if ports.len() > MAX_PORTS {
            return None;
        }
        let mut config = PortConfig::EMPTY;
        let mut i = 0;
        while i < ports.len() {
            config.ports[i] = ports[i];
            i += 1;
        }
        config.count = ports.len() as u16;
        Some(config)
    }

    /// Whether `port` (host byte order) is one of the configured ports.
    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        let mut i = 0;
        while i < MAX_PORTS {
            if i < self.count as usize && self.ports[i] == port {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Why the filter passed or dropped a packet: the index into the [`MAP_COUNTERS`] array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, more than two VLAN tags, ...).
    PassNotIp = 0,
    /// IP but not UDP (TCP, ICMP, ...).
    PassNotUdp = 1,
    /// UDP to a port that is not a configured RADIUS port.
    PassOtherPort = 2,
    /// From a known client, well formed, with a RADIUS code the filter does not verify
    /// (anything but Access-Request, Accounting-Request and Status-Server); userspace judges it.
    PassUnverifiedCode = 3,
    /// An IPv4 fragment (first or later) or an IPv6 fragment header: the UDP header cannot be
    /// trusted or is absent; userspace reassembly and validation handle it.
    PassFragment = 4,
    /// The frame ends inside the Ethernet, VLAN, IP or UDP header, or before the end of the UDP
    /// payload its header announces; the kernel stack drops it.
    PassTruncated = 5,
    /// An IPv6 packet whose next header is an extension header (other than fragment): the
    /// filter only reads the fixed header, so it cannot see the transport.
    PassIpv6ExtHeader = 6,
    /// A malformed IP or UDP header (IPv4 IHL below 5, UDP length below 8); the kernel stack
    /// drops it.
    PassMalformed = 7,
    /// UDP to a RADIUS port from an IPv4 source that is not a known client.
    DropUnknownClientV4 = 8,
    /// UDP to a RADIUS port from an IPv6 source that is not a known client.
    DropUnknownClientV6 = 9,
    /// Access-Request or Status-Server whose Message-Authenticator verified with one of the
    /// client's secrets.
    PassMaVerified = 10,
    /// Accounting-Request whose Request Authenticator verified with one of the client's secrets.
    PassAcctAuthVerified = 11,
    /// Access-Request without Message-Authenticator from a client that does not require one
    /// (and without EAP-Message or Proxy-State, which would require one).
    PassMaAbsent = 12,
    /// From a known client, but the filter could not finish the check (no keys for the client,
    /// no scratch memory); userspace checks everything anyway.
    PassUncheckable = 13,
    /// From a known client, but not a well-formed RADIUS packet: shorter than 20 bytes, Length
    /// below 20, above 4096 or beyond the UDP payload, an attribute shorter than 2 bytes or
    /// running past Length, a Message-Authenticator not 16 bytes long or present twice.
    DropMalformed = 14,
    /// Access-Request or Status-Server whose Message-Authenticator verified with none of the
    /// client's secrets.
    DropBadMa = 15,
    /// Access-Request without Message-Authenticator from a client that requires one (or with
    /// EAP-Message or Proxy-State), or a Status-Server without one (RFC 5997 requires it).
    DropMissingMa = 16,
    /// Accounting-Request whose Request Authenticator verified with none of the client's secrets.
    DropBadAcctAuth = 17,
    /// From a known client, over the client's or the global rate limit (checked before any
    /// RADIUS parsing).
    DropRateLimited = 18,
}

impl Reason {
    /// Number of reasons, i.e. the size of the [`MAP_COUNTERS`] array.
    pub const COUNT: u32 = 19;

    /// All reasons in index order.
    pub const ALL: [Reason; Reason::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassNotUdp,
        Reason::PassOtherPort,
        Reason::PassUnverifiedCode,
        Reason::PassFragment,
        Reason::PassTruncated,
        Reason::PassIpv6ExtHeader,
        Reason::PassMalformed,
        Reason::DropUnknownClientV4,
        Reason::DropUnknownClientV6,
        Reason::PassMaVerified,
        Reason::PassAcctAuthVerified,
        Reason::PassMaAbsent,
        Reason::PassUncheckable,
        Reason::DropMalformed,
        Reason::DropBadMa,
        Reason::DropMissingMa,
        Reason::DropBadAcctAuth,
        Reason::DropRateLimited,
    ];

    /// The counter index of this reason.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The reason with counter index `index`, if any.
    pub const fn from_index(index: u32) -> Option<Reason> {
        if index < Reason::COUNT {
            Some(Reason::ALL[index as usize])
        } else {
            None
        }
    }

    /// Whether packets with this reason are dropped.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::DropUnknownClientV4
                | Reason::DropUnknownClientV6
                | Reason::DropMalformed
                | Reason::DropBadMa
                | Reason::DropMissingMa
                | Reason::DropBadAcctAuth
                | Reason::DropRateLimited
        )
    }

    /// Whether this reason is a pass of a datagram from a known client to a RADIUS port
    /// (verified, or passed unverified for userspace to judge).
    pub const fn is_known_client_pass(self) -> bool {
        matches!(
            self,
            Reason::PassUnverifiedCode
                | Reason::PassMaVerified
                | Reason::PassAcctAuthVerified
                | Reason::PassMaAbsent
                | Reason::PassUncheckable
        )
    }

    /// A stable snake-case name, for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassNotUdp => "pass_not_udp",
            Reason::PassOtherPort => "pass_other_port",
            Reason::PassUnverifiedCode => "pass_unverified_code",
            Reason::PassFragment => "pass_fragment",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassIpv6ExtHeader => "pass_ipv6_ext_header",
            Reason::PassMalformed => "pass_malformed",
            Reason::DropUnknownClientV4 => "drop_unknown_client_v4",
            Reason::DropUnknownClientV6 => "drop_unknown_client_v6",
            Reason::PassMaVerified => "pass_ma_verified",
            Reason::PassAcctAuthVerified => "pass_acct_auth_verified",
            Reason::PassMaAbsent => "pass_ma_absent",
            Reason::PassUncheckable => "pass_uncheckable",
            Reason::DropMalformed => "drop_malformed",
            Reason::DropBadMa => "drop_bad_ma",
            Reason::DropMissingMa => "drop_missing_ma",
            Reason::DropBadAcctAuth => "drop_bad_acct_auth",
            Reason::DropRateLimited => "drop_rate_limited",
        }
    }
}

/// Counter index constants, for code that prefers plain numbers to [`Reason`].
pub mod reason {
    use super::Reason;

    /// See [`Reason::PassNotIp`].
    pub const PASS_NOT_IP: u32 = Reason::PassNotIp.index();
    /// See [`Reason::PassNotUdp`].
    pub const PASS_NOT_UDP: u32 = Reason::PassNotUdp.index();
    /// See [`Reason::PassOtherPort`].
    pub const PASS_OTHER_PORT: u32 = Reason::PassOtherPort.index();
    /// See [`Reason::PassUnverifiedCode`].
    pub const PASS_UNVERIFIED_CODE: u32 = Reason::PassUnverifiedCode.index();
    /// See [`Reason::PassFragment`].
    pub const PASS_FRAGMENT: u32 = Reason::PassFragment.index();
    /// See [`Reason::PassTruncated`].
    pub const PASS_TRUNCATED: u32 = Reason::PassTruncated.index();
    /// See [`Reason::PassIpv6ExtHeader`].
    pub const PASS_IPV6_EXT_HEADER: u32 = Reason::PassIpv6ExtHeader.index();
    /// See [`Reason::PassMalformed`].
    pub const PASS_MALFORMED: u32 = Reason::PassMalformed.index();
    /// See [`Reason::DropUnknownClientV4`].
    pub const DROP_UNKNOWN_CLIENT_V4: u32 = Reason::DropUnknownClientV4.index();
    /// See [`Reason::DropUnknownClientV6`].
    pub const DROP_UNKNOWN_CLIENT_V6: u32 = Reason::DropUnknownClientV6.index();
    /// See [`Reason::PassMaVerified`].
    pub const PASS_MA_VERIFIED: u32 = Reason::PassMaVerified.index();
    /// See [`Reason::PassAcctAuthVerified`].
    pub const PASS_ACCT_AUTH_VERIFIED: u32 = Reason::PassAcctAuthVerified.index();
    /// See [`Reason::PassMaAbsent`].
    pub const PASS_MA_ABSENT: u32 = Reason::PassMaAbsent.index();
    /// See [`Reason::PassUncheckable`].
    pub const PASS_UNCHECKABLE: u32 = Reason::PassUncheckable.index();
    /// See [`Reason::DropMalformed`].
    pub const DROP_MALFORMED: u32 = Reason::DropMalformed.index();
    /// See [`Reason::DropBadMa`].
    pub const DROP_BAD_MA: u32 = Reason::DropBadMa.index();
    /// See [`Reason::DropMissingMa`].
    pub const DROP_MISSING_MA: u32 = Reason::DropMissingMa.index();
    /// See [`Reason::DropBadAcctAuth`].
    pub const DROP_BAD_ACCT_AUTH: u32 = Reason::DropBadAcctAuth.index();
    /// See [`Reason::DropRateLimited`].
    pub const DROP_RATE_LIMITED: u32 = Reason::DropRateLimited.index();
    /// Number of reasons.
    pub const COUNT: u32 = Reason::COUNT;
}

// SAFETY: these types are #[repr(C)], made only of integers and integer arrays, with no
// padding bytes (ClientInfo: two u32; PortConfig: 8 + 1 + 1 u16 = 20 bytes at 2-byte
// alignment; SecretKey: 4 + 4 + 1 + 1 u32 and 128 bytes = 168 bytes at 4-byte alignment;
// ClientKeys: 2 * 168 + 4 + 4 + 8 = 352 bytes; RateLimit: two u32; TokenBucket: two u64;
// ClientCounters: six u64), and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ClientInfo {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortConfig {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SecretKey {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ClientKeys {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for RateLimit {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TokenBucket {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ClientCounters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_dense_and_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index() as usize, i);
            assert_eq!(Reason::from_index(i as u32), Some(*r));
        }
        assert_eq!(Reason::from_index(Reason::COUNT), None);
        assert_eq!(reason::COUNT as usize, Reason::ALL.len());
    }

    #[test]
    fn drops_are_named_drop_and_passes_pass() {
        let drops: usize = Reason::ALL.iter().filter(|r| r.is_drop()).count();
        assert_eq!(drops, 7);
        for r in Reason::ALL {
            assert_eq!(r.is_drop(), r.name().starts_with("drop_"), "{}", r.name());
            if r.is_known_client_pass() {
                assert!(!r.is_drop());
            }
        }
        assert!(Reason::DropUnknownClientV4.is_drop());
        assert!(!Reason::PassMaVerified.is_drop());
        assert!(Reason::PassMaVerified.is_known_client_pass());
        assert!(!Reason::PassOtherPort.is_known_client_pass());
    }

    #[test]
    fn names_are_unique() {
        for (k, a) in Reason::ALL.iter().enumerate() {
            for b in &Reason::ALL[..k] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<ClientInfo>(), 8);
        assert_eq!(core::mem::size_of::<PortConfig>(), 2 * MAX_PORTS + 4);
        assert_eq!(core::mem::size_of::<SecretKey>(), 4 * 10 + MAX_SECRET_LEN);
        assert_eq!(
            core::mem::size_of::<ClientKeys>(),
            MAX_SECRETS * core::mem::size_of::<SecretKey>() + 16
        );
        assert_eq!(core::mem::size_of::<RateLimit>(), 8);
        assert_eq!(core::mem::size_of::<TokenBucket>(), 16);
        assert_eq!(core::mem::size_of::<ClientCounters>(), 48);
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limit = RateLimit {
            rate_pps: 10,
            burst: 3,
        };
        let mut b = TokenBucket::default();
        let t0 = 5 * SECOND;
        // A fresh bucket is full: three pass at once, the fourth does not.
        assert!(b.take(t0, limit));
        assert!(b.take(t0, limit));
        assert!(b.take(t0, limit));
        assert!(!b.take(t0, limit));
        // 10 pps: one token per 100 ms.
        assert!(!b.take(t0 + 99_000_000, limit));
        assert!(b.take(t0 + 100_000_000, limit));
        assert!(!b.take(t0 + 100_000_000, limit));
        // A long idle period refills to the burst, not beyond.
        let t1 = t0 + 3600 * SECOND;
        for _ in 0..3 {
            assert!(b.take(t1, limit));
        }
        assert!(!b.take(t1, limit));
        // A clock that goes back refills nothing.
        assert!(!b.take(t0, limit));
    }

    #[test]
    fn bucket_edge_cases() {
        let mut b = TokenBucket::default();
        for _ in 0..1000 {
            assert!(b.take(SECOND, RateLimit::UNLIMITED));
        }
        assert_eq!(b, TokenBucket::default());
        // The largest limits do not overflow.
        let max = RateLimit {
            rate_pps: u32::MAX,
            burst: u32::MAX,
        };
        let mut b = TokenBucket::default();
        assert!(b.take(u64::MAX - 1, max));
        assert!(b.take(u64::MAX, max));
        // Burst 0 with a rate acts as a bucket of one.
        let one = RateLimit {
            rate_pps: 1,
            burst: 0,
        };
        let mut b = TokenBucket::default();
        assert!(b.take(SECOND, one));
        assert!(!b.take(SECOND, one));
        assert!(b.take(2 * SECOND, one));
    }

    #[test]
    fn per_cpu_share_rounds_up() {
        assert_eq!(RateLimit::per_cpu(0, 50, 4), RateLimit::UNLIMITED);
        assert_eq!(
            RateLimit::per_cpu(10, 5, 2),
            RateLimit {
                rate_pps: 5,
                burst: 3
            }
        );
        assert_eq!(
            RateLimit::per_cpu(1, 1, 8),
            RateLimit {
                rate_pps: 1,
                burst: 1
            }
        );
        // Burst 0: one second's worth.
        assert_eq!(RateLimit::per_cpu(100, 0, 1).burst, 100);
        assert_eq!(RateLimit::per_cpu(7, 7, 0).rate_pps, 7);
    }

    #[test]
    fn client_counters_record_by_reason() {
        let mut c = ClientCounters::default();
        for r in Reason::ALL {
            c.record(r);
        }
        assert_eq!(c.drop_malformed, 1);
        assert_eq!(c.drop_bad_ma, 1);
        assert_eq!(c.drop_missing_ma, 1);
        assert_eq!(c.drop_bad_acct_auth, 1);
        assert_eq!(c.drop_rate_limited, 1);
        // Every pass reason counts as passed; unknown-client drops never reach a client.
        assert_eq!(
            c.passed,
            Reason::ALL.iter().filter(|r| !r.is_drop()).count() as u64
        );
        let mut d = c;
        d.add(&c);
        assert_eq!(d.passed, 2 * c.passed);
        assert_eq!(d.iter()[5], ("drop_rate_limited", 2));
    }

    #[test]
    fn port_config_matches_only_used_slots() {
        let c = PortConfig::from_ports(&[1812, 1813]).expect("two ports fit");
        assert!(c.contains(1812));
        assert!(c.contains(1813));
        assert!(!c.contains(0));
        assert!(!c.contains(1645));
        assert!(!PortConfig::EMPTY.contains(0));
        assert!(PortConfig::from_ports(&[1; MAX_PORTS + 1]).is_none());
        assert!(PortConfig::from_ports(&[1; MAX_PORTS]).is_some());
    }
}
