//! The local user store: a TOML users file, parsed into [`LocalUsers`], and the text-editing
//! functions behind `portcullis users` (in [`edit`], re-exported here).
//!
//! # File format
//!
//! ```toml
//! # Portcullis local users. Managed with `portcullis users`.
//! [[user]]
//! name = "alice"
//! password = "{SSHA512}…"      # PAP hash (see crate::hash)
//! nt_hash = "…32 hex…"         # MS-CHAPv2, and PAP when there is no `password`
//! chap = "rev1:…"              # optional: reversible (crate::reversible), enables CHAP
//! disabled = false             # optional
//! groups = ["vpn-users"]       # optional, for policies
//! ```
//!
//! | key | required | meaning |
//! | --- | --- | --- |
//! | `name` | yes | user name: non-empty, no control characters, at most 253 bytes, unique |
//! | `password` | one of the three | PAP hash, `{SSHA512}…` or `$pbkdf2-sha256$…` |
//! | `nt_hash` | one of the three | 32 hex digits, MD4(UTF-16LE(password)) |
//! | `chap` | one of the three | `rev1:…`; needs the reversible-encryption key at load time |
//! | `disabled` | no | `true` keeps the entry but the server must refuse it |
//! | `groups` | no | group names for policies |
//!
//! Unknown keys are errors (a misspelt `disabled` must not silently enable an account). When both
//! `nt_hash` and `chap` are present they must hold the same password; when only `chap` is, the NT
//! hash is derived from it at load time so MS-CHAPv2 works.
//!
//! Names are matched case-sensitively unless [`ParseOptions::with_case_insensitive_names`] is
//! used, in which case names are compared after Unicode lower-casing and two names differing only
//! in case are a load error.
//!
//! Verification methods never look at `disabled`: the server checks [`LocalUser::is_disabled`]
//! first, so that it can answer with the right reason (e.g. MS-CHAP error 647).

pub mod edit;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use toml::Spanned;
use zeroize::Zeroize;

pub use edit::{
    add_user, list_users, remove_user, set_attribute, set_disabled, set_groups, set_password,
    PasswordOptions, UserOptions, UserSummary, NEW_FILE_HEADER,
};

use crate::chap;
use crate::error::{validate_group_name, validate_user_name, Error, Result};
use crate::hash::PasswordHash;
use crate::mschapv2::{self, MsChapV2Success};
use crate::nt::nt_hash;
use crate::reversible::{self, ReversibleKey};

/// Options for [`LocalUsers::parse_with_options`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ParseOptions {
    case_insensitive_names: bool,
}

impl ParseOptions {
    /// Match user names ignoring case (Unicode lower-casing), as Windows NPS does. Names that
    /// differ only in case become duplicates.
    #[must_use]
    pub fn with_case_insensitive_names(mut self, yes: bool) -> Self {
        self.case_insensitive_names = yes;
        self
    }
}

/// Result of [`LocalUser::verify_chap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ChapOutcome {
    /// The response matches.
    Accept,
    /// The response does not match.
    Reject,
    /// The user has no reversibly encrypted password, so CHAP cannot be checked.
    NotAvailable,
}

/// Where a user's NT hash came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NtSource {
    Stored,
    DerivedFromReversible,
}

/// One user of the local store. Never holds the plain password; `Debug` shows the name and which
/// kinds of credential exist.
pub struct LocalUser {
    name: String,
    line: usize,
    password: Option<PasswordHash>,
    nt_hash: Option<([u8; 16], NtSource)>,
    /// The `rev1:` text and the key to open it, decrypted only while a CHAP or PAP check runs.
    chap: Option<(String, Arc<ReversibleKey>)>,
    disabled: bool,
    groups: Vec<String>,
    /// Free-form directory-style attributes (e.g. `mail`, `upn`), for policies and for the MFA
    /// identity (`[mfa] login_id_attribute`).
    attributes: std::collections::BTreeMap<String, String>,
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        if let Some((hash, _)) = &mut self.nt_hash {
            hash.zeroize();
        }
    }
}

