//! Cross-checks against the crates.io `radius` crate (an independent implementation).
//!
//! What the `radius` crate (0.4) lets us check, and what it does not:
//! * It computes Response Authenticators and the Accounting-Request Request
//!   Authenticator, and hides/unhides User-Password: all cross-checked both ways.
//! * It never computes or verifies Message-Authenticator (it only stores the bytes), so
//!   Message-Authenticator is cross-checked against the hmac crate in the unit tests
//!   instead, and here we only check that it is present, first and 16 octets.
//! * Its Tunnel-Password omits the RFC 2868 §3.5 length octet from the plaintext, so it
//!   is not interoperable with RFC 2868 (or with us); not cross-checked.
//! * Its tagged integers (Tunnel-Type, ...) are tag + 4 octets instead of RFC 2868's
//!   tag + 3, so only the raw bytes of ours are compared.
//! * Its Access-Request "authenticity" check returns true without looking at the
//!   packet; not used.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use portcullis_proto::{
    unhide_user_password, verify_request, AttrType, Code, PacketBuilder, RawPacket, SharedSecret,
    VerifyError, VerifyPolicy, MICROSOFT,
};
use radius::core::code::Code as RCode;
use radius::core::packet::Packet as RPacket;
use radius::core::vsa::StringVSA;
use radius::core::{rfc2865, rfc2866, rfc2868, rfc2869};

const SECRET: &[u8] = b"cross-check-secret";

fn secret() -> SharedSecret {
    SharedSecret::new(SECRET).unwrap()
}

fn lenient() -> VerifyPolicy {
    VerifyPolicy::default().with_message_authenticator_required(false)
}

