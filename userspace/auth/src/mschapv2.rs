//! MS-CHAPv2 (RFC 2759) and its RADIUS attributes (RFC 2548 §2.3.2, §2.3.3, §2.1.5).
//!
//! The RFC 2759 §8 functions are here under Rust names: [`challenge_hash`] (`ChallengeHash`),
//! [`nt_password_hash`] (`NtPasswordHash`), [`challenge_response`] (`ChallengeResponse`, with
//! [`des_encrypt`] doing the 7-byte key expansion), [`generate_nt_response`],
//! [`generate_authenticator_response`] and [`check_authenticator_response`]. The server entry
//! point is [`verify`].
//!
//! # User names
//!
//! RFC 2759 §8.2: only the user name "as presented by the peer and excluding any prepended domain
//! name" goes into `ChallengeHash`. [`verify`] takes the name as the peer sent it (RADIUS
//! User-Name, e.g. `CORP\alice`) and strips everything up to and including the first backslash,
//! as Windows clients, FreeRADIUS and hostapd do. [`challenge_hash`] itself takes the name as is.

use std::fmt;

use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::mppe::MppeKeys;
use crate::nt::{nt_hash, nt_hash_hash};

/// RFC 2759 §8.7 `Magic1`.
const MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
/// RFC 2759 §8.7 `Magic2`.
const MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";

/// Length of an authenticator response: `"S="` followed by 40 uppercase hex digits.
pub const AUTHENTICATOR_RESPONSE_LEN: usize = 42;

/// Returns the user name without a `DOMAIN\` prefix (everything after the first backslash).
#[must_use]
pub fn strip_domain(user_name: &[u8]) -> &[u8] {
    match user_name.iter().position(|&b| b == b'\\') {
        Some(i) => &user_name[i + 1..],
        None => user_name,
    }
}

/// `ChallengeHash`: first 8 bytes of `SHA1(PeerChallenge || AuthenticatorChallenge || UserName)`.
///
/// `user_name` must already be without domain (see [`strip_domain`]).
#[must_use]
pub fn challenge_hash(
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &[u8],
) -> [u8; 8] {
    let mut sha = Sha1::new();
    sha.update(peer_challenge);
    sha.update(authenticator_challenge);
    sha.update(user_name);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// `NtPasswordHash`: the same as [`crate::nt::nt_hash`].
#[must_use]
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    nt_hash(password)
}

/// `DesEncrypt`: DES-encrypts one 8-byte block with a 7-byte (56-bit) key, expanded to the 8-byte
/// DES key form by spreading the 56 bits over 8 bytes and setting odd parity in the low bit.
#[must_use]
pub fn des_encrypt(clear: &[u8; 8], key7: &[u8; 7]) -> [u8; 8] {
    let mut key = expand_des_key(key7);
    let cipher = Des::new(&key.into());
    key.zeroize();
    let mut block = (*clear).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

fn expand_des_key(k: &[u8; 7]) -> [u8; 8] {
    let mut out = [
        k[0],
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ];
    for b in &mut out {
        // Keep the top seven bits; make the parity odd with the lowest bit.
        *b &= 0xfe;
        if b.count_ones() % 2 == 0 {
            *b |= 1;
        }
    }
    out
}

/// `ChallengeResponse`: the 16-byte hash zero-padded to 21 bytes, split into three 7-byte DES
/// keys, each encrypting the 8-byte challenge.
#[must_use]
pub fn challenge_response(challenge: &[u8; 8], password_hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(password_hash);
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let mut key = [0u8; 7];
        key.copy_from_slice(&z[i * 7..i * 7 + 7]);
        chunk.copy_from_slice(&des_encrypt(challenge, &key));
        key.zeroize();
    }
    z.zeroize();
    out
}

/// `GenerateNTResponse`, taking the NT hash instead of the password. `user_name` without domain.
#[must_use]
pub fn generate_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    user_name: &[u8],
    nt_hash: &[u8; 16],
) -> [u8; 24] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    challenge_response(&challenge, nt_hash)
}