impl LocalUser {
    /// The user name as written in the file.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 1-based line of the user's `name` in the file, for diagnostics.
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the entry is disabled. Verification methods do not check this.
    #[must_use]
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// A free-form attribute of the user (`attributes = { mail = "…" }` in the file).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The user's groups, in file order.
    #[must_use]
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The NT hash, stored or derived from the reversible password, for MS-CHAPv2.
    #[must_use]
    pub fn nt_hash(&self) -> Option<&[u8; 16]> {
        self.nt_hash.as_ref().map(|(h, _)| h)
    }

    /// The stored PAP hash, if any.
    #[must_use]
    pub fn password_hash(&self) -> Option<&PasswordHash> {
        self.password.as_ref()
    }

    /// Whether a reversibly encrypted password is stored (so CHAP is possible).
    #[must_use]
    pub fn has_reversible(&self) -> bool {
        self.chap.is_some()
    }

    /// Checks a PAP password (the decrypted User-Password, without the NUL padding).
    ///
    /// Uses the `password` hash when present; otherwise the NT hash (the password must then be
    /// UTF-8); otherwise the reversible password. Comparisons are constant-time.
    #[must_use]
    pub fn verify_pap(&self, password: &[u8]) -> bool {
        if let Some(hash) = &self.password {
            return hash.verify(password);
        }
        if let Some((stored, _)) = &self.nt_hash {
            let Ok(text) = std::str::from_utf8(password) else {
                return false;
            };
            let mut computed = nt_hash(text);
            let ok = computed.ct_eq(stored).into();
            computed.zeroize();
            return ok;
        }
        match self.reversible_password() {
            Some(plain) => plain.as_slice().ct_eq(password).into(),
            None => false,
        }
    }

    /// Checks a CHAP response (RFC 1994). `challenge` is CHAP-Challenge, or the Request
    /// Authenticator when that attribute is absent.
    pub fn verify_chap(&self, ident: u8, response: &[u8; 16], challenge: &[u8]) -> ChapOutcome {
        if self.chap.is_none() {
            return ChapOutcome::NotAvailable;
        }
        match self.reversible_password() {
            Some(plain) if chap::verify_chap(ident, response, challenge, &plain) => {
                ChapOutcome::Accept
            }
            // A decryption failure cannot happen after a successful load; refuse if it does.
            _ => ChapOutcome::Reject,
        }
    }

    /// Verifies an MS-CHAPv2 response with the user's NT hash (see [`mschapv2::verify`]).
    /// `user_name_as_sent` is the name the peer used (a `DOMAIN\` prefix is stripped).
    /// Returns `None` if the response is wrong or the user has no NT hash.
    #[must_use]
    pub fn verify_mschapv2(
        &self,
        user_name_as_sent: &[u8],
        authenticator_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
    ) -> Option<MsChapV2Success> {
        let nt = self.nt_hash()?;
        mschapv2::verify(
            nt,
            user_name_as_sent,
            authenticator_challenge,
            peer_challenge,
            nt_response,
        )
    }

    fn reversible_password(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let (text, key) = self.chap.as_ref()?;
        reversible::decrypt(key, &self.name, text).ok()
    }
}

impl fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUser")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|h| h.scheme()))
            .field("nt_hash", &self.nt_hash.as_ref().map(|(_, src)| src))
            .field("reversible", &self.chap.is_some())
            .field("disabled", &self.disabled)
            .field("groups", &self.groups)
            .finish()
    }
}

