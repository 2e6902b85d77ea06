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
//! | [`MAP_COUNTERS`] | per-CPU array, [`Reason::COUNT`] entries | `u32` (reason) | `u64` packets |
//!
//! The filter only ever looks at UDP datagrams sent to one of the configured ports. Of those, a
//! datagram whose source address is in a client trie passes; any other one is dropped. Every
//! packet the filter cannot judge (fragments, truncated headers, IPv6 extension headers, ...)
//! passes: userspace validates every request anyway, XDP is only a cheap first cut.

#![no_std]

/// Name of the LPM trie of known IPv4 clients.
pub const MAP_CLIENTS_V4: &str = "CLIENTS_V4";
/// Name of the LPM trie of known IPv6 clients.
pub const MAP_CLIENTS_V6: &str = "CLIENTS_V6";
/// Name of the one-entry array holding the [`PortConfig`].
pub const MAP_PORTS: &str = "PORTS";
/// Name of the per-CPU array of packet counters, indexed by [`Reason`].
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Maximum number of entries in each client trie.
pub const MAX_CLIENTS: u32 = 65_536;
/// Maximum number of RADIUS ports the filter watches.
pub const MAX_PORTS: usize = 8;
/// The only index of the [`MAP_PORTS`] array.
pub const PORTS_INDEX: u32 = 0;

/// Data of an IPv4 client trie key: the address in network byte order (`Ipv4Addr::octets`).
/// The prefix length travels beside it in the LPM key (`aya::maps::lpm_trie::Key`).
pub type ClientKeyV4 = [u8; 4];
/// Data of an IPv6 client trie key: the address in network byte order (`Ipv6Addr::octets`).
pub type ClientKeyV6 = [u8; 16];

/// Value of a client trie entry.
///
/// `index` is the position of the client in the server's configuration, so later per-client
/// state (for instance a per-client secret or rate limit in another map) can be keyed by it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Position of the client in the configuration.
    pub index: u32,
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
    /// UDP to a RADIUS port from a known client.
    PassKnownClient = 3,
    /// An IPv4 fragment (first or later) or an IPv6 fragment header: the UDP header cannot be
    /// trusted or is absent; userspace reassembly and validation handle it.
    PassFragment = 4,
    /// The frame ends inside the Ethernet, VLAN, IP or UDP header; the kernel stack drops it.
    PassTruncated = 5,
    /// An IPv6 packet whose next header is an extension header (other than fragment): the
    /// filter only reads the fixed header, so it cannot see the transport.
    PassIpv6ExtHeader = 6,
    /// A malformed IP header (IPv4 IHL below 5); the kernel stack drops it.
    PassMalformed = 7,
    /// UDP to a RADIUS port from an IPv4 source that is not a known client.
    DropUnknownClientV4 = 8,
    /// UDP to a RADIUS port from an IPv6 source that is not a known client.
    DropUnknownClientV6 = 9,
}

impl Reason {
    /// Number of reasons, i.e. the size of the [`MAP_COUNTERS`] array.
    pub const COUNT: u32 = 10;

    /// All reasons in index order.
    pub const ALL: [Reason; Reason::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassNotUdp,
        Reason::PassOtherPort,
        Reason::PassKnownClient,
        Reason::PassFragment,
        Reason::PassTruncated,
        Reason::PassIpv6ExtHeader,
        Reason::PassMalformed,
        Reason::DropUnknownClientV4,
        Reason::DropUnknownClientV6,
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
            Reason::DropUnknownClientV4 | Reason::DropUnknownClientV6
        )
    }

    /// A stable snake-case name, for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassNotUdp => "pass_not_udp",
            Reason::PassOtherPort => "pass_other_port",
            Reason::PassKnownClient => "pass_known_client",
            Reason::PassFragment => "pass_fragment",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassIpv6ExtHeader => "pass_ipv6_ext_header",
            Reason::PassMalformed => "pass_malformed",
            Reason::DropUnknownClientV4 => "drop_unknown_client_v4",
            Reason::DropUnknownClientV6 => "drop_unknown_client_v6",
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
    /// See [`Reason::PassKnownClient`].
    pub const PASS_KNOWN_CLIENT: u32 = Reason::PassKnownClient.index();
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
    /// Number of reasons.
    pub const COUNT: u32 = Reason::COUNT;
}

// SAFETY: both types are #[repr(C)], made only of integers, with no padding bytes
// (ClientInfo: one u32; PortConfig: 8 + 1 + 1 u16 = 20 bytes at 2-byte alignment), and every
// bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ClientInfo {}
// SAFETY: see above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortConfig {}

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
    fn only_unknown_clients_are_dropped() {
        let drops: usize = Reason::ALL.iter().filter(|r| r.is_drop()).count();
        assert_eq!(drops, 2);
        assert!(Reason::DropUnknownClientV4.is_drop());
        assert!(!Reason::PassKnownClient.is_drop());
    }

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<ClientInfo>(), 4);
        assert_eq!(core::mem::size_of::<PortConfig>(), 2 * MAX_PORTS + 4);
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
