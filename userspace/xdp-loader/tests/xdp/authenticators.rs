//! The RADIUS checks of the filter with BPF_PROG_TEST_RUN: structure, Message-Authenticator
//! (Access-Request, Status-Server), Accounting-Request authenticator, two secrets, reloads.
//! Packets come from the tests' own encoder (`radius`), and once from `portcullis-proto`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_xdp_loader::test_run::{XdpAction, XdpTestProgram};
use portcullis_xdp_loader::{Reason, XdpClient, XdpMode, XdpSettings};

use crate::frames::*;
use crate::radius::*;
use crate::verdicts::{check_with, load};
use crate::xdp_tests_enabled;

const AUTH: u16 = 1812;
const ACCT: u16 = 1813;
/// Requires Message-Authenticator; secret [`SECRET`].
const STRICT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// Does not require Message-Authenticator; secret [`SECRET`].
const LENIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
/// In a change-over: [`SECRET`] and [`NEXT_SECRET`].
const ROTATING: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
/// A 128-octet secret.
const LONG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 40);
/// No secrets: only the structure is checked.
const KEYLESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

fn strict_v6() -> Ipv6Addr {
    "2001:db8:1::abcd".parse().expect("literal")
}

fn long_secret() -> Vec<u8> {
    (0..128u8).map(|k| b'!' + (k % 90)).collect()
}

fn settings() -> XdpSettings {
    let v4 = |a: Ipv4Addr| (IpAddr::V4(a), 32);
    XdpSettings {
        interface: String::new(),
        mode: XdpMode::Auto,
        global_rate_pps: 0,
        global_burst: 0,
        ports: vec![AUTH, ACCT],
        clients: vec![
            XdpClient::new(v4(STRICT), SECRET, true),
            XdpClient::new(v4(LENIENT), SECRET, false),
            XdpClient {
                network: v4(ROTATING),
                secrets: vec![SECRET.to_vec(), NEXT_SECRET.to_vec()],
                require_message_authenticator: true,
                name: "client".into(),
                rate_pps: 0,
                burst: 0,
            },
            XdpClient::new(v4(LONG), &long_secret(), true),
            XdpClient {
                network: v4(KEYLESS),
                secrets: vec![],
                require_message_authenticator: true,
                name: "client".into(),
                rate_pps: 0,
                burst: 0,
            },
            XdpClient::new((IpAddr::V6(strict_v6()), 64), SECRET, true),
        ],
    }
}

fn program() -> XdpTestProgram {
    load(&settings())
}

fn v4(src: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    udp4_payload(&[], src, port, payload)
}

/// Run every (frame, verdict, reason) on one program, each moving exactly its counter.
fn check_all(program: &XdpTestProgram, cases: &[(Vec<u8>, XdpAction, Reason)]) {
    for (k, (frame, action, reason)) in cases.iter().enumerate() {
        eprintln!("case {k}: expecting {}", reason.name());
        check_with(program, frame, *action, *reason);
    }
}

fn pass(frame: Vec<u8>, reason: Reason) -> (Vec<u8>, XdpAction, Reason) {
    (frame, XdpAction::Pass, reason)
}

fn drop(frame: Vec<u8>, reason: Reason) -> (Vec<u8>, XdpAction, Reason) {
    (frame, XdpAction::Drop, reason)
}

