//! Portcullis XDP pre-filter.
//!
//! For UDP datagrams sent to a configured RADIUS port it drops those from a source address that
//! is not a known client and, for known clients, checks the RADIUS packet itself:
//!
//! 1. structure: Length in 20..=4096 and within the UDP payload (octets after Length are
//!    padding), attributes at least 2 octets long and ending exactly at Length, at most one
//!    Message-Authenticator and only of 18 octets;
//! 2. Access-Request and Status-Server: the Message-Authenticator (HMAC-MD5, RFC 3579 §3.2),
//!    or its absence against the client's policy;
//! 3. Accounting-Request: the Request Authenticator (MD5, RFC 2866 §3).
//!
//! Before any of that, a known client's datagram takes a token from the client's bucket and
//! then from the global one (per-CPU token buckets refilled from `bpf_ktime_get_ns`, limits
//! from the loader already divided by the number of CPUs); without one it is dropped, so a
//! noisy NAS cannot make the filter spend its CPU on HMACs. Every verdict on a known client's
//! packet is also counted in the client's own counters (`CLIENT_COUNTERS`, by key slot).
//!
//! The packet is copied into a per-CPU scratch buffer (`bpf_xdp_load_bytes`), so jumbo and
//! multi-buffer frames work the same. HMAC starts from the MD5 states after the `ipad` and
//! `opad` blocks, which userspace precomputes per secret (see `portcullis_xdp_common::SecretKey`);
//! a client may have two secrets, and a packet passes if either verifies. Every block loop is
//! bounded (at most 67 blocks of 64 bytes) so the verifier can walk it.
//!
//! It reads Ethernet (with up to two 802.1Q / 802.1ad tags), IPv4 (any IHL) or the fixed IPv6
//! header, and the UDP header; the client lists are LPM tries filled by
//! `portcullis-xdp-loader`, and every verdict is counted per reason in a per-CPU array (see
//! `portcullis-xdp-common`).
//!
//! What it does not do: follow IPv6 extension headers, judge fragments, check RADIUS codes
//! other than the three above, or apply the RFC attribute tables. Whatever it cannot judge it
//! passes: userspace validates every request anyway.
//!
//! A note on the verifier: values that bound memory accesses are stored in the scratch header
//! and read back with volatile loads before use, then masked. That way LLVM cannot fold the
//! bounds checks into forms the verifier does not follow, and the verifier does not carry
//! the exact exit state of one loop into the next (which would multiply the paths it walks).

#![no_std]
#![no_main]

