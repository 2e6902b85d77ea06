//! Shared secrets, attribute hiding and packet authenticators.
//!
//! Everything here is deterministic: random inputs (Request Authenticators, salts) are
//! passed in by the caller. Comparisons of authenticators use [`subtle`] and run in
//! constant time. Secret bytes and the precomputed hash states are zeroized on drop.
//!
//! # Which authenticator goes into the Message-Authenticator computation
//!
//! Message-Authenticator (RFC 2869 §5.14, RFC 3579 §3.2) is HMAC-MD5, keyed with the
//! shared secret, over the whole packet with the Message-Authenticator value replaced by
//! sixteen zero octets, and with the Authenticator field holding:
//!
//! * **Access-Request, Status-Server**: the packet's own Request Authenticator.
//! * **Replies to Access-Request and Status-Server** (Access-Accept/Reject/Challenge, and
//!   the Accounting-Response that answers a Status-Server on an accounting port): the
//!   Request Authenticator of the request being answered. The Message-Authenticator is
//!   computed first, then the Response Authenticator over the packet that already
//!   contains it (RFC 3579 §3.2).
//! * **Replies to Accounting-Request, CoA-Request, Disconnect-Request** (Accounting-Response,
//!   CoA/Disconnect ACK/NAK): sixteen zero octets, as for the requests themselves. The RFCs
//!   leave this case loose; this is what FreeRADIUS signs and verifies (and therefore what
//!   radclient and the NAS that interoperate with it expect), so it is what we do. A reply
//!   signed over the request's authenticator instead is refused by radclient.
//! * **Accounting-Request, CoA-Request, Disconnect-Request**: sixteen zero octets. These
//!   requests carry a computed Request Authenticator (RFC 2866 §3, RFC 5176 §2.3) that
//!   covers the Message-Authenticator, so the Message-Authenticator is calculated and
//!   inserted *before* the Request Authenticator, while the field still holds the zeros
//!   that the Request Authenticator computation itself uses (RFC 5176 §3.3; the same
//!   order applies to Accounting-Request, which RFC 5997 allows to carry one, and it is
//!   what deployed servers and clients compute).
//!
//! [`ma_authenticator_field`] encodes this rule.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::attr::{AttrType, Code};
use crate::error::CryptoError;
use crate::raw::{RawPacket, MAX_ATTR_VALUE_LEN};

type HmacMd5 = Hmac<Md5>;

/// A RADIUS shared secret with precomputed hash states.
///
/// Holds the secret octets, an HMAC-MD5 state already keyed with the secret (so the
/// ipad/opad blocks are computed once, not per packet; each use clones it) and an MD5
/// state that has already absorbed the secret (for the `MD5(S + x)` chains of password
/// hiding). `Debug` prints `SharedSecret(<redacted>)`; there is no `Display`; the whole
/// thing is zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret {
    secret: Zeroizing<Vec<u8>>,
    hmac: HmacMd5,
    md5_keyed: Md5,
}

impl SharedSecret {
    /// Wrap a secret. Empty secrets are refused (RFC 2865 §3 requires one; RFC 2865
    /// recommends at least 16 octets, which is the caller's policy to enforce).
    pub fn new(secret: &[u8]) -> Result<Self, CryptoError> {
        if secret.is_empty() {
            return Err(CryptoError::EmptySecret);
        }
        // HMAC accepts keys of any length; the error branch cannot be taken.
        let hmac =
            <HmacMd5 as KeyInit>::new_from_slice(secret).map_err(|_| CryptoError::EmptySecret)?;
        let mut md5_keyed = Md5::new();
        md5_keyed.update(secret);
        Ok(Self {
            secret: Zeroizing::new(secret.to_vec()),
            hmac,
            md5_keyed,
        })
    }

    /// Length of the secret in octets (for policy checks; never the content).
    pub fn len(&self) -> usize {
        self.secret.len()
    }

    /// Never true: empty secrets are refused by [`SharedSecret::new`].
    pub fn is_empty(&self) -> bool {
        self.secret.is_empty()
    }