/// `GenerateAuthenticatorResponse`, taking the NT hash: `"S="` + 40 uppercase hex digits.
/// `user_name` without domain.
#[must_use]
pub fn generate_authenticator_response(
    nt_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &[u8],
) -> [u8; AUTHENTICATOR_RESPONSE_LEN] {
    let mut hash_hash = nt_hash_hash(nt_hash);
    let out = authenticator_response_from_hash_hash(
        &hash_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        user_name,
    );
    hash_hash.zeroize();
    out
}

/// `GenerateAuthenticatorResponse` from `PasswordHashHash` (MD4 of the NT hash) rather than the
/// NT hash: what a server has when a domain controller checked the response and returned the
/// NTLM user session key (e.g. Samba's `ntlm_auth`). `user_name` without domain.
#[must_use]
pub fn authenticator_response_from_hash_hash(
    password_hash_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &[u8],
) -> [u8; AUTHENTICATOR_RESPONSE_LEN] {
    let mut sha = Sha1::new();
    sha.update(password_hash_hash);
    sha.update(nt_response);
    sha.update(MAGIC1);
    let digest: [u8; 20] = sha.finalize().into();

    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    let mut sha = Sha1::new();
    sha.update(digest);
    sha.update(challenge);
    sha.update(MAGIC2);
    let digest: [u8; 20] = sha.finalize().into();

    let mut out = [0u8; AUTHENTICATOR_RESPONSE_LEN];
    out[..2].copy_from_slice(b"S=");
    // Cannot fail: 20 bytes always encode into exactly 40 hex digits.
    let _ = hex::encode_to_slice(digest, &mut out[2..]);
    out[2..].make_ascii_uppercase();
    out
}

/// `CheckAuthenticatorResponse` (the peer side): compares a received `"S=…"` string with the
/// expected one in constant time. Hex case is ignored, as Windows does.
#[must_use]
pub fn check_authenticator_response(
    nt_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    user_name: &[u8],
    received: &[u8],
) -> bool {
    if received.len() != AUTHENTICATOR_RESPONSE_LEN {
        return false;
    }
    let expected = generate_authenticator_response(
        nt_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        user_name,
    );
    let mut got = [0u8; AUTHENTICATOR_RESPONSE_LEN];
    got.copy_from_slice(received);
    got.make_ascii_uppercase();
    bool::from(expected.ct_eq(&got))
}

/// What a successful MS-CHAPv2 verification yields: the authenticator response for
/// MS-CHAP2-Success and the MPPE keys for MS-MPPE-Send-Key / MS-MPPE-Recv-Key.
#[derive(Clone)]
pub struct MsChapV2Success {
    authenticator_response: [u8; AUTHENTICATOR_RESPONSE_LEN],
    mppe: MppeKeys,
}

impl MsChapV2Success {
    /// The success of a response that someone else (a domain controller) verified, from the
    /// `PasswordHashHash` it returned. `user_name` as the peer sent it; a `DOMAIN\` prefix is
    /// stripped as in [`verify`].
    #[must_use]
    pub fn from_hash_hash(
        password_hash_hash: &[u8; 16],
        user_name: &[u8],
        authenticator_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
    ) -> Self {
        let authenticator_response = authenticator_response_from_hash_hash(
            password_hash_hash,
            nt_response,
            peer_challenge,
            authenticator_challenge,
            strip_domain(user_name),
        );
        MsChapV2Success {
            authenticator_response,
            mppe: MppeKeys::derive(password_hash_hash, nt_response),
        }
    }

    /// `"S="` + 40 uppercase hex digits, as bytes (42 bytes).
    #[must_use]
    pub fn authenticator_response(&self) -> &[u8; AUTHENTICATOR_RESPONSE_LEN] {
        &self.authenticator_response
    }

    /// The authenticator response as text.
    #[must_use]
    pub fn authenticator_response_str(&self) -> &str {
        // Always ASCII: "S=" followed by hex digits.
        std::str::from_utf8(&self.authenticator_response).unwrap_or_default()
    }

    /// The MPPE keys (raw, 16 bytes each); see [`crate::mppe`] for the direction rule.
    #[must_use]
    pub fn mppe_keys(&self) -> &MppeKeys {
        &self.mppe
    }