#[test]
fn message_authenticator_good_tampered_and_wrong_secret() {
    if !xdp_tests_enabled() {
        return;
    }
    let good = access_request(&user_attrs(), SECRET);
    let mut bad_value = good.clone();
    let last = bad_value.len() - 1;
    bad_value[last] ^= 0x01;
    let mut bad_attribute = good.clone();
    bad_attribute[22] ^= 0x20; // a letter of User-Name
    let mut bad_authenticator = good.clone();
    bad_authenticator[4] ^= 0x80;
    let mut bad_identifier = good.clone();
    bad_identifier[1] ^= 0x01;
    let wrong_secret = access_request(&user_attrs(), b"not-the-secret");
    // Message-Authenticator first, as some NAS send it.
    let mut first = attr(MESSAGE_AUTHENTICATOR, &[0; 16]);
    first.extend(user_attrs());
    let mut ma_first = unsigned(ACCESS_REQUEST, 9, &first);
    let mac = hmac_md5(SECRET, &ma_first);
    ma_first[22..38].copy_from_slice(&mac);

    check_all(
        &program(),
        &[
            pass(v4(STRICT, AUTH, &good), Reason::PassMaVerified),
            pass(v4(LENIENT, AUTH, &good), Reason::PassMaVerified),
            pass(v4(STRICT, AUTH, &ma_first), Reason::PassMaVerified),
            drop(v4(STRICT, AUTH, &bad_value), Reason::DropBadMa),
            drop(v4(STRICT, AUTH, &bad_attribute), Reason::DropBadMa),
            drop(v4(STRICT, AUTH, &bad_authenticator), Reason::DropBadMa),
            drop(v4(STRICT, AUTH, &bad_identifier), Reason::DropBadMa),
            drop(v4(STRICT, AUTH, &wrong_secret), Reason::DropBadMa),
            drop(v4(LENIENT, AUTH, &wrong_secret), Reason::DropBadMa),
            // Also on the accounting port: the code decides, not the port.
            drop(v4(STRICT, ACCT, &wrong_secret), Reason::DropBadMa),
        ],
    );
}

#[test]
fn second_secret_and_long_secret() {
    if !xdp_tests_enabled() {
        return;
    }
    let program = program();
    let other = b"neither-of-the-two";
    check_all(
        &program,
        &[
            pass(
                v4(ROTATING, AUTH, &access_request(&user_attrs(), SECRET)),
                Reason::PassMaVerified,
            ),
            pass(
                v4(ROTATING, AUTH, &access_request(&user_attrs(), NEXT_SECRET)),
                Reason::PassMaVerified,
            ),
            drop(
                v4(ROTATING, AUTH, &access_request(&user_attrs(), other)),
                Reason::DropBadMa,
            ),
            drop(
                v4(STRICT, AUTH, &access_request(&user_attrs(), NEXT_SECRET)),
                Reason::DropBadMa,
            ),
            pass(
                v4(
                    ROTATING,
                    ACCT,
                    &accounting_request(3, &accounting_attrs(), SECRET),
                ),
                Reason::PassAcctAuthVerified,
            ),
            pass(
                v4(
                    ROTATING,
                    ACCT,
                    &accounting_request(3, &accounting_attrs(), NEXT_SECRET),
                ),
                Reason::PassAcctAuthVerified,
            ),
            drop(
                v4(
                    ROTATING,
                    ACCT,
                    &accounting_request(3, &accounting_attrs(), other),
                ),
                Reason::DropBadAcctAuth,
            ),
            // A 128-octet secret: HMAC hashes it first (longer than a block); the accounting
            // hash has it whole after the packet.
            pass(
                v4(LONG, AUTH, &access_request(&user_attrs(), &long_secret())),
                Reason::PassMaVerified,
            ),
            pass(
                v4(
                    LONG,
                    ACCT,
                    &accounting_request(4, &accounting_attrs(), &long_secret()),
                ),
                Reason::PassAcctAuthVerified,
            ),
            drop(
                v4(
                    LONG,
                    ACCT,
                    &accounting_request(4, &accounting_attrs(), SECRET),
                ),
                Reason::DropBadAcctAuth,
            ),
        ],
    );
}

#[test]
fn missing_message_authenticator() {
    if !xdp_tests_enabled() {
        return;
    }
    let plain = unsigned(ACCESS_REQUEST, 1, &user_attrs());
    let mut with_eap = user_attrs();
    with_eap.extend(attr(EAP_MESSAGE, &[2, 1, 0, 5, 1]));
    let mut with_proxy_state = user_attrs();
    with_proxy_state.extend(attr(PROXY_STATE, b"proxy"));
    check_all(
        &program(),
        &[
            drop(v4(STRICT, AUTH, &plain), Reason::DropMissingMa),
            pass(v4(LENIENT, AUTH, &plain), Reason::PassMaAbsent),
            // RFC 3579 §3.1 / RFC 5080 §2.2.2: these need one even from a lenient client.
            drop(
                v4(LENIENT, AUTH, &unsigned(ACCESS_REQUEST, 1, &with_eap)),
                Reason::DropMissingMa,
            ),
            drop(
                v4(
                    LENIENT,
                    AUTH,
                    &unsigned(ACCESS_REQUEST, 1, &with_proxy_state),
                ),
                Reason::DropMissingMa,
            ),
            pass(
                v4(LENIENT, AUTH, &signed(ACCESS_REQUEST, 1, &with_eap, SECRET)),
                Reason::PassMaVerified,
            ),
        ],
    );
}

