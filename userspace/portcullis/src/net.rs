//! The socket tricks, all in one place: SO_REUSEPORT listeners with large buffers, batched
//! receive and send with `recvmmsg(2)` / `sendmmsg(2)`, and replies coalesced with UDP GSO.
//!
//! Nothing here knows about RADIUS; it moves datagrams.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Largest datagram a RADIUS peer may send (RFC 2865 §3, RFC 7930 keeps 4096 for UDP).
pub const MAX_DATAGRAM: usize = 4096;
/// Receive buffers are one byte larger so an oversize datagram is detected, not silently cut.
const RECV_SLOT: usize = MAX_DATAGRAM + 1;

/// Socket buffer sizes actually granted by the kernel (it doubles what is asked, and caps
/// unprivileged requests at net.core.rmem_max unless SO_RCVBUFFORCE is allowed).
#[derive(Debug, Clone, Copy)]
pub struct BufferSizes {
    pub recv: usize,
    pub send: usize,
}

/// Binds a non-blocking UDP socket with SO_REUSEPORT so that every shard can own one for the
/// same address; the kernel spreads datagrams by 4-tuple hash, so one NAS port always reaches
/// the same shard (the duplicate cache relies on that).
pub fn bind_reuseport(
    addr: SocketAddr,
    recv_buffer: usize,
    send_buffer: usize,
) -> io::Result<(UdpSocket, BufferSizes)> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    set_buffer(&sock, libc::SO_RCVBUFFORCE, recv_buffer, |s, n| {
        s.set_recv_buffer_size(n)
    })?;
    set_buffer(&sock, libc::SO_SNDBUFFORCE, send_buffer, |s, n| {
        s.set_send_buffer_size(n)
    })?;
    sock.bind(&addr.into())?;
    let sizes = BufferSizes {
        recv: sock.recv_buffer_size()?,
        send: sock.send_buffer_size()?,
    };
    Ok((sock.into(), sizes))
}

/// Tries the privileged FORCE option first (not capped by net.core.*mem_max), then the plain one.
fn set_buffer(
    sock: &Socket,
    force_opt: libc::c_int,
    size: usize,
    plain: impl Fn(&Socket, usize) -> io::Result<()>,
) -> io::Result<()> {
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: valid fd, option value points at a c_int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            force_opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    plain(sock, size)
}

/// One received datagram inside a [`RecvBatch`].
pub struct Datagram<'a> {
    pub from: SocketAddr,
    /// The bytes received, at most [`MAX_DATAGRAM`]; check `oversize` first.
    pub data: &'a [u8],
    /// The datagram was larger than [`MAX_DATAGRAM`] (and has been truncated).
    pub oversize: bool,
}

/// Reusable buffers for `recvmmsg`: no allocation per datagram.
///
/// The headers point into the other vectors, set up once: the vectors are never resized, so
/// their heap buffers stay where they are for the batch's whole life (moving the batch moves
/// only the vectors' handles). A receive then only resets what the kernel wrote into the
/// headers it filled, instead of rebuilding all of them (most receives fill a few of many).
pub struct RecvBatch {
    bufs: Vec<[u8; RECV_SLOT]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
    /// How many headers, from the first, the last `recvmmsg` may have written to.
    dirty: usize,
}

impl RecvBatch {
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        let mut batch = RecvBatch {
            bufs: vec![[0u8; RECV_SLOT]; n],
            // SAFETY: all-zero sockaddr_storage / iovec / mmsghdr are valid (plain C structs).
            addrs: vec![unsafe { zeroed() }; n],
            iovs: vec![unsafe { zeroed() }; n],
            hdrs: vec![unsafe { zeroed() }; n],
            filled: 0,
            dirty: n,
        };
        for i in 0..n {
            batch.iovs[i] = libc::iovec {
                iov_base: batch.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_SLOT,
            };
            let h = &mut batch.hdrs[i].msg_hdr;
            h.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut batch.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        batch
    }

