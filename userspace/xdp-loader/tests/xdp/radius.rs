//! A small RADIUS encoder for the tests, written from RFC 2865 / 2866 / 3579 with the `hmac`
//! and `md-5` crates, independent of both the XDP program and `portcullis-proto`, so the
//! tests cross-check them.

use hmac::{Hmac, Mac};
use md5_crate::{Digest, Md5};

/// The secret of the test clients.
pub const SECRET: &[u8] = b"xyzzy5461";
/// The next secret of a client in a change-over.
pub const NEXT_SECRET: &[u8] = b"a-longer-next-secret-for-rotation";

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const STATUS_SERVER: u8 = 12;

pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const PROXY_STATE: u8 = 33;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const EAP_MESSAGE: u8 = 79;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

const HEADER_LEN: usize = 20;

/// One attribute, type-length-value.
pub fn attr(attr_type: u8, value: &[u8]) -> Vec<u8> {
    assert!(value.len() <= 253, "attribute value too long");
    let mut a = vec![attr_type, (value.len() + 2) as u8];
    a.extend_from_slice(value);
    a
}

/// A few ordinary request attributes.
pub fn user_attrs() -> Vec<u8> {
    let mut a = attr(USER_NAME, b"alice");
    a.extend(attr(NAS_IP_ADDRESS, &[192, 0, 2, 10]));
    a
}

/// Vendor-Specific filler attributes making the attributes exactly `len` octets long.
pub fn filler(mut len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut k = 0u8;
    while len > 0 {
        // Never leave a remainder below the 2-octet minimum.
        let n = if len > 255 && len - 255 < 2 {
            200
        } else {
            len.min(255)
        };
        assert!(n >= 2);
        let value: Vec<u8> = (0..n - 2).map(|i| (i as u8) ^ k).collect();
        out.extend(attr(VENDOR_SPECIFIC, &value));
        len -= n;
        k = k.wrapping_add(1);
    }
    out
}

fn header(code: u8, identifier: u8, len: usize, authenticator: &[u8; 16]) -> Vec<u8> {
    let mut p = vec![code, identifier];
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(authenticator);
    p
}

/// A request Authenticator that looks random enough for tests.
pub fn request_authenticator(seed: u8) -> [u8; 16] {
    core::array::from_fn(|k| (k as u8).wrapping_mul(37).wrapping_add(seed))
}

/// HMAC-MD5 of `packet` keyed with `secret`.
pub fn hmac_md5(secret: &[u8], packet: &[u8]) -> [u8; 16] {
    let mut mac = Hmac::<Md5>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

/// An Access-Request or Status-Server without Message-Authenticator.
pub fn unsigned(code: u8, identifier: u8, attrs: &[u8]) -> Vec<u8> {
    let mut p = header(
        code,
        identifier,
        HEADER_LEN + attrs.len(),
        &request_authenticator(identifier),
    );
    p.extend_from_slice(attrs);
    p
}

/// An Access-Request or Status-Server with a Message-Authenticator after `attrs`, signed with
/// `secret` (RFC 3579 §3.2: HMAC-MD5 over the packet with the value as 16 zero octets).
pub fn signed(code: u8, identifier: u8, attrs: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut all = attrs.to_vec();
    all.extend(attr(MESSAGE_AUTHENTICATOR, &[0; 16]));
    let mut p = unsigned(code, identifier, &all);
    let at = p.len() - 16;
    let mac = hmac_md5(secret, &p);
    p[at..].copy_from_slice(&mac);
    p
}

/// An Access-Request signed with `secret`, carrying `attrs`.
pub fn access_request(attrs: &[u8], secret: &[u8]) -> Vec<u8> {
    signed(ACCESS_REQUEST, 7, attrs, secret)
}

/// An Accounting-Request with its Request Authenticator (RFC 2866 §3):
/// MD5(Code + Identifier + Length + 16 zero octets + attributes + secret).
pub fn accounting_request(identifier: u8, attrs: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut p = header(
        ACCOUNTING_REQUEST,
        identifier,
        HEADER_LEN + attrs.len(),
        &[0; 16],
    );
    p.extend_from_slice(attrs);
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret);
    let authenticator: [u8; 16] = md5.finalize().into();
    p[4..20].copy_from_slice(&authenticator);
    p
}

/// Accounting attributes: Acct-Status-Type Start and a user.
pub fn accounting_attrs() -> Vec<u8> {
    let mut a = attr(ACCT_STATUS_TYPE, &1u32.to_be_bytes());
    a.extend(user_attrs());
    a
}

/// Self-check of the encoder against the example of RFC 2865 §7.1 is not possible (no
/// Message-Authenticator there); check the Accounting-Request the other way round instead.
#[test]
fn encoder_self_check() {
    let p = accounting_request(1, &accounting_attrs(), SECRET);
    let mut zeroed = p.clone();
    zeroed[4..20].fill(0);
    zeroed.extend_from_slice(SECRET);
    let digest: [u8; 16] = Md5::digest(&zeroed).into();
    assert_eq!(&p[4..20], &digest);
    let s = access_request(&user_attrs(), SECRET);
    assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
    assert_eq!(s[s.len() - 18], MESSAGE_AUTHENTICATOR);
    assert_eq!(filler(4058).len(), 4058);
    assert_eq!(filler(256).len(), 256);
}