    /// The MS-CHAP2-Success attribute value for this success (see [`format_success`]).
    #[must_use]
    pub fn success_attribute(&self, ident: u8) -> [u8; 1 + AUTHENTICATOR_RESPONSE_LEN] {
        format_success(ident, &self.authenticator_response)
    }
}

impl fmt::Debug for MsChapV2Success {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The authenticator response is sent in clear to the peer anyway; the keys are secret.
        f.debug_struct("MsChapV2Success")
            .field("authenticator_response", &self.authenticator_response_str())
            .field("mppe", &self.mppe)
            .finish()
    }
}

/// Verifies an MS-CHAPv2 NT-Response against the user's NT hash (server side).
///
/// `user_name` is the name as the peer sent it; a `DOMAIN\` prefix is stripped (see the module
/// docs). The NT-Response comparison is constant-time. Returns `None` when the response is wrong.
#[must_use]
pub fn verify(
    nt_hash: &[u8; 16],
    user_name: &[u8],
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    nt_response: &[u8; 24],
) -> Option<MsChapV2Success> {
    let user_name = strip_domain(user_name);
    let expected =
        generate_nt_response(authenticator_challenge, peer_challenge, user_name, nt_hash);
    if !bool::from(expected.ct_eq(nt_response)) {
        return None;
    }
    let authenticator_response = generate_authenticator_response(
        nt_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        user_name,
    );
    let mut hash_hash = nt_hash_hash(nt_hash);
    let mppe = MppeKeys::derive(&hash_hash, nt_response);
    hash_hash.zeroize();
    Some(MsChapV2Success {
        authenticator_response,
        mppe,
    })
}

/// The value of an MS-CHAP2-Response attribute (RFC 2548 §2.3.2), 50 bytes on the wire:
/// Ident (1), Flags (1), Peer-Challenge (16), Reserved (8, zero), NT-Response (24).
#[derive(Clone, PartialEq, Eq)]
pub struct MsChap2Response {
    /// The PPP/CHAP identifier, echoed in MS-CHAP2-Success and MS-CHAP-Error.
    pub ident: u8,
    /// Flags; RFC 2759 says zero, but we keep whatever the peer sent.
    pub flags: u8,
    /// The peer's 16-byte challenge.
    pub peer_challenge: [u8; 16],
    /// The 24-byte NT-Response.
    pub nt_response: [u8; 24],
}

impl MsChap2Response {
    /// Wire length of the attribute value.
    pub const LEN: usize = 50;

    /// Parses the attribute value. Rejects a wrong length and a non-zero Reserved field.
    pub fn parse(value: &[u8]) -> Result<Self> {
        let value: &[u8; Self::LEN] =
            value
                .try_into()
                .map_err(|_| Error::MalformedMsChap2Response {
                    reason: "value is not 50 bytes long",
                })?;
        if value[18..26].iter().any(|&b| b != 0) {
            return Err(Error::MalformedMsChap2Response {
                reason: "reserved bytes are not zero",
            });
        }
        let mut peer_challenge = [0; 16];
        peer_challenge.copy_from_slice(&value[2..18]);
        let mut nt_response = [0; 24];
        nt_response.copy_from_slice(&value[26..50]);
        Ok(Self {
            ident: value[0],
            flags: value[1],
            peer_challenge,
            nt_response,
        })
    }

    /// Encodes the attribute value (the inverse of [`MsChap2Response::parse`]).
    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = self.ident;
        out[1] = self.flags;
        out[2..18].copy_from_slice(&self.peer_challenge);
        out[26..50].copy_from_slice(&self.nt_response);
        out
    }
}

impl fmt::Debug for MsChap2Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The NT-Response allows an offline dictionary attack, so it is not shown.
        f.debug_struct("MsChap2Response")
            .field("ident", &self.ident)
            .field("flags", &self.flags)
            .field("peer_challenge", &hex::encode(self.peer_challenge))
            .field("nt_response", &"<redacted>")
            .finish()
    }
}

