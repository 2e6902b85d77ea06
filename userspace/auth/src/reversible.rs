//! Reversible password encryption, for the one method that needs the cleartext: CHAP.
//!
//! This is the equivalent of Active Directory's "store password using reversible encryption":
//! the users file holds `rev1:` + base64(nonce ‖ ciphertext ‖ tag), where the ciphertext is
//! ChaCha20-Poly1305 under a 32-byte [`ReversibleKey`] kept in a separate key file. The
//! associated data binds each entry to its user name (`"portcullis rev1\0" ‖ user name`), so an
//! entry copied to another user does not decrypt.
//!
//! Anyone with both the users file and the key file can recover the passwords; keep the key file
//! readable by the server only, and enable CHAP only where a NAS demands it.
//!
//! Nonces: pass 12 fresh random bytes for every encryption. A random 96-bit nonce is safe for far
//! more encryptions than a users file will ever see under one key.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Prefix of the text form.
pub const PREFIX: &str = "rev1:";
const AD_LABEL: &[u8] = b"portcullis rev1\0";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The 32-byte key for reversible encryption. `Debug` never shows it; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReversibleKey([u8; 32]);

impl ReversibleKey {
    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Draws a new key from a cryptographic random generator.
    #[must_use]
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads the text of a key file: exactly one line of 64 hex digits; blank lines and lines
    /// starting with `#` are ignored, as is surrounding whitespace.
    pub fn from_key_file(text: &str) -> Result<Self> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(Error::MalformedKey {
                reason: "expected exactly one line of 64 hex digits",
            });
        };
        let mut bytes = [0; 32];
        if line.len() != 64 || hex::decode_to_slice(line, &mut bytes).is_err() {
            bytes.zeroize();
            return Err(Error::MalformedKey {
                reason: "the key must be 64 hex digits (32 bytes)",
            });
        }
        Ok(Self(bytes))
    }

    /// The text of a key file for this key (a comment line and 64 lowercase hex digits).
    #[must_use]
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let mut hex = Zeroizing::new(hex::encode(self.0));
        let mut out = Zeroizing::new(String::with_capacity(128));
        out.push_str(
            "# Portcullis key for reversibly encrypted (CHAP) passwords. Keep it secret.\n",
        );
        out.push_str(&hex);
        out.push('\n');
        hex.zeroize();
        out
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

impl fmt::Debug for ReversibleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReversibleKey(<redacted>)")
    }
}

fn associated_data(user_name: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + user_name.len());
    ad.extend_from_slice(AD_LABEL);
    ad.extend_from_slice(user_name.as_bytes());
    ad
}

/// Encrypts `password` for `user_name`, giving the `rev1:…` text for the users file.
///
/// `nonce` must be 12 fresh random bytes.
#[must_use]
pub fn encrypt(key: &ReversibleKey, user_name: &str, password: &[u8], nonce: [u8; 12]) -> String {
    let aad = associated_data(user_name);
    let sealed = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: password,
                aad: &aad,
            },
        )
        // ChaCha20-Poly1305 only fails for plaintexts of more than 256 GiB.
        .expect("password too long for ChaCha20-Poly1305");
    let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    format!("{PREFIX}{}", STANDARD.encode(raw))
}

/// Decrypts a `rev1:…` text for `user_name`. Fails if the text is malformed, or if the key, the
/// user name or the ciphertext does not match (authentication failure).
pub fn decrypt(key: &ReversibleKey, user_name: &str, text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let b64 = text
        .strip_prefix(PREFIX)
        .ok_or(Error::MalformedReversible {
            reason: "missing rev1: prefix",
        })?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| Error::MalformedReversible {
            reason: "not valid base64",
        })?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::MalformedReversible {
            reason: "too short for nonce and tag",
        });
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let aad = associated_data(user_name);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::ReversibleDecrypt {
            user: user_name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> ReversibleKey {
        ReversibleKey::from_key_file(KEY_HEX).unwrap()
    }

    #[test]
    fn round_trip() {
        let text = encrypt(&key(), "alice", b"chap secret", [7; 12]);
        assert!(text.starts_with("rev1:"));
        assert!(!text.contains("chap secret"));
        let plain = decrypt(&key(), "alice", &text).unwrap();
        assert_eq!(plain.as_slice(), b"chap secret");
        // Empty passwords work too.
        let text = encrypt(&key(), "bob", b"", [1; 12]);
        assert!(decrypt(&key(), "bob", &text).unwrap().is_empty());
    }

    #[test]
    fn wrong_user_is_refused() {
        let text = encrypt(&key(), "alice", b"pw", [7; 12]);
        let err = decrypt(&key(), "mallory", &text).unwrap_err();
        assert!(matches!(err, Error::ReversibleDecrypt { ref user } if user == "mallory"));
        assert!(decrypt(&key(), "Alice", &text).is_err());
    }

    #[test]
    fn wrong_key_is_refused() {
        let text = encrypt(&key(), "alice", b"pw", [7; 12]);
        let other = ReversibleKey::from_bytes([9; 32]);
        assert!(decrypt(&other, "alice", &text).is_err());
    }

    #[test]
    fn tampering_is_refused() {
        let text = encrypt(&key(), "alice", b"password", [7; 12]);
        let mut raw = STANDARD.decode(&text[5..]).unwrap();
        for i in [0, 12, raw.len() - 1] {
            raw[i] ^= 0x01;
            let tampered = format!("rev1:{}", STANDARD.encode(&raw));
            assert!(matches!(
                decrypt(&key(), "alice", &tampered),
                Err(Error::ReversibleDecrypt { .. })
            ));
            raw[i] ^= 0x01;
        }
        assert!(matches!(
            decrypt(&key(), "alice", "rev2:AAAA"),
            Err(Error::MalformedReversible { .. })
        ));
        assert!(matches!(
            decrypt(&key(), "alice", "rev1:!!"),
            Err(Error::MalformedReversible { .. })
        ));
        assert!(matches!(
            decrypt(&key(), "alice", "rev1:AAAA"),
            Err(Error::MalformedReversible { .. })
        ));
    }

    #[test]
    fn key_file_parsing() {
        let with_comment = format!("# comment\n\n  {}  \n", KEY_HEX.to_uppercase());
        let k = ReversibleKey::from_key_file(&with_comment).unwrap();
        assert_eq!(k.0, key().0);
        let round = ReversibleKey::from_key_file(&key().to_key_file()).unwrap();
        assert_eq!(round.0, key().0);
        for bad in [
            "",
            "# only a comment",
            &KEY_HEX[..62],
            "zz",
            &format!("{KEY_HEX}\n{KEY_HEX}"),
        ] {
            assert!(matches!(
                ReversibleKey::from_key_file(bad),
                Err(Error::MalformedKey { .. })
            ));
        }
    }

    #[test]
    fn generate_uses_the_rng() {
        struct Counter(u8);
        impl RngCore for Counter {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for b in dest {
                    self.0 = self.0.wrapping_add(1);
                    *b = self.0;
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl CryptoRng for Counter {}
        let k = ReversibleKey::generate(&mut Counter(0));
        assert_eq!(k.0[0], 1);
        assert_eq!(k.0[31], 32);
    }

    #[test]
    fn debug_is_redacted() {
        let dbg = format!("{:?}", key());
        assert_eq!(dbg, "ReversibleKey(<redacted>)");
    }
}
