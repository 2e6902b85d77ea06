//! NT password hashes (RFC 2759 §8.3 `NtPasswordHash`, §8.4 `HashNtPasswordHash`).

use md4::{Digest, Md4};
use zeroize::Zeroizing;

/// `NtPasswordHash`: MD4 of the password encoded as UTF-16LE (no terminator, no BOM).
#[must_use]
pub fn nt_hash(password: &str) -> [u8; 16] {
    let mut unicode = Zeroizing::new(Vec::with_capacity(password.len() * 2));
    unicode.extend(password.encode_utf16().flat_map(u16::to_le_bytes));
    Md4::digest(unicode.as_slice()).into()
}

/// `HashNtPasswordHash`: MD4 of the 16-byte NT hash (the "PasswordHashHash" of RFC 2759 / RFC 3079).
#[must_use]
pub fn nt_hash_hash(nt_hash: &[u8; 16]) -> [u8; 16] {
    Md4::digest(nt_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_vector() {
        // Widely published NT hash of "password".
        assert_eq!(
            hex::encode_upper(nt_hash("password")),
            "8846F7EAEE8FB117AD06BDD830B7586C"
        );
    }

    #[test]
    fn rfc2759_vectors() {
        // RFC 2759 §9.2: Password "clientPass".
        let h = nt_hash("clientPass");
        assert_eq!(hex::encode_upper(h), "44EBBA8D5312B8D611474411F56989AE");
        assert_eq!(
            hex::encode_upper(nt_hash_hash(&h)),
            "41C00C584BD2D91C4017A2A12FA59F3F"
        );
    }

    #[test]
    fn empty_and_non_ascii() {
        // MD4 of the empty string (RFC 1320 test suite).
        assert_eq!(hex::encode(nt_hash("")), "31d6cfe0d16ae931b73c59d7e0c089c0");
        // Non-BMP characters become surrogate pairs, so this differs from hashing the UTF-8 bytes.
        assert_ne!(nt_hash("\u{1F600}"), nt_hash("\u{F600}"));
    }
}
