//! The flood generator of `--flood-gen xdp`: whole Ethernet frames handed to a veth the way a
//! NIC driver hands them to XDP, without a socket or an skb.
//!
//! Two parts:
//! - [`udp_frame`] builds one Ethernet II / IPv4 / UDP frame around a RADIUS packet, both
//!   checksums computed (once per frame; the frames are sent as they are, many times).
//! - [`Redirect`] is a four-instruction XDP program, loaded with the raw `bpf(2)` syscall from
//!   instructions encoded here, that redirects every frame it sees to one interface. Run with
//!   `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES`, the kernel puts the given frame in a
//!   page of its own `repeat` times, runs the program on each copy as if it had just been
//!   received on the calling thread's namespace's loopback, and carries out the redirects in
//!   batches: `bpf_redirect` to the client's end of the veth pair queues the frames with the
//!   veth's `ndo_xdp_xmit` straight into the server end's XDP ring, as a NIC's DMA would put
//!   them in its receive ring.
//!
//! What it does not do: IPv6, fragments, VLANs, frames larger than a page less the kernel's
//! head- and tailroom (about 3.5 kB; RADIUS packets of the bench are ~100 bytes). It needs
//! `CAP_BPF` and `CAP_NET_ADMIN` (the bench runs as root) and a kernel of 5.18 or later.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use portcullis_xdp_loader::test_run::{run_xdp, run_xdp_live_frames, XdpAction};

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
/// The TTL of the frames (Linux's default, `net.ipv4.ip_default_ttl`).
const TTL: u8 = 64;
/// Don't Fragment, as Linux sets it on UDP from a socket with path-MTU discovery.
const IPV4_DF: u16 = 0x4000;

/// Parses `aa:bb:cc:dd:ee:ff` (as `/sys/class/net/<iface>/address` shows it).
pub fn parse_mac(text: &str) -> Result<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("`{text}`: too short for a MAC"))?;
        *b = u8::from_str_radix(part, 16).with_context(|| format!("`{text}`: not a MAC"))?;
    }
    if parts.next().is_some() {
        bail!("`{text}`: too long for a MAC");
    }
    Ok(mac)
}

/// The ones' complement sum of `bytes` as big-endian 16-bit words (an odd last byte is padded
/// with a zero), added to `acc` without folding (RFC 1071).
fn sum16(acc: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut acc = acc;
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum of [`sum16`] into 16 bits and complements it: the Internet checksum.
fn checksum(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    !(acc as u16)
}

/// One Ethernet II frame from `src` (at `src_mac`) to `dst` (at `dst_mac`) carrying `payload`
/// in one UDP datagram: IPv4 without options, identification 0, DF, TTL 64, both the IPv4
/// header checksum and the UDP checksum (over the RFC 768 pseudo-header) filled in.
pub fn udp_frame(
    dst_mac: Mac,
    src_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let udp_len = UDP_HLEN + payload.len();
    let ip_len = IPV4_HLEN + udp_len;
    let (Ok(udp_len), Ok(ip_len)) = (u16::try_from(udp_len), u16::try_from(ip_len)) else {
        bail!(
            "a {}-byte payload does not fit one IPv4 datagram",
            payload.len()
        );
    };
    let mut f = Vec::with_capacity(ETH_HLEN + usize::from(ip_len));
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let ip = f.len();
    f.push(0x45); // version 4, header of 5 words
    f.push(0); // DSCP / ECN
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&0u16.to_be_bytes()); // identification
    f.extend_from_slice(&IPV4_DF.to_be_bytes()); // flags, fragment offset 0
    f.push(TTL);
    f.push(IPPROTO_UDP);
    f.extend_from_slice(&[0, 0]); // header checksum, below
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    let ip_sum = checksum(sum16(0, &f[ip..]));
    f[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());

    let udp = f.len();
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // checksum, below
    f.extend_from_slice(payload);
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.ip().octets());
    pseudo[4..8].copy_from_slice(&dst.ip().octets());
    pseudo[9] = IPPROTO_UDP;
    pseudo[10..].copy_from_slice(&udp_len.to_be_bytes());
    // A computed 0 is sent as all ones: 0 means "no checksum" in UDP over IPv4.
    let udp_sum = match checksum(sum16(sum16(0, &pseudo), &f[udp..])) {
        0 => 0xffff,
        s => s,
    };
    f[udp + 6..udp + 8].copy_from_slice(&udp_sum.to_be_bytes());
    Ok(f)
}

