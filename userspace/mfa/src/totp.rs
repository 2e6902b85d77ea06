//! Local TOTP (RFC 6238, on HOTP of RFC 4226) as an MFA provider of its own, and its
//! enrollment store.
//!
//! # Verification rules
//!
//! * HMAC-SHA1, HMAC-SHA256 or HMAC-SHA512; 6 or 8 digits; a step of `period` seconds (30 by
//!   default).
//! * A code is accepted for the current step and for **one step of delay** (the previous step),
//!   the semantics of the Entra MFA NPS extension. A code for the *next* step (a phone clock
//!   running ahead) is **not** accepted: the window is `{T - 1, T}`, never `T + 1`.
//! * Replay: the last accepted step is remembered per user; a code for a step at or before it is
//!   refused with [`DenyReason::Replayed`], even when it is otherwise right. The replay state lives
//!   in memory only: after a restart, a code from the last ~60 s could be accepted once more.
//! * Drift: which offset (0 or -1 step) was accepted last is kept per user and reported by
//!   [`TotpProvider::drift`], so operators can spot phones with a slow clock.
//! * Codes are compared in constant time; a code of the wrong length or with non-digits is a
//!   wrong code (never an error).
//! * No throttling here: the server or the pending table limits attempts per user.
//!
//! # Enrollment file (`totp.toml`)
//!
//! ```toml
//! # Portcullis TOTP enrollments. Managed with `portcullis users totp`.
//! [[user]]
//! name = "bob"
//! secret = "rev1:…"     # the seed, encrypted with the reversible-encryption key
//! algorithm = "SHA1"     # optional: SHA1 (default), SHA256, SHA512
//! digits = 6             # optional: 6 (default) or 8
//! period = 30            # optional: seconds per step, 30 by default (1..=3600)
//! ```
//!
//! The seed is stored as `portcullis_auth::reversible::encrypt(key, name, seed, nonce)`: the user
//! name is the associated data, so an entry copied to another user does not decrypt. Unknown keys
//! are errors. Names are matched exactly (case-sensitive); [`enroll`] refuses a name that differs
//! from an enrolled one only in case.
//!
//! What this module does not do: files and randomness (text, keys and nonces come from the
//! caller), persisting replay state, throttling.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_auth::reversible::{self, ReversibleKey};
use rand::{CryptoRng, RngCore};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use toml::Spanned;
use toml_edit::{ArrayOfTables, DocumentMut, ImDocument, Item, Table};
use zeroize::Zeroizing;

use crate::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus,
    Verdict,
};

/// The prompt sent in the Access-Challenge.
pub const PROMPT: &str = "Enter the verification code from your authenticator app";

/// The comment that starts a TOTP file created by [`enroll`] from empty text.
pub const NEW_FILE_HEADER: &str =
    "# Portcullis TOTP enrollments. Managed with `portcullis users totp`.\n";

/// Shortest seed accepted, in bytes. RFC 4226 asks for 128 bits and recommends 160 (what
/// [`generate_seed`] draws for SHA1); 80 bits is the floor common authenticator apps accept,
/// and what the demo seed `JBSWY3DPEHPK3PXP` has.
pub const MIN_SEED_LEN: usize = 10;
/// Longest seed accepted, in bytes.
pub const MAX_SEED_LEN: usize = 128;
/// Longest step accepted, in seconds.
pub const MAX_PERIOD: u32 = 3600;

// ---------------------------------------------------------------------------------------------
// Errors

/// Errors of the TOTP module. None carries a seed, a code or a ciphertext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    /// The enrollment file could not be loaded; `line` is 1-based.
    #[error("{origin}:{line}: {reason}")]
    File {
        /// Where the text came from (normally the file name).
        origin: String,
        /// 1-based line of the offending entry or value.
        line: usize,
        /// What is wrong, without any secret.
        reason: String,
    },
    /// The text given to an editing function is not valid TOML or not in our shape.
    #[error("TOTP file, line {line}: {reason}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// [`enroll`] was asked to enrol a name that is already enrolled (ignoring case).
    #[error("user {name:?} is already enrolled for TOTP")]
    AlreadyEnrolled {
        /// The existing name.
        name: String,
    },
    /// [`remove`] was asked to remove a name that is not enrolled.
    #[error("user {name:?} is not enrolled for TOTP")]
    NotEnrolled {
        /// The missing name.
        name: String,
    },
    /// The user name is not acceptable.
    #[error("invalid user name")]
    InvalidUserName {
        /// Why.
        #[source]
        source: portcullis_auth::Error,
    },
    /// A seed (raw or base32) is not acceptable.
    #[error("invalid TOTP seed: {reason}")]
    InvalidSeed {
        /// What is wrong, without the seed.
        reason: &'static str,
    },
    /// Algorithm, digits or period out of range.
    #[error("invalid TOTP options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// The QR code could not be made (data too long).
    #[error("cannot render QR code: {reason}")]
    Qr {
        /// The encoder's reason (never the data).
        reason: String,
    },
}

type Result<T, E = TotpError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Algorithms and code generation

/// The HMAC hash of a TOTP enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// HMAC-SHA1, the RFC 6238 default and what every authenticator app supports.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The name used in the file and in `otpauth://` URIs: `SHA1`, `SHA256`, `SHA512`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses a name, ignoring case.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The seed length [`generate_seed`] draws: the hash's output size.
    #[must_use]
    pub fn seed_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of one enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpOptions {
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// Code length: 6 or 8.
    pub digits: u32,
    /// Seconds per step (1..=[`MAX_PERIOD`]).
    pub period: u32,
}

impl Default for TotpOptions {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        }
    }
}

impl TotpOptions {
    /// Checks digits and period.
    pub fn validate(&self) -> Result<()> {
        if self.digits != 6 && self.digits != 8 {
            return Err(TotpError::InvalidOptions {
                reason: format!("digits must be 6 or 8, not {}", self.digits),
            });
        }
        if self.period == 0 || self.period > MAX_PERIOD {
            return Err(TotpError::InvalidOptions {
                reason: format!(
                    "period must be 1..={MAX_PERIOD} seconds, not {}",
                    self.period
                ),
            });
        }
        Ok(())
    }

    /// The step number of a unix time.
    #[must_use]
    pub fn step_of(&self, unix_time: u64) -> u64 {
        unix_time / u64::from(self.period.max(1))
    }
}

fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

