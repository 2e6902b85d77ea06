//! The filter logic, run on hand-made frames with BPF_PROG_TEST_RUN (no interface needed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_xdp_loader::test_run::{XdpAction, XdpTestProgram};
use portcullis_xdp_loader::{Reason, XdpClient, XdpMode, XdpSettings};

use crate::frames::*;
use crate::radius::SECRET;
use crate::xdp_tests_enabled;

const AUTH: u16 = 1812;
const ACCT: u16 = 1813;
const KNOWN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const KNOWN_V4_NET_MEMBER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn known_v6() -> Ipv6Addr {
    "2001:db8:1::abcd".parse().expect("literal")
}

fn unknown_v6() -> Ipv6Addr {
    "2001:db8:2::1".parse().expect("literal")
}

/// A client with the test secret that requires Message-Authenticator.
pub fn client(network: (IpAddr, u8)) -> XdpClient {
    XdpClient::new(network, SECRET, true)
}

pub fn settings() -> XdpSettings {
    XdpSettings {
        interface: String::new(),
        mode: XdpMode::Auto,
        global_rate_pps: 0,
        global_burst: 0,
        ports: vec![AUTH, ACCT],
        clients: vec![
            client((IpAddr::V4(KNOWN_V4), 32)),
            client((IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24)),
            client((IpAddr::V6("2001:db8:1::".parse().expect("literal")), 64)),
        ],
    }
}

fn program() -> XdpTestProgram {
    load(&settings())
}

pub fn load(settings: &XdpSettings) -> XdpTestProgram {
    XdpTestProgram::load(settings).unwrap_or_else(|e| panic!("loading the XDP program: {e:?}"))
}

/// Run `frame` through a fresh program; check the verdict and that exactly one counter, the
/// one for `reason`, moved by one.
fn check(frame: &[u8], action: XdpAction, reason: Reason) {
    let program = program();
    check_with(&program, frame, action, reason);
}

pub fn check_with(program: &XdpTestProgram, frame: &[u8], action: XdpAction, reason: Reason) {
    let before = program.counters().expect("counters");
    let got = program.run(frame).expect("BPF_PROG_TEST_RUN");
    let after = program.counters().expect("counters");
    assert_eq!(got, action, "verdict for reason {}", reason.name());
    for r in Reason::ALL {
        let delta = after.get(r) - before.get(r);
        let expected = u64::from(r == reason);
        assert_eq!(
            delta,
            expected,
            "counter {} moved by {delta}, expected {expected}\n{after}",
            r.name()
        );
    }
}

#[test]
fn known_ipv4_client_to_auth_port_passes() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp4(KNOWN_V4, AUTH),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
}

#[test]
fn known_ipv4_network_to_acct_port_passes() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp4(KNOWN_V4_NET_MEMBER, ACCT),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
}

#[test]
fn unknown_ipv4_client_is_dropped() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp4(UNKNOWN_V4, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    check(
        &udp4(Ipv4Addr::new(192, 0, 2, 11), ACCT),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
}

#[test]
fn unknown_ipv6_client_is_dropped() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp6(unknown_v6(), AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV6,
    );
}

#[test]
fn known_ipv6_client_in_a_64_passes() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp6(known_v6(), AUTH),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
}

#[test]
fn unknown_client_to_other_port_passes() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp4(UNKNOWN_V4, 53),
        XdpAction::Pass,
        Reason::PassOtherPort,
    );
    check(
        &udp6(unknown_v6(), 1645),
        XdpAction::Pass,
        Reason::PassOtherPort,
    );
}