// `struct bpf_insn` keeps the two 4-bit register fields in one byte as C bitfields: the
// destination in the low nibble on little-endian targets (the opposite on big-endian ones).
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the instruction encoding below is little-endian"
);

/// One eBPF instruction, `struct bpf_insn` of include/uapi/linux/bpf.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    /// Class, operation and source bits.
    code: u8,
    /// `dst_reg` (low nibble), `src_reg` (high nibble).
    regs: u8,
    off: i16,
    imm: i32,
}

/// `BPF_ALU64 | BPF_MOV | BPF_K`: `dst = imm`.
const MOV64_IMM: u8 = 0xb7;
/// `BPF_JMP | BPF_CALL`: call the helper numbered `imm`.
const CALL: u8 = 0x85;
/// `BPF_JMP | BPF_EXIT`: return r0.
const EXIT: u8 = 0x95;
/// `BPF_FUNC_redirect`: `long bpf_redirect(u32 ifindex, u64 flags)`.
const FUNC_REDIRECT: i32 = 23;
/// `r1 = ifindex; r2 = 0; r0 = bpf_redirect(r1, r2); exit`.
fn redirect_program(ifindex: u32) -> Result<[Insn; 4]> {
    let imm = i32::try_from(ifindex).context("interface index out of range")?;
    let insn = |code, dst: u8, imm| Insn {
        code,
        regs: dst,
        off: 0,
        imm,
    };
    Ok([
        insn(MOV64_IMM, 1, imm),
        insn(MOV64_IMM, 2, 0),
        insn(CALL, 0, FUNC_REDIRECT),
        insn(EXIT, 0, 0),
    ])
}

/// `enum bpf_cmd` values and flags used here (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`; the kernel
/// takes the fields after it as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf(cmd, attr, sizeof *attr)` for a command that returns a new file descriptor
/// (`BPF_PROG_LOAD`, `BPF_ENABLE_STATS`), which the caller then owns.
///
/// # Safety
///
/// `T` must be the `#[repr(C)]` layout of the member of `union bpf_attr` that `cmd` reads, and
/// every address in `attr` must point to a live buffer of the length given beside it (or be 0
/// with length 0), readable, or writable where the kernel writes.
pub(crate) unsafe fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, exclusively borrowed `T` of the size passed; the caller
    // vouches for its layout and for the buffers it points to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(rc)
        .map_err(|_| io::Error::other(format!("bpf command {cmd} returned {rc}")))?;
    // SAFETY: the kernel just returned `fd`, a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The loaded redirect program; closing it (drop) unloads it.
pub struct Redirect {
    prog: OwnedFd,
}