#[test]
fn status_server() {
    if !xdp_tests_enabled() {
        return;
    }
    let good = signed(STATUS_SERVER, 5, &[], SECRET);
    let wrong = signed(STATUS_SERVER, 5, &[], b"wrong");
    let bare = unsigned(STATUS_SERVER, 5, &[]);
    check_all(
        &program(),
        &[
            pass(v4(STRICT, AUTH, &good), Reason::PassMaVerified),
            pass(v4(STRICT, ACCT, &good), Reason::PassMaVerified),
            drop(v4(STRICT, AUTH, &wrong), Reason::DropBadMa),
            // RFC 5997 requires Message-Authenticator, whatever the client's policy.
            drop(v4(LENIENT, AUTH, &bare), Reason::DropMissingMa),
        ],
    );
}

#[test]
fn accounting_request_authenticator() {
    if !xdp_tests_enabled() {
        return;
    }
    let good = accounting_request(11, &accounting_attrs(), SECRET);
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x04;
    let mut bad_authenticator = good.clone();
    bad_authenticator[19] ^= 0x01;
    let wrong = accounting_request(11, &accounting_attrs(), b"wrong");
    // An Accounting-Request need not carry Message-Authenticator, even from a strict client.
    check_all(
        &program(),
        &[
            pass(v4(STRICT, ACCT, &good), Reason::PassAcctAuthVerified),
            pass(v4(LENIENT, ACCT, &good), Reason::PassAcctAuthVerified),
            drop(v4(STRICT, ACCT, &tampered), Reason::DropBadAcctAuth),
            drop(
                v4(STRICT, ACCT, &bad_authenticator),
                Reason::DropBadAcctAuth,
            ),
            drop(v4(STRICT, ACCT, &wrong), Reason::DropBadAcctAuth),
        ],
    );
}

#[test]
fn vlan_tagged_and_ipv6() {
    if !xdp_tests_enabled() {
        return;
    }
    let good = access_request(&user_attrs(), SECRET);
    let bad = access_request(&user_attrs(), b"wrong");
    let acct = accounting_request(2, &accounting_attrs(), SECRET);
    let acct_bad = accounting_request(2, &accounting_attrs(), b"wrong");
    let q = [(ETH_P_8021Q, 100)];
    let qinq = [(ETH_P_8021AD, 10), (ETH_P_8021Q, 100)];
    check_all(
        &program(),
        &[
            pass(
                udp4_payload(&q, STRICT, AUTH, &good),
                Reason::PassMaVerified,
            ),
            drop(udp4_payload(&q, STRICT, AUTH, &bad), Reason::DropBadMa),
            pass(
                udp4_payload(&qinq, STRICT, AUTH, &good),
                Reason::PassMaVerified,
            ),
            drop(udp4_payload(&qinq, STRICT, AUTH, &bad), Reason::DropBadMa),
            pass(
                udp4_payload(&qinq, STRICT, ACCT, &acct),
                Reason::PassAcctAuthVerified,
            ),
            pass(
                udp6_payload(&[], strict_v6(), AUTH, &good),
                Reason::PassMaVerified,
            ),
            drop(
                udp6_payload(&[], strict_v6(), AUTH, &bad),
                Reason::DropBadMa,
            ),
            pass(
                udp6_payload(&q, strict_v6(), AUTH, &good),
                Reason::PassMaVerified,
            ),
            drop(udp6_payload(&q, strict_v6(), AUTH, &bad), Reason::DropBadMa),
            pass(
                udp6_payload(&[], strict_v6(), ACCT, &acct),
                Reason::PassAcctAuthVerified,
            ),
            drop(
                udp6_payload(&[], strict_v6(), ACCT, &acct_bad),
                Reason::DropBadAcctAuth,
            ),
            drop(
                udp6_payload(&[], strict_v6(), AUTH, &unsigned(ACCESS_REQUEST, 1, &[])),
                Reason::DropMissingMa,
            ),
        ],
    );
}

/// Set the Length field.
fn with_length(mut packet: Vec<u8>, len: usize) -> Vec<u8> {
    packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    packet
}