    fn bytes(&self) -> &[u8] {
        &self.secret
    }

    /// A fresh HMAC-MD5 keyed with the secret.
    pub(crate) fn hmac(&self) -> HmacMd5 {
        self.hmac.clone()
    }

    /// `MD5(secret + data)`.
    fn md5_after_secret(&self, data: &[u8]) -> [u8; 16] {
        let mut h = self.md5_keyed.clone();
        h.update(data);
        h.finalize().into()
    }

    /// `MD5(secret + a + b)`.
    fn md5_after_secret2(&self, a: &[u8], b: &[u8]) -> [u8; 16] {
        let mut h = self.md5_keyed.clone();
        h.update(a);
        h.update(b);
        h.finalize().into()
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

fn xor16(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

fn block(chunk: &[u8]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..chunk.len()].copy_from_slice(chunk);
    b
}

// ---------------------------------------------------------------------------------------
// User-Password (RFC 2865 §5.2)

/// Hide a User-Password (RFC 2865 §5.2): pad with NULs to a multiple of 16 (at least
/// 16), then `c1 = p1 ^ MD5(S + RA)`, `ci = pi ^ MD5(S + c(i-1))`.
pub fn hide_user_password(
    password: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(password.len().div_ceil(16).max(1) * 16);
    hide_user_password_into(password, secret, request_authenticator, &mut out)?;
    Ok(out)
}

/// [`hide_user_password`] appending to a buffer (no allocation if it has room).
pub fn hide_user_password_into(
    password: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if password.len() > 128 {
        return Err(CryptoError::PasswordTooLong {
            len: password.len(),
        });
    }
    let mut prev = *request_authenticator;
    let mut chunks = password.chunks(16);
    let first = chunks.next().unwrap_or_default();
    for chunk in core::iter::once(first).chain(chunks) {
        let mut p = block(chunk);
        let mut b = secret.md5_after_secret(&prev);
        xor16(&mut p, &b);
        b.zeroize();
        out.extend_from_slice(&p);
        prev = p;
    }
    Ok(())
}

/// Recover a User-Password hidden with [`hide_user_password`]; trailing NUL padding is
/// stripped. The ciphertext must be a multiple of 16 octets in 16..=128.
pub fn unhide_user_password(
    cipher: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
) -> Result<PlainPassword, CryptoError> {
    let len = cipher.len();
    if !(16..=128).contains(&len) || len % 16 != 0 {
        return Err(CryptoError::BadCipherLength { len });
    }
    let mut out = PlainPassword {
        buf: [0; 128],
        len: 0,
        written: len,
    };
    let mut prev: &[u8] = request_authenticator;
    for (chunk, plain) in cipher.chunks_exact(16).zip(out.buf.chunks_exact_mut(16)) {
        let mut b = secret.md5_after_secret(prev);
        xor16(&mut b, &block(chunk));
        plain.copy_from_slice(&b);
        b.zeroize();
        prev = chunk;
    }
    out.len = out.buf[..len]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    Ok(out)
}

/// A User-Password recovered by [`unhide_user_password`], dereferencing to its octets.
///
/// Held in a fixed buffer (a User-Password has at most 128 octets), so recovering one, which
/// every PAP request does, allocates nothing; the octets written are zeroized on drop.
/// `Debug` prints `PlainPassword(<redacted>)`.
pub struct PlainPassword {
    buf: [u8; 128],
    /// The password's length, padding stripped.
    len: usize,
    /// How many octets of `buf` were written (the padded length), all wiped on drop.
    written: usize,
}

impl core::ops::Deref for PlainPassword {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PlainPassword {
    fn drop(&mut self) {
        // The rest of the buffer was never written: it holds the zeros it started with.
        self.buf[..self.written].zeroize();
    }
}

impl fmt::Debug for PlainPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainPassword(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------
// Salt encryption (RFC 2868 §3.5 Tunnel-Password, RFC 2548 §2.4.2/2.4.3 MS-MPPE keys)

/// Longest plaintext [`salt_encrypt`] accepts: length octet + data padded to 240 octets
/// keeps a Tunnel-Password (tag + salt + 240) within one attribute.
pub const MAX_SALT_PLAINTEXT: usize = 239;

/// Salt-encrypt `plain` (RFC 2868 §3.5, RFC 2548 §2.4.2).
///
/// The plaintext is one length octet, the data, and zero padding to a multiple of 16;
/// `b1 = MD5(S + R + A)`, `bi = MD5(S + c(i-1))`, `ci = pi ^ bi`, where R is the Request
/// Authenticator and A the salt. Returns `salt + ciphertext`. The salt's most
/// significant bit must be set, and salts should be unique per request: the caller
/// supplies them (this crate has no randomness source).
pub fn salt_encrypt(
    plain: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
    salt: [u8; 2],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(2 + (plain.len() + 1).div_ceil(16) * 16);
    salt_encrypt_into(plain, secret, request_authenticator, salt, &mut out)?;
    Ok(out)
}

/// [`salt_encrypt`] appending to a buffer.
pub fn salt_encrypt_into(
    plain: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
    salt: [u8; 2],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if salt[0] & 0x80 == 0 {
        return Err(CryptoError::SaltHighBitClear);
    }
    let Ok(len_octet) = u8::try_from(plain.len()) else {
        return Err(CryptoError::PlaintextTooLong {
            len: plain.len(),
            max: MAX_SALT_PLAINTEXT,
        });
    };
    if plain.len() > MAX_SALT_PLAINTEXT {
        return Err(CryptoError::PlaintextTooLong {
            len: plain.len(),
            max: MAX_SALT_PLAINTEXT,
        });
    }
    out.extend_from_slice(&salt);
    // Logical plaintext: len_octet || plain || zeros, processed 16 octets at a time
    // without materialising it.
    let total = (plain.len() + 1).div_ceil(16) * 16;
    let mut prev = [0u8; 16];
    for i in 0..total / 16 {
        let mut p = [0u8; 16];
        for (j, byte) in p.iter_mut().enumerate() {
            let k = i * 16 + j;
            *byte = match k {
                0 => len_octet,
                _ => plain.get(k - 1).copied().unwrap_or(0),
            };
        }
        let mut b = if i == 0 {
            secret.md5_after_secret2(request_authenticator, &salt)
        } else {
            secret.md5_after_secret(&prev)
        };
        xor16(&mut p, &b);
        b.zeroize();
        out.extend_from_slice(&p);
        prev = p;
    }
    Ok(())
}

/// Reverse [`salt_encrypt`]: `value` is `salt + ciphertext`. Returns the data without
/// the length octet and padding.
pub fn salt_decrypt(
    value: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let len = value.len();
    let Some((salt, cipher)) = value.split_first_chunk::<2>() else {
        return Err(CryptoError::BadSaltedLength { len });
    };
    if cipher.is_empty() || cipher.len() % 16 != 0 {
        return Err(CryptoError::BadSaltedLength { len });
    }
    if salt[0] & 0x80 == 0 {
        return Err(CryptoError::SaltHighBitClear);
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(cipher.len()));
    let mut prev: &[u8] = &[];
    for (i, chunk) in cipher.chunks_exact(16).enumerate() {
        let mut b = if i == 0 {
            secret.md5_after_secret2(request_authenticator, salt)
        } else {
            secret.md5_after_secret(prev)
        };
        xor16(&mut b, &block(chunk));
        plain.extend_from_slice(&b);
        b.zeroize();
        prev = chunk;
    }
    let data_len = usize::from(plain[0]);
    if data_len + 1 > plain.len() {
        return Err(CryptoError::BadEmbeddedLength { len: data_len });
    }
    Ok(Zeroizing::new(plain[1..=data_len].to_vec()))
}

/// Build a Tunnel-Password value (RFC 2868 §3.5): `tag + salt + ciphertext`.
pub fn encrypt_tunnel_password(
    tag: u8,
    password: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
    salt: [u8; 2],
) -> Result<Vec<u8>, crate::EncodeError> {
    if tag > 0x1F {
        return Err(crate::EncodeError::BadTag { tag });
    }
    let mut out = Vec::with_capacity(3 + (password.len() + 1).div_ceil(16) * 16);
    out.push(tag);
    salt_encrypt_into(password, secret, request_authenticator, salt, &mut out)?;
    debug_assert!(out.len() <= MAX_ATTR_VALUE_LEN);
    Ok(out)
}

/// Open a Tunnel-Password value: returns the tag octet (as sent, whatever its value;
/// RFC 2868 §3.5 says tags above 0x1F are to be ignored) and the password.
pub fn decrypt_tunnel_password(
    value: &[u8],
    secret: &SharedSecret,
    request_authenticator: &[u8; 16],
) -> Result<(u8, Zeroizing<Vec<u8>>), CryptoError> {
    let Some((&tag, rest)) = value.split_first() else {
        return Err(CryptoError::MissingTag);
    };
    Ok((tag, salt_decrypt(rest, secret, request_authenticator)?))
}

// ---------------------------------------------------------------------------------------
// Packet authenticators

/// `MD5(Code + Identifier + Length + auth + Attributes + Secret)` over `packet`, with
/// `auth` in place of whatever the Authenticator field holds.
fn md5_with_auth(packet: &[u8], auth: &[u8; 16], secret: &SharedSecret) -> [u8; 16] {
    let mut h = Md5::new();
    feed_packet(&mut h, packet, auth, None);
    h.update(secret.bytes());
    h.finalize().into()
}

/// Feeds `packet` to a hash as if its Authenticator field held `auth` and, with `zeroed`,
/// the 16 octets at that offset were zeros, without copying the packet.
///
/// Where the packet already holds those octets (a request's own Request Authenticator, a
/// reply's still-zero Message-Authenticator, a reply whose Authenticator field was set
/// first) it is fed in one piece rather than around them: every update of the hash has a
/// cost of its own, which on a small packet is a good part of the whole. Which way is taken
/// depends only on octets that are on the wire anyway.
fn feed_packet(
    h: &mut impl md5::digest::Update,
    packet: &[u8],
    auth: &[u8; 16],
    zeroed: Option<usize>,
) {
    // Start of the run of packet octets not fed yet.
    let mut start = 0;
    for (at, with) in [(Some(4), auth), (zeroed, &[0; 16])] {
        let Some(at) = at else { continue };
        if packet.get(at..at + 16) != Some(&with[..]) {
            md5::digest::Update::update(h, packet.get(start..at).unwrap_or_default());
            md5::digest::Update::update(h, with);
            start = at + 16;
        }
    }
    md5::digest::Update::update(h, packet.get(start..).unwrap_or_default());
}

/// Constant-time equality of two 16-octet authenticators (every authenticator check here uses
/// it): the words are XORed and ORed together and the result compared once. As data-independent as [`subtle`]'s per-octet
/// comparison (no branch on the data), which costs an optimisation barrier per octet, on
/// every request.
fn ct_eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let word = |x: &[u8; 16], i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&x[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let diff = (word(a, 0) ^ word(b, 0)) | (word(a, 8) ^ word(b, 8));
    diff.ct_eq(&0).into()
}

/// Response Authenticator of a reply (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3):
/// `MD5(Code + ID + Length + RequestAuth + Attributes + Secret)`. The reply's own
/// Authenticator field is ignored. `reply` must be exactly Length octets.
pub fn response_authenticator(
    reply: &[u8],
    request_authenticator: &[u8; 16],
    secret: &SharedSecret,
) -> [u8; 16] {
    md5_with_auth(reply, request_authenticator, secret)
}

/// Client side: does a reply's Response Authenticator verify? (Constant time.)
pub fn verify_response_authenticator(
    reply: &RawPacket<'_>,
    request_authenticator: &[u8; 16],
    secret: &SharedSecret,
) -> bool {
    let expected = response_authenticator(reply.bytes(), request_authenticator, secret);
    ct_eq16(&expected, reply.authenticator())
}

/// Request Authenticator of an Accounting-Request, CoA-Request or Disconnect-Request
/// (RFC 2866 §3, RFC 5176 §2.3): MD5 over the packet with sixteen zero octets in the
/// Authenticator field, followed by the secret.
pub fn accounting_request_authenticator(packet: &[u8], secret: &SharedSecret) -> [u8; 16] {
    md5_with_auth(packet, &[0; 16], secret)
}

/// Does an Accounting-Request (or CoA/Disconnect-Request) authenticator verify?
/// (Constant time.)
pub fn verify_accounting_request_authenticator(
    packet: &RawPacket<'_>,
    secret: &SharedSecret,
) -> bool {
    let expected = accounting_request_authenticator(packet.bytes(), secret);
    ct_eq16(&expected, packet.authenticator())
}

/// The value that must be in the Authenticator field while a Message-Authenticator is
/// computed (see the [module docs](self)). `request_authenticator` is the packet's own
/// for requests and the answered request's for replies.
pub fn ma_authenticator_field(code: Code, request_authenticator: &[u8; 16]) -> [u8; 16] {
    match code {
        Code::ACCOUNTING_REQUEST | Code::COA_REQUEST | Code::DISCONNECT_REQUEST => [0; 16],
        _ => *request_authenticator,
    }
}

/// The value in the Authenticator field while a *reply* with code `reply_code`, answering a
/// request with code `request_code`, has its Message-Authenticator computed (see the
/// [module docs](self)).
pub fn reply_ma_authenticator_field(
    reply_code: Code,
    request_code: Code,
    request_authenticator: &[u8; 16],
) -> [u8; 16] {
    match (reply_code, request_code) {
        (_, Code::STATUS_SERVER) | (_, Code::ACCESS_REQUEST) => *request_authenticator,
        (Code::ACCOUNTING_RESPONSE, _)
        | (Code::COA_ACK | Code::COA_NAK | Code::DISCONNECT_ACK | Code::DISCONNECT_NAK, _) => {
            [0; 16]
        }
        _ => *request_authenticator,
    }
}

/// HMAC-MD5 over `packet` with `auth` as the Authenticator field and the 16 octets at
/// `ma_value_offset` taken as zeros. No copy of the packet is made.
pub(crate) fn hmac_packet(
    packet: &[u8],
    auth: &[u8; 16],
    ma_value_offset: usize,
    secret: &SharedSecret,
) -> [u8; 16] {
    let mut mac = secret.hmac();
    feed_packet(&mut mac, packet, auth, Some(ma_value_offset));
    mac.finalize().into_bytes().into()
}

/// Offset of the value of the first Message-Authenticator attribute, if it is 16 octets.
pub(crate) fn find_message_authenticator(packet: &RawPacket<'_>) -> Option<Result<usize, ()>> {
    packet
        .attributes()
        .find(|a| a.attr_type == AttrType::MESSAGE_AUTHENTICATOR)
        .map(|a| {
            if a.value.len() == 16 {
                Ok(a.offset + 2)
            } else {
                Err(())
            }
        })
}

/// Compute the Message-Authenticator a packet should carry, given the value the
/// Authenticator field must hold during the computation ([`ma_authenticator_field`]).
/// `None` if the packet has no 16-octet Message-Authenticator attribute.
pub fn message_authenticator(
    packet: &RawPacket<'_>,
    authenticator_field: &[u8; 16],
    secret: &SharedSecret,
) -> Option<[u8; 16]> {
    let offset = find_message_authenticator(packet)?.ok()?;
    Some(hmac_packet(
        packet.bytes(),
        authenticator_field,
        offset,
        secret,
    ))
}

/// Verify a packet's Message-Authenticator in constant time. `None` if it has none;
/// `Some(false)` if it is malformed or wrong.
pub fn verify_message_authenticator(
    packet: &RawPacket<'_>,
    authenticator_field: &[u8; 16],
    secret: &SharedSecret,
) -> Option<bool> {
    let offset = match find_message_authenticator(packet)? {
        Ok(o) => o,
        Err(()) => return Some(false),
    };
    let expected = hmac_packet(packet.bytes(), authenticator_field, offset, secret);
    let got = packet.bytes().get(offset..offset + 16)?.try_into().ok()?;
    Some(ct_eq16(&expected, got))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::raw::tests::{unhex, RFC2865_7_1_REQUEST};

    pub(crate) fn secret() -> SharedSecret {
        SharedSecret::new(b"xyzzy5461").unwrap()
    }

    /// RFC 2865 §7.1 Access-Accept answering `RFC2865_7_1_REQUEST`.
    pub(crate) const RFC2865_7_1_ACCEPT: &str = "02000026 86fe220e7624ba2a1005f6bf9b55e0b2 \
        060600000001 0f0600000000 0e06c0a80103";

    /// RFC 5997 §6 Status-Server, identifier 218, secret "xyzzy5461".
    pub(crate) const RFC5997_STATUS_SERVER: &str = "0cda0026 8a54f4686fb394c52866e302185d0623 \
        50125a665e2e1e8411f3e243822097c84fa3";

    #[test]
    fn debug_is_redacted() {
        let s = secret();
        assert_eq!(format!("{s:?}"), "SharedSecret(<redacted>)");
        assert_eq!(s.len(), 9);
        assert!(!s.is_empty());
        assert_eq!(
            SharedSecret::new(b"").unwrap_err(),
            CryptoError::EmptySecret
        );
    }

    #[test]
    fn rfc2865_password() {
        let buf = unhex(RFC2865_7_1_REQUEST);
        let p = RawPacket::decode(&buf).unwrap();
        let cipher = p.get(AttrType::USER_PASSWORD).unwrap();
        let plain = unhide_user_password(cipher, &secret(), p.authenticator()).unwrap();
        assert_eq!(&plain[..], b"arctangent");
        let again = hide_user_password(b"arctangent", &secret(), p.authenticator()).unwrap();
        assert_eq!(again, cipher);
    }

    #[test]
    fn rfc2865_response_authenticator() {
        let req = unhex(RFC2865_7_1_REQUEST);
        let req = RawPacket::decode(&req).unwrap();
        let rep = unhex(RFC2865_7_1_ACCEPT);
        let rep = RawPacket::decode(&rep).unwrap();
        assert_eq!(
            &response_authenticator(rep.bytes(), req.authenticator(), &secret()),
            rep.authenticator()
        );
        assert!(verify_response_authenticator(
            &rep,
            req.authenticator(),
            &secret()
        ));
        let wrong = SharedSecret::new(b"xyzzy5462").unwrap();
        assert!(!verify_response_authenticator(
            &rep,
            req.authenticator(),
            &wrong
        ));
    }

    #[test]
    fn rfc5997_message_authenticator() {
        let buf = unhex(RFC5997_STATUS_SERVER);
        let p = RawPacket::decode(&buf).unwrap();
        let field = ma_authenticator_field(p.code(), p.authenticator());
        assert_eq!(
            message_authenticator(&p, &field, &secret()).unwrap(),
            *p.get(AttrType::MESSAGE_AUTHENTICATOR).unwrap()
        );
        assert_eq!(
            verify_message_authenticator(&p, &field, &secret()),
            Some(true)
        );
        let wrong = SharedSecret::new(b"other").unwrap();
        assert_eq!(
            verify_message_authenticator(&p, &field, &wrong),
            Some(false)
        );
    }

    /// Independent computation with the hmac crate over a copied, zeroed packet.
    #[test]
    fn message_authenticator_matches_naive_hmac() {
        let buf = unhex(RFC5997_STATUS_SERVER);
        let mut zeroed = buf.clone();
        zeroed[22..38].fill(0);
        let mut mac = <HmacMd5 as KeyInit>::new_from_slice(b"xyzzy5461").unwrap();
        mac.update(&zeroed);
        let naive: [u8; 16] = mac.finalize().into_bytes().into();
        assert_eq!(naive[..], buf[22..38]);
    }

    /// `feed_packet` hashes what a copy of the packet with the substitutions made would,
    /// whether or not the packet already holds the substituted octets.
    #[test]
    fn feeding_a_packet_equals_hashing_a_modified_copy() {
        let packet: Vec<u8> = (0..90u8).map(|i| i.wrapping_mul(37)).collect();
        let mut zero_ma = packet.clone();
        zero_ma[40..56].fill(0);
        let own: [u8; 16] = packet[4..20].try_into().unwrap();
        for p in [&packet, &zero_ma] {
            for auth in [own, [0; 16], [9; 16]] {
                for zeroed in [None, Some(40), Some(74)] {
                    let mut copy = p.clone();
                    copy[4..20].copy_from_slice(&auth);
                    if let Some(at) = zeroed {
                        copy[at..at + 16].fill(0);
                    }
                    let mut fed = Md5::new();
                    feed_packet(&mut fed, p, &auth, zeroed);
                    assert_eq!(fed.finalize(), Md5::digest(&copy), "{auth:?} {zeroed:?}");
                }
            }
        }
    }

    #[test]
    fn ct_eq16_compares_every_octet() {
        let a: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert!(ct_eq16(&a, &a));
        for i in 0..16 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq16(&a, &b));
            }
        }
    }

    #[test]
    fn plain_password_is_redacted_and_stripped() {
        let s = secret();
        let ra = [3; 16];
        let c = hide_user_password(b"pw\0", &s, &ra).unwrap();
        let p = unhide_user_password(&c, &s, &ra).unwrap();
        assert_eq!(&p[..], b"pw");
        assert_eq!(format!("{p:?}"), "PlainPassword(<redacted>)");
    }

    #[test]
    fn user_password_round_trips_all_lengths() {
        let s = secret();
        let ra = [0x42; 16];
        for n in 0..=128usize {
            let pw: Vec<u8> = (0..n).map(|i| (i % 250) as u8 + 1).collect();
            let c = hide_user_password(&pw, &s, &ra).unwrap();
            assert_eq!(c.len(), n.div_ceil(16).max(1) * 16);
            assert_eq!(&unhide_user_password(&c, &s, &ra).unwrap()[..], &pw[..]);
        }
        assert_eq!(
            hide_user_password(&[1; 129], &s, &ra),
            Err(CryptoError::PasswordTooLong { len: 129 })
        );
        for bad in [0usize, 15, 17, 144] {
            assert_eq!(
                unhide_user_password(&vec![0; bad], &s, &ra).unwrap_err(),
                CryptoError::BadCipherLength { len: bad }
            );
        }
    }

    #[test]
    fn salt_encryption_vector() {
        // Hand-computed with the RFC 2868 §3.5 construction, independently of
        // salt_encrypt: b1 = MD5(S + R + A), c1 = p1 ^ b1, b2 = MD5(S + c1), c2 = p2 ^ b2.
        let s = secret();
        let ra: [u8; 16] = core::array::from_fn(|i| i as u8);
        let salt = [0x80, 0x01];
        let data = b"0123456789abcdefXYZ"; // 19 octets -> 20 -> padded to 32
        let mut p = vec![19u8];
        p.extend_from_slice(data);
        p.resize(32, 0);
        let b1: [u8; 16] = Md5::new()
            .chain_update(b"xyzzy5461")
            .chain_update(ra)
            .chain_update(salt)
            .finalize()
            .into();
        let c1: Vec<u8> = p[..16].iter().zip(b1).map(|(x, y)| x ^ y).collect();
        let b2: [u8; 16] = Md5::new()
            .chain_update(b"xyzzy5461")
            .chain_update(&c1)
            .finalize()
            .into();
        let c2: Vec<u8> = p[16..].iter().zip(b2).map(|(x, y)| x ^ y).collect();
        let mut expected = salt.to_vec();
        expected.extend(c1);
        expected.extend(c2);
        let got = salt_encrypt(data, &s, &ra, salt).unwrap();
        assert_eq!(got, expected);
        assert_eq!(&salt_decrypt(&got, &s, &ra).unwrap()[..], data);
        // Pinned hex so a change in either construction is noticed.
        assert_eq!(got.len(), 34);
        assert_eq!(hex::encode(&got[..2]), "8001");
    }

    #[test]
    fn salt_round_trips_and_errors() {
        let s = secret();
        let ra = [7; 16];
        for n in 0..=MAX_SALT_PLAINTEXT {
            let data = vec![0xA5; n];
            let c = salt_encrypt(&data, &s, &ra, [0x81, n as u8]).unwrap();
            assert_eq!((c.len() - 2) % 16, 0);
            assert_eq!(&salt_decrypt(&c, &s, &ra).unwrap()[..], &data[..]);
        }
        assert_eq!(
            salt_encrypt(b"x", &s, &ra, [0x7f, 0]),
            Err(CryptoError::SaltHighBitClear)
        );
        assert!(matches!(
            salt_encrypt(&[0; 240], &s, &ra, [0x80, 0]),
            Err(CryptoError::PlaintextTooLong { .. })
        ));
        assert!(matches!(
            salt_encrypt(&[0; 300], &s, &ra, [0x80, 0]),
            Err(CryptoError::PlaintextTooLong { .. })
        ));
        assert_eq!(
            salt_decrypt(&[0x80, 0], &s, &ra).unwrap_err(),
            CryptoError::BadSaltedLength { len: 2 }
        );
        assert_eq!(
            salt_decrypt(&[0x80; 17], &s, &ra).unwrap_err(),
            CryptoError::BadSaltedLength { len: 17 }
        );
        assert_eq!(
            salt_decrypt(&[0x00; 18], &s, &ra).unwrap_err(),
            CryptoError::SaltHighBitClear
        );
        // A wrong secret almost always yields an impossible embedded length.
        let c = salt_encrypt(b"k", &s, &ra, [0x80, 0]).unwrap();
        let other = SharedSecret::new(b"nope").unwrap();
        let r = salt_decrypt(&c, &other, &ra);
        assert!(r.is_err() || r.unwrap()[..] != b"k"[..]);
    }

    #[test]
    fn tunnel_password_round_trip() {
        let s = secret();
        let ra = [9; 16];
        let v = encrypt_tunnel_password(1, b"tunnel-secret", &s, &ra, [0x92, 0x34]).unwrap();
        assert_eq!(v[0], 1);
        assert_eq!(&v[1..3], &[0x92, 0x34]);
        let (tag, pw) = decrypt_tunnel_password(&v, &s, &ra).unwrap();
        assert_eq!(tag, 1);
        assert_eq!(&pw[..], b"tunnel-secret");
        assert_eq!(
            encrypt_tunnel_password(0x20, b"x", &s, &ra, [0x80, 0]),
            Err(crate::EncodeError::BadTag { tag: 0x20 })
        );
        assert_eq!(
            decrypt_tunnel_password(&[], &s, &ra).unwrap_err(),
            CryptoError::MissingTag
        );
        let max = encrypt_tunnel_password(0, &[1; MAX_SALT_PLAINTEXT], &s, &ra, [0x80, 0]).unwrap();
        assert!(max.len() <= MAX_ATTR_VALUE_LEN);
    }

    #[test]
    fn accounting_authenticator() {
        let s = secret();
        let mut pkt = vec![4, 1, 0, 26];
        pkt.extend_from_slice(&[0; 16]);
        pkt.extend_from_slice(&[40, 6, 0, 0, 0, 1]);
        let ra = accounting_request_authenticator(&pkt, &s);
        // Independent: plain MD5 over the zero-authenticator packet + secret.
        let naive: [u8; 16] = Md5::new()
            .chain_update(&pkt)
            .chain_update(b"xyzzy5461")
            .finalize()
            .into();
        assert_eq!(ra, naive);
        pkt[4..20].copy_from_slice(&ra);
        let p = RawPacket::decode(&pkt).unwrap();
        assert!(verify_accounting_request_authenticator(&p, &s));
        pkt[25] ^= 1;
        let p = RawPacket::decode(&pkt).unwrap();
        assert!(!verify_accounting_request_authenticator(&p, &s));
    }
}