fn password(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn access_request_built_by_radius_decodes_here() {
    for n in [1usize, 5, 15, 16, 17, 31, 32, 33, 100, 128] {
        let pw = password(n, n as u8);
        let mut p = RPacket::new_with_identifier(RCode::AccessRequest, SECRET, 17);
        rfc2865::add_user_name(&mut p, "alice@example.net");
        rfc2865::add_user_password(&mut p, &pw).unwrap();
        rfc2865::add_nas_ip_address(&mut p, &Ipv4Addr::new(192, 0, 2, 7));
        rfc2865::add_nas_port(&mut p, 42);
        rfc2865::add_service_type(&mut p, rfc2865::SERVICE_TYPE_FRAMED_USER);
        rfc2865::add_vsa_attribute(&mut p, &StringVSA::new(311, 10, "CORP"));
        rfc2865::add_proxy_state(&mut p, b"ps1");
        rfc2869::add_message_authenticator(&mut p, &[0; 16]);
        let wire = p.encode().unwrap();

        let raw = RawPacket::decode(&wire).unwrap();
        raw.check_attribute_rules().unwrap();
        assert_eq!(raw.code(), Code::ACCESS_REQUEST);
        assert_eq!(raw.identifier(), 17);
        assert_eq!(&raw.authenticator()[..], &p.get_authenticator()[..]);
        assert_eq!(
            raw.get(AttrType::USER_NAME),
            Some(&b"alice@example.net"[..])
        );
        assert_eq!(raw.get(AttrType::NAS_IP_ADDRESS), Some(&[192, 0, 2, 7][..]));
        assert_eq!(raw.get(AttrType::NAS_PORT), Some(&42u32.to_be_bytes()[..]));
        assert_eq!(raw.get(AttrType::SERVICE_TYPE), Some(&[0, 0, 0, 2][..]));
        assert_eq!(raw.get_vsa(MICROSOFT, 10), Some(&b"CORP"[..]));
        let plain = unhide_user_password(
            raw.get(AttrType::USER_PASSWORD).unwrap(),
            &secret(),
            raw.authenticator(),
        )
        .unwrap();
        assert_eq!(&plain[..], &pw[..], "password length {n}");
        // radius cannot compute a Message-Authenticator: the zero placeholder it sent
        // must be refused even under the lenient policy.
        assert_eq!(
            verify_request(raw, &secret(), &lenient()),
            Err(VerifyError::BadMessageAuthenticator)
        );
    }
}

#[test]
fn plain_pap_request_from_radius_verifies_under_lenient_policy() {
    let mut p = RPacket::new_with_identifier(RCode::AccessRequest, SECRET, 1);
    rfc2865::add_user_name(&mut p, "bob");
    rfc2865::add_user_password(&mut p, b"hunter2").unwrap();
    let wire = p.encode().unwrap();
    let raw = RawPacket::decode(&wire).unwrap();
    let v = verify_request(raw, &secret(), &lenient()).unwrap();
    assert!(!v.has_message_authenticator());
    assert_eq!(
        verify_request(raw, &secret(), &VerifyPolicy::default()),
        Err(VerifyError::MissingMessageAuthenticator {
            code: Code::ACCESS_REQUEST
        })
    );
}

#[test]
fn accounting_request_from_radius_verifies() {
    let mut p = RPacket::new_with_identifier(RCode::AccountingRequest, SECRET, 99);
    rfc2866::add_acct_status_type(&mut p, rfc2866::ACCT_STATUS_TYPE_INTERIM_UPDATE);
    rfc2866::add_acct_session_id(&mut p, "0000abcd");
    rfc2865::add_user_name(&mut p, "carol");
    rfc2865::add_class(&mut p, &[1, 2, 3]);
    let wire = p.encode().unwrap();
    let raw = RawPacket::decode(&wire).unwrap();
    let v = verify_request(raw, &secret(), &VerifyPolicy::default()).unwrap();
    assert_eq!(v.get(AttrType::ACCT_STATUS_TYPE), Some(&[0, 0, 0, 3][..]));
    assert_eq!(v.get(AttrType::CLASS), Some(&[1, 2, 3][..]));

    let other = SharedSecret::new(b"wrong").unwrap();
    assert_eq!(
        verify_request(raw, &other, &VerifyPolicy::default()),
        Err(VerifyError::BadRequestAuthenticator)
    );
}

#[test]
fn our_access_request_decodes_in_radius() {
    let s = secret();
    for n in [0usize, 1, 16, 17, 64, 128] {
        let pw = password(n, 7);
        let auth = [n as u8 ^ 0x5C; 16];
        let mut b = PacketBuilder::new(Code::ACCESS_REQUEST, 3);
        b.add_message_authenticator().unwrap();
        b.push(AttrType::USER_NAME, b"dave").unwrap();
        b.push_user_password(&pw, &s, &auth).unwrap();
        b.push_ipv4(AttrType::NAS_IP_ADDRESS, Ipv4Addr::new(198, 51, 100, 1))
            .unwrap();
        let wire = b.finish_access_request(&s, auth).to_vec();

        let p = RPacket::decode(&wire, SECRET).unwrap();
        assert_eq!(p.get_code(), RCode::AccessRequest);
        assert_eq!(p.get_identifier(), 3);
        assert_eq!(rfc2865::lookup_user_name(&p).unwrap().unwrap(), "dave");
        assert_eq!(rfc2865::lookup_user_password(&p).unwrap().unwrap(), pw);
        assert_eq!(
            rfc2865::lookup_nas_ip_address(&p).unwrap().unwrap(),
            Ipv4Addr::new(198, 51, 100, 1)
        );
        assert_eq!(rfc2869::lookup_message_authenticator(&p).unwrap().len(), 16);
        // And it verifies here.
        verify_request(
            RawPacket::decode(&wire).unwrap(),
            &s,
            &VerifyPolicy::default(),
        )
        .unwrap();
    }
}

#[test]
fn our_accounting_request_is_authentic_for_radius() {
    let s = secret();
    for with_ma in [false, true] {
        let mut b = PacketBuilder::new(Code::ACCOUNTING_REQUEST, 8);
        if with_ma {
            b.add_message_authenticator().unwrap();
        }
        b.push_u32(AttrType::ACCT_STATUS_TYPE, 1).unwrap();
        b.push(AttrType::ACCT_SESSION_ID, b"s-1").unwrap();
        let wire = b.finish_accounting_request(&s).to_vec();
        assert!(RPacket::is_authentic_request(&wire, SECRET));
        let mut bad = wire.clone();
        bad[5] ^= 1;
        assert!(!RPacket::is_authentic_request(&bad, SECRET));
        let p = RPacket::decode(&wire, SECRET).unwrap();
        assert_eq!(rfc2866::lookup_acct_status_type(&p).unwrap().unwrap(), 1);
    }
}

#[test]
fn our_reply_is_authentic_for_radius() {
    let s = secret();
    let mut req = RPacket::new_with_identifier(RCode::AccessRequest, SECRET, 200);
    rfc2865::add_user_name(&mut req, "erin");
    rfc2865::add_user_password(&mut req, b"pw").unwrap();
    rfc2865::add_proxy_state(&mut req, b"hop-1");
    rfc2865::add_proxy_state(&mut req, b"hop-2");
    // Blast-RADIUS: radius cannot sign, and Proxy-State without Message-Authenticator
    // is always refused...
    let unsigned = req.encode().unwrap();
    assert_eq!(
        verify_request(RawPacket::decode(&unsigned).unwrap(), &s, &lenient()),
        Err(VerifyError::ProxyStateWithoutMessageAuthenticator)
    );
    // ...so sign the radius-built bytes ourselves (append a Message-Authenticator).
    let mut signed = unsigned.clone();
    signed.extend_from_slice(&[80, 18]);
    signed.extend_from_slice(&[0; 16]);
    let len = (signed.len() as u16).to_be_bytes();
    signed[2..4].copy_from_slice(&len);
    let raw = RawPacket::decode(&signed).unwrap();
    let mac =
        portcullis_proto::crypto::message_authenticator(&raw, raw.authenticator(), &s).unwrap();
    let n = signed.len();
    signed[n - 16..].copy_from_slice(&mac);
    let request = verify_request(
        RawPacket::decode(&signed).unwrap(),
        &s,
        &VerifyPolicy::default(),
    )
    .unwrap();

    let mut b = PacketBuilder::reply(Code::ACCESS_ACCEPT, &request);
    b.push_u32(AttrType::SESSION_TIMEOUT, 3600).unwrap();
    b.push(AttrType::REPLY_MESSAGE, b"hello").unwrap();
    b.push_tagged_u32(AttrType::TUNNEL_TYPE, 1, 13).unwrap();
    b.push_vsa(MICROSOFT, 10, b"CORP").unwrap();
    b.copy_proxy_state(&request).unwrap();
    let reply = b.finish_reply(&s, request.authenticator()).to_vec();

    assert!(RPacket::is_authentic_response(&reply, &signed, SECRET));
    let mut bad = reply.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(!RPacket::is_authentic_response(&bad, &signed, SECRET));

    let p = RPacket::decode(&reply, SECRET).unwrap();
    assert_eq!(p.get_code(), RCode::AccessAccept);
    assert_eq!(p.get_identifier(), 200);
    assert_eq!(rfc2865::lookup_session_timeout(&p).unwrap().unwrap(), 3600);
    assert_eq!(rfc2865::lookup_reply_message(&p).unwrap().unwrap(), "hello");
    // radius encodes tagged integers as tag + 4 octets, not RFC 2868's tag + 3, so its
    // typed lookup refuses RFC-conformant values; compare the raw bytes instead.
    assert!(rfc2868::lookup_tunnel_type(&p).unwrap().is_err());
    assert_eq!(p.lookup(64).unwrap().encode_bytes(), vec![1, 0, 0, 13]);
    assert_eq!(
        rfc2865::lookup_all_proxy_state(&p),
        vec![b"hop-1".to_vec(), b"hop-2".to_vec()]
    );
    // Message-Authenticator first, 16 octets (radius cannot verify its value).
    assert_eq!(reply[20], 80);
    assert_eq!(rfc2869::lookup_message_authenticator(&p).unwrap().len(), 16);
}