#[test]
fn vlan_tagged_unknown_client_is_dropped() {
    if !xdp_tests_enabled() {
        return;
    }
    check(
        &udp4_vlan(&[(ETH_P_8021Q, 100)], UNKNOWN_V4, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    check(
        &udp4_vlan(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 100)], UNKNOWN_V4, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    check(
        &udp4_vlan(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 100)], KNOWN_V4, AUTH),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
    let ip = ipv6(
        unknown_v6(),
        known_v6(),
        IPPROTO_UDP,
        &udp(1, AUTH, &radius()),
    );
    check(
        &ethernet(&[(ETH_P_8021Q, 7)], ETH_P_IPV6, &ip),
        XdpAction::Drop,
        Reason::DropUnknownClientV6,
    );
}

#[test]
fn three_vlan_tags_are_not_parsed() {
    if !xdp_tests_enabled() {
        return;
    }
    let tags = [(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)];
    check(
        &udp4_vlan(&tags, UNKNOWN_V4, AUTH),
        XdpAction::Pass,
        Reason::PassNotIp,
    );
}

#[test]
fn ipv4_options_are_skipped() {
    if !xdp_tests_enabled() {
        return;
    }
    for (src, action, reason) in [
        (UNKNOWN_V4, XdpAction::Drop, Reason::DropUnknownClientV4),
        (KNOWN_V4, XdpAction::Pass, Reason::PassMaVerified),
    ] {
        let mut v4 = V4::new(src, Ipv4Addr::new(192, 0, 2, 1));
        v4.option_words = 10; // IHL 15, the maximum
        let frame = ethernet(&[], ETH_P_IP, &v4.packet(&udp(1, AUTH, &radius())));
        check(&frame, action, reason);
    }
}

#[test]
fn ipv4_fragments_pass() {
    if !xdp_tests_enabled() {
        return;
    }
    // First fragment (more-fragments set, offset 0) and a later one (offset 185 * 8).
    for flags_fragment in [0x2000, 185, 0x2000 | 185] {
        let mut v4 = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1));
        v4.flags_fragment = flags_fragment;
        let frame = ethernet(&[], ETH_P_IP, &v4.packet(&udp(1, AUTH, &radius())));
        check(&frame, XdpAction::Pass, Reason::PassFragment);
    }
    // Don't-fragment alone is not a fragment.
    let mut v4 = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1));
    v4.flags_fragment = 0x4000;
    let frame = ethernet(&[], ETH_P_IP, &v4.packet(&udp(1, AUTH, &radius())));
    check(&frame, XdpAction::Drop, Reason::DropUnknownClientV4);
}

#[test]
fn ipv6_extension_headers_and_fragments_pass() {
    if !xdp_tests_enabled() {
        return;
    }
    // Hop-by-hop options (0) in front of UDP.
    let mut hbh = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&udp(1, AUTH, &radius()));
    let frame = ethernet(&[], ETH_P_IPV6, &ipv6(unknown_v6(), known_v6(), 0, &hbh));
    check(&frame, XdpAction::Pass, Reason::PassIpv6ExtHeader);
    // Fragment header (44).
    let mut frag = vec![IPPROTO_UDP, 0, 0, 1, 0, 0, 0, 7];
    frag.extend_from_slice(&udp(1, AUTH, &radius()));
    let frame = ethernet(&[], ETH_P_IPV6, &ipv6(unknown_v6(), known_v6(), 44, &frag));
    check(&frame, XdpAction::Pass, Reason::PassFragment);
}

#[test]
fn truncated_frames_pass() {
    if !xdp_tests_enabled() {
        return;
    }
    let full = udp4(UNKNOWN_V4, AUTH);
    // Inside the IPv4 header, inside the UDP header (port present, length cut), and a VLAN
    // tag cut short (the kernel wants at least 14 bytes).
    for len in [14 + 10, 14 + 20 + 4, 14 + 20 + 7] {
        check(&full[..len], XdpAction::Pass, Reason::PassTruncated);
    }
    let tagged = udp4_vlan(&[(ETH_P_8021Q, 5)], UNKNOWN_V4, AUTH);
    check(&tagged[..15], XdpAction::Pass, Reason::PassTruncated);
    let v6 = udp6(unknown_v6(), AUTH);
    for len in [14 + 39, 14 + 40 + 7] {
        check(&v6[..len], XdpAction::Pass, Reason::PassTruncated);
    }
    // Options announced by the IHL but missing.
    let mut v4 = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1));
    v4.ihl_override = Some(15);
    let frame = ethernet(&[], ETH_P_IP, &v4.packet(&udp(1, AUTH, &[])));
    check(&frame, XdpAction::Pass, Reason::PassTruncated);
}

