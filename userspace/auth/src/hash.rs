//! Stored password hashes for PAP, in the text form used by the users file.
//!
//! Two schemes:
//!
//! | scheme | text form | cost per check |
//! | --- | --- | --- |
//! | [`HashScheme::Ssha512`] (default) | `{SSHA512}` + base64(SHA-512(password ‖ salt) ‖ salt) | one SHA-512, about a microsecond |
//! | [`HashScheme::Pbkdf2Sha256`] | `$pbkdf2-sha256$i=<iterations>$<b64 salt>$<b64 hash>` | `iterations` HMAC-SHA-256 pairs, milliseconds |
//!
//! `{SSHA512}` is the salted SHA-512 that FreeRADIUS reads as `SSHA2-512-Password` (and OpenLDAP
//! as `{SSHA512}`); we write a 16-byte salt and accept any salt of 1 to 256 bytes. The pbkdf2 form
//! is the PHC string format with unpadded standard base64 (padding is accepted on input).
//!
//! # Trade-off
//!
//! PAP verification sits on the per-request hot path of the RADIUS server: every Access-Request
//! with a User-Password costs one verification, and an ISP-sized server sees thousands per second
//! (more during a reconnect storm after an outage). A salted SHA-512 costs about a microsecond,
//! so it is the default. PBKDF2 with [`HashScheme::DEFAULT_PBKDF2_ITERATIONS`] costs tens of
//! milliseconds of CPU per request: much stronger if the users file leaks, but it caps a core at a
//! few dozen authentications per second and makes request floods cheap for an attacker. Choose it
//! for small deployments where the file's exposure matters more than throughput. Either way the
//! NT hash stored beside it (needed for MS-CHAPv2) is an unsalted MD4 and is the weaker secret.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, Result};

const SSHA512_PREFIX: &str = "{SSHA512}";
const PBKDF2_PREFIX: &str = "$pbkdf2-sha256$";
const MAX_SALT_LEN: usize = 256;
/// Upper bound on accepted iterations, so a typo cannot turn one request into minutes of CPU.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Standard-alphabet base64 without padding on output, either way on input.
const B64_PHC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard-alphabet base64 with padding on output, either way on input.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A password hashing scheme (see the module docs for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashScheme {
    /// Salted SHA-512, `{SSHA512}…`. Fast; the default.
    #[default]
    Ssha512,
    /// PBKDF2-HMAC-SHA-256, `$pbkdf2-sha256$i=…$…$…`. Slow and strong.
    Pbkdf2Sha256 {
        /// Iteration count (1 to 10 000 000).
        iterations: u32,
    },
}

impl HashScheme {
    /// Default PBKDF2 iteration count: tens of milliseconds per check on a server core. (OWASP's
    /// 600 000 for web logins is too slow for a RADIUS hot path; raise it if you can afford it.)
    pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 100_000;

    /// PBKDF2-HMAC-SHA-256 with [`Self::DEFAULT_PBKDF2_ITERATIONS`].
    #[must_use]
    pub fn pbkdf2_sha256() -> Self {
        Self::Pbkdf2Sha256 {
            iterations: Self::DEFAULT_PBKDF2_ITERATIONS,
        }
    }

    /// Short name for listings and CLI flags: `ssha512` or `pbkdf2-sha256`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssha512 => "ssha512",
            Self::Pbkdf2Sha256 { .. } => "pbkdf2-sha256",
        }
    }
}

/// A parsed stored password hash. Never holds the password; `Debug` shows only the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    inner: Inner,
}

#[derive(Clone, PartialEq, Eq)]
enum Inner {
    Ssha512 {
        digest: [u8; 64],
        salt: Vec<u8>,
    },
    Pbkdf2Sha256 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl Drop for PasswordHash {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Ssha512 { digest, salt } => {
                digest.zeroize();
                salt.zeroize();
            }
            Inner::Pbkdf2Sha256 { salt, hash, .. } => {
                salt.zeroize();
                hash.zeroize();
            }
        }
    }
}

fn malformed(reason: &'static str) -> Error {
    Error::MalformedHash { reason }
}

fn ssha512(password: &[u8], salt: &[u8]) -> [u8; 64] {
    let mut sha = Sha512::new();
    sha.update(password);
    sha.update(salt);
    sha.finalize().into()
}