use core::ffi::c_void;
use core::mem;
use core::ptr::{addr_of, addr_of_mut};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::gen::{bpf_ktime_get_ns, bpf_loop, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use portcullis_xdp_common::{
    md5, ClientCounters, ClientInfo, ClientKeyV4, ClientKeyV6, ClientKeys, PortConfig, RateLimit,
    Reason, TokenBucket, BUCKETS, CLIENT_KEY_SLOTS, FLAG_REQUIRE_MESSAGE_AUTHENTICATOR,
    GLOBAL_BUCKET, MAX_CLIENTS, MAX_RADIUS_LEN, MAX_SECRETS, MAX_SECRET_LEN, PORTS_INDEX,
};

#[map(name = "CLIENTS_V4")]
static CLIENTS_V4: LpmTrie<ClientKeyV4, ClientInfo> = LpmTrie::with_max_entries(MAX_CLIENTS, 0);

#[map(name = "CLIENTS_V6")]
static CLIENTS_V6: LpmTrie<ClientKeyV6, ClientInfo> = LpmTrie::with_max_entries(MAX_CLIENTS, 0);

#[map(name = "PORTS")]
static PORTS: Array<PortConfig> = Array::with_max_entries(1, 0);

#[map(name = "CLIENT_KEYS")]
static CLIENT_KEYS: Array<ClientKeys> = Array::with_max_entries(CLIENT_KEY_SLOTS, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

#[map(name = "CLIENT_COUNTERS")]
static CLIENT_COUNTERS: PerCpuArray<ClientCounters> =
    PerCpuArray::with_max_entries(CLIENT_KEY_SLOTS, 0);

#[map(name = "GLOBAL_LIMIT")]
static GLOBAL_LIMIT: Array<RateLimit> = Array::with_max_entries(1, 0);

#[map(name = "BUCKETS")]
static BUCKETS_MAP: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(BUCKETS, 0);

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

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

/// RADIUS header: Code, Identifier, Length, Authenticator.
const RADIUS_HDR_LEN: u32 = 20;
const CODE_ACCESS_REQUEST: u8 = 1;
const CODE_ACCOUNTING_REQUEST: u8 = 4;
const CODE_STATUS_SERVER: u8 = 12;
const ATTR_PROXY_STATE: u8 = 33;
const ATTR_EAP_MESSAGE: u8 = 79;
const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;
/// Type, length and the 16-octet HMAC-MD5.
const MA_ATTR_LEN: u32 = 18;

const BLOCK: usize = md5::BLOCK_LEN;
/// Blocks of an HMAC inner hash over a packet of at most 4096 octets: the packet, 0x80 and
/// the 8-octet length (the key block is precomputed).
const MAX_HMAC_BLOCKS: usize = (MAX_RADIUS_LEN + 8) / BLOCK + 1;
/// Blocks of MD5(packet || secret) with padding.
const MAX_ACCT_BLOCKS: usize = (MAX_RADIUS_LEN + MAX_SECRET_LEN + 8) / BLOCK + 1;
/// 32-bit words cleared after Length before padding: room for the secret, 0x80, the zero fill
/// and the length field of the last block, from the word after the one holding octet Length.
const TAIL_WORDS: usize = (MAX_SECRET_LEN + 8 + BLOCK) / 4 + 1;
/// The scratch buffer: the largest packet, the tail, and the bytes past Length the code may
/// touch while cleaning up (four octets before the tail words start).
const BUF_LEN: usize = (MAX_ACCT_BLOCKS + 1) * BLOCK;
/// Attribute walk cap: every attribute takes at least two octets, so this covers any packet.
const MAX_ATTRIBUTES: u32 = (MAX_RADIUS_LEN as u32 - RADIUS_HDR_LEN) / 2 + 1;

const _: () = assert!(MAX_HMAC_BLOCKS == 65 && MAX_ACCT_BLOCKS == 67);
const _: () = assert!(4 * (MAX_RADIUS_LEN / 4 + 1 + TAIL_WORDS) <= BUF_LEN);
const _: () = assert!(MAX_ACCT_BLOCKS * BLOCK <= BUF_LEN);
const _: () = assert!(4 * (MAX_RADIUS_LEN / 4 + 1) + 4 * TAIL_WORDS >= MAX_ACCT_BLOCKS * BLOCK);

/// Per-CPU working memory: a header of values passed between the steps, and the packet.
#[repr(C, align(8))]
pub struct Scratch {
    /// Offset of the UDP payload from the start of the frame.
    payload_offset: u32,
    /// Length of the UDP payload, from the UDP header.
    payload_len: u32,
    /// The client's slot in `CLIENT_KEYS`.
    slot: u32,
    /// The RADIUS Length field (20..=4096 once checked).
    len: u32,
    /// Offset of the Message-Authenticator value in `buf`, 0 when there is none.
    ma_offset: u32,
    /// 1 when the packet has EAP-Message or Proxy-State (which need a Message-Authenticator).
    ma_needed: u32,
    /// Number of 64-octet blocks to hash in `buf`.
    blocks: u32,
    /// Attribute walk: offset of the next attribute.
    walk_pos: u32,
    /// Attribute walk: `WALK_RUNNING`, `WALK_DONE` or `WALK_MALFORMED`.
    walk_status: u32,
    reserved: u32,
    /// The RADIUS packet, then room for the secret and the MD5 padding.
    buf: [u8; BUF_LEN],
}

// The words of `buf` are 4-aligned (MD5 reads them as u32).
const _: () = assert!(mem::offset_of!(Scratch, buf) % 8 == 0);

/// The frame ends inside a header we need.
struct Truncated;

/// What the header parsing found.
enum Step {
    /// The verdict is known.
    Done(Reason),
    /// UDP to a RADIUS port from a known client: check the payload.
    Radius {
        payload_offset: usize,
        payload_len: u16,
        slot: u32,
    },
}

#[xdp(frags)]
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
    let step = match ether_type {
        ETH_P_IP => ipv4(ctx, l3)?,
        ETH_P_IPV6 => ipv6(ctx, l3)?,
        _ => Step::Done(Reason::PassNotIp),
    };
    match step {
        Step::Done(reason) => Ok(reason),
        Step::Radius {
            payload_offset,
            payload_len,
            slot,
        } => {
            let reason = known_client_packet(ctx, payload_offset, payload_len, slot);
            count_client(slot, reason);
            Ok(reason)
        }
    }
}

/// Count a verdict on a known client's packet in the client's counters.
#[inline(always)]
fn count_client(slot: u32, reason: Reason) {
    if let Some(counters) = CLIENT_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a successful lookup in a per-CPU array: valid, and only this CPU uses it.
        unsafe { (*counters).record(reason) };
    }
}