/// HOTP (RFC 4226 §5.3): the code for `counter`, as a number below 10^`digits`.
/// `digits` must be at most 9.
#[must_use]
pub fn hotp(seed: &[u8], counter: u64, algorithm: Algorithm, digits: u32) -> u32 {
    let msg = counter.to_be_bytes();
    let hs = match algorithm {
        Algorithm::Sha1 => hmac_of::<Hmac<sha1::Sha1>>(seed, &msg),
        Algorithm::Sha256 => hmac_of::<Hmac<sha2::Sha256>>(seed, &msg),
        Algorithm::Sha512 => hmac_of::<Hmac<sha2::Sha512>>(seed, &msg),
    };
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes, top bit masked.
    let offset = usize::from(hs[hs.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        hs[offset] & 0x7f,
        hs[offset + 1],
        hs[offset + 2],
        hs[offset + 3],
    ]);
    bin % 10u32.pow(digits.min(9))
}

/// The TOTP code (zero-padded to `opts.digits`) for step `step`.
#[must_use]
pub fn code_for_step(seed: &[u8], step: u64, opts: &TotpOptions) -> Zeroizing<String> {
    let n = hotp(seed, step, opts.algorithm, opts.digits);
    Zeroizing::new(format!("{n:0width$}", width = opts.digits as usize))
}

/// The TOTP code (RFC 6238) at `unix_time`.
#[must_use]
pub fn code_at(seed: &[u8], unix_time: u64, opts: &TotpOptions) -> Zeroizing<String> {
    code_for_step(seed, opts.step_of(unix_time), opts)
}

/// Draws a new seed of [`Algorithm::seed_len`] bytes.
#[must_use]
pub fn generate_seed<R: RngCore + CryptoRng>(
    rng: &mut R,
    algorithm: Algorithm,
) -> Zeroizing<Vec<u8>> {
    let mut seed = Zeroizing::new(vec![0; algorithm.seed_len()]);
    rng.fill_bytes(&mut seed);
    seed
}

fn validate_seed(seed: &[u8]) -> Result<()> {
    if seed.len() < MIN_SEED_LEN {
        Err(TotpError::InvalidSeed {
            reason: "shorter than 10 bytes (80 bits)",
        })
    } else if seed.len() > MAX_SEED_LEN {
        Err(TotpError::InvalidSeed {
            reason: "longer than 128 bytes",
        })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Base32 (RFC 4648 §6)

const B32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 (RFC 4648) without padding, uppercase, as authenticator apps expect.
#[must_use]
pub fn base32_encode(data: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(data.len().div_ceil(5) * 8));
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                B32_ALPHABET[usize::from((buffer >> bits) & 0x1f)],
            ));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            B32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// Decodes base32 (RFC 4648). Lenient where people copy seeds by hand: case is ignored, spaces
/// and trailing `=` padding are skipped. Refuses other characters and impossible lengths.
pub fn base32_decode(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |reason| TotpError::InvalidSeed { reason };
    let trimmed = text.trim_end_matches(|c: char| c == '=' || c.is_whitespace());
    let mut out = Zeroizing::new(Vec::with_capacity(trimmed.len() * 5 / 8));
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    for c in trimmed.bytes() {
        if c == b' ' {
            continue;
        }
        let v = match c.to_ascii_uppercase() {
            u @ b'A'..=b'Z' => u - b'A',
            d @ b'2'..=b'7' => d - b'2' + 26,
            _ => return Err(bad("not base32 (A-Z, 2-7)")),
        };
        symbols += 1;
        buffer = (buffer << 5) | u16::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            // Truncation to the low 8 bits is the point.
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // 1, 3 and 6 symbols in the last group of 8 cannot come from whole bytes.
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(bad("base32 length is not possible for whole bytes"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// otpauth:// URI and QR code

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
        }
    }
}

/// The Key URI authenticator apps import:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
/// Issuer and account are percent-encoded. The result holds the seed: show it once, never log it.
#[must_use]
pub fn otpauth_uri(
    issuer: &str,
    account: &str,
    seed: &[u8],
    opts: &TotpOptions,
) -> Zeroizing<String> {
    let secret = base32_encode(seed);
    let mut uri = Zeroizing::new(String::with_capacity(96 + secret.len()));
    uri.push_str("otpauth://totp/");
    percent_encode(issuer, &mut uri);
    uri.push(':');
    percent_encode(account, &mut uri);
    uri.push_str("?secret=");
    uri.push_str(&secret);
    uri.push_str("&issuer=");
    percent_encode(issuer, &mut uri);
    uri.push_str("&algorithm=");
    uri.push_str(opts.algorithm.name());
    uri.push_str(&format!("&digits={}&period={}", opts.digits, opts.period));
    uri
}

/// The terminal's background, which decides which modules are drawn with block characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminalBackground {
    /// Light text on a dark background (the common default): light modules are drawn.
    #[default]
    Dark,
    /// Dark text on a light background: dark modules are drawn.
    Light,
}

/// Quiet zone around the code, in modules (ISO/IEC 18004 asks for 4).
pub const QR_QUIET_ZONE: usize = 4;