impl Redirect {
    /// Loads the program that redirects every frame to interface `ifindex`. The index is
    /// looked up at run time in the network namespace of the thread that calls
    /// [`Redirect::send`], so it must be that namespace's index.
    pub fn load(ifindex: u32) -> Result<Self> {
        let insns = redirect_program(ifindex)?;
        let license = c"GPL"; // bpf_redirect is a GPL-only helper
        let mut name = [0u8; 16];
        name[..14].copy_from_slice(b"flood_redirect");
        // The verifier's log, for the error message (a few lines for four instructions).
        let mut log = vec![0u8; 4096];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        // SAFETY: `ProgLoadAttr` is the layout of the BPF_PROG_LOAD member; `insns` holds
        // `insn_cnt` instructions and `license` is NUL-terminated, both alive for the call;
        // `log_buf` points to `log_size` writable bytes.
        match unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) } {
            Ok(prog) => Ok(Self { prog }),
            Err(e) => {
                let text = String::from_utf8_lossy(&log);
                bail!(
                    "BPF_PROG_LOAD of the redirect program failed: {e}; verifier log: {}",
                    text.trim_end_matches('\0').trim()
                );
            }
        }
    }

    /// Runs the program on `repeat` live copies of `frame` (`BPF_PROG_TEST_RUN` with
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`), `batch` at a time (0: the kernel's default, 64), and so
    /// redirects them. The kernel says neither how many the target queued nor how many it
    /// dropped: those show in the target's counters. Fails with `EINTR` when a signal arrived
    /// (after some of the copies went out).
    pub fn send(&self, frame: &[u8], repeat: u32, batch: u32) -> io::Result<()> {
        run_xdp_live_frames(self.prog.as_fd(), frame, repeat, batch)
    }

    /// Checks that the program returns `XDP_REDIRECT` for `frame` (one run without live
    /// frames: nothing is sent).
    pub fn check(&self, frame: &[u8]) -> Result<()> {
        let action = run_xdp(self.prog.as_fd(), frame, 1)
            .context("BPF_PROG_TEST_RUN (dry run) of the redirect program")?;
        if action != XdpAction::Redirect {
            bail!("the redirect program returned {action:?}, not XDP_REDIRECT");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    const SRC_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
    const DST_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];

    fn sample(payload: &[u8]) -> Vec<u8> {
        udp_frame(
            DST_MAC,
            SRC_MAC,
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), 49152),
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1812),
            payload,
        )
        .unwrap()
    }

    #[test]
    fn frame_headers_lengths_and_checksums() {
        for payload in [&b""[..], b"odd", b"\x01\x2a\x00\x14 sixteen octets."] {
            let f = sample(payload);
            assert_eq!(f.len(), ETH_HLEN + IPV4_HLEN + UDP_HLEN + payload.len());
            assert_eq!(f[..6], DST_MAC);
            assert_eq!(f[6..12], SRC_MAC);
            assert_eq!(f[12..14], [0x08, 0x00]);
            let ip = &f[ETH_HLEN..];
            assert_eq!(ip[0], 0x45);
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(total, ip.len());
            assert_eq!(ip[6] & 0x40, 0x40, "DF");
            assert_eq!((ip[8], ip[9]), (64, 17));
            assert_eq!(ip[12..16], [192, 0, 2, 3]);
            assert_eq!(ip[16..20], [192, 0, 2, 1]);
            // A correct header sums, checksum included, to 0xffff: its checksum over
            // itself is 0.
            assert_eq!(checksum(sum16(0, &ip[..IPV4_HLEN])), 0);
            let udp = &ip[IPV4_HLEN..];
            assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 49152);
            assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 1812);
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            assert_eq!(udp_len, udp.len());
            assert_eq!(udp_len, total - IPV4_HLEN);
            assert_eq!(&udp[UDP_HLEN..udp_len], payload, "the payload parses back");
            assert_ne!(
                u16::from_be_bytes([udp[6], udp[7]]),
                0,
                "UDP checksum present"
            );
            let mut pseudo = Vec::from(&ip[12..20]);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&udp[4..6]);
            assert_eq!(checksum(sum16(sum16(0, &pseudo), udp)), 0);
        }
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded), checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(sum16(0, &data)), 0x220d);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A header whose checksum is well known (Wikipedia's IPv4 header checksum example).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let sum = checksum(sum16(0, &h));
        assert_eq!(sum, 0xb861);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(sum16(0, &h)), 0);
    }

    #[test]
    fn too_large_payload_is_refused() {
        let big = vec![0u8; 65536];
        assert!(udp_frame(
            DST_MAC,
            SRC_MAC,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2),
            &big
        )
        .is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("0a:1b:2c:3d:4e:5f\n").unwrap(),
            [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]
        );
        assert!(parse_mac("0a:1b:2c:3d:4e").is_err());
        assert!(parse_mac("0a:1b:2c:3d:4e:5f:60").is_err());
        assert!(parse_mac("0a:1b:2c:3d:4e:zz").is_err());
    }

    #[test]
    fn instruction_encoding() {
        let p = redirect_program(7).unwrap();
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // SAFETY: `Insn` is four plain integer fields without padding (8 bytes, checked).
        let bytes: [u8; 32] = unsafe { std::mem::transmute(p) };
        #[rustfmt::skip]
        let want = [
            0xb7, 0x01, 0, 0, 7, 0, 0, 0, // r1 = 7
            0xb7, 0x02, 0, 0, 0, 0, 0, 0, // r2 = 0
            0x85, 0x00, 0, 0, 23, 0, 0, 0, // call bpf_redirect
            0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
        ];
        assert_eq!(bytes, want);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
    }

    /// Loads the program and runs it once without live frames (nothing is sent): the
    /// verifier accepts the encoding and the program answers XDP_REDIRECT. Needs root; skipped
    /// (with a note) without it.
    #[test]
    fn program_loads_and_redirects() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading a BPF program needs root");
            return;
        }
        let prog = Redirect::load(1).unwrap();
        prog.check(&sample(b"payload")).unwrap();
    }
}