#[test]
fn structure_and_lengths() {
    if !xdp_tests_enabled() {
        return;
    }
    let good = access_request(&user_attrs(), SECRET);
    let n = good.len();
    // Padding after Length is allowed (RFC 2865 §3) and not hashed.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xEE; 7]);
    let mut two_ma = user_attrs();
    two_ma.extend(attr(MESSAGE_AUTHENTICATOR, &[0; 16]));
    let two_ma = signed(ACCESS_REQUEST, 1, &two_ma, SECRET);
    let mut short_ma = user_attrs();
    short_ma.extend(attr(MESSAGE_AUTHENTICATOR, &[0; 15]));
    let short_ma = unsigned(ACCESS_REQUEST, 1, &short_ma);
    let mut zero_len_attr = unsigned(ACCESS_REQUEST, 1, &[1, 0, 0, 0]);
    zero_len_attr[21] = 0;
    let one_len_attr = unsigned(ACCESS_REQUEST, 1, &[1, 1]);
    let overrun = unsigned(ACCESS_REQUEST, 1, &[1, 7, b'a', b'b']);
    let dangling = unsigned(ACCESS_REQUEST, 1, &[1]);
    let over_max = with_length(good.clone(), 4097);
    let mut header_only = good.clone();
    header_only.truncate(19);
    let acct_overrun = {
        let mut p = accounting_request(1, &accounting_attrs(), SECRET);
        // The last attribute is NAS-IP-Address (6 octets); make it claim 9.
        let length_octet = p.len() - 5;
        assert_eq!(p[length_octet], 6);
        p[length_octet] = 9;
        p
    };
    // The UDP header announces more payload than the frame carries: the kernel drops it.
    let mut cut = v4(STRICT, AUTH, &good);
    cut.truncate(cut.len() - 5);

    check_all(
        &program(),
        &[
            pass(v4(STRICT, AUTH, &padded), Reason::PassMaVerified),
            drop(
                v4(STRICT, AUTH, &with_length(good.clone(), n + 1)),
                Reason::DropMalformed,
            ),
            drop(
                v4(STRICT, AUTH, &with_length(good.clone(), 19)),
                Reason::DropMalformed,
            ),
            drop(
                v4(STRICT, AUTH, &with_length(good.clone(), 0)),
                Reason::DropMalformed,
            ),
            // Length shorter than the attributes: the walk ends inside one.
            drop(
                v4(STRICT, AUTH, &with_length(good.clone(), n - 1)),
                Reason::DropMalformed,
            ),
            drop(v4(STRICT, AUTH, &over_max), Reason::DropMalformed),
            drop(v4(STRICT, AUTH, &header_only), Reason::DropMalformed),
            drop(v4(STRICT, AUTH, &[]), Reason::DropMalformed),
            drop(v4(STRICT, AUTH, &two_ma), Reason::DropMalformed),
            drop(v4(STRICT, AUTH, &short_ma), Reason::DropMalformed),
            drop(v4(LENIENT, AUTH, &zero_len_attr), Reason::DropMalformed),
            drop(v4(LENIENT, AUTH, &one_len_attr), Reason::DropMalformed),
            drop(v4(LENIENT, AUTH, &overrun), Reason::DropMalformed),
            drop(v4(LENIENT, AUTH, &dangling), Reason::DropMalformed),
            drop(v4(STRICT, ACCT, &acct_overrun), Reason::DropMalformed),
            // Malformed is judged before the code: an Access-Accept with a bad length too.
            drop(
                v4(
                    STRICT,
                    AUTH,
                    &with_length(unsigned(ACCESS_ACCEPT, 1, &user_attrs()), 30),
                ),
                Reason::DropMalformed,
            ),
            pass(cut, Reason::PassTruncated),
        ],
    );
}

#[test]
fn other_codes_keyless_clients_and_fragments_pass() {
    if !xdp_tests_enabled() {
        return;
    }
    let mut fragment = V4::new(STRICT, Ipv4Addr::new(192, 0, 2, 1));
    fragment.flags_fragment = 0x2000;
    let bad = access_request(&user_attrs(), b"wrong");
    let fragment = ethernet(&[], ETH_P_IP, &fragment.packet(&udp(1, AUTH, &bad)));
    check_all(
        &program(),
        &[
            pass(
                v4(STRICT, AUTH, &unsigned(ACCESS_ACCEPT, 1, &user_attrs())),
                Reason::PassUnverifiedCode,
            ),
            pass(v4(KEYLESS, AUTH, &bad), Reason::PassUncheckable),
            drop(
                v4(KEYLESS, AUTH, &with_length(bad.clone(), 10)),
                Reason::DropMalformed,
            ),
            pass(fragment, Reason::PassFragment),
        ],
    );
}

