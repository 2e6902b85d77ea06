//! Portcullis XDP pre-filter.
//!
//! Drops UDP datagrams sent to a configured RADIUS port from a source address that is not a
//! known client; passes everything else. It reads Ethernet (with up to two 802.1Q / 802.1ad
//! tags), IPv4 (any IHL) or the fixed IPv6 header, and the UDP header; the client lists are
//! LPM tries filled by `portcullis-xdp-loader`, and every verdict is counted per reason in a
//! per-CPU array (see `portcullis-xdp-common`).
//!
//! What it does not do: look at the RADIUS payload, follow IPv6 extension headers, or judge
//! fragments. Whatever it cannot judge it passes: userspace validates every request anyway.

#![no_std]
#![no_main]

use core::mem;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use portcullis_xdp_common::{
    ClientInfo, ClientKeyV4, ClientKeyV6, PortConfig, Reason, MAX_CLIENTS, PORTS_INDEX,
};

#[map(name = "CLIENTS_V4")]
static CLIENTS_V4: LpmTrie<ClientKeyV4, ClientInfo> = LpmTrie::with_max_entries(MAX_CLIENTS, 0);

#[map(name = "CLIENTS_V6")]
static CLIENTS_V6: LpmTrie<ClientKeyV6, ClientInfo> = LpmTrie::with_max_entries(MAX_CLIENTS, 0);

#[map(name = "PORTS")]
static PORTS: Array<PortConfig> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const UDP_HDR_LEN: usize = 8;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const IPPROTO_UDP: u8 = 17;
const IPV6_NEXT_FRAGMENT: u8 = 44;
/// IPv4 flags/fragment-offset field: "more fragments" flag and the 13-bit offset.
const IPV4_MF_AND_OFFSET: u16 = 0x3FFF;

/// The frame ends inside a header we need.
struct Truncated;

#[xdp]
pub fn portcullis_xdp(ctx: XdpContext) -> u32 {
    let reason = match try_filter(&ctx) {
        Ok(reason) => reason,
        Err(Truncated) => Reason::PassTruncated,
    };
    count(reason);
    if reason.is_drop() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn count(reason: Reason) {
    if let Some(counter) = COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so it is
        // valid and only this CPU touches it while the program runs.
        unsafe { *counter += 1 };
    }
}

fn try_filter(ctx: &XdpContext) -> Result<Reason, Truncated> {
    let mut l3 = ETH_HDR_LEN;
    let mut ether_type = read_u16(ctx, 12)?;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner, or two 802.1Q), unrolled.
    if is_vlan(ether_type) {
        ether_type = read_u16(ctx, l3 + 2)?;
        l3 += VLAN_HDR_LEN;
        if is_vlan(ether_type) {
            ether_type = read_u16(ctx, l3 + 2)?;
            l3 += VLAN_HDR_LEN;
        }
    }
    match ether_type {
        ETH_P_IP => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        _ => Ok(Reason::PassNotIp),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Result<Reason, Truncated> {
    let version_ihl: u8 = read(ctx, l3)?;
    // Make sure the whole fixed header is there before reading its fields.
    check(ctx, l3, IPV4_MIN_HDR_LEN)?;
    if version_ihl >> 4 != 4 || version_ihl & 0x0F < 5 {
        return Ok(Reason::PassMalformed);
    }
    let protocol: u8 = read(ctx, l3 + 9)?;
    if protocol != IPPROTO_UDP {
        return Ok(Reason::PassNotUdp);
    }
    if read_u16(ctx, l3 + 6)? & IPV4_MF_AND_OFFSET != 0 {
        return Ok(Reason::PassFragment);
    }
    let source: ClientKeyV4 = read(ctx, l3 + 12)?;
    let l4 = l3 + usize::from(version_ihl & 0x0F) * 4;
    check(ctx, l4, UDP_HDR_LEN)?;
    if !is_radius_port(read_u16(ctx, l4 + 2)?) {
        return Ok(Reason::PassOtherPort);
    }
    let key = Key::new(32, source);
    Ok(if CLIENTS_V4.get(&key).is_some() {
        Reason::PassKnownClient
    } else {
        Reason::DropUnknownClientV4
    })
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Result<Reason, Truncated> {
    check(ctx, l3, IPV6_HDR_LEN)?;
    let version: u8 = read(ctx, l3)?;
    if version >> 4 != 6 {
        return Ok(Reason::PassMalformed);
    }
    let next_header: u8 = read(ctx, l3 + 6)?;
    if next_header != IPPROTO_UDP {
        return Ok(match next_header {
            IPV6_NEXT_FRAGMENT => Reason::PassFragment,
            // Hop-by-hop, routing, destination options, AH, mobility, HIP, shim6, experimental.
            0 | 43 | 51 | 60 | 135 | 139 | 140 | 253 | 254 => Reason::PassIpv6ExtHeader,
            _ => Reason::PassNotUdp,
        });
    }
    let source: ClientKeyV6 = read(ctx, l3 + 8)?;
    let l4 = l3 + IPV6_HDR_LEN;
    check(ctx, l4, UDP_HDR_LEN)?;
    if !is_radius_port(read_u16(ctx, l4 + 2)?) {
        return Ok(Reason::PassOtherPort);
    }
    let key = Key::new(128, source);
    Ok(if CLIENTS_V6.get(&key).is_some() {
        Reason::PassKnownClient
    } else {
        Reason::DropUnknownClientV6
    })
}

#[inline(always)]
fn is_vlan(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD
}

#[inline(always)]
fn is_radius_port(port: u16) -> bool {
    match PORTS.get(PORTS_INDEX) {
        Some(config) => config.contains(port),
        None => false,
    }
}

/// Fail unless `len` bytes starting at `offset` are inside the frame.
#[inline(always)]
fn check(ctx: &XdpContext, offset: usize, len: usize) -> Result<(), Truncated> {
    if ctx.data() + offset + len > ctx.data_end() {
        return Err(Truncated);
    }
    Ok(())
}

/// Read a `T` (a byte or byte array) at `offset`, bounds-checked against the frame end.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, Truncated> {
    let start = ctx.data() + offset;
    if start + mem::size_of::<T>() > ctx.data_end() {
        return Err(Truncated);
    }
    // SAFETY: the bytes [start, start + size_of::<T>()) are inside the packet, checked just
    // above; T is a plain byte type, so any bit pattern is valid and alignment does not matter.
    Ok(unsafe { (start as *const T).read_unaligned() })
}

/// Read a big-endian `u16` at `offset`.
#[inline(always)]
fn read_u16(ctx: &XdpContext, offset: usize) -> Result<u16, Truncated> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that could reach this; there is no way to panic.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 11] = *b"Apache-2.0\0";