/// Constant-time equality of two SHA-512 digests. `subtle` compares slices byte by byte with
/// an optimisation barrier per byte (~900 instructions for 64 bytes, on every PAP request);
/// folding the XOR of the eight words first and comparing the result once is just as
/// data-independent.
fn digest_eq(a: &[u8; 64], b: &[u8; 64]) -> bool {
    let diff = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(0u64, |acc, (x, y)| acc | (word(x) ^ word(y)));
    diff.ct_eq(&0).into()
}

fn word(bytes: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out);
}

impl PasswordHash {
    /// Parses a stored hash in one of the text forms of the module docs. The `{SSHA512}` prefix is
    /// matched case-insensitively.
    pub fn parse(text: &str) -> Result<Self> {
        if text
            .get(..SSHA512_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(SSHA512_PREFIX))
        {
            let mut raw = B64_LENIENT
                .decode(&text[SSHA512_PREFIX.len()..])
                .map_err(|_| malformed("{SSHA512} value is not valid base64"))?;
            let result = if raw.len() <= 64 {
                Err(malformed("{SSHA512} value is too short to hold a salt"))
            } else if raw.len() > 64 + MAX_SALT_LEN {
                Err(malformed("{SSHA512} salt is longer than 256 bytes"))
            } else {
                let mut digest = [0; 64];
                digest.copy_from_slice(&raw[..64]);
                Ok(Self {
                    inner: Inner::Ssha512 {
                        digest,
                        salt: raw[64..].to_vec(),
                    },
                })
            };
            raw.zeroize();
            result
        } else if let Some(rest) = text.strip_prefix(PBKDF2_PREFIX) {
            let mut parts = rest.split('$');
            let (Some(params), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed(
                    "expected $pbkdf2-sha256$i=<iterations>$<salt>$<hash>",
                ));
            };
            let iterations: u32 = params
                .strip_prefix("i=")
                .and_then(|n| n.parse().ok())
                .filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n))
                .ok_or_else(|| malformed("pbkdf2 iterations must be i=<1..10000000>"))?;
            let salt = B64_PHC
                .decode(salt)
                .map_err(|_| malformed("pbkdf2 salt is not valid base64"))?;
            if salt.is_empty() || salt.len() > MAX_SALT_LEN {
                return Err(malformed("pbkdf2 salt must be 1 to 256 bytes"));
            }
            let hash = B64_PHC
                .decode(hash)
                .map_err(|_| malformed("pbkdf2 hash is not valid base64"))?;
            if !(16..=64).contains(&hash.len()) {
                return Err(malformed("pbkdf2 hash must be 16 to 64 bytes"));
            }
            Ok(Self {
                inner: Inner::Pbkdf2Sha256 {
                    iterations,
                    salt,
                    hash,
                },
            })
        } else {
            Err(malformed(
                "unknown scheme (expected {SSHA512}… or $pbkdf2-sha256$…)",
            ))
        }
    }

    /// Hashes `password` with `scheme` and the caller's random `salt` (16 fresh random bytes).
    ///
    /// # Panics
    ///
    /// If `scheme` is PBKDF2 with zero iterations.
    #[must_use]
    pub fn create(scheme: HashScheme, password: &[u8], salt: &[u8; 16]) -> Self {
        let inner = match scheme {
            HashScheme::Ssha512 => Inner::Ssha512 {
                digest: ssha512(password, salt),
                salt: salt.to_vec(),
            },
            HashScheme::Pbkdf2Sha256 { iterations } => {
                assert!(iterations > 0, "pbkdf2 needs at least one iteration");
                let mut hash = vec![0; 32];
                pbkdf2_sha256(password, salt, iterations, &mut hash);
                Inner::Pbkdf2Sha256 {
                    iterations,
                    salt: salt.to_vec(),
                    hash,
                }
            }
        };
        Self { inner }
    }

    /// Checks `password` against the hash; the final comparison is constant-time.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        match &self.inner {
            Inner::Ssha512 { digest, salt } => {
                let mut computed = ssha512(password, salt);
                let ok = digest_eq(&computed, digest);
                computed.zeroize();
                ok
            }
            Inner::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => {
                let mut computed = vec![0; hash.len()];
                pbkdf2_sha256(password, salt, *iterations, &mut computed);
                let ok = computed.ct_eq(hash);
                computed.zeroize();
                ok.into()
            }
        }
    }

    /// The scheme (with its parameters) this hash uses.
    #[must_use]
    pub fn scheme(&self) -> HashScheme {
        match &self.inner {
            Inner::Ssha512 { .. } => HashScheme::Ssha512,
            Inner::Pbkdf2Sha256 { iterations, .. } => HashScheme::Pbkdf2Sha256 {
                iterations: *iterations,
            },
        }
    }

    /// The text form for the users file. (Deliberately not `Display`, so a hash cannot end up in
    /// a log line by accident.)
    #[must_use]
    pub fn encode(&self) -> String {
        match &self.inner {
            Inner::Ssha512 { digest, salt } => {
                let mut raw = Vec::with_capacity(64 + salt.len());
                raw.extend_from_slice(digest);
                raw.extend_from_slice(salt);
                let out = format!("{SSHA512_PREFIX}{}", STANDARD.encode(&raw));
                raw.zeroize();
                out
            }
            Inner::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => format!(
                "{PBKDF2_PREFIX}i={iterations}${}${}",
                B64_PHC.encode(salt),
                B64_PHC.encode(hash)
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("scheme", &self.scheme())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn ssha512_format_by_hand() {
        let h = PasswordHash::create(HashScheme::Ssha512, b"secret", &SALT);
        // Build the expected text independently: base64(sha512("secret" || salt) || salt).
        let mut raw = Sha512::digest(b"secret0123456789abcdef").to_vec();
        raw.extend_from_slice(&SALT);
        let expected = format!("{{SSHA512}}{}", STANDARD.encode(raw));
        assert_eq!(h.encode(), expected);
        assert!(PasswordHash::parse(&expected).unwrap().verify(b"secret"));
    }

    #[test]
    fn ssha512_round_trip() {
        let h = PasswordHash::create(HashScheme::Ssha512, b"correct horse", &SALT);
        let text = h.encode();
        assert!(text.starts_with("{SSHA512}"));
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(parsed.scheme(), HashScheme::Ssha512);
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"correct horsE"));
        assert!(!parsed.verify(b""));
        // Lower-case prefix and a short 4-byte salt, as other tools write, are accepted.
        let mut raw = Sha512::digest(b"pwsalt").to_vec();
        raw.extend_from_slice(b"salt");
        let other = format!("{{ssha512}}{}", STANDARD.encode(raw));
        assert!(PasswordHash::parse(&other).unwrap().verify(b"pw"));
    }

    #[test]
    fn pbkdf2_vector() {
        // RFC 7914 §11 PBKDF2-HMAC-SHA-256 test vector: P="passwd", S="salt", c=1, 64 bytes.
        let expected = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                        49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783";
        let text = format!(
            "$pbkdf2-sha256$i=1${}${}",
            B64_PHC.encode(b"salt"),
            B64_PHC.encode(hex::decode(expected).unwrap())
        );
        let h = PasswordHash::parse(&text).unwrap();
        assert_eq!(h.scheme(), HashScheme::Pbkdf2Sha256 { iterations: 1 });
        assert!(h.verify(b"passwd"));
        assert!(!h.verify(b"passwe"));
        assert_eq!(h.encode(), text);
    }

    #[test]
    fn pbkdf2_round_trip() {
        let scheme = HashScheme::Pbkdf2Sha256 { iterations: 1000 };
        let h = PasswordHash::create(scheme, b"hunter2", &SALT);
        let text = h.encode();
        assert!(text.starts_with("$pbkdf2-sha256$i=1000$"));
        assert!(!text.ends_with('='), "PHC base64 is unpadded");
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed.scheme(), scheme);
        assert!(parsed.verify(b"hunter2"));
        assert!(!parsed.verify(b"hunter3"));
        assert_eq!(HashScheme::pbkdf2_sha256().name(), "pbkdf2-sha256");
        assert_eq!(HashScheme::default().name(), "ssha512");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            "",
            "secret",
            "{SHA}abc",
            "{SSHA512}not base64!",
            "{SSHA512}AAAA",
            "$pbkdf2-sha256$1000$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=0$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=99999999$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=10$$AAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=10$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=10$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA$extra",
            "$pbkdf2-sha256$i=10$c2FsdA",
        ];
        for c in cases {
            let err = PasswordHash::parse(c).unwrap_err();
            assert!(matches!(err, Error::MalformedHash { .. }), "{c}");
        }
    }

    #[test]
    fn debug_and_errors_do_not_leak() {
        let h = PasswordHash::create(HashScheme::Ssha512, b"secret", &SALT);
        let text = h.encode();
        let dbg = format!("{h:?}");
        assert!(dbg.contains("Ssha512"));
        assert!(!dbg.contains(&text[9..20]));
        let err = PasswordHash::parse("{SSHA512}c2VjcmV0c2VjcmV0").unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
    }
}