/// The MS-CHAP2-Success attribute value (RFC 2548 §2.3.3): Ident followed by `"S=…"` (43 bytes).
#[must_use]
pub fn format_success(
    ident: u8,
    authenticator_response: &[u8; AUTHENTICATOR_RESPONSE_LEN],
) -> [u8; 1 + AUTHENTICATOR_RESPONSE_LEN] {
    let mut out = [0; 1 + AUTHENTICATOR_RESPONSE_LEN];
    out[0] = ident;
    out[1..].copy_from_slice(authenticator_response);
    out
}

/// Error codes of MS-CHAP-Error (RFC 2548 §2.1.5, RFC 2759 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MsChapErrorCode {
    /// 646 ERROR_RESTRICTED_LOGON_HOURS.
    RestrictedLogonHours,
    /// 647 ERROR_ACCT_DISABLED.
    AccountDisabled,
    /// 648 ERROR_PASSWD_EXPIRED.
    PasswordExpired,
    /// 649 ERROR_NO_DIALIN_PERMISSION.
    NoDialinPermission,
    /// 691 ERROR_AUTHENTICATION_FAILURE.
    AuthenticationFailure,
}

impl MsChapErrorCode {
    /// The numeric code that goes after `E=`.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::RestrictedLogonHours => 646,
            Self::AccountDisabled => 647,
            Self::PasswordExpired => 648,
            Self::NoDialinPermission => 649,
            Self::AuthenticationFailure => 691,
        }
    }

    /// A short English message suitable for `M=`.
    #[must_use]
    pub fn default_message(self) -> &'static str {
        match self {
            Self::RestrictedLogonHours => "Logon not permitted at this time",
            Self::AccountDisabled => "Account disabled",
            Self::PasswordExpired => "Password expired",
            Self::NoDialinPermission => "No dial-in permission",
            Self::AuthenticationFailure => "Authentication failure",
        }
    }
}