/// Take a token from the bucket at `index` under `limit`; true when the packet may pass.
#[inline(always)]
fn take_token(index: u32, limit: RateLimit, now: u64) -> bool {
    if limit.rate_pps == 0 {
        return true;
    }
    match BUCKETS_MAP.get_ptr_mut(index) {
        // SAFETY: a successful lookup in a per-CPU array: valid, and only this CPU uses it
        // (XDP runs with preemption off).
        Some(bucket) => unsafe { (*bucket).take(now, limit) },
        None => true,
    }
}

/// Rate limits (the client's, then the global one), then the RADIUS checks.
#[inline(always)]
fn known_client_packet(
    ctx: &XdpContext,
    payload_offset: usize,
    payload_len: u16,
    slot: u32,
) -> Reason {
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let client_limit = match CLIENT_KEYS.get(slot) {
        Some(keys) => keys.limit,
        None => RateLimit::UNLIMITED,
    };
    if !take_token(slot, client_limit, now) {
        return Reason::DropRateLimited;
    }
    let global_limit = match GLOBAL_LIMIT.get(0) {
        Some(limit) => *limit,
        None => RateLimit::UNLIMITED,
    };
    if !take_token(GLOBAL_BUCKET, global_limit, now) {
        return Reason::DropRateLimited;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Reason::PassUncheckable;
    };
    // Through memory, so every header path reaches `radius` in the same verifier state.
    // SAFETY: `scratch` is this CPU's scratch map value (a successful lookup).
    unsafe {
        put(
            addr_of_mut!((*scratch).payload_offset),
            payload_offset as u32,
        );
        put(addr_of_mut!((*scratch).payload_len), u32::from(payload_len));
        put(addr_of_mut!((*scratch).slot), slot);
    }
    radius(ctx, scratch)
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Result<Step, Truncated> {
    let version_ihl: u8 = read(ctx, l3)?;
    // Make sure the whole fixed header is there before reading its fields.
    check(ctx, l3, IPV4_MIN_HDR_LEN)?;
    if version_ihl >> 4 != 4 || version_ihl & 0x0F < 5 {
        return Ok(Step::Done(Reason::PassMalformed));
    }
    let protocol: u8 = read(ctx, l3 + 9)?;
    if protocol != IPPROTO_UDP {
        return Ok(Step::Done(Reason::PassNotUdp));
    }
    if read_u16(ctx, l3 + 6)? & IPV4_MF_AND_OFFSET != 0 {
        return Ok(Step::Done(Reason::PassFragment));
    }
    let source: ClientKeyV4 = read(ctx, l3 + 12)?;
    let l4 = l3 + usize::from(version_ihl & 0x0F) * 4;
    check(ctx, l4, UDP_HDR_LEN)?;
    if !is_radius_port(read_u16(ctx, l4 + 2)?) {
        return Ok(Step::Done(Reason::PassOtherPort));
    }
    let udp_len = read_u16(ctx, l4 + 4)?;
    let key = Key::new(32, source);
    Ok(match CLIENTS_V4.get(&key) {
        Some(info) => known_client(l4, udp_len, info),
        None => Step::Done(Reason::DropUnknownClientV4),
    })
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Result<Step, Truncated> {
    check(ctx, l3, IPV6_HDR_LEN)?;
    let version: u8 = read(ctx, l3)?;
    if version >> 4 != 6 {
        return Ok(Step::Done(Reason::PassMalformed));
    }
    let next_header: u8 = read(ctx, l3 + 6)?;
    if next_header != IPPROTO_UDP {
        return Ok(Step::Done(match next_header {
            IPV6_NEXT_FRAGMENT => Reason::PassFragment,
            // Hop-by-hop, routing, destination options, AH, mobility, HIP, shim6, experimental.
            0 | 43 | 51 | 60 | 135 | 139 | 140 | 253 | 254 => Reason::PassIpv6ExtHeader,
            _ => Reason::PassNotUdp,
        }));
    }
    let source: ClientKeyV6 = read(ctx, l3 + 8)?;
    let l4 = l3 + IPV6_HDR_LEN;
    check(ctx, l4, UDP_HDR_LEN)?;
    if !is_radius_port(read_u16(ctx, l4 + 2)?) {
        return Ok(Step::Done(Reason::PassOtherPort));
    }
    let udp_len = read_u16(ctx, l4 + 4)?;
    let key = Key::new(128, source);
    Ok(match CLIENTS_V6.get(&key) {
        Some(info) => known_client(l4, udp_len, info),
        None => Step::Done(Reason::DropUnknownClientV6),
    })
}

#[inline(always)]
fn known_client(l4: usize, udp_len: u16, info: &ClientInfo) -> Step {
    match udp_len.checked_sub(UDP_HDR_LEN as u16) {
        Some(payload_len) => Step::Radius {
            payload_offset: l4 + UDP_HDR_LEN,
            payload_len,
            slot: info.slot,
        },
        // The kernel drops a UDP length below the header size.
        None => Step::Done(Reason::PassMalformed),
    }
}

/// Check the RADIUS packet of a known client.
#[inline(always)]
fn radius(ctx: &XdpContext, scratch: *mut Scratch) -> Reason {
    // SAFETY: `scratch` points to this CPU's scratch map value, valid for the whole run and
    // used by nothing else meanwhile (XDP runs with preemption off); every access below stays
    // inside `buf` (the bounds are noted at each access).
    unsafe {
        let buf = addr_of_mut!((*scratch).buf) as *mut u8;
        let payload_offset = get(addr_of!((*scratch).payload_offset));
        let payload_len = get(addr_of!((*scratch).payload_len));
        if payload_len < RADIUS_HDR_LEN {
            return Reason::DropMalformed;
        }
        // The header first, for Length.
        if bpf_xdp_load_bytes(ctx.ctx, payload_offset, buf.cast(), 4) != 0 {
            return Reason::PassTruncated;
        }
        let len = u32::from(u16::from_be_bytes([*buf.add(2), *buf.add(3)]));
        if len < RADIUS_HDR_LEN || len > MAX_RADIUS_LEN as u32 || len > payload_len {
            return Reason::DropMalformed;
        }
        put(addr_of_mut!((*scratch).len), len);
        // Exactly Length octets; the payload may be longer (padding, RFC 2865 §3).
        let n = radius_len(scratch);
        if bpf_xdp_load_bytes(ctx.ctx, payload_offset, buf.cast(), n as u32) != 0 {
            return Reason::PassTruncated;
        }
        match walk(scratch) {
            Walk::Done => {}
            Walk::Malformed => return Reason::DropMalformed,
            Walk::Unfinished => return Reason::PassUncheckable,
        }

        let code = *buf;
        if code != CODE_ACCESS_REQUEST
            && code != CODE_STATUS_SERVER
            && code != CODE_ACCOUNTING_REQUEST
        {
            return Reason::PassUnverifiedCode;
        }
        let Some(keys) = CLIENT_KEYS.get(get(addr_of!((*scratch).slot))) else {
            return Reason::PassUncheckable;
        };
        if keys.count == 0 {
            return Reason::PassUncheckable;
        }
        if code == CODE_ACCOUNTING_REQUEST {
            return if accounting_authenticator_verifies(scratch, keys) {
                Reason::PassAcctAuthVerified
            } else {
                Reason::DropBadAcctAuth
            };
        }
        if get(addr_of!((*scratch).ma_offset)) == 0 {
            let required = code == CODE_STATUS_SERVER
                || keys.flags & FLAG_REQUIRE_MESSAGE_AUTHENTICATOR != 0
                || get(addr_of!((*scratch).ma_needed)) != 0;
            return if required {
                Reason::DropMissingMa
            } else {
                Reason::PassMaAbsent
            };
        }
        if message_authenticator_verifies(scratch, keys) {
            Reason::PassMaVerified
        } else {
            Reason::DropBadMa
        }
    }
}

/// What the attribute walk found.
enum Walk {
    /// Well formed; `ma_offset` and `ma_needed` in the scratch header are set.
    Done,
    /// An attribute shorter than 2 octets, one running past Length, or a bad or second
    /// Message-Authenticator.
    Malformed,
    /// The walk cap was reached (cannot happen for Length <= 4096; kept for safety).
    Unfinished,
}

/// `walk_status` values.
const WALK_RUNNING: u32 = 0;
const WALK_DONE: u32 = 1;
const WALK_MALFORMED: u32 = 2;

/// Walk the attributes of the packet in the scratch buffer, one `bpf_loop` step per attribute.
///
/// With `bpf_loop` the verifier checks one step instead of up to 2039 unrolled ones: a
/// bounded loop here pushes a few pending branches per attribute and runs into the verifier's
/// limit of 8192 pending jumps on one path. The walk state lives in the scratch header, so
/// every step looks the same to the verifier.
///
/// # Safety
///
/// `scratch` must be this CPU's scratch value holding a packet of `len` (20..=4096) octets.
#[inline(always)]
unsafe fn walk(scratch: *mut Scratch) -> Walk {
    // SAFETY: fields of this CPU's scratch value.
    unsafe {
        put(addr_of_mut!((*scratch).walk_pos), RADIUS_HDR_LEN);
        put(addr_of_mut!((*scratch).walk_status), WALK_RUNNING);
        put(addr_of_mut!((*scratch).ma_offset), 0);
        put(addr_of_mut!((*scratch).ma_needed), 0);
        let step: unsafe extern "C" fn(u64, *mut c_void) -> i64 = walk_step;
        if bpf_loop(
            MAX_ATTRIBUTES,
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        ) < 0
        {
            return Walk::Unfinished;
        }
        match get(addr_of!((*scratch).walk_status)) {
            WALK_DONE => Walk::Done,
            WALK_MALFORMED => Walk::Malformed,
            _ => Walk::Unfinished,
        }
    }
}

/// One attribute of the walk (a `bpf_loop` callback): returns 1 to stop, 0 to go on.
unsafe extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: `scratch` is this CPU's scratch value (a successful lookup); the packet reads
    // stay inside `buf` (noted below).
    unsafe {
        let buf = addr_of!((*scratch).buf) as *const u8;
        let len = get(addr_of!((*scratch).len));
        let pos = get(addr_of!((*scratch).walk_pos));
        if pos >= len {
            let status = if pos == len {
                WALK_DONE
            } else {
                WALK_MALFORMED
            };
            put(addr_of_mut!((*scratch).walk_status), status);
            return 1;
        }
        // pos < len <= 4096, so the mask changes nothing but tells the verifier.
        let at = (pos & 0xFFF) as usize;
        // at + 1 <= 4096 < BUF_LEN. When at + 1 == len the length octet is stale scratch
        // memory, and the `pos + attr_len > len` check rejects the attribute anyway.
        let attr_type = *buf.add(at);
        let attr_len = u32::from(*buf.add(at + 1));
        if attr_len < 2 || pos + attr_len > len {
            put(addr_of_mut!((*scratch).walk_status), WALK_MALFORMED);
            return 1;
        }
        if attr_type == ATTR_MESSAGE_AUTHENTICATOR {
            if attr_len != MA_ATTR_LEN || get(addr_of!((*scratch).ma_offset)) != 0 {
                put(addr_of_mut!((*scratch).walk_status), WALK_MALFORMED);
                return 1;
            }
            put(addr_of_mut!((*scratch).ma_offset), pos + 2);
        } else if attr_type == ATTR_EAP_MESSAGE || attr_type == ATTR_PROXY_STATE {
            put(addr_of_mut!((*scratch).ma_needed), 1);
        }
        put(addr_of_mut!((*scratch).walk_pos), pos + attr_len);
        0
    }
}

/// Verify the Message-Authenticator (the walk found one) with each of the client's secrets.
///
/// # Safety
///
/// `scratch` must be this CPU's scratch value holding the walked packet.
#[inline(always)]
unsafe fn message_authenticator_verifies(scratch: *mut Scratch, keys: &ClientKeys) -> bool {
    // SAFETY (for the whole body): offsets are bounded as noted; `buf` is BUF_LEN octets.
    unsafe {
        let buf = addr_of_mut!((*scratch).buf) as *mut u8;
        let len = radius_len(scratch);
        // The value sits at 22..=4080 (the walk checked it ends within Length).
        let ma = (get(addr_of!((*scratch).ma_offset)) & 0xFFF) as usize;
        let mut expected = [0u32; 4];
        let mut k = 0;
        while k < 4 {
            let at = ma + 4 * k;
            expected[k] = u32::from_le_bytes([
                *buf.add(at),
                *buf.add(at + 1),
                *buf.add(at + 2),
                *buf.add(at + 3),
            ]);
            k += 1;
        }
        // HMAC over the packet with the value as zeros (RFC 3579 §3.2).
        let mut k = 0;
        while k < 16 {
            buf.add(ma + k).write_volatile(0);
            k += 1;
        }
        clear_tail(buf, len);
        buf.add(len).write_volatile(0x80);
        let blocks = (len + 8) / BLOCK + 1;
        // The key block counts in the length.
        set_bit_length(buf, blocks, BLOCK + len);
        put(addr_of_mut!((*scratch).blocks), blocks as u32);

        let mut attempt = 0;
        while attempt < MAX_SECRETS {
            if attempt as u32 >= keys.count {
                break;
            }
            let secret = &keys.secrets[attempt];
            let mut inner = secret.inner;
            hash_blocks(&mut inner, scratch, MAX_HMAC_BLOCKS);
            let mut block = [0u32; 16];
            block[0] = inner[0];
            block[1] = inner[1];
            block[2] = inner[2];
            block[3] = inner[3];
            block[4] = 0x80;
            block[14] = ((BLOCK + 16) * 8) as u32;
            let mut outer = secret.outer;
            md5::compress(&mut outer, &block);
            if same(&outer, &expected) {
                return true;
            }
            attempt += 1;
        }
        false
    }
}

/// Verify the Accounting-Request Request Authenticator,
/// MD5(Code + Identifier + Length + 16 zero octets + attributes + secret), with each secret.
///
/// # Safety
///
/// `scratch` must be this CPU's scratch value holding the walked packet.
#[inline(always)]
unsafe fn accounting_authenticator_verifies(scratch: *mut Scratch, keys: &ClientKeys) -> bool {
    // SAFETY (for the whole body): offsets are bounded as noted; `buf` is BUF_LEN octets and
    // 8-aligned, so the word accesses are aligned.
    unsafe {
        let buf = addr_of_mut!((*scratch).buf) as *mut u8;
        let words = buf as *mut u32;
        let len = radius_len(scratch);
        // The authenticator is octets 4..20: words 1..5.
        let expected = [
            words.add(1).read_volatile(),
            words.add(2).read_volatile(),
            words.add(3).read_volatile(),
            words.add(4).read_volatile(),
        ];
        let mut k = 1;
        while k < 5 {
            words.add(k).write_volatile(0);
            k += 1;
        }

        let mut attempt = 0;
        while attempt < MAX_SECRETS {
            if attempt as u32 >= keys.count {
                break;
            }
            let secret = &keys.secrets[attempt];
            let secret_len = addr_of!(secret.len).read_volatile();
            if secret_len == 0 || secret_len > MAX_SECRET_LEN as u32 {
                // Not something the loader writes; leave the packet to userspace.
                return false;
            }
            clear_tail(buf, len);
            let mut k = 0;
            while k < MAX_SECRET_LEN {
                if k as u32 >= secret_len {
                    break;
                }
                // len + k < 4096 + 128.
                buf.add(len + k).write_volatile(secret.bytes[k]);
                k += 1;
            }
            // Read again so the copy loop's exit does not pin the length for the verifier.
            let secret_len = ((addr_of!(secret.len).read_volatile().wrapping_sub(1)
                & (MAX_SECRET_LEN as u32 - 1))
                + 1) as usize;
            let total = len + secret_len;
            buf.add(total).write_volatile(0x80);
            let blocks = (total + 8) / BLOCK + 1;
            set_bit_length(buf, blocks, total);
            put(addr_of_mut!((*scratch).blocks), blocks as u32);

            let mut digest = md5::IV;
            hash_blocks(&mut digest, scratch, MAX_ACCT_BLOCKS);
            if same(&digest, &expected) {
                return true;
            }
            attempt += 1;
        }
        false
    }
}

/// Run MD5 over the first `scratch.blocks` (at most `max`) blocks of `buf`.
///
/// # Safety
///
/// `scratch` must be this CPU's scratch value; `max * 64 <= BUF_LEN`.
#[inline(always)]
unsafe fn hash_blocks(state: &mut [u32; 4], scratch: *mut Scratch, max: usize) {
    // SAFETY: block < max, and max * 64 <= BUF_LEN; buf is 8-aligned.
    unsafe {
        let buf = addr_of!((*scratch).buf) as *const u8;
        let blocks = get(addr_of!((*scratch).blocks)) as usize;
        let mut block = 0;
        while block < max {
            if block >= blocks {
                break;
            }
            let m = &*(buf.add(block * BLOCK) as *const [u32; 16]);
            md5::compress(state, m);
            block += 1;
        }
    }
}

/// Zero the octets after Length that MD5 padding and the secret may use, left over from an
/// earlier packet or attempt: octets `len..len + 4`, then [`TAIL_WORDS`] words.
///
/// # Safety
///
/// `buf` must be the scratch buffer and `len <= 4096`.
#[inline(always)]
unsafe fn clear_tail(buf: *mut u8, len: usize) {
    // SAFETY: len + 3 < BUF_LEN and (len / 4 + 1 + TAIL_WORDS) * 4 <= BUF_LEN (asserted).
    unsafe {
        let mut k = 0;
        while k < 4 {
            buf.add(len + k).write_volatile(0);
            k += 1;
        }
        let words = buf as *mut u32;
        let first = len / 4 + 1;
        let mut k = 0;
        while k < TAIL_WORDS {
            words.add(first + k).write_volatile(0);
            k += 1;
        }
    }
}

/// Write the MD5 length field (`message_len` octets, in bits, little-endian) at the end of
/// block `blocks - 1`.
///
/// # Safety
///
/// `buf` must be the scratch buffer and `1 <= blocks <= MAX_ACCT_BLOCKS`.
#[inline(always)]
unsafe fn set_bit_length(buf: *mut u8, blocks: usize, message_len: usize) {
    let words = buf as *mut u32;
    let last = blocks * (BLOCK / 4);
    let bits = (message_len as u64) * 8;
    // SAFETY: last <= MAX_ACCT_BLOCKS * 16 words, inside BUF_LEN.
    unsafe {
        words.add(last - 2).write_volatile(bits as u32);
        words.add(last - 1).write_volatile((bits >> 32) as u32);
    }
}

/// The checked RADIUS Length, read back from the scratch header and shaped so the verifier
/// knows it is in 1..=4096 (it is in 20..=4096).
///
/// # Safety
///
/// `scratch` must be this CPU's scratch value.
#[inline(always)]
unsafe fn radius_len(scratch: *mut Scratch) -> usize {
    // SAFETY: a field of a valid map value.
    let len = unsafe { get(addr_of!((*scratch).len)) };
    ((len.wrapping_sub(1) & (MAX_RADIUS_LEN as u32 - 1)) + 1) as usize
}

/// Compare two digests without an early exit.
#[inline(always)]
fn same(a: &[u32; 4], b: &[u32; 4]) -> bool {
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0
}

/// Store a value in the scratch header.
#[inline(always)]
fn put(field: *mut u32, value: u32) {
    // SAFETY: callers pass a field of this CPU's scratch map value.
    unsafe { field.write_volatile(value) }
}

/// Load a value from the scratch header. Volatile, so LLVM cannot reuse what it knows about
/// the stored value (for instance to drop a mask the verifier needs).
#[inline(always)]
fn get(field: *const u32) -> u32 {
    // SAFETY: callers pass a field of this CPU's scratch map value.
    unsafe { field.read_volatile() }
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