    /// Reads up to the batch size of datagrams without blocking. Returns how many were read;
    /// `WouldBlock` when none was waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.bufs.len();
        // The kernel writes the address length, flags and length of the datagrams it delivers;
        // the pointers it only reads.
        for hdr in &mut self.hdrs[..self.dirty] {
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self (set up in `new`, never
        // reallocated) that outlive the call; no reference to them is alive during it.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            self.filled = 0;
            // Nothing was delivered; reset everything anyway rather than rely on that.
            self.dirty = n;
            return Err(io::Error::last_os_error());
        }
        self.filled = rc as usize;
        self.dirty = self.filled;
        Ok(self.filled)
    }

    /// The datagrams of the last successful [`recv`](Self::recv).
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.filled).filter_map(move |i| {
            let from = sockaddr_to_std(&self.addrs[i])?;
            let len = self.hdrs[i].msg_len as usize;
            let oversize =
                len > MAX_DATAGRAM || (self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC) != 0;
            Some(Datagram {
                from,
                data: &self.bufs[i][..len.min(MAX_DATAGRAM)],
                oversize,
            })
        })
    }
}

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate for glibc targets): the segment size of a
/// UDP GSO send, as a socket option or a per-message control message.
const UDP_SEGMENT: libc::c_int = 103;
/// Replies are coalesced into one GSO message only up to this size: a segment plus the IPv6 and
/// UDP headers then fits the smallest MTU IPv6 allows (1280), so no path refuses it.
const GSO_MAX_SEGMENT: usize = 1232;
/// Segments per GSO message (the kernel's limit, `UDP_MAX_SEGMENTS`, is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes per GSO message: one IP packet's payload before it is cut into segments.
const GSO_MAX_BYTES: usize = 65_000;

/// One `UDP_SEGMENT` control message, laid out as `CMSG_SPACE(sizeof(u16))` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

/// Replies gathered during one batch, sent with one `sendmmsg`.
///
/// Replies to the same address with the same length go out as one message with a
/// `UDP_SEGMENT` control message (UDP GSO): the kernel builds one large packet, runs it
/// through routing and the IP layer once, and cuts it into the individual datagrams at the
/// end. The peer receives ordinary datagrams. A NAS sends from one or a few ports with many
/// requests outstanding, so a batch's replies mostly share an address; accepts for the same
/// kind of login share a length. Where the kernel refuses GSO, the batch falls back to one
/// message per datagram for good.
pub struct SendBatch {
    data: Vec<u8>,
    items: Vec<(SocketAddr, usize, usize)>,
    /// Coalescing allowed (until the kernel refuses it once).
    gso: bool,
    /// Datagrams per message of the last send, in order.
    counts: Vec<usize>,
    /// The `sendmmsg` arguments, rebuilt by every send in vectors kept from one send to the
    /// next (no allocation per batch).
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<SegmentCmsg>,
    hdrs: Vec<libc::mmsghdr>,
    /// Tests: behave as if the kernel refused the next GSO message.
    #[cfg(test)]
    refuse_gso: bool,
}

impl SendBatch {
    /// `gso`: coalesce replies with UDP GSO where possible (`[server] udp_gso`).
    pub fn new(gso: bool) -> Self {
        SendBatch {
            data: Vec::with_capacity(64 * 1024),
            items: Vec::with_capacity(64),
            gso,
            counts: Vec::with_capacity(64),
            addrs: Vec::with_capacity(64),
            lens: Vec::with_capacity(64),
            iovs: Vec::with_capacity(64),
            cmsgs: Vec::with_capacity(64),
            hdrs: Vec::with_capacity(64),
            #[cfg(test)]
            refuse_gso: false,
        }
    }

    pub fn push(&mut self, to: SocketAddr, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.items.push((to, start, bytes.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// Discards the first queued datagram (one the kernel refused outright).
    pub fn drop_first(&mut self) {
        if !self.items.is_empty() {
            self.items.remove(0);
        }
        if self.items.is_empty() {
            self.data.clear();
        }
    }

    /// Sends as many queued datagrams as the socket takes now; the ones sent are removed.
    /// Returns the number sent; `WouldBlock` if none could be.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        loop {
            if self.items.is_empty() {
                return Ok(0);
            }
            self.plan();
            let msgs = self.counts.len();
            #[cfg(test)]
            if self.refuse_gso && self.counts.iter().any(|&c| c > 1) {
                self.refuse_gso = false;
                self.gso = false;
                continue;
            }
            // SAFETY: every header points into vectors filled by `plan`, which are not
            // touched again until the call has returned.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    msgs as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                let refused = matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                );
                if self.gso && refused && self.counts.first().is_some_and(|&c| c > 1) {
                    // This kernel, route or device does not do UDP GSO: one message per
                    // datagram from now on.
                    tracing::info!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                    self.gso = false;
                    continue;
                }
                return Err(e);
            }
            let sent: usize = self.counts[..(rc as usize).min(msgs)].iter().sum();
            if sent >= self.items.len() {
                self.clear();
            } else {
                self.items.drain(..sent);
            }
            return Ok(sent);
        }
    }

