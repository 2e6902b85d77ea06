//! A tiny Ethernet frame builder for the tests.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Ethernet header with the given VLAN tags (TPID, VLAN id), outermost first.
pub fn ethernet(vlans: &[(u16, u16)], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // destination
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // source
    for (tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // checksum: none
    u.extend_from_slice(payload);
    u
}

/// IPv4 header fields a test may want to vary.
#[derive(Clone, Copy)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Flags and fragment offset field (host order): 0x2000 = more fragments.
    pub flags_fragment: u16,
    /// Number of 32-bit words of options (zero-filled NOPs... really EOL bytes).
    pub option_words: u8,
    /// Override of the IHL nibble (to build malformed headers).
    pub ihl_override: Option<u8>,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> V4 {
        V4 {
            src,
            dst,
            protocol: IPPROTO_UDP,
            flags_fragment: 0,
            option_words: 0,
            ihl_override: None,
        }
    }

    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let ihl = 5 + self.option_words;
        let header_len = usize::from(ihl) * 4;
        let mut p = Vec::with_capacity(header_len + payload.len());
        p.push(0x40 | self.ihl_override.unwrap_or(ihl));
        p.push(0);
        p.extend_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]); // identification
        p.extend_from_slice(&self.flags_fragment.to_be_bytes());
        p.push(64);
        p.push(self.protocol);
        p.extend_from_slice(&[0, 0]); // checksum, filled below
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend(std::iter::repeat_n(1u8, usize::from(self.option_words) * 4)); // NOP options
        let sum = checksum(&p[..header_len]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next_header);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// A valid RADIUS payload: an Access-Request with a Message-Authenticator signed with the
/// test secret.
pub fn radius() -> Vec<u8> {
    crate::radius::access_request(&crate::radius::user_attrs(), crate::radius::SECRET)
}

/// Ethernet + IPv4 + UDP to `dst_port`, carrying [`radius`].
pub fn udp4(src: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    udp4_vlan(&[], src, dst_port)
}

pub fn udp4_vlan(vlans: &[(u16, u16)], src: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    udp4_payload(vlans, src, dst_port, &radius())
}

/// Ethernet (with `vlans`) + IPv4 + UDP to `dst_port` carrying `payload`.
pub fn udp4_payload(vlans: &[(u16, u16)], src: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let ip = V4::new(src, Ipv4Addr::new(192, 0, 2, 1)).packet(&udp(40000, dst_port, payload));
    ethernet(vlans, ETH_P_IP, &ip)
}

/// Ethernet + IPv6 + UDP to `dst_port`, carrying [`radius`].
pub fn udp6(src: Ipv6Addr, dst_port: u16) -> Vec<u8> {
    udp6_payload(&[], src, dst_port, &radius())
}

/// Ethernet (with `vlans`) + IPv6 + UDP to `dst_port` carrying `payload`.
pub fn udp6_payload(vlans: &[(u16, u16)], src: Ipv6Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let dst: Ipv6Addr = "2001:db8:ffff::1".parse().expect("literal");
    let ip = ipv6(src, dst, IPPROTO_UDP, &udp(40000, dst_port, payload));
    ethernet(vlans, ETH_P_IPV6, &ip)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