/// Renders `data` as a QR code for a terminal with Unicode half blocks (`▀▄█ `), two module
/// rows per text line, with a quiet zone of [`QR_QUIET_ZONE`] modules. Every line ends in `\n`.
pub fn render_qr(data: &str, background: TerminalBackground) -> Result<Zeroizing<String>> {
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(|e| TotpError::Qr {
        reason: e.to_string(),
    })?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QR_QUIET_ZONE;
    let inside = |v: usize| (QR_QUIET_ZONE..QR_QUIET_ZONE + width).contains(&v);
    // Dark modules of the code; the quiet zone is light.
    let dark = |x: usize, y: usize| {
        inside(x)
            && inside(y)
            && colors[(y - QR_QUIET_ZONE) * width + (x - QR_QUIET_ZONE)] == qrcode::Color::Dark
    };
    // Whether (x, y) is drawn in the foreground colour. A padding row below an odd-sized square
    // is never drawn.
    let drawn = |x: usize, y: usize| {
        y < size
            && match background {
                TerminalBackground::Dark => !dark(x, y),
                TerminalBackground::Light => dark(x, y),
            }
    };
    let mut out = Zeroizing::new(String::with_capacity((size + 1) * size.div_ceil(2) * 3));
    for y in (0..size).step_by(2) {
        for x in 0..size {
            out.push(match (drawn(x, y), drawn(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The enrollment store

/// One enrolled user, with the decrypted seed (wiped on drop, never shown by `Debug`).
pub struct TotpUser {
    name: String,
    line: usize,
    seed: Zeroizing<Vec<u8>>,
    options: TotpOptions,
}

impl TotpUser {
    /// The user name as written in the file.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 1-based line of the user's `name` in the file.
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }

    /// Algorithm, digits and period.
    #[must_use]
    pub fn options(&self) -> &TotpOptions {
        &self.options
    }

    /// The `otpauth://` URI for this enrollment (to show the QR code again). Holds the seed.
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str) -> Zeroizing<String> {
        otpauth_uri(issuer, &self.name, &self.seed, &self.options)
    }

    /// The code at `unix_time` (for tests and demos; the provider verifies codes itself).
    #[must_use]
    pub fn code_at(&self, unix_time: u64) -> Zeroizing<String> {
        code_at(&self.seed, unix_time, &self.options)
    }
}

impl fmt::Debug for TotpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpUser")
            .field("name", &self.name)
            .field("line", &self.line)
            .field("options", &self.options)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// The loaded TOTP enrollment file.
#[derive(Debug, Default)]
pub struct TotpStore {
    users: Vec<TotpUser>,
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDe {
    #[serde(default)]
    user: Vec<UserDe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDe {
    name: Spanned<String>,
    secret: Spanned<String>,
    #[serde(default)]
    algorithm: Option<Spanned<String>>,
    #[serde(default)]
    digits: Option<Spanned<i64>>,
    #[serde(default)]
    period: Option<Spanned<i64>>,
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl TotpStore {
    /// Parses the enrollment file text, decrypting every seed with `key`. `origin` (the file
    /// name) and the 1-based line are in every error.
    pub fn parse(text: &str, origin: &str, key: &ReversibleKey) -> Result<Self> {
        let err = |offset: usize, reason: String| TotpError::File {
            origin: origin.to_owned(),
            line: line_of(text, offset),
            reason,
        };
        let file: FileDe = toml::from_str(text).map_err(|e| {
            // `message()` has no excerpt of the file, so no secret can leak through it.
            err(
                e.span().map_or(0, |s| s.start),
                e.message().trim_end().to_owned(),
            )
        })?;
        let mut store = Self::default();
        for u in file.user {
            let name_at = u.name.span().start;
            let name = u.name.into_inner();
            portcullis_auth::validate_user_name(&name).map_err(|e| err(name_at, e.to_string()))?;
            if let Some(&first) = store.index.get(&name) {
                return Err(err(
                    name_at,
                    format!(
                        "duplicate user name {name:?} (first defined on line {})",
                        store.users[first].line
                    ),
                ));
            }
            let mut options = TotpOptions::default();
            if let Some(a) = &u.algorithm {
                options.algorithm = Algorithm::parse(a.get_ref()).ok_or_else(|| {
                    err(
                        a.span().start,
                        "`algorithm` must be SHA1, SHA256 or SHA512".to_owned(),
                    )
                })?;
            }
            if let Some(d) = &u.digits {
                options.digits = u32::try_from(*d.get_ref()).unwrap_or(0);
                if options.digits != 6 && options.digits != 8 {
                    return Err(err(d.span().start, "`digits` must be 6 or 8".to_owned()));
                }
            }
            if let Some(p) = &u.period {
                options.period = u32::try_from(*p.get_ref()).unwrap_or(0);
                if options.validate().is_err() {
                    return Err(err(
                        p.span().start,
                        format!("`period` must be 1..={MAX_PERIOD} seconds"),
                    ));
                }
            }
            let secret_at = u.secret.span().start;
            let seed = reversible::decrypt(key, &name, u.secret.get_ref())
                .map_err(|e| err(secret_at, format!("`secret`: {e}")))?;
            validate_seed(&seed).map_err(|e| err(secret_at, format!("`secret`: {e}")))?;
            store.index.insert(name.clone(), store.users.len());
            store.users.push(TotpUser {
                name,
                line: line_of(text, name_at),
                seed,
                options,
            });
        }
        Ok(store)
    }

    /// Looks a user up by exact name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&TotpUser> {
        self.index.get(name).and_then(|&i| self.users.get(i))
    }

    /// Number of enrolled users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether nobody is enrolled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users in file order.
    pub fn iter(&self) -> impl Iterator<Item = &TotpUser> {
        self.users.iter()
    }
}

// ---------------------------------------------------------------------------------------------
// Editing the file text (`portcullis users totp`)

/// What [`list`] reports about an enrollment: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TotpSummary {
    /// The user name.
    pub name: String,
    /// 1-based line of the `[[user]]` header.
    pub line: usize,
    /// The parameters; `None` when the file holds values this module would refuse at load.
    pub options: Option<TotpOptions>,
}

fn syntax(text: &str, e: &toml_edit::TomlError) -> TotpError {
    TotpError::Syntax {
        line: line_of(text, e.span().map_or(0, |s| s.start)),
        reason: e.message().trim_end().to_owned(),
    }
}

fn parse_doc(text: &str) -> Result<DocumentMut> {
    let doc: DocumentMut = text.parse().map_err(|e| syntax(text, &e))?;
    match doc.get("user") {
        None | Some(Item::ArrayOfTables(_)) => Ok(doc),
        Some(_) => Err(TotpError::Syntax {
            line: 1,
            reason: "`user` must be an array of tables ([[user]])".to_owned(),
        }),
    }
}

fn users_mut(doc: &mut DocumentMut) -> Option<&mut ArrayOfTables> {
    doc.get_mut("user").and_then(Item::as_array_of_tables_mut)
}

fn table_name(t: &Table) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

/// Appends a `[[user]]` enrollment for `user` with `seed` encrypted under `key` (with `nonce`,
/// 12 fresh random bytes). Fails if the name is enrolled already (ignoring case). Empty text
/// gets [`NEW_FILE_HEADER`] first. Comments and other entries are kept as they are.
pub fn enroll(
    text: &str,
    user: &str,
    seed: &[u8],
    opts: &TotpOptions,
    key: &ReversibleKey,
    nonce: [u8; 12],
) -> Result<String> {
    portcullis_auth::validate_user_name(user)
        .map_err(|source| TotpError::InvalidUserName { source })?;
    opts.validate()?;
    validate_seed(seed)?;
    let source = if text.trim().is_empty() {
        NEW_FILE_HEADER
    } else {
        text
    };
    let mut doc = parse_doc(source)?;
    let lower = user.to_lowercase();
    if let Some(existing) = users_mut(&mut doc).and_then(|users| {
        users
            .iter()
            .filter_map(table_name)
            .find(|n| n.to_lowercase() == lower)
            .map(str::to_owned)
    }) {
        return Err(TotpError::AlreadyEnrolled { name: existing });
    }

    let mut t = Table::new();
    t.insert("name", toml_edit::value(user));
    t.insert(
        "secret",
        toml_edit::value(reversible::encrypt(key, user, seed, nonce)),
    );
    t.insert("algorithm", toml_edit::value(opts.algorithm.name()));
    t.insert("digits", toml_edit::value(i64::from(opts.digits)));
    t.insert("period", toml_edit::value(i64::from(opts.period)));

    // Comments after the last entry are the document's trailing decor, which would print after
    // the new entry: move them in front of it.
    let mut trailing = doc.trailing().as_str().unwrap_or("").to_owned();
    doc.set_trailing("");
    // They belong to the file, not to the new entry: a blank line keeps them apart (and keeps
    // them when the entry is removed again).
    if !trailing.trim().is_empty() && !trailing.ends_with("\n\n") {
        if !trailing.ends_with('\n') {
            trailing.push('\n');
        }
        trailing.push('\n');
    }
    let prefix = if doc.iter().next().is_some() {
        format!("\n{trailing}")
    } else {
        trailing
    };
    t.decor_mut().set_prefix(prefix);
    if doc.get("user").is_none() {
        doc.insert("user", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    if let Some(users) = users_mut(&mut doc) {
        users.push(t);
    }
    Ok(doc.to_string())
}

/// Removes `user`'s enrollment. Comment lines directly above its `[[user]]` header go with it;
/// comments separated from it by a blank line (such as the file header) stay.
pub fn remove(text: &str, user: &str) -> Result<String> {
    let mut doc = parse_doc(text)?;
    let not_found = || TotpError::NotEnrolled {
        name: user.to_owned(),
    };
    let users = users_mut(&mut doc).ok_or_else(not_found)?;
    let index = users
        .iter()
        .position(|t| table_name(t) == Some(user))
        .ok_or_else(not_found)?;
    let prefix = users
        .get(index)
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_owned();
    let kept = detached_comments(&prefix);
    users.remove(index);
    if !kept.is_empty() {
        if let Some(next) = users.get_mut(index) {
            let next_prefix = next
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .unwrap_or("")
                .to_owned();
            let next_prefix = next_prefix.trim_start_matches(['\n', '\r', ' ', '\t']);
            next.decor_mut().set_prefix(format!("{kept}{next_prefix}"));
        } else {
            let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
            doc.set_trailing(format!("{kept}{trailing}"));
        }
    }
    if users_mut(&mut doc).is_some_and(|u| u.is_empty()) {
        doc.remove("user");
    }
    Ok(doc.to_string())
}

/// The part of a header's leading decor up to and including its last blank line.
fn detached_comments(prefix: &str) -> String {
    let mut end = 0;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() && line.ends_with('\n') {
            end = offset;
        }
    }
    let kept = &prefix[..end];
    if kept.trim().is_empty() {
        String::new()
    } else {
        kept.to_owned()
    }
}

/// Lists the enrollments without secrets. Entries without a string `name` are skipped.
pub fn list(text: &str) -> Result<Vec<TotpSummary>> {
    parse_doc(text)?;
    // `ImDocument` keeps the spans that `DocumentMut` drops.
    let doc = ImDocument::parse(text).map_err(|e| syntax(text, &e))?;
    let Some(users) = doc.get("user").and_then(Item::as_array_of_tables) else {
        return Ok(Vec::new());
    };
    Ok(users
        .iter()
        .filter_map(|t| {
            let name = table_name(t)?.to_owned();
            let line = t.span().map_or(0, |s| line_of(text, s.start));
            let int = |key: &str, default: u32| match t.get(key) {
                None => Some(default),
                Some(item) => item.as_integer().and_then(|i| u32::try_from(i).ok()),
            };
            let algorithm = match t.get("algorithm") {
                None => Some(Algorithm::Sha1),
                Some(item) => item.as_str().and_then(Algorithm::parse),
            };
            let options = match (algorithm, int("digits", 6), int("period", 30)) {
                (Some(algorithm), Some(digits), Some(period)) => Some(TotpOptions {
                    algorithm,
                    digits,
                    period,
                })
                .filter(|o| o.validate().is_ok()),
                _ => None,
            };
            Some(TotpSummary {
                name,
                line,
                options,
            })
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Time

/// A source of unix time in seconds, injectable so tests use a simulated clock.
pub trait Clock: Send + Sync {
    /// Seconds since the unix epoch.
    fn unix_now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn unix_now(&self) -> u64 {
        self()
    }
}

/// A clock that only moves when told to (for tests and stand-ins).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `unix_time`.
    #[must_use]
    pub fn new(unix_time: u64) -> Self {
        Self(AtomicU64::new(unix_time))
    }

    /// Sets the time.
    pub fn set(&self, unix_time: u64) {
        self.0.store(unix_time, Ordering::SeqCst);
    }

    /// Moves the time forward by whole seconds (sub-second parts are dropped).
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// The provider

/// What the provider remembers about a user between codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UserState {
    last_step: u64,
    period: u32,
    offset: i8,
    accepted: u64,
}

/// A user's clock drift as seen by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drift {
    /// The step of the last accepted code.
    pub last_step: u64,
    /// Its offset from the server's step when it was accepted: 0 (on time) or -1 (one step
    /// late, the phone's clock is slow or the user was slow to type).
    pub offset: i8,
    /// Codes accepted since the provider started (or since the user was re-added).
    pub accepted: u64,
}

/// The local TOTP provider. One instance is shared by all shards.
pub struct TotpProvider {
    name: String,
    store: RwLock<Arc<TotpStore>>,
    state: Mutex<HashMap<String, UserState>>,
    clock: Arc<dyn Clock>,
    /// Where accepted steps are also appended, so replay protection survives a restart.
    replay_log: Mutex<Option<std::fs::File>>,
}

impl fmt::Debug for TotpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpProvider")
            .field("name", &self.name)
            .field("enrolled", &self.store().len())
            .finish_non_exhaustive()
    }
}

impl TotpProvider {
    /// A provider named `name` (for logs) over a parsed store, reading time from `clock`.
    #[must_use]
    pub fn new(name: impl Into<String>, store: TotpStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            name: name.into(),
            store: RwLock::new(Arc::new(store)),
            state: Mutex::new(HashMap::new()),
            clock,
            replay_log: Mutex::new(None),
        }
    }

    /// Keeps the replay state (the last accepted step of each user) in `path` as well: what the
    /// file holds is loaded now, so a code accepted before a restart is still refused after
    /// it, and every accepted code is appended (one short line, no fsync: a crash of the
    /// process loses nothing, a power cut at most the last moments). The file is compacted to
    /// one line per user here. Lines are `PERIOD STEP NAME`; unreadable ones are skipped.
    ///
    /// # Errors
    /// When the file exists but cannot be read, or cannot be rewritten or opened for appending.
    pub fn with_replay_file(self, path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut loaded: HashMap<String, UserState> = HashMap::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(period), Some(step), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(period), Ok(step)) = (period.parse::<u32>(), step.parse::<u64>()) else {
                continue;
            };
            let e = loaded.entry(name.to_owned()).or_insert(UserState {
                last_step: step,
                period,
                offset: 0,
                accepted: 0,
            });
            if e.period != period || step >= e.last_step {
                e.last_step = step;
                e.period = period;
            }
        }
        let mut compact = String::new();
        for (name, st) in &loaded {
            compact.push_str(&format!("{} {} {name}\n", st.period, st.last_step));
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, compact)?;
        std::fs::rename(&tmp, path)?;
        let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
        file.flush()?;
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, st) in loaded {
                state.entry(name).or_insert(st);
            }
        }
        *self
            .replay_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(self)
    }

    /// Appends an accepted step to the replay file, if there is one.
    fn persist(&self, user: &str, period: u32, step: u64) {
        use std::io::Write;
        if user.contains('\n') {
            return;
        }
        let mut log = self
            .replay_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = log.as_mut() {
            if let Err(e) = f.write_all(format!("{period} {step} {user}\n").as_bytes()) {
                tracing::warn!(provider = %self.name, error = %e, "cannot record a used TOTP step; replay protection across restarts is weakened");
            }
        }
    }

    /// A provider reading the system clock.
    #[must_use]
    pub fn with_system_clock(name: impl Into<String>, store: TotpStore) -> Self {
        Self::new(name, store, Arc::new(SystemClock))
    }

    fn store(&self) -> Arc<TotpStore> {
        Arc::clone(&self.store.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Swaps in a reloaded store. Replay and drift state is kept for users still enrolled with
    /// the same period, and dropped for the others.
    pub fn replace_store(&self, store: TotpStore) {
        let store = Arc::new(store);
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&store);
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, st| {
                store
                    .get(name)
                    .is_some_and(|u| u.options.period == st.period)
            });
    }

    /// Whether `user` is enrolled.
    #[must_use]
    pub fn is_enrolled(&self, user: &str) -> bool {
        self.store().get(user).is_some()
    }

    /// The drift seen for `user`, if a code of theirs was accepted.
    #[must_use]
    pub fn drift(&self, user: &str) -> Option<Drift> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .map(|st| Drift {
                last_step: st.last_step,
                offset: st.offset,
                accepted: st.accepted,
            })
    }

    /// Checks `code` for `user` now: Allow, Deny(WrongCode), Deny(Replayed), or
    /// Deny(Other) for a user who is not enrolled.
    pub fn verify_code(&self, user: &str, code: &str) -> Verdict {
        let store = self.store();
        let Some(entry) = store.get(user) else {
            return Verdict::Deny(DenyReason::Other(
                "user is not enrolled for local TOTP".to_owned(),
            ));
        };
        let opts = entry.options;
        let code = code.trim();
        if code.len() != opts.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Verdict::Deny(DenyReason::WrongCode);
        }
        let now = opts.step_of(self.clock.unix_now());
        // Current step first, then one step of delay. Both are always computed and compared.
        let mut matched = [None, None];
        for (slot, (offset, step)) in matched
            .iter_mut()
            .zip([(0i8, Some(now)), (-1, now.checked_sub(1))])
        {
            if let Some(step) = step {
                let expected = code_for_step(&entry.seed, step, &opts);
                if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                    *slot = Some((offset, step));
                }
            }
        }
        if matched.iter().all(Option::is_none) {
            return Verdict::Deny(DenyReason::WrongCode);
        }
        // The critical section: compare with and update the last accepted step.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let last = state
            .get(user)
            .filter(|st| st.period == opts.period)
            .map(|st| st.last_step);
        let fresh = matched
            .into_iter()
            .flatten()
            .find(|&(_, step)| last.is_none_or(|last| step > last));
        match fresh {
            Some((offset, step)) => {
                let accepted = state.get(user).map_or(0, |st| st.accepted) + 1;
                state.insert(
                    user.to_owned(),
                    UserState {
                        last_step: step,
                        period: opts.period,
                        offset,
                        accepted,
                    },
                );
                drop(state);
                self.persist(user, opts.period, step);
                tracing::debug!(provider = %self.name, user = ?user, offset, "TOTP code accepted");
                Verdict::Allow
            }
            None => {
                drop(state);
                tracing::debug!(provider = %self.name, user = ?user, "TOTP code replayed");
                Verdict::Deny(DenyReason::Replayed)
            }
        }
    }
}

