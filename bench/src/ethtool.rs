//! The two things the flood bench asks of `ethtool` (which need not be installed), through
//! its ioctl (`SIOCETHTOOL`, include/uapi/linux/ethtool.h): turning GRO on, and the driver's
//! own statistics (`ethtool -S`).
//!
//! An interface is named in the network namespace of the socket the requests go through:
//! [`Ethtool::new`] opens one in the calling thread's namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
/// The string set of `ETHTOOL_GSTATS`'s names.
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    /// The rest of the union (its largest member, `struct ifmap`, is 24 bytes).
    _rest: [u8; 16],
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// An `AF_INET` datagram socket to send ethtool requests through.
pub struct Ethtool {
    fd: OwnedFd,
}

impl Ethtool {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned `fd`, a descriptor nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// `SIOCETHTOOL` on `iface` with the request at `data`, whose first u32 is the command.
    ///
    /// # Safety
    ///
    /// `data` must point to a live, writable request structure of the layout the command
    /// reads and writes (and, for variable-length replies, as large as they will be).
    unsafe fn ioctl(&self, iface: &str, data: *mut libc::c_void) -> io::Result<()> {
        let mut ifr = IfreqData {
            name: [0; libc::IFNAMSIZ],
            data,
            _rest: [0; 16],
        };
        if iface.len() >= ifr.name.len() || iface.as_bytes().contains(&0) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        ifr.name[..iface.len()].copy_from_slice(iface.as_bytes());
        // SAFETY: `ifr` is a live `struct ifreq` with a NUL-terminated name; the caller
        // vouches for the buffer `ifr_data` points to.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// `ethtool -k IFACE | grep generic-receive-offload`.
    pub fn gro(&self, iface: &str) -> io::Result<bool> {
        let mut v = EthtoolValue {
            cmd: ETHTOOL_GGRO,
            data: 0,
        };
        // SAFETY: ETHTOOL_GGRO reads and writes one `struct ethtool_value`, which `v` is.
        unsafe { self.ioctl(iface, (&mut v as *mut EthtoolValue).cast()) }?;
        Ok(v.data != 0)
    }

    /// `ethtool -K IFACE gro on|off`.
    pub fn set_gro(&self, iface: &str, on: bool) -> io::Result<()> {
        let mut v = EthtoolValue {
            cmd: ETHTOOL_SGRO,
            data: u32::from(on),
        };
        // SAFETY: ETHTOOL_SGRO reads one `struct ethtool_value`, which `v` is.
        unsafe { self.ioctl(iface, (&mut v as *mut EthtoolValue).cast()) }
    }

    /// `ethtool -S IFACE`: the driver's statistics, by name, in the driver's order.
    ///
    /// The kernel answers the names and the values requests with as many entries as the
    /// driver counts at that moment, whatever the request says; the buffers have
    /// [`STATS_SLACK`] entries more than the count asked for first. (A veth's count follows
    /// its number of queues, which nothing changes while the bench runs.)
    pub fn stats(&self, iface: &str) -> io::Result<Vec<(String, u64)>> {
        // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 per set
        // asked for: 24 bytes for one set.
        let mut info = [two_u32(ETHTOOL_GSSET_INFO, 0), 1 << ETH_SS_STATS, 0];
        // SAFETY: `info` is 24 writable, 8-aligned bytes: the 16-byte header and room for
        // the one u32 that the one set asked for brings back.
        unsafe { self.ioctl(iface, info.as_mut_ptr().cast()) }?;
        if info[1] & (1 << ETH_SS_STATS) == 0 {
            return Ok(Vec::new());
        }
        let n = halves(info[2]).0 as usize;
        let room = n + STATS_SLACK;

        // struct ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
        let mut strings = vec![0u8; 12 + room * ETH_GSTRING_LEN];
        strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        strings[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
        // SAFETY: `strings` has room for the header and `room` names, more than the driver
        // counted a moment ago.
        unsafe { self.ioctl(iface, strings.as_mut_ptr().cast()) }?;
        let names = u32::from_ne_bytes([strings[8], strings[9], strings[10], strings[11]]);

        // struct ethtool_stats: cmd, n_stats, then n_stats u64 values.
        let mut values = vec![0u64; 1 + room];
        values[0] = two_u32(ETHTOOL_GSTATS, n as u32);
        // SAFETY: `values` is 8-aligned with room for the header and `room` values.
        unsafe { self.ioctl(iface, values.as_mut_ptr().cast()) }?;
        let got = halves(values[0]).1;
        if got != names || got as usize > room {
            return Err(io::Error::other(format!(
                "{iface}: {names} statistics names but {got} values"
            )));
        }
        Ok(strings[12..]
            .chunks_exact(ETH_GSTRING_LEN)
            .zip(&values[1..])
            .take(got as usize)
            .map(|(name, &v)| {
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                (String::from_utf8_lossy(&name[..end]).into_owned(), v)
            })
            .collect())
    }
}

/// Entries more than counted in the buffers of [`Ethtool::stats`].
const STATS_SLACK: usize = 64;

/// Two u32 fields in the memory of one u64 (first `a`, then `b`).
fn two_u32(a: u32, b: u32) -> u64 {
    let mut x = [0u8; 8];
    x[..4].copy_from_slice(&a.to_ne_bytes());
    x[4..].copy_from_slice(&b.to_ne_bytes());
    u64::from_ne_bytes(x)
}

/// The two u32 fields in the memory of `x`, in memory order.
fn halves(x: u64) -> (u32, u32) {
    let b = x.to_ne_bytes();
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ifreq_is_the_kernels_size() {
        assert_eq!(
            std::mem::size_of::<IfreqData>(),
            std::mem::size_of::<libc::ifreq>()
        );
    }

    #[test]
    fn u32_pairs_round_trip() {
        assert_eq!(halves(two_u32(0x37, 7)), (0x37, 7));
    }

    #[test]
    fn names_too_long_are_refused() {
        let e = Ethtool::new().unwrap();
        assert!(e.gro("a-name-longer-than-15").is_err());
    }
}
