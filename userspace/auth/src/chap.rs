//! CHAP with MD5 (RFC 1994 §4.1, carried in RADIUS as CHAP-Password per RFC 2865 §2.2 and §5.3).
//!
//! The response is `MD5(Identifier || secret || challenge)`. The challenge is the CHAP-Challenge
//! attribute when present, otherwise the Request Authenticator; which one applies is decided by the
//! caller (the RADIUS layer), not here.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Computes the CHAP response `MD5(ident || secret || challenge)`.
#[must_use]
pub fn chap_response(chap_ident: u8, cleartext_password: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update([chap_ident]);
    md5.update(cleartext_password);
    md5.update(challenge);
    md5.finalize().into()
}

/// Checks a CHAP response against the cleartext password, in constant time.
///
/// `chap_ident` and `response` are the first byte and the remaining 16 bytes of CHAP-Password.
#[must_use]
pub fn verify_chap(
    chap_ident: u8,
    response: &[u8; 16],
    challenge: &[u8],
    cleartext_password: &[u8],
) -> bool {
    let expected = chap_response(chap_ident, cleartext_password, challenge);
    bool::from(expected.ct_eq(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    #[test]
    fn response_is_md5_of_ident_secret_challenge() {
        // Built by hand from the RFC 1994 definition.
        let mut input = vec![0x2a];
        input.extend_from_slice(b"hello");
        input.extend_from_slice(&CHALLENGE);
        let expected: [u8; 16] = Md5::digest(&input).into();
        assert_eq!(chap_response(0x2a, b"hello", &CHALLENGE), expected);
        assert!(verify_chap(0x2a, &expected, &CHALLENGE, b"hello"));
    }

    #[test]
    fn fixed_vector() {
        // MD5(0x01 || "password" || 16 x 0x00), computed independently with coreutils:
        // printf '\x01password\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' | md5sum
        let response: [u8; 16] = hex::decode("ae88b6c2fe68bc923ae994f652508d12")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(chap_response(1, b"password", &[0; 16]), response);
        assert!(verify_chap(1, &response, &[0; 16], b"password"));
    }

    #[test]
    fn rejects_wrong_inputs() {
        let r = chap_response(7, b"secret", &CHALLENGE);
        assert!(verify_chap(7, &r, &CHALLENGE, b"secret"));
        assert!(!verify_chap(8, &r, &CHALLENGE, b"secret"));
        assert!(!verify_chap(7, &r, &CHALLENGE, b"Secret"));
        assert!(!verify_chap(7, &r, &CHALLENGE[..15], b"secret"));
    }
}