/// The MS-CHAP-Error attribute value (RFC 2548 §2.1.5) for MS-CHAPv2: Ident followed by
/// `"E=<code> R=0 C=<32 uppercase hex> V=3 M=<message>"`.
///
/// `R=0`: no retry is offered. `new_challenge` should be 16 fresh random bytes (peers ignore it
/// when retry is not allowed, but the field is mandatory). Control characters in `message` are
/// replaced by spaces.
#[must_use]
pub fn format_error(
    ident: u8,
    code: MsChapErrorCode,
    new_challenge: &[u8; 16],
    message: &str,
) -> Vec<u8> {
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = format!(
        "E={} R=0 C={} V=3 M={}",
        code.code(),
        hex::encode_upper(new_challenge),
        message
    );
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(ident);
    out.extend_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    // RFC 2759 §9.2, every value copied from the RFC text.
    const USER: &[u8] = b"User";
    const PASSWORD: &str = "clientPass";
    const AUTH_CHALLENGE: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER_CHALLENGE: &str = "21402324255E262A28295F2B3A337C7E";
    const CHALLENGE: &str = "D02E4386BCE91226";
    const PASSWORD_HASH: &str = "44EBBA8D5312B8D611474411F56989AE";
    const NT_RESPONSE: &str = "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF";
    const AUTH_RESPONSE: &str = "S=407A5589115FD0D6209F510FE9C04566932CDA56";

    #[test]
    fn rfc2759_challenge_hash() {
        let c = challenge_hash(&h(PEER_CHALLENGE), &h(AUTH_CHALLENGE), USER);
        assert_eq!(hex::encode_upper(c), CHALLENGE);
    }

    #[test]
    fn rfc2759_password_hash_and_response() {
        assert_eq!(hex::encode_upper(nt_password_hash(PASSWORD)), PASSWORD_HASH);
        assert_eq!(
            hex::encode_upper(challenge_response(&h(CHALLENGE), &h(PASSWORD_HASH))),
            NT_RESPONSE
        );
        let r = generate_nt_response(
            &h(AUTH_CHALLENGE),
            &h(PEER_CHALLENGE),
            USER,
            &h(PASSWORD_HASH),
        );
        assert_eq!(hex::encode_upper(r), NT_RESPONSE);
    }

    #[test]
    fn rfc2759_authenticator_response() {
        let s = generate_authenticator_response(
            &h(PASSWORD_HASH),
            &h(NT_RESPONSE),
            &h(PEER_CHALLENGE),
            &h(AUTH_CHALLENGE),
            USER,
        );
        assert_eq!(&s[..], AUTH_RESPONSE.as_bytes());
        let args = (
            &h(PASSWORD_HASH),
            &h(NT_RESPONSE),
            &h(PEER_CHALLENGE),
            &h(AUTH_CHALLENGE),
        );
        assert!(check_authenticator_response(
            args.0,
            args.1,
            args.2,
            args.3,
            USER,
            AUTH_RESPONSE.as_bytes()
        ));
        assert!(check_authenticator_response(
            args.0,
            args.1,
            args.2,
            args.3,
            USER,
            AUTH_RESPONSE.to_lowercase().as_bytes()
        ));
        let mut bad = AUTH_RESPONSE.as_bytes().to_vec();
        bad[41] = b'7';
        assert!(!check_authenticator_response(
            args.0, args.1, args.2, args.3, USER, &bad
        ));
        assert!(!check_authenticator_response(
            args.0,
            args.1,
            args.2,
            args.3,
            USER,
            &bad[..41]
        ));
    }

    #[test]
    fn success_from_hash_hash_equals_the_local_one() {
        // What a DC returns (MD4 of the NT hash) gives the same success as the NT hash itself.
        let local = verify(
            &h(PASSWORD_HASH),
            b"DOM\\User",
            &h(AUTH_CHALLENGE),
            &h(PEER_CHALLENGE),
            &h(NT_RESPONSE),
        )
        .unwrap();
        let remote = MsChapV2Success::from_hash_hash(
            &nt_hash_hash(&h(PASSWORD_HASH)),
            b"DOM\\User",
            &h(AUTH_CHALLENGE),
            &h(PEER_CHALLENGE),
            &h(NT_RESPONSE),
        );
        assert_eq!(remote.authenticator_response_str(), AUTH_RESPONSE);
        assert_eq!(
            local.authenticator_response(),
            remote.authenticator_response()
        );
        assert_eq!(local.mppe_keys().send_key(), remote.mppe_keys().send_key());
        assert_eq!(local.mppe_keys().recv_key(), remote.mppe_keys().recv_key());
    }

    #[test]
    fn verify_accepts_rfc_exchange_and_yields_keys() {
        let ok = verify(
            &h(PASSWORD_HASH),
            USER,
            &h(AUTH_CHALLENGE),
            &h(PEER_CHALLENGE),
            &h(NT_RESPONSE),
        )
        .unwrap();
        assert_eq!(ok.authenticator_response_str(), AUTH_RESPONSE);
        // RFC 3079 §3.5.3 SendStartKey128 is the MS-MPPE-Send-Key of this exchange.
        assert_eq!(
            hex::encode_upper(ok.mppe_keys().send_key()),
            "8B7CDC149B993A1BA118CB153F56DCCB"
        );
        let dbg = format!("{ok:?}");
        assert!(dbg.contains(AUTH_RESPONSE));
        assert!(!dbg.contains("8B7C"));
    }

    #[test]
    fn verify_strips_domain() {
        let ok = verify(
            &h(PASSWORD_HASH),
            b"EXAMPLE\\User",
            &h(AUTH_CHALLENGE),
            &h(PEER_CHALLENGE),
            &h(NT_RESPONSE),
        )
        .unwrap();
        assert_eq!(ok.authenticator_response_str(), AUTH_RESPONSE);
        assert_eq!(strip_domain(b"User"), b"User");
        assert_eq!(strip_domain(b"A\\B\\C"), b"B\\C");
    }

    #[test]
    fn verify_refuses_wrong_inputs() {
        let args = (h(AUTH_CHALLENGE), h(PEER_CHALLENGE), h(NT_RESPONSE));
        assert!(verify(&nt_hash("clientpass"), USER, &args.0, &args.1, &args.2).is_none());
        assert!(verify(&h(PASSWORD_HASH), b"user", &args.0, &args.1, &args.2).is_none());
        let mut r = args.2;
        r[23] ^= 1;
        assert!(verify(&h(PASSWORD_HASH), USER, &args.0, &args.1, &r).is_none());
        assert!(verify(&h(PASSWORD_HASH), USER, &args.1, &args.0, &args.2).is_none());
    }

    #[test]
    fn des_key_expansion() {
        // 0xFF... expands to all-ones top bits, each byte with odd parity.
        assert_eq!(expand_des_key(&[0xff; 7]), [0xfe; 8]);
        assert_eq!(expand_des_key(&[0; 7]), [0x01; 8]);
        // Dropping the parity bits and re-packing the 8 x 7 bits gives back the 7-byte key. (The
        // DES itself is exercised by the RFC 2759 NT-Response vector.)
        let k7 = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde];
        let k8 = expand_des_key(&k7);
        let mut bits: u64 = 0;
        for b in k8 {
            bits = (bits << 7) | u64::from(b >> 1);
        }
        assert_eq!(bits.to_be_bytes()[1..], k7);
    }

    fn sample_response() -> [u8; 50] {
        let mut v = [0u8; 50];
        v[0] = 0x1f;
        v[2..18].copy_from_slice(&h::<16>(PEER_CHALLENGE));
        v[26..].copy_from_slice(&h::<24>(NT_RESPONSE));
        v
    }

    #[test]
    fn ms_chap2_response_parse_and_encode() {
        let v = sample_response();
        let r = MsChap2Response::parse(&v).unwrap();
        assert_eq!(r.ident, 0x1f);
        assert_eq!(r.flags, 0);
        assert_eq!(r.peer_challenge, h::<16>(PEER_CHALLENGE));
        assert_eq!(r.nt_response, h::<24>(NT_RESPONSE));
        assert_eq!(r.encode(), v);
        assert_eq!(MsChap2Response::parse(&r.encode()).unwrap(), r);
        let dbg = format!("{r:?}");
        assert!(!dbg.to_uppercase().contains("82309ECD"));
    }

    #[test]
    fn ms_chap2_response_errors() {
        let v = sample_response();
        for bad in [&v[..49], &[0u8; 51][..], &[][..]] {
            assert!(matches!(
                MsChap2Response::parse(bad),
                Err(Error::MalformedMsChap2Response { reason }) if reason.contains("50 bytes")
            ));
        }
        let mut reserved = v;
        reserved[25] = 1;
        let err = MsChap2Response::parse(&reserved).unwrap_err();
        assert!(err.to_string().contains("reserved"));
        assert_eq!(err.fault(), crate::Fault::Peer);
    }

    #[test]
    fn success_attribute() {
        let v = format_success(0x1f, &AUTH_RESPONSE.as_bytes().try_into().unwrap());
        assert_eq!(v[0], 0x1f);
        assert_eq!(&v[1..], AUTH_RESPONSE.as_bytes());
        assert_eq!(v.len(), 43);
    }

    #[test]
    fn error_attribute() {
        let v = format_error(
            7,
            MsChapErrorCode::AuthenticationFailure,
            &h(AUTH_CHALLENGE),
            "Authentication failure",
        );
        assert_eq!(v[0], 7);
        assert_eq!(
            std::str::from_utf8(&v[1..]).unwrap(),
            "E=691 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=Authentication failure"
        );
        let v = format_error(1, MsChapErrorCode::AccountDisabled, &[0; 16], "a\r\nb");
        assert!(std::str::from_utf8(&v[1..])
            .unwrap()
            .starts_with("E=647 R=0 C=00000000000000000000000000000000 V=3 M=a  b"));
        let codes = [
            (MsChapErrorCode::RestrictedLogonHours, 646),
            (MsChapErrorCode::AccountDisabled, 647),
            (MsChapErrorCode::PasswordExpired, 648),
            (MsChapErrorCode::NoDialinPermission, 649),
            (MsChapErrorCode::AuthenticationFailure, 691),
        ];
        for (c, n) in codes {
            assert_eq!(c.code(), n);
            assert!(!c.default_message().is_empty());
        }
    }
}