#[test]
fn largest_packets() {
    if !xdp_tests_enabled() {
        return;
    }
    let program = program();
    // 4096 octets exactly: header 20 + attributes + Message-Authenticator 18.
    let mut attrs = user_attrs();
    attrs.extend(filler(4096 - 20 - 18 - attrs.len()));
    let good = access_request(&attrs, SECRET);
    assert_eq!(good.len(), 4096);
    let mut bad = good.clone();
    bad[2000] ^= 0x10;
    let mut acct_attrs = accounting_attrs();
    acct_attrs.extend(filler(4096 - 20 - acct_attrs.len()));
    let acct = accounting_request(9, &acct_attrs, &long_secret());
    assert_eq!(acct.len(), 4096);
    let mut acct_bad = acct.clone();
    acct_bad[4095] ^= 0x01;
    check_all(
        &program,
        &[
            pass(v4(STRICT, AUTH, &good), Reason::PassMaVerified),
            drop(v4(STRICT, AUTH, &bad), Reason::DropBadMa),
            pass(v4(LONG, ACCT, &acct), Reason::PassAcctAuthVerified),
            drop(v4(LONG, ACCT, &acct_bad), Reason::DropBadAcctAuth),
            pass(
                udp6_payload(&[(ETH_P_8021Q, 3)], strict_v6(), AUTH, &good),
                Reason::PassMaVerified,
            ),
        ],
    );
}

/// Every packet length around the MD5 padding boundaries, and every secret length for the
/// accounting hash, so each tail layout is exercised once.
#[test]
fn every_padding_layout() {
    if !xdp_tests_enabled() {
        return;
    }
    let program = program();
    for attrs_len in (0..200).chain(4096 - 20 - 18 - 70..=4096 - 20 - 18) {
        // No attribute list is one octet long.
        if attrs_len == 1 {
            continue;
        }
        let attrs = filler_or_empty(attrs_len);
        let good = access_request(&attrs, SECRET);
        let mut bad = good.clone();
        bad[5] ^= 1;
        for (packet, action) in [(good, XdpAction::Pass), (bad, XdpAction::Drop)] {
            let got = program.run(&v4(STRICT, AUTH, &packet)).expect("run");
            assert_eq!(got, action, "Access-Request of {} octets", packet.len());
        }
        let acct = accounting_request(1, &filler_or_empty(attrs_len + 18), SECRET);
        let got = program.run(&v4(STRICT, ACCT, &acct)).expect("run");
        assert_eq!(
            got,
            XdpAction::Pass,
            "Accounting-Request of {} octets",
            acct.len()
        );
    }
    // Secrets of every length: a fresh client per length on one address.
    let mut program = program;
    for secret_len in 1..=128usize {
        let secret: Vec<u8> = (0..secret_len).map(|k| (k * 31 + 7) as u8).collect();
        program
            .replace_clients(&[XdpClient::new((IpAddr::V4(STRICT), 32), &secret, true)])
            .expect("replace clients");
        for attrs_len in [0, 30, 44, 45, 100] {
            let acct = accounting_request(1, &filler_or_empty(attrs_len), &secret);
            let got = program.run(&v4(STRICT, ACCT, &acct)).expect("run");
            assert_eq!(got, XdpAction::Pass, "secret {secret_len}, {attrs_len}");
            let ma = access_request(&filler_or_empty(attrs_len), &secret);
            let got = program.run(&v4(STRICT, AUTH, &ma)).expect("run");
            assert_eq!(got, XdpAction::Pass, "secret {secret_len}, {attrs_len}");
        }
    }
}

fn filler_or_empty(len: usize) -> Vec<u8> {
    match len {
        0 => Vec::new(),
        n => filler(n),
    }
}