/// The loaded users file.
#[derive(Debug)]
pub struct LocalUsers {
    users: Vec<LocalUser>,
    /// Name (lower-cased when case-insensitive) to position in `users`. Hashed with foldhash
    /// (randomly seeded), not SipHash: every Access-Request looks a name up, and the keys come
    /// from the admin's file, not the network, so there is no hash flooding to resist.
    /// Keyed by the name's octets, so that a name off the wire is looked up as it is
    /// ([`get_bytes`](LocalUsers::get_bytes)).
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    case_insensitive: bool,
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
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    nt_hash: Option<Spanned<String>>,
    #[serde(default)]
    chap: Option<Spanned<String>>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// 1-based line number of byte `offset` in `text`.
/// 1-based line numbers for increasing offsets, in one pass over the text.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    /// The line of `offset`; falls back to counting from the start for an earlier offset.
    fn line_of(&mut self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        if end < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text[self.offset..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = end;
        self.line
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses a 32-hex-digit NT hash.
pub(crate) fn parse_nt_hash(text: &str) -> Option<[u8; 16]> {
    let mut out = [0; 16];
    (text.len() == 32 && hex::decode_to_slice(text, &mut out).is_ok()).then_some(out)
}

impl LocalUsers {
    /// Parses the users file text with case-sensitive names. `origin` (the file name) and the
    /// 1-based line are in every error. `key` is needed when any user has `chap`.
    pub fn parse(text: &str, origin: &str, key: Option<&ReversibleKey>) -> Result<Self> {
        Self::parse_with_options(text, origin, key, &ParseOptions::default())
    }

    /// [`LocalUsers::parse`] with options.
    pub fn parse_with_options(
        text: &str,
        origin: &str,
        key: Option<&ReversibleKey>,
        options: &ParseOptions,
    ) -> Result<Self> {
        let err = |offset: usize, reason: String| Error::UsersFile {
            origin: origin.to_owned(),
            line: line_of(text, offset),
            reason,
        };
        let file: FileDe = toml::from_str(text).map_err(|e| {
            // `message()` has no excerpt of the file, so no secret can leak through it.
            let offset = e.span().map_or(0, |s| s.start);
            err(offset, e.message().trim_end().to_owned())
        })?;

        let key = key.map(|k| Arc::new(k.clone()));
        let mut users = Vec::with_capacity(file.user.len());
        // Entries come in file order: count newlines once, not from the start for each user
        // (which made a million-user file take hours).
        let mut lines = LineCounter::new(text);
        let mut index = HashMap::with_capacity_and_hasher(file.user.len(), Default::default());
        for u in file.user {
            let name_at = u.name.span().start;
            let name = u.name.into_inner();
            validate_user_name(&name).map_err(|e| err(name_at, e.to_string()))?;
            let lookup = if options.case_insensitive_names {
                name.to_lowercase()
            } else {
                name.clone()
            };
            if let Some(&first) = index.get(lookup.as_bytes()) {
                let first: &LocalUser = &users[first];
                return Err(err(
                    name_at,
                    format!(
                        "duplicate user name {name:?} (first defined on line {})",
                        first.line
                    ),
                ));
            }

            let password = match &u.password {
                Some(p) => Some(
                    PasswordHash::parse(p.get_ref())
                        .map_err(|e| err(p.span().start, format!("`password`: {e}")))?,
                ),
                None => None,
            };
            let mut nt = match &u.nt_hash {
                Some(h) => Some((
                    parse_nt_hash(h.get_ref()).ok_or_else(|| {
                        err(h.span().start, "`nt_hash` must be 32 hex digits".to_owned())
                    })?,
                    NtSource::Stored,
                )),
                None => None,
            };
            let chap = match (u.chap, &key) {
                (None, _) => None,
                (Some(c), None) => {
                    return Err(err(
                        c.span().start,
                        "`chap` is set but no reversible-encryption key is configured".to_owned(),
                    ))
                }
                (Some(c), Some(key)) => {
                    let at = c.span().start;
                    let plain = reversible::decrypt(key, &name, c.get_ref())
                        .map_err(|e| err(at, format!("`chap`: {e}")))?;
                    if let Ok(text) = std::str::from_utf8(&plain) {
                        let mut derived = nt_hash(text);
                        match &nt {
                            None => nt = Some((derived, NtSource::DerivedFromReversible)),
                            Some((stored, _)) if !bool::from(stored.ct_eq(&derived)) => {
                                derived.zeroize();
                                return Err(err(
                                    at,
                                    "`nt_hash` and `chap` hold different passwords".to_owned(),
                                ));
                            }
                            Some(_) => derived.zeroize(),
                        }
                    }
                    Some((c.into_inner(), Arc::clone(key)))
                }
            };
            if password.is_none() && nt.is_none() && chap.is_none() {
                return Err(err(
                    name_at,
                    format!("user {name:?} has no credential (`password`, `nt_hash` or `chap`)"),
                ));
            }

            let mut groups = Vec::with_capacity(u.groups.len());
            for g in u.groups {
                validate_group_name(g.get_ref()).map_err(|e| err(g.span().start, e.to_string()))?;
                groups.push(g.into_inner());
            }

            index.insert(lookup.into_bytes().into_boxed_slice(), users.len());
            users.push(LocalUser {
                name,
                line: lines.line_of(name_at),
                password,
                nt_hash: nt,
                chap,
                disabled: u.disabled,
                groups,
                attributes: u.attributes,
            });
        }
        Ok(Self {
            users,
            index,
            case_insensitive: options.case_insensitive_names,
        })
    }

    /// Looks a user up by name (case-sensitive unless the store was loaded with
    /// [`ParseOptions::with_case_insensitive_names`]).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&LocalUser> {
        let i = if self.case_insensitive {
            self.index.get(name.to_lowercase().as_bytes())
        } else {
            self.index.get(name.as_bytes())
        }?;
        self.users.get(*i)
    }

    /// [`get`](Self::get) for a name as it came off the wire, which may not be UTF-8 (then it
    /// names no user). A case-sensitive store looks the octets up without validating them
    /// first, on every request: every stored name is UTF-8, so only a UTF-8 name can equal one.
    #[must_use]
    pub fn get_bytes(&self, name: &[u8]) -> Option<&LocalUser> {
        if self.case_insensitive {
            return std::str::from_utf8(name).ok().and_then(|n| self.get(n));
        }
        self.index.get(name).and_then(|&i| self.users.get(i))
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users in file order.
    pub fn iter(&self) -> impl Iterator<Item = &LocalUser> {
        self.users.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashScheme;

    fn key() -> ReversibleKey {
        ReversibleKey::from_bytes([0x42; 32])
    }

    fn ssha(pw: &str) -> String {
        PasswordHash::create(HashScheme::Ssha512, pw.as_bytes(), &[1; 16]).encode()
    }

    fn nt_hex(pw: &str) -> String {
        hex::encode_upper(nt_hash(pw))
    }

    fn sample() -> String {
        format!(
            r#"# Portcullis local users. Managed with `portcullis users`.
[[user]]
name = "alice"
password = "{}"   # PAP hash
nt_hash = "{}"
groups = ["vpn-users", "staff"]

[[user]]
name = "bob"
nt_hash = "{}"
disabled = true

[[user]]
name = "carol"
chap = "{}"
"#,
            ssha("alice-pw"),
            nt_hex("alice-pw"),
            nt_hex("bob-pw"),
            reversible::encrypt(&key(), "carol", b"carol-pw", [3; 12]),
        )
    }

    fn load(text: &str) -> Result<LocalUsers> {
        LocalUsers::parse(text, "users.toml", Some(&key()))
    }

    fn line_err(text: &str, key: Option<&ReversibleKey>) -> (usize, String) {
        match LocalUsers::parse(text, "users.toml", key).unwrap_err() {
            Error::UsersFile {
                origin,
                line,
                reason,
            } => {
                assert_eq!(origin, "users.toml");
                (line, reason)
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn parses_sample() {
        let users = load(&sample()).unwrap();
        assert_eq!(users.len(), 3);
        let alice = users.get("alice").unwrap();
        assert_eq!(users.get_bytes(b"alice").unwrap().name(), "alice");
        assert!(users.get_bytes(b"ALICE").is_none());
        assert!(users.get_bytes(b"alic\xe9").is_none());
        assert_eq!(alice.line(), 3);
        assert_eq!(alice.groups(), ["vpn-users", "staff"]);
        assert!(!alice.is_disabled());
        assert!(alice.verify_pap(b"alice-pw"));
        assert!(!alice.verify_pap(b"alice-PW"));
        assert_eq!(alice.nt_hash(), Some(&nt_hash("alice-pw")));
        assert_eq!(
            alice.verify_chap(1, &[0; 16], &[0; 16]),
            ChapOutcome::NotAvailable
        );

        let bob = users.get("bob").unwrap();
        assert!(bob.is_disabled());
        assert!(bob.verify_pap(b"bob-pw"), "PAP falls back to the NT hash");
        assert!(!bob.verify_pap(b"bob-pw2"));
        assert!(!bob.verify_pap(&[0xff, 0xfe]));

        let carol = users.get("carol").unwrap();
        assert!(carol.has_reversible());
        assert_eq!(carol.nt_hash(), Some(&nt_hash("carol-pw")), "derived");
        assert!(carol.verify_pap(b"carol-pw"));
        let challenge = [9u8; 16];
        let resp = chap::chap_response(5, b"carol-pw", &challenge);
        assert_eq!(carol.verify_chap(5, &resp, &challenge), ChapOutcome::Accept);
        assert_eq!(carol.verify_chap(6, &resp, &challenge), ChapOutcome::Reject);

        assert!(users.get("Alice").is_none());
        assert!(users.get("dave").is_none());
        assert_eq!(
            users.iter().map(LocalUser::name).collect::<Vec<_>>(),
            ["alice", "bob", "carol"]
        );
    }

    #[test]
    fn mschapv2_through_the_store() {
        // RFC 2759 §9.2 exchange against a stored user "User" / "clientPass".
        let text = format!(
            "[[user]]\nname = \"User\"\nnt_hash = \"{}\"\n",
            nt_hex("clientPass")
        );
        let users = load(&text).unwrap();
        let h = |s: &str| hex::decode(s).unwrap();
        let ok = users
            .get("User")
            .unwrap()
            .verify_mschapv2(
                b"User",
                &h("5B5D7C7D7B3F2F3E3C2C602132262628").try_into().unwrap(),
                &h("21402324255E262A28295F2B3A337C7E").try_into().unwrap(),
                &h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
                    .try_into()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(
            ok.authenticator_response_str(),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn case_insensitive_option() {
        let users = LocalUsers::parse_with_options(
            &sample(),
            "users.toml",
            Some(&key()),
            &ParseOptions::default().with_case_insensitive_names(true),
        )
        .unwrap();
        assert_eq!(users.get("ALICE").unwrap().name(), "alice");
        assert_eq!(users.get_bytes(b"ALICE").unwrap().name(), "alice");
        assert!(users.get_bytes(b"ALICE\xff").is_none());
        let text = format!(
            "[[user]]\nname = \"Bob\"\nnt_hash = \"{0}\"\n\n[[user]]\nname = \"bOB\"\nnt_hash = \"{0}\"\n",
            nt_hex("x")
        );
        assert!(LocalUsers::parse(&text, "u", None).is_ok());
        let err = LocalUsers::parse_with_options(
            &text,
            "u",
            None,
            &ParseOptions::default().with_case_insensitive_names(true),
        )
        .unwrap_err();
        assert!(matches!(err, Error::UsersFile { line: 6, .. }), "{err}");
    }

    #[test]
    fn empty_file_is_empty_store() {
        let users = LocalUsers::parse("# nobody yet\n", "u", None).unwrap();
        assert!(users.is_empty());
    }

    #[test]
    fn error_duplicate_on_second_line() {
        let nt = nt_hex("x");
        let text = format!(
            "# header\n[[user]]\nname = \"alice\"\nnt_hash = \"{nt}\"\n\n[[user]]\nnt_hash = \"{nt}\"\nname = \"alice\"\n"
        );
        let (line, reason) = line_err(&text, None);
        assert_eq!(line, 8);
        assert!(
            reason.contains("duplicate") && reason.contains("line 3"),
            "{reason}"
        );
    }

    #[test]
    fn error_bad_hash_line_and_no_leak() {
        let text = "[[user]]\nname = \"alice\"\n\npassword = \"{SSHA512}c2VjcmV0\"\n";
        let (line, reason) = line_err(text, None);
        assert_eq!(line, 4);
        assert!(reason.contains("password"), "{reason}");
        assert!(!reason.contains("c2VjcmV0"));
        let text = "[[user]]\nname = \"alice\"\nnt_hash = \"1234\"\n";
        assert_eq!(line_err(text, None).0, 3);
    }

    #[test]
    fn error_unknown_key() {
        let nt = nt_hex("x");
        let text = format!("[[user]]\nname = \"a\"\nnt_hash = \"{nt}\"\ndisable = true\n");
        let (line, reason) = line_err(&text, None);
        assert_eq!(line, 4, "{reason}");
        assert!(reason.contains("disable"), "{reason}");
        let (line, reason) = line_err("version = 1\n", None);
        assert_eq!(line, 1, "{reason}");
    }

    #[test]
    fn error_toml_syntax() {
        let text = "[[user]]\nname = \"a\"\npassword = \"{SSHA512}unterminated\n";
        let (line, reason) = line_err(text, None);
        assert_eq!(line, 3);
        assert!(!reason.contains("unterminated"), "{reason}");
    }

    #[test]
    fn error_chap_without_key() {
        let rev = reversible::encrypt(&key(), "carol", b"pw", [3; 12]);
        let text = format!("[[user]]\nname = \"carol\"\n\nchap = \"{rev}\"\n");
        let (line, reason) = line_err(&text, None);
        assert_eq!(line, 4);
        assert!(reason.contains("no reversible-encryption key"), "{reason}");
        // With the wrong key it does not decrypt.
        let other = ReversibleKey::from_bytes([1; 32]);
        let (line, reason) = line_err(&text, Some(&other));
        assert_eq!(line, 4);
        assert!(reason.contains("does not decrypt"), "{reason}");
    }

    #[test]
    fn error_chap_swapped_between_users() {
        let rev = reversible::encrypt(&key(), "carol", b"pw", [3; 12]);
        let text = format!("[[user]]\nname = \"mallory\"\nchap = \"{rev}\"\n");
        assert_eq!(line_err(&text, Some(&key())).0, 3);
    }

    #[test]
    fn error_nt_and_chap_disagree() {
        let rev = reversible::encrypt(&key(), "carol", b"new", [3; 12]);
        let text = format!(
            "[[user]]\nname = \"carol\"\nnt_hash = \"{}\"\nchap = \"{rev}\"\n",
            nt_hex("old")
        );
        let (line, reason) = line_err(&text, Some(&key()));
        assert_eq!(line, 4);
        assert!(reason.contains("different passwords"));
    }

    #[test]
    fn error_no_credentials_bad_name_bad_group_missing_name() {
        let (line, reason) = line_err("\n[[user]]\nname = \"a\"\n", None);
        assert_eq!(line, 3);
        assert!(reason.contains("no credential"));

        let (line, reason) = line_err("[[user]]\nname = \"\"\n", None);
        assert_eq!(line, 2);
        assert!(reason.contains("user name"));

        let nt = nt_hex("x");
        let text = format!(
            "[[user]]\nname = \"a\"\nnt_hash = \"{nt}\"\ngroups = [\n  \"ok\",\n  \"\",\n]\n"
        );
        assert_eq!(line_err(&text, None).0, 6);

        let text = format!("# c\n\n[[user]]\nnt_hash = \"{nt}\"\n");
        let (line, reason) = line_err(&text, None);
        assert!(reason.contains("name"), "{reason}");
        assert_eq!(line, 3, "a missing key is reported on the [[user]] header");
    }

    #[test]
    fn debug_shows_kinds_only() {
        let users = load(&sample()).unwrap();
        let dbg = format!("{users:?}");
        assert!(dbg.contains("alice") && dbg.contains("Ssha512"));
        assert!(dbg.contains("DerivedFromReversible"));
        assert!(!dbg.contains(&nt_hex("alice-pw")));
        assert!(!dbg.contains(&nt_hex("alice-pw").to_lowercase()));
        assert!(!dbg.contains("SSHA512}"));
        assert!(!dbg.contains("rev1:"));
    }

    #[test]
    fn line_counter_agrees_with_line_of() {
        let text = "a\nb\n\nc\nd";
        let mut c = LineCounter::new(text);
        for offset in [0, 1, 2, 4, 5, 8, 99] {
            assert_eq!(c.line_of(offset), line_of(text, offset), "offset {offset}");
        }
        assert_eq!(c.line_of(2), 2, "an earlier offset still answers right");
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