    /// Orders the queued datagrams by destination and length (so that the items drained after
    /// a partial send are exactly the messages sent) and builds one message per run that can
    /// be coalesced.
    fn plan(&mut self) {
        if self.gso {
            // The start offset keeps the queue's order inside a run; no allocation.
            self.items
                .sort_unstable_by_key(|&(to, start, len)| (to, len, start));
        }
        let n = self.items.len();
        self.addrs.clear();
        self.lens.clear();
        self.iovs.clear();
        self.cmsgs.clear();
        self.counts.clear();
        let mut i = 0;
        while i < n {
            let (to, _, len) = self.items[i];
            let mut count = 1;
            if self.gso && len <= GSO_MAX_SEGMENT {
                let most = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / len.max(1));
                while i + count < n
                    && count < most
                    && self.items[i + count].0 == to
                    && self.items[i + count].2 == len
                {
                    count += 1;
                }
            }
            let (ss, sl) = std_to_sockaddr(to);
            self.addrs.push(ss);
            self.lens.push(sl);
            // SAFETY: all-zero cmsghdr is valid; the fields are set right after.
            let mut c: SegmentCmsg = unsafe { zeroed() };
            c.hdr.cmsg_level = libc::SOL_UDP;
            c.hdr.cmsg_type = UDP_SEGMENT;
            // SAFETY: CMSG_LEN only computes a length.
            c.hdr.cmsg_len = unsafe { libc::CMSG_LEN(size_of::<u16>() as u32) } as _;
            c.size = len as u16;
            self.cmsgs.push(c);
            self.counts.push(count);
            i += count;
        }
        for &(_, start, len) in &self.items {
            self.iovs.push(libc::iovec {
                iov_base: self.data[start..].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
        }
        let msgs = self.counts.len();
        // SAFETY: zeroed mmsghdr is valid; the pointers set below refer to the vectors filled
        // above, which are not touched again until the call has returned.
        self.hdrs.clear();
        self.hdrs.resize(msgs, unsafe { zeroed() });
        let mut first = 0;
        for m in 0..msgs {
            let count = self.counts[m];
            let h = &mut self.hdrs[m].msg_hdr;
            h.msg_name = (&mut self.addrs[m] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.lens[m];
            h.msg_iov = &mut self.iovs[first];
            h.msg_iovlen = count;
            if count > 1 {
                h.msg_control = (&mut self.cmsgs[m] as *mut SegmentCmsg).cast();
                // SAFETY: CMSG_SPACE only computes a length.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            }
            first += count;
        }
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new(true)
    }
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_v4_and_v6_with_oversize_detection() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let (srv, sizes) = bind_reuseport(bind.parse().unwrap(), 1 << 20, 1 << 20).unwrap();
            assert!(sizes.recv >= 1 << 20, "recv buffer {}", sizes.recv);
            let srv_addr = srv.local_addr().unwrap();
            let cli = UdpSocket::bind(if srv_addr.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            })
            .unwrap();
            cli.send_to(b"one", srv_addr).unwrap();
            cli.send_to(&[7u8; MAX_DATAGRAM + 100], srv_addr).unwrap();
            cli.send_to(&[1u8; MAX_DATAGRAM], srv_addr).unwrap();
            let mut batch = RecvBatch::new(8);
            let mut got = Vec::new();
            // Loopback delivery is synchronous with send_to, so the three are queued by now.
            let n = batch.recv(srv.as_raw_fd()).unwrap();
            assert_eq!(n, 3);
            for d in batch.iter() {
                assert_eq!(d.from, cli.local_addr().unwrap());
                got.push((d.data.len(), d.oversize));
            }
            assert_eq!(
                got,
                vec![(3, false), (MAX_DATAGRAM, true), (MAX_DATAGRAM, false)]
            );
            assert_eq!(
                batch.recv(srv.as_raw_fd()).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );

            let mut out = SendBatch::new(true);
            out.push(cli.local_addr().unwrap(), b"reply-1");
            out.push(cli.local_addr().unwrap(), b"reply-2");
            assert_eq!(out.send(srv.as_raw_fd()).unwrap(), 2);
            assert!(out.is_empty());
            let mut buf = [0u8; 64];
            let (n, from) = cli.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"reply-1"[..], srv_addr));
            let (n, _) = cli.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"reply-2");
        }
    }

    /// Reads every datagram queued on `sock` (loopback delivers during the send call).
    fn drain(sock: &UdpSocket) -> Vec<Vec<u8>> {
        sock.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    }

    /// Replies of several lengths to two NAS sockets, interleaved, some too long to coalesce:
    /// each socket receives exactly its datagrams, whole, and same-length replies keep their
    /// order. With GSO on, fewer messages than datagrams go to the kernel; when the kernel
    /// refuses GSO, the same datagrams arrive, one message each.
    #[test]
    fn coalesced_replies_arrive_as_the_same_datagrams() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            for mode in ["gso", "no gso", "refused"] {
                let (srv, _) = bind_reuseport(bind.parse().unwrap(), 1 << 20, 1 << 20).unwrap();
                let a = UdpSocket::bind(bind).unwrap();
                let b = UdpSocket::bind(bind).unwrap();
                let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
                let mut out = SendBatch::new(mode != "no gso");
                out.refuse_gso = mode == "refused";
                let mut want_a = Vec::new();
                let mut want_b = Vec::new();
                let plan: &[(bool, usize, usize)] = &[
                    (true, 20, 5),
                    (false, 20, 3),
                    (true, 31, 2),
                    (true, GSO_MAX_SEGMENT + 1, 2),
                    (false, 20, 2),
                    (true, 20, 1),
                    (true, GSO_MAX_SEGMENT, 3),
                    (false, 7, 70),
                ];
                let mut k = 0u8;
                for &(to_a, len, count) in plan {
                    for _ in 0..count {
                        k = k.wrapping_add(1);
                        let d: Vec<u8> = (0..len).map(|i| k ^ (i as u8)).collect();
                        if to_a {
                            out.push(a_addr, &d);
                            want_a.push(d);
                        } else {
                            out.push(b_addr, &d);
                            want_b.push(d);
                        }
                    }
                }
                let total = want_a.len() + want_b.len();
                let mut sent = 0;
                let mut messages = 0;
                while !out.is_empty() {
                    sent += out.send(srv.as_raw_fd()).unwrap();
                    messages += out.counts.len();
                }
                assert_eq!(sent, total, "{bind} {mode}");
                if mode == "gso" {
                    // 70 seven-byte replies to b: two messages (at most 64 segments each).
                    assert!(messages < total / 2, "{bind}: {messages} messages");
                    assert!(out.gso);
                } else {
                    assert_eq!(messages, total, "{bind} {mode}");
                    assert!(!out.gso);
                }
                for (sock, want) in [(&a, want_a), (&b, want_b)] {
                    let got = drain(sock);
                    let by_len = |v: &[Vec<u8>]| {
                        let mut m: std::collections::BTreeMap<usize, Vec<Vec<u8>>> =
                            Default::default();
                        for d in v {
                            m.entry(d.len()).or_default().push(d.clone());
                        }
                        m
                    };
                    assert_eq!(got.len(), want.len(), "{bind} {mode}");
                    assert_eq!(by_len(&got), by_len(&want), "{bind} {mode}");
                }
            }
        }
    }

    #[test]
    fn two_sockets_share_a_port_with_reuseport() {
        let (a, _) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1 << 16, 1 << 16).unwrap();
        let addr = a.local_addr().unwrap();
        let (b, _) = bind_reuseport(addr, 1 << 16, 1 << 16).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }
}