#[async_trait::async_trait]
impl MfaProvider for TotpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
        Ok(match (self.is_enrolled(&req.user), factor) {
            (false, _) => Begin::NotEnrolled,
            (true, Factor::Otp) => Begin::Challenge {
                prompt: PROMPT.to_owned(),
                state: ProviderState::default(),
            },
            (true, Factor::Push) => Begin::FactorUnavailable,
        })
    }

    async fn verify_otp(
        &self,
        req: &MfaRequest,
        _state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError> {
        Ok(self.verify_code(&req.user, code))
    }

    async fn poll_push(
        &self,
        _req: &MfaRequest,
        _state: &ProviderState,
    ) -> Result<PushStatus, MfaError> {
        Ok(PushStatus::Answered(Verdict::Deny(DenyReason::Other(
            "push not supported by local TOTP".to_owned(),
        ))))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::battery::{run_otp_battery, run_push_battery, BatteryEnv};

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn key() -> ReversibleKey {
        ReversibleKey::from_bytes([0x5a; 32])
    }

    fn opts(algorithm: Algorithm, digits: u32) -> TotpOptions {
        TotpOptions {
            algorithm,
            digits,
            period: 30,
        }
    }

    fn req(user: &str) -> MfaRequest {
        MfaRequest {
            user: user.to_owned(),
            nas_ip: None,
            client: "vpn".into(),
            calling_station: None,
            context_id: "ctx-1".to_owned(),
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(SEED20, counter as u64, Algorithm::Sha1, 6), want);
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in table {
            assert_eq!(*code_at(SEED20, t, &opts(Algorithm::Sha1, 8)), sha1, "{t}");
            assert_eq!(
                *code_at(SEED32, t, &opts(Algorithm::Sha256, 8)),
                sha256,
                "{t}"
            );
            assert_eq!(
                *code_at(SEED64, t, &opts(Algorithm::Sha512, 8)),
                sha512,
                "{t}"
            );
        }
        // Six digits are the low six of the eight (leading zero kept).
        assert_eq!(
            *code_at(SEED20, 1_111_111_109, &opts(Algorithm::Sha1, 6)),
            "081804"
        );
    }

    #[test]
    fn base32_round_trip_and_vectors() {
        // RFC 4648 §10 (without padding).
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(*base32_encode(plain.as_bytes()), enc);
            assert_eq!(base32_decode(enc).unwrap().as_slice(), plain.as_bytes());
        }
        assert_eq!(
            base32_decode("mzxw 6ytb oi======").unwrap().as_slice(),
            b"foobar"
        );
        assert_eq!(
            base32_decode("JBSWY3DPEHPK3PXP").unwrap().as_slice(),
            b"Hello!\xde\xad\xbe\xef"
        );
        for bad in ["M", "MZX", "MZXW6Y", "MZ1Q", "MZ!Q", "MZ=Q"] {
            assert!(
                matches!(base32_decode(bad), Err(TotpError::InvalidSeed { .. })),
                "{bad}"
            );
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base32_decode(&base32_encode(&all)).unwrap().as_slice(), all);
    }

    #[test]
    fn otpauth_uri_format() {
        let seed = base32_decode("JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(
            *otpauth_uri("Portcullis", "alice", &seed, &TotpOptions::default()),
            "otpauth://totp/Portcullis:alice?secret=JBSWY3DPEHPK3PXP&issuer=Portcullis\
             &algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri(
            "ACME VPN",
            "bob@example.com",
            &seed,
            &opts(Algorithm::Sha512, 8),
        );
        assert_eq!(
            *uri,
            "otpauth://totp/ACME%20VPN:bob%40example.com?secret=JBSWY3DPEHPK3PXP\
             &issuer=ACME%20VPN&algorithm=SHA512&digits=8&period=30"
        );
    }

    /// Reads the module matrix back from a rendering and compares it with the encoder's.
    #[test]
    fn qr_rendering_matches_the_modules() {
        let data = "otpauth://totp/Portcullis:bob?secret=JBSWY3DPEHPK3PXP&issuer=Portcullis";
        let code = qrcode::QrCode::new(data).unwrap();
        let width = code.width();
        let colors = code.to_colors();
        let size = width + 2 * QR_QUIET_ZONE;
        for bg in [TerminalBackground::Dark, TerminalBackground::Light] {
            let text = render_qr(data, bg).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), size.div_ceil(2));
            for (row, line) in lines.iter().enumerate() {
                let chars: Vec<char> = line.chars().collect();
                assert_eq!(chars.len(), size);
                for (x, c) in chars.into_iter().enumerate() {
                    let (top, bottom) = match c {
                        '█' => (true, true),
                        '▀' => (true, false),
                        '▄' => (false, true),
                        ' ' => (false, false),
                        other => panic!("unexpected {other:?}"),
                    };
                    for (y, drawn) in [(2 * row, top), (2 * row + 1, bottom)] {
                        if y >= size {
                            assert!(!drawn, "padding row must be blank");
                            continue;
                        }
                        let inside = |v: usize| (QR_QUIET_ZONE..QR_QUIET_ZONE + width).contains(&v);
                        let dark = inside(x)
                            && inside(y)
                            && colors[(y - QR_QUIET_ZONE) * width + x - QR_QUIET_ZONE]
                                == qrcode::Color::Dark;
                        let want = match bg {
                            TerminalBackground::Dark => !dark,
                            TerminalBackground::Light => dark,
                        };
                        assert_eq!(drawn, want, "module ({x}, {y}) with {bg:?}");
                    }
                }
            }
        }
        let too_long = "x".repeat(8000);
        assert!(matches!(
            render_qr(&too_long, TerminalBackground::Dark),
            Err(TotpError::Qr { .. })
        ));
    }

    const BASE: &str = "# Portcullis TOTP enrollments. Managed with `portcullis users totp`.\n\
                        # Keep this file mode 0600.\n\
                        \n";

    fn enrolled(users: &[(&str, &[u8], TotpOptions)]) -> String {
        let mut text = BASE.to_owned();
        for (i, (name, seed, o)) in users.iter().enumerate() {
            text = enroll(&text, name, seed, o, &key(), [i as u8; 12]).unwrap();
        }
        text
    }

    #[test]
    fn enroll_parse_list_remove() {
        let text = enrolled(&[
            ("alice", SEED20, TotpOptions::default()),
            ("bob", SEED32, opts(Algorithm::Sha256, 8)),
        ]);
        assert!(text.starts_with(BASE), "{text}");
        assert!(!text.contains("1234567890"), "seed in clear: {text}");
        assert!(text.contains("algorithm = \"SHA256\""));
        let store = TotpStore::parse(&text, "totp.toml", &key()).unwrap();
        assert_eq!(store.len(), 2);
        let bob = store.get("bob").unwrap();
        assert_eq!(bob.options(), &opts(Algorithm::Sha256, 8));
        assert_eq!(bob.line(), 12);
        assert_eq!(*bob.code_at(59), "46119246");
        assert!(store.get("Bob").is_none());
        let dbg = format!("{store:?}");
        assert!(
            dbg.contains("<redacted>") && !dbg.contains("49, 50"),
            "{dbg}"
        );

        let listed = list(&text).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].name, "alice");
        assert_eq!(listed[0].line, 4);
        assert_eq!(listed[0].options, Some(TotpOptions::default()));
        assert_eq!(listed[1].options, Some(opts(Algorithm::Sha256, 8)));

        assert!(matches!(
            enroll(&text, "ALICE", SEED20, &TotpOptions::default(), &key(), [9; 12]),
            Err(TotpError::AlreadyEnrolled { ref name }) if name == "alice"
        ));
        assert!(matches!(
            enroll(&text, "", SEED20, &TotpOptions::default(), &key(), [9; 12]),
            Err(TotpError::InvalidUserName { .. })
        ));
        assert!(matches!(
            enroll(
                &text,
                "c",
                b"short",
                &TotpOptions::default(),
                &key(),
                [9; 12]
            ),
            Err(TotpError::InvalidSeed { .. })
        ));
        assert!(matches!(
            enroll(
                &text,
                "c",
                SEED20,
                &opts(Algorithm::Sha1, 7),
                &key(),
                [9; 12]
            ),
            Err(TotpError::InvalidOptions { .. })
        ));

        let without_alice = remove(&text, "alice").unwrap();
        assert!(without_alice.starts_with(BASE), "{without_alice}");
        let store = TotpStore::parse(&without_alice, "totp.toml", &key()).unwrap();
        assert!(store.get("alice").is_none() && store.get("bob").is_some());
        let empty = remove(&without_alice, "bob").unwrap();
        assert_eq!(empty, BASE);
        assert!(TotpStore::parse(&empty, "totp.toml", &key())
            .unwrap()
            .is_empty());
        assert!(matches!(
            remove(&empty, "bob"),
            Err(TotpError::NotEnrolled { .. })
        ));
        // From empty text, the header comes first.
        let fresh = enroll(
            "",
            "carol",
            SEED20,
            &TotpOptions::default(),
            &key(),
            [1; 12],
        )
        .unwrap();
        assert!(fresh.starts_with(NEW_FILE_HEADER));
        assert_eq!(list(&fresh).unwrap()[0].line, 3);
        assert_eq!(
            remove(&fresh, "carol").unwrap(),
            format!("{NEW_FILE_HEADER}\n")
        );
    }

    #[test]
    fn enroll_keeps_comments() {
        let text = "# header\n\n# carol's phone\n[[user]]\nname = \"carol\" # ours\n\
                    secret = \"x\"\n\n# trailing note\n";
        let out = enroll(
            text,
            "dave",
            SEED20,
            &TotpOptions::default(),
            &key(),
            [2; 12],
        )
        .unwrap();
        assert!(out.starts_with("# header\n\n# carol's phone\n[[user]]\nname = \"carol\" # ours\n"));
        let note = out.find("# trailing note").unwrap();
        assert!(note < out.find("name = \"dave\"").unwrap(), "{out}");
        let back = remove(&out, "dave").unwrap();
        assert!(
            back.contains("# trailing note") && back.contains("# ours"),
            "{back}"
        );
        let no_carol = remove(&out, "carol").unwrap();
        assert!(!no_carol.contains("carol's phone") && no_carol.starts_with("# header\n"));
    }

    fn parse_err(text: &str) -> (usize, String) {
        match TotpStore::parse(text, "totp.toml", &key()).unwrap_err() {
            TotpError::File {
                origin,
                line,
                reason,
            } => {
                assert_eq!(origin, "totp.toml");
                (line, reason)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_line() {
        let alice = reversible::encrypt(&key(), "alice", SEED20, [3; 12]);
        let ok = format!("[[user]]\nname = \"alice\"\nsecret = \"{alice}\"\n");
        assert_eq!(TotpStore::parse(&ok, "t", &key()).unwrap().len(), 1);

        let (line, reason) = parse_err(&format!(
            "{ok}\n[[user]]\nname = \"alice\"\nsecret = \"{alice}\"\n"
        ));
        assert_eq!(line, 6);
        assert!(reason.contains("duplicate"), "{reason}");
        let (line, reason) = parse_err(&format!("{ok}digits = 7\n"));
        assert_eq!((line, reason.contains("digits")), (4, true));
        let (line, _) = parse_err(&format!("{ok}period = 0\n"));
        assert_eq!(line, 4);
        let (line, reason) = parse_err(&format!("{ok}algorithm = \"MD5\"\n"));
        assert_eq!((line, reason.contains("algorithm")), (4, true));
        let (line, reason) = parse_err(&format!("{ok}colour = 1\n"));
        assert_eq!(line, 4);
        assert!(reason.contains("colour"), "{reason}");
        // The seed of another user does not decrypt: the name is bound to it.
        let (line, reason) =
            parse_err(&format!("[[user]]\nname = \"bob\"\nsecret = \"{alice}\"\n"));
        assert_eq!(line, 3);
        assert!(!reason.contains(&alice[5..20]), "{reason}");
        let (line, _) = parse_err("[[user]]\nname = \"bob\"\n");
        assert!(line <= 2);
        let (line, _) = parse_err("[[user]]\nname = \"bob\"\nsecret = \n");
        assert_eq!(line, 3);
        // A wrong key is refused.
        assert!(TotpStore::parse(&ok, "t", &ReversibleKey::from_bytes([1; 32])).is_err());
    }

    fn provider(clock: Arc<ManualClock>, users: &[(&str, &[u8], TotpOptions)]) -> TotpProvider {
        let text = enrolled(users);
        TotpProvider::new(
            "local-totp",
            TotpStore::parse(&text, "totp.toml", &key()).unwrap(),
            clock,
        )
    }

    #[test]
    fn replay_state_survives_a_restart_through_the_replay_file() {
        let dir = std::env::temp_dir().join(format!("totp-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("used");
        let _ = std::fs::remove_file(&file);
        let t0 = 1_700_000_010;
        let clock = Arc::new(ManualClock::new(t0));
        let o = TotpOptions::default();
        let at = |t: u64| code_at(SEED20, t, &o).to_string();
        let users = [("alice", SEED20, o), ("bob", SEED20, o)];

        let first = provider(clock.clone(), &users)
            .with_replay_file(&file)
            .unwrap();
        assert_eq!(first.verify_code("alice", &at(t0)), Verdict::Allow);
        clock.advance(Duration::from_secs(30));
        assert_eq!(first.verify_code("alice", &at(t0 + 30)), Verdict::Allow);
        drop(first);

        // "Restarted": the same code, and the one before, are replays; bob is unaffected.
        let second = provider(clock.clone(), &users)
            .with_replay_file(&file)
            .unwrap();
        assert_eq!(
            second.verify_code("alice", &at(t0 + 30)),
            Verdict::Deny(DenyReason::Replayed)
        );
        assert_eq!(second.verify_code("bob", &at(t0 + 30)), Verdict::Allow);
        // Compacted to one line per user (bob's line appended after).
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.ends_with(" alice")).count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.ends_with(" bob")).count(),
            1,
            "{text}"
        );
        // Without the file, the restart would have let the code in again.
        let forgetful = provider(clock.clone(), &users);
        assert_eq!(forgetful.verify_code("alice", &at(t0 + 30)), Verdict::Allow);
        // The next step works after the restart.
        clock.advance(Duration::from_secs(30));
        assert_eq!(second.verify_code("alice", &at(t0 + 60)), Verdict::Allow);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn begin_and_wait_push() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let p = provider(clock, &[("alice", SEED20, TotpOptions::default())]);
        assert_eq!(
            p.begin(&req("alice"), Factor::Otp).await.unwrap(),
            Begin::Challenge {
                prompt: PROMPT.to_owned(),
                state: ProviderState::default()
            }
        );
        assert_eq!(
            p.begin(&req("alice"), Factor::Push).await.unwrap(),
            Begin::FactorUnavailable
        );
        for f in [Factor::Otp, Factor::Push] {
            assert_eq!(
                p.begin(&req("mallory"), f).await.unwrap(),
                Begin::NotEnrolled
            );
        }
        assert_eq!(
            p.wait_push(
                &req("alice"),
                &ProviderState::default(),
                Duration::from_secs(1)
            )
            .await
            .unwrap(),
            Verdict::Deny(DenyReason::Other(
                "push not supported by local TOTP".to_owned()
            ))
        );
        let dbg = format!("{p:?}");
        assert!(dbg.contains("local-totp"), "{dbg}");
    }

    #[test]
    fn window_replay_and_drift() {
        let t0 = 1_700_000_010; // inside a step
        let clock = Arc::new(ManualClock::new(t0));
        let o = TotpOptions::default();
        let p = provider(clock.clone(), &[("alice", SEED20, o)]);
        let at = |t: u64| code_at(SEED20, t, &o).to_string();

        // Current step: accepted, offset 0.
        assert_eq!(p.verify_code("alice", &at(t0)), Verdict::Allow);
        assert_eq!(p.drift("alice").unwrap().offset, 0);
        // The same code again: replayed.
        assert_eq!(
            p.verify_code("alice", &at(t0)),
            Verdict::Deny(DenyReason::Replayed)
        );
        // Next step: the previous step's code is refused as replayed, not accepted.
        clock.advance(Duration::from_secs(30));
        let now = clock.unix_now();
        assert_eq!(
            p.verify_code("alice", &at(t0)),
            Verdict::Deny(DenyReason::Replayed)
        );
        assert_eq!(p.verify_code("alice", &at(now)), Verdict::Allow);
        // A code one step late (previous step) is accepted when that step is fresh.
        clock.advance(Duration::from_secs(60));
        let now2 = clock.unix_now();
        assert_eq!(p.verify_code("alice", &at(now2 - 30)), Verdict::Allow);
        let d = p.drift("alice").unwrap();
        assert_eq!((d.offset, d.accepted), (-1, 3));
        assert_eq!(d.last_step, o.step_of(now2) - 1);
        // Then the current one is fine too (a later step).
        assert_eq!(p.verify_code("alice", &at(now2)), Verdict::Allow);
        // Two steps late and one step ahead are refused as wrong.
        assert_eq!(
            p.verify_code("alice", &at(now2 - 60)),
            Verdict::Deny(DenyReason::WrongCode)
        );
        assert_eq!(
            p.verify_code("alice", &at(now2 + 30)),
            Verdict::Deny(DenyReason::WrongCode)
        );
        // Malformed codes are wrong codes, never errors.
        for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"] {
            assert_eq!(
                p.verify_code("alice", bad),
                Verdict::Deny(DenyReason::WrongCode),
                "{bad}"
            );
        }
        // Surrounding whitespace is tolerated.
        clock.advance(Duration::from_secs(30));
        let c = format!(" {}\n", at(clock.unix_now()));
        assert_eq!(p.verify_code("alice", &c), Verdict::Allow);
        // Unknown users.
        assert!(matches!(
            p.verify_code("nobody", "123456"),
            Verdict::Deny(DenyReason::Other(_))
        ));
        assert!(p.drift("nobody").is_none());
    }

    #[test]
    fn replay_state_survives_reload_of_remaining_users() {
        let t = 1_700_000_000;
        let clock = Arc::new(ManualClock::new(t));
        let o = TotpOptions::default();
        let p = provider(clock.clone(), &[("alice", SEED20, o), ("carol", SEED20, o)]);
        let code = code_at(SEED20, t, &o);
        assert_eq!(p.verify_code("alice", &code), Verdict::Allow);
        assert_eq!(p.verify_code("carol", &code), Verdict::Allow);
        // Reload: alice stays, carol goes.
        let text = enrolled(&[("alice", SEED20, o)]);
        p.replace_store(TotpStore::parse(&text, "totp.toml", &key()).unwrap());
        assert_eq!(
            p.verify_code("alice", &code),
            Verdict::Deny(DenyReason::Replayed)
        );
        assert!(p.drift("carol").is_none());
        assert!(!p.is_enrolled("carol"));
        // A changed period drops the state (steps are in other units).
        let text = enrolled(&[("alice", SEED20, TotpOptions { period: 60, ..o })]);
        p.replace_store(TotpStore::parse(&text, "totp.toml", &key()).unwrap());
        assert!(p.drift("alice").is_none());
    }

    #[test]
    fn concurrent_use_of_one_code_allows_once() {
        let t = 1_700_000_000;
        let clock = Arc::new(ManualClock::new(t));
        let o = TotpOptions::default();
        let p = Arc::new(provider(clock, &[("alice", SEED20, o)]));
        let code = code_at(SEED20, t, &o).to_string();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = Arc::clone(&p);
                let code = code.clone();
                std::thread::spawn(move || p.verify_code("alice", &code))
            })
            .collect();
        let verdicts: Vec<Verdict> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Allow).count(), 1);
        assert!(verdicts
            .iter()
            .all(|v| *v == Verdict::Allow || *v == Verdict::Deny(DenyReason::Replayed)));
    }

    #[test]
    fn closure_clock_and_early_times() {
        let o = TotpOptions::default();
        let text = enrolled(&[("alice", SEED20, o)]);
        let p = TotpProvider::new(
            "t",
            TotpStore::parse(&text, "totp.toml", &key()).unwrap(),
            Arc::new(|| 5u64),
        );
        // Step 0 has no previous step: no underflow.
        assert_eq!(
            p.verify_code("alice", &code_at(SEED20, 5, &o)),
            Verdict::Allow
        );
    }

    /// The embedded default enrols bob with the demo seed; a code computed independently
    /// (Python's hmac module) at a fixed time must verify.
    #[test]
    fn demo_seed_for_bob() {
        let seed = base32_decode("JBSWY3DPEHPK3PXP").unwrap();
        let text = enroll("", "bob", &seed, &TotpOptions::default(), &key(), [4; 12]).unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let p = TotpProvider::new(
            "local-totp",
            TotpStore::parse(&text, "totp.toml", &key()).unwrap(),
            clock.clone(),
        );
        assert_eq!(p.verify_code("bob", "324550"), Verdict::Allow);
        assert_eq!(
            p.verify_code("bob", "324550"),
            Verdict::Deny(DenyReason::Replayed)
        );
        // Previous step's code (1699999970) was never used but is not newer than the last
        // accepted step: refused as replay.
        assert_eq!(
            p.verify_code("bob", "822542"),
            Verdict::Deny(DenyReason::Replayed)
        );
        let store = TotpStore::parse(&text, "totp.toml", &key()).unwrap();
        let uri = store.get("bob").unwrap().otpauth_uri("Portcullis");
        assert_eq!(
            *uri,
            "otpauth://totp/Portcullis:bob?secret=JBSWY3DPEHPK3PXP&issuer=Portcullis\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn generated_seeds_have_the_hash_length() {
        let mut rng = rand::rngs::OsRng;
        for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(generate_seed(&mut rng, a).len(), a.seed_len());
            assert_eq!(Algorithm::parse(&a.name().to_lowercase()), Some(a));
        }
    }

    struct Env {
        clock: Arc<ManualClock>,
    }

    #[async_trait::async_trait]
    impl BatteryEnv for Env {
        fn enrolled_user(&self) -> MfaRequest {
            req("alice")
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("mallory")
        }
        async fn valid_code(&self, user: &MfaRequest) -> Option<String> {
            assert_eq!(user.user, "alice");
            Some(code_at(SEED20, self.clock.unix_now(), &TotpOptions::default()).to_string())
        }
        fn supports_push(&self) -> bool {
            false
        }
        async fn answer_next_push(&self, _user: &MfaRequest, _approve: bool) {
            unreachable!("TOTP has no push")
        }
    }

    #[tokio::test]
    async fn battery() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let p = provider(clock.clone(), &[("alice", SEED20, TotpOptions::default())]);
        let env = Env { clock };
        run_otp_battery(&p, &env).await;
        run_push_battery(&p, &env).await;
        // The same behaviour through the resilience wrapper.
        let wrapped = crate::Resilient::new(
            Arc::new(provider(
                env.clock.clone(),
                &[("alice", SEED20, TotpOptions::default())],
            )),
            crate::ResilienceConfig::default(),
        );
        run_otp_battery(&wrapped, &env).await;
        run_push_battery(&wrapped, &env).await;
    }
}