#[test]
fn reload_rotates_secrets_without_a_gap() {
    if !xdp_tests_enabled() {
        return;
    }
    let network = (IpAddr::V4(STRICT), 32);
    let mut program = load(&XdpSettings {
        clients: vec![XdpClient::new(network, SECRET, true)],
        ..settings()
    });
    let old = v4(STRICT, AUTH, &access_request(&user_attrs(), SECRET));
    let new = v4(STRICT, AUTH, &access_request(&user_attrs(), NEXT_SECRET));
    check_with(&program, &old, XdpAction::Pass, Reason::PassMaVerified);
    check_with(&program, &new, XdpAction::Drop, Reason::DropBadMa);
    // Change-over: both.
    program
        .replace_clients(&[XdpClient {
            network,
            secrets: vec![SECRET.to_vec(), NEXT_SECRET.to_vec()],
            require_message_authenticator: true,
            name: "client".into(),
            rate_pps: 0,
            burst: 0,
        }])
        .expect("replace clients");
    check_with(&program, &old, XdpAction::Pass, Reason::PassMaVerified);
    check_with(&program, &new, XdpAction::Pass, Reason::PassMaVerified);
    // Done: only the new one; and the policy changes with it.
    program
        .replace_clients(&[XdpClient::new(network, NEXT_SECRET, false)])
        .expect("replace clients");
    check_with(&program, &old, XdpAction::Drop, Reason::DropBadMa);
    check_with(&program, &new, XdpAction::Pass, Reason::PassMaVerified);
    let bare = v4(STRICT, AUTH, &unsigned(ACCESS_REQUEST, 1, &user_attrs()));
    check_with(&program, &bare, XdpAction::Pass, Reason::PassMaAbsent);
    // A client moved to another position in the list keeps working.
    program
        .replace_clients(&[
            XdpClient::new((IpAddr::V4(LENIENT), 32), SECRET, true),
            XdpClient::new(network, NEXT_SECRET, true),
        ])
        .expect("replace clients");
    check_with(&program, &new, XdpAction::Pass, Reason::PassMaVerified);
    check_with(&program, &bare, XdpAction::Drop, Reason::DropMissingMa);
    let lenient = v4(LENIENT, AUTH, &access_request(&user_attrs(), SECRET));
    check_with(&program, &lenient, XdpAction::Pass, Reason::PassMaVerified);
}

/// A packet built by `portcullis-proto` verifies in the kernel (and one of ours would verify
/// in `portcullis-proto`; its own tests cover that side).
#[test]
fn packets_from_portcullis_proto_verify() {
    use portcullis_proto::{AttrType, Code, PacketBuilder, SharedSecret};
    if !xdp_tests_enabled() {
        return;
    }
    let secret = SharedSecret::new(SECRET).expect("non-empty secret");
    let mut b = PacketBuilder::new(Code::ACCESS_REQUEST, 77);
    b.add_message_authenticator().expect("room");
    b.push(AttrType::USER_NAME, b"bob").expect("room");
    b.push_ipv4(AttrType::NAS_IP_ADDRESS, Ipv4Addr::new(192, 0, 2, 10))
        .expect("room");
    let access = b
        .finish_access_request(&secret, request_authenticator(3))
        .to_vec();
    let mut b = PacketBuilder::new(Code::STATUS_SERVER, 78);
    let status = b
        .finish_status_server(&secret, request_authenticator(4))
        .expect("room")
        .to_vec();
    let mut b = PacketBuilder::new(Code::ACCOUNTING_REQUEST, 79);
    b.push_u32(AttrType::ACCT_STATUS_TYPE, 2).expect("room");
    b.push(AttrType::USER_NAME, b"bob").expect("room");
    let acct = b.finish_accounting_request(&secret).to_vec();
    let mut forged = access.clone();
    forged[1] ^= 1;
    check_all(
        &program(),
        &[
            pass(v4(STRICT, AUTH, &access), Reason::PassMaVerified),
            pass(v4(STRICT, AUTH, &status), Reason::PassMaVerified),
            pass(v4(STRICT, ACCT, &acct), Reason::PassAcctAuthVerified),
            drop(v4(STRICT, AUTH, &forged), Reason::DropBadMa),
        ],
    );
}

#[test]
fn verifier_budget_is_reported() {
    if !xdp_tests_enabled() {
        return;
    }
    let insns = program()
        .verified_instructions()
        .expect("the kernel reports verified instructions");
    eprintln!("verifier processed {insns} instructions (limit 1000000)");
    assert!(insns > 0 && insns < 1_000_000);
}