#[test]
fn complete_minimal_udp_header_is_judged() {
    if !xdp_tests_enabled() {
        return;
    }
    // An empty UDP payload: the frame ends right after the UDP header.
    let ip = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1)).packet(&udp(1, AUTH, &[]));
    check(
        &ethernet(&[], ETH_P_IP, &ip),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
}

#[test]
fn malformed_ipv4_header_passes() {
    if !xdp_tests_enabled() {
        return;
    }
    let mut v4 = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1));
    v4.ihl_override = Some(4);
    let frame = ethernet(&[], ETH_P_IP, &v4.packet(&udp(1, AUTH, &radius())));
    check(&frame, XdpAction::Pass, Reason::PassMalformed);
}

#[test]
fn non_ip_and_non_udp_pass() {
    if !xdp_tests_enabled() {
        return;
    }
    let arp = ethernet(&[], ETH_P_ARP, &[0u8; 28]);
    check(&arp, XdpAction::Pass, Reason::PassNotIp);
    let mut v4 = V4::new(UNKNOWN_V4, Ipv4Addr::new(192, 0, 2, 1));
    v4.protocol = IPPROTO_TCP;
    let tcp = ethernet(&[], ETH_P_IP, &v4.packet(&[0u8; 20]));
    check(&tcp, XdpAction::Pass, Reason::PassNotUdp);
    let icmp6 = ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(unknown_v6(), known_v6(), 58, &[0u8; 8]),
    );
    check(&icmp6, XdpAction::Pass, Reason::PassNotUdp);
}

#[test]
fn replaced_clients_take_effect() {
    if !xdp_tests_enabled() {
        return;
    }
    let mut program = program();
    check_with(
        &program,
        &udp4(UNKNOWN_V4, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    // Keep the IPv6 /64, drop the IPv4 entries, add the formerly unknown address.
    let new_clients = [
        client((IpAddr::V6("2001:db8:1::".parse().expect("literal")), 64)),
        client((IpAddr::V4(UNKNOWN_V4), 32)),
    ];
    program
        .replace_clients(&new_clients)
        .expect("replace clients");
    check_with(
        &program,
        &udp4(UNKNOWN_V4, AUTH),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
    check_with(
        &program,
        &udp4(KNOWN_V4, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    check_with(
        &program,
        &udp4(KNOWN_V4_NET_MEMBER, AUTH),
        XdpAction::Drop,
        Reason::DropUnknownClientV4,
    );
    check_with(
        &program,
        &udp6(known_v6(), ACCT),
        XdpAction::Pass,
        Reason::PassMaVerified,
    );
}

#[test]
fn counters_accumulate_and_verifier_stats_are_known() {
    if !xdp_tests_enabled() {
        return;
    }
    let program = program();
    for _ in 0..5 {
        assert_eq!(
            program.run(&udp4(UNKNOWN_V4, AUTH)).expect("run"),
            XdpAction::Drop
        );
    }
    for _ in 0..3 {
        assert_eq!(
            program.run(&udp4(KNOWN_V4, AUTH)).expect("run"),
            XdpAction::Pass
        );
    }
    let counters = program.counters().expect("counters");
    assert_eq!(counters.get(Reason::DropUnknownClientV4), 5);
    assert_eq!(counters.get(Reason::PassMaVerified), 3);
    assert_eq!(counters.known_client_passed(), 3);
    assert_eq!(counters.dropped(), 5);
    assert_eq!(counters.passed(), 3);
    let insns = program
        .verified_instructions()
        .expect("the kernel reports verified instructions");
    eprintln!("verifier processed {insns} instructions\n{counters}");
    assert!(insns > 0 && insns < 1_000_000);
}

#[test]
fn not_embedded_or_bad_settings_are_reported() {
    if !xdp_tests_enabled() {
        return;
    }
    let mut bad = settings();
    bad.ports = (1..=9).collect();
    let err = XdpTestProgram::load(&bad).expect_err("nine ports are too many");
    assert!(err.to_string().contains("at most 8"), "{err}");
}
