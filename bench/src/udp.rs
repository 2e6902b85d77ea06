//! Every socket trick of the load generator: connected non-blocking UDP sockets, batched
//! `sendmmsg`/`recvmmsg`, `poll`, and CPU pinning.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest RADIUS packet (RFC 2865 §3); receive buffers are this big.
pub const MAX_DATAGRAM: usize = 4096;

/// Receive buffer asked for per socket (forced when privileged), so that a full window of
/// replies never overflows the kernel queue while the loop is busy elsewhere.
const RECV_BUFFER_BYTES: libc::c_int = 4 << 20;

/// A UDP socket bound to an ephemeral port and connected to `target` (so the kernel drops
/// datagrams from anyone else), non-blocking.
pub fn connected_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(target)?;
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to SO_RCVBUF (capped by rmem_max).
    if set_int_option(fd, libc::SO_RCVBUFFORCE, RECV_BUFFER_BYTES).is_err() {
        let _ = set_int_option(fd, libc::SO_RCVBUF, RECV_BUFFER_BYTES);
    }
    Ok(sock)
}

fn set_int_option(fd: RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed; `fd` is an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a UDP GSO send.
const UDP_SEGMENT: libc::c_int = 103;
/// Coalesce only datagrams up to this size, at most this many, at most this many bytes.
const GSO_MAX_SEGMENT: usize = 1232;
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65_000;
/// Cleared for good the first time the kernel refuses a GSO send.
static GSO: AtomicBool = AtomicBool::new(true);

/// `CMSG_SPACE(sizeof(u16))` bytes holding one `UDP_SEGMENT` control message.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

/// Sends `packets` on the connected socket with one `sendmmsg`. Returns how many were sent
/// (a prefix of `packets`); 0 when the socket buffer is full.
///
/// Consecutive packets of the same length go out as one UDP GSO message (`UDP_SEGMENT`): the
/// kernel runs one large packet through the IP layer and cuts it into the datagrams, so the
/// generator spends less of its CPU per request. The server's socket receives ordinary
/// datagrams either way (the cut happens before they are queued to it), so this changes
/// nothing for the server measured, Portcullis or FreeRADIUS alike.
pub fn send_batch(fd: RawFd, packets: &[Vec<u8>]) -> io::Result<usize> {
    loop {
        if packets.is_empty() {
            return Ok(0);
        }
        let gso = GSO.load(Ordering::Relaxed);
        let mut iovs: Vec<libc::iovec> = packets
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // (first packet, count) per message.
        let mut runs: Vec<(usize, usize)> = Vec::with_capacity(packets.len());
        let mut i = 0;
        while i < packets.len() {
            let len = packets[i].len();
            let mut count = 1;
            if gso && len <= GSO_MAX_SEGMENT {
                let most = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / len.max(1));
                while i + count < packets.len() && count < most && packets[i + count].len() == len {
                    count += 1;
                }
            }
            runs.push((i, count));
            i += count;
        }
        let mut cmsgs: Vec<SegmentCmsg> = runs
            .iter()
            .map(|&(first, _)| {
                // SAFETY: all-zero is a valid cmsghdr; the fields are set right after.
                let mut c: SegmentCmsg = unsafe { std::mem::zeroed() };
                c.hdr.cmsg_level = libc::SOL_UDP;
                c.hdr.cmsg_type = UDP_SEGMENT;
                // SAFETY: CMSG_LEN only computes a length.
                c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(2) } as _;
                c.size = packets[first].len() as u16;
                c
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = runs
            .iter()
            .zip(cmsgs.iter_mut())
            .map(|(&(first, count), c)| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut iovs[first];
                m.msg_hdr.msg_iovlen = count;
                if count > 1 {
                    m.msg_hdr.msg_control = (c as *mut SegmentCmsg).cast();
                    // SAFETY: CMSG_SPACE only computes a length.
                    m.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                }
                m
            })
            .collect();
        // SAFETY: every msghdr points to live iovecs that point into live packet buffers, and
        // to a live control message; the socket is connected, so no address is given. The
        // kernel only reads the buffers.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) {
                return Ok(0);
            }
            let refused = matches!(
                e.raw_os_error(),
                Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
            );
            if gso && refused && runs[0].1 > 1 {
                GSO.store(false, Ordering::Relaxed);
                continue;
            }
            return Err(e);
        }
        return Ok(runs[..n as usize].iter().map(|&(_, c)| c).sum());
    }
}

/// Receive buffers for [`recv_batch`], reused across calls.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    count: usize,
}

impl RecvBatch {
    pub fn new(batch: usize) -> Self {
        Self {
            bufs: vec![[0; MAX_DATAGRAM]; batch.max(1)],
            lens: vec![0; batch.max(1)],
            count: 0,
        }
    }

    /// The datagrams of the last [`recv_batch`]; a datagram longer than [`MAX_DATAGRAM`]
    /// shows up truncated (and then fails to decode).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs
            .iter()
            .zip(&self.lens)
            .take(self.count)
            .map(|(b, &l)| &b[..l.min(MAX_DATAGRAM)])
    }
}

/// Receives up to a batch of datagrams with one non-blocking `recvmmsg`. Returns how many
/// arrived (0 when none is waiting).
pub fn recv_batch(fd: RawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.count = 0;
    let mut iovs: Vec<libc::iovec> = batch
        .bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: every msghdr points to one live iovec describing a live, writable buffer of
    // the stated length; no address or control buffer is asked for; no timeout.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if would_block(&e) { Ok(0) } else { Err(e) };
    }
    let n = n as usize;
    for (len, m) in batch.lens.iter_mut().zip(&msgs).take(n) {
        *len = m.msg_len as usize;
    }
    batch.count = n;
    Ok(n)
}

/// Waits until one of `fds` is readable or `timeout` passed (nanosecond resolution, with
/// `ppoll`); sets `readable[i]`.
pub fn poll_readable(
    fds: &[RawFd],
    timeout: std::time::Duration,
    readable: &mut [bool],
) -> io::Result<usize> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(60) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structures, `ts` a live timespec;
    // no signal mask is given.
    let n = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if would_block(&e) { Ok(0) } else { Err(e) };
    }
    for (r, p) in readable.iter_mut().zip(&pfds) {
        *r = p.revents & (libc::POLLIN | libc::POLLERR) != 0;
    }
    Ok(n as usize)
}

/// Asks the kernel to wake the calling thread within `ns` nanoseconds of a timer (the default
/// slack of 50 µs would show as latency in the open loop, which sleeps between sends).
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    pin_thread(0, cpus)
}

/// Pins the thread `tid` (0: the calling thread) to `cpus`.
pub fn pin_thread(tid: u32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` < CPU_SETSIZE was checked when the list was parsed.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let tid =
        libc::pid_t::try_from(tid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `set` is a live cpu_set_t of the size given; `tid` is a thread id or 0.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod gso_tests {
    use super::*;

    /// Runs of equal-length packets go out coalesced, yet the server side receives every
    /// packet as its own datagram, whole and in order.
    #[test]
    fn send_batch_delivers_each_packet_as_one_datagram() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cli = connected_socket(srv.local_addr().unwrap()).unwrap();
        let lens = [
            40usize, 40, 40, 41, 41, 1500, 1500, 40, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ];
        let packets: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(k, &len)| (0..len).map(|i| (k * 31 + i) as u8).collect())
            .collect();
        assert_eq!(
            send_batch(cli.as_raw_fd(), &packets).unwrap(),
            packets.len()
        );
        srv.set_nonblocking(true).unwrap();
        let mut buf = [0u8; MAX_DATAGRAM];
        for p in &packets {
            let (n, _) = srv.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &p[..]);
        }
        assert!(srv.recv_from(&mut buf).is_err());
    }
}
