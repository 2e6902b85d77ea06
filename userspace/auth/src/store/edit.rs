//! Editing the users file text for `portcullis users`, preserving comments, formatting and the
//! other entries (via `toml_edit`).
//!
//! Each function takes the current file text and returns the new text; reading, writing
//! (atomically) and locking the file are the caller's job. Randomness (salts, nonces) is passed
//! in. User names are matched exactly; [`add_user`] also refuses a name that differs from an
//! existing one only in case, so the file stays loadable in case-insensitive mode.

use toml_edit::{Array, ArrayOfTables, DocumentMut, ImDocument, Item, Table, Value};

use crate::error::{validate_group_name, validate_user_name, Error, Result};
use crate::hash::{HashScheme, PasswordHash};
use crate::nt::nt_hash;
use crate::reversible::{self, ReversibleKey};

use super::{line_of, parse_nt_hash};

/// The comment that starts a users file created by [`add_user`] from empty text.
pub const NEW_FILE_HEADER: &str = "# Portcullis local users. Managed with `portcullis users`.\n";

/// Which credentials to store for a password.
#[derive(Debug, Clone, Copy)]
pub struct PasswordOptions<'a> {
    /// Scheme of the PAP hash (`password` key).
    pub scheme: HashScheme,
    /// Also store the NT hash (`nt_hash` key), needed for MS-CHAPv2. Default: true.
    pub nt_hash: bool,
    /// Also store the password reversibly (`chap` key) with this key and a fresh random nonce,
    /// enabling CHAP. Default: none (and an existing `chap` entry is removed on change).
    pub chap: Option<(&'a ReversibleKey, [u8; 12])>,
}

impl Default for PasswordOptions<'_> {
    fn default() -> Self {
        Self {
            scheme: HashScheme::Ssha512,
            nt_hash: true,
            chap: None,
        }
    }
}

/// Options for [`add_user`].
#[derive(Debug, Clone, Default)]
pub struct UserOptions<'a> {
    /// Which credentials to store.
    pub password: PasswordOptions<'a>,
    /// Groups for policies.
    pub groups: Vec<String>,
    /// Create the user disabled.
    pub disabled: bool,
}

/// What [`list_users`] reports about a user: no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSummary {
    /// The user name.
    pub name: String,
    /// 1-based line of the user's `[[user]]` header.
    pub line: usize,
    /// `Some("ssha512")`, `Some("pbkdf2-sha256")`, `Some("invalid")`, or `None` if no `password`.
    pub password_scheme: Option<&'static str>,
    /// Whether an `nt_hash` is stored.
    pub has_nt_hash: bool,
    /// Whether a reversible `chap` entry is stored.
    pub has_chap: bool,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// The groups.
    pub groups: Vec<String>,
}

fn parse_doc(text: &str) -> Result<DocumentMut> {
    let doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| Error::UsersFileSyntax {
                line: line_of(text, e.span().map_or(0, |s| s.start)),
                reason: e.message().trim_end().to_owned(),
            })?;
    match doc.get("user") {
        None | Some(Item::ArrayOfTables(_)) => Ok(doc),
        Some(_) => Err(Error::UsersFileSyntax {
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

fn find<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Table> {
    users_mut(doc)
        .and_then(|users| users.iter_mut().find(|t| table_name(t) == Some(name)))
        .ok_or_else(|| Error::UserNotFound {
            name: name.to_owned(),
        })
}

/// Sets `key` to `value`, keeping the old value's surrounding whitespace and trailing comment.
fn set_value(t: &mut Table, key: &str, value: impl Into<Value>) {
    let mut value = value.into();
    if let Some(old) = t.get_mut(key).and_then(Item::as_value_mut) {
        *value.decor_mut() = old.decor().clone();
        *old = value;
    } else {
        t.insert(key, Item::Value(value));
    }
}

/// Writes the credential keys for `password` into the table.
fn write_credentials(
    t: &mut Table,
    name: &str,
    password: &str,
    opts: &PasswordOptions<'_>,
    salt: &[u8; 16],
) {
    let hash = PasswordHash::create(opts.scheme, password.as_bytes(), salt);
    set_value(t, "password", hash.encode());
    if opts.nt_hash {
        set_value(t, "nt_hash", hex::encode_upper(nt_hash(password)));
    } else {
        t.remove("nt_hash");
    }
    match opts.chap {
        Some((key, nonce)) => set_value(
            t,
            "chap",
            reversible::encrypt(key, name, password.as_bytes(), nonce),
        ),
        None => {
            t.remove("chap");
        }
    }
}

fn groups_array(groups: &[String]) -> Result<Array> {
    for g in groups {
        validate_group_name(g)?;
    }
    Ok(groups.iter().map(String::as_str).collect())
}

/// Appends a new `[[user]]` entry. Fails if the name exists (ignoring case). Empty text gets
/// [`NEW_FILE_HEADER`] first. `salt` must be 16 fresh random bytes.
pub fn add_user(
    text: &str,
    name: &str,
    password: &str,
    opts: &UserOptions<'_>,
    salt: &[u8; 16],
) -> Result<String> {
    validate_user_name(name)?;
    let groups = groups_array(&opts.groups)?;
    let source = if text.trim().is_empty() {
        NEW_FILE_HEADER
    } else {
        text
    };
    let mut doc = parse_doc(source)?;
    let lower = name.to_lowercase();
    if let Some(users) = users_mut(&mut doc) {
        if let Some(existing) = users
            .iter()
            .filter_map(table_name)
            .find(|n| n.to_lowercase() == lower)
        {
            return Err(Error::UserExists {
                name: existing.to_owned(),
            });
        }
    }

    let mut t = Table::new();
    t.insert("name", toml_edit::value(name));
    write_credentials(&mut t, name, password, &opts.password, salt);
    if opts.disabled {
        t.insert("disabled", toml_edit::value(true));
    }
    if !groups.is_empty() {
        t.insert("groups", toml_edit::value(groups));
    }

    // Comments after the last entry (or all of a file without entries) are the document's
    // trailing decor, which would print after the new entry: move them in front of it.
    let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
    doc.set_trailing("");
    let prefix = if doc.iter().next().is_some() {
        // A blank line between entries.
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

/// Replaces a user's credentials with ones for a new password: `password` always, `nt_hash` and
/// `chap` as `opts` says (a `chap` entry not asked for is removed, so no stale password stays).
pub fn set_password(
    text: &str,
    name: &str,
    password: &str,
    opts: &PasswordOptions<'_>,
    salt: &[u8; 16],
) -> Result<String> {
    let mut doc = parse_doc(text)?;
    let t = find(&mut doc, name)?;
    write_credentials(t, name, password, opts, salt);
    Ok(doc.to_string())
}

/// Removes a user. Comment lines directly above its `[[user]]` header go with it; comments
/// separated from the header by a blank line (such as the file header) stay.
pub fn remove_user(text: &str, name: &str) -> Result<String> {
    let mut doc = parse_doc(text)?;
    let not_found = || Error::UserNotFound {
        name: name.to_owned(),
    };
    let users = users_mut(&mut doc).ok_or_else(not_found)?;
    let index = users
        .iter()
        .position(|t| table_name(t) == Some(name))
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
            // `kept` ends with a blank line already; don't stack another one on it.
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

/// The part of a table's leading decor up to and including its last blank line: comments that
/// belong to the file or a section rather than to the entry right below them.
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

/// Sets or clears `disabled`. Clearing removes the key.
pub fn set_disabled(text: &str, name: &str, disabled: bool) -> Result<String> {
    let mut doc = parse_doc(text)?;
    let t = find(&mut doc, name)?;
    if disabled {
        set_value(t, "disabled", true);
    } else {
        t.remove("disabled");
    }
    Ok(doc.to_string())
}

/// Replaces a user's groups (an empty list removes the key).
pub fn set_groups(text: &str, name: &str, groups: &[String]) -> Result<String> {
    let array = groups_array(groups)?;
    let mut doc = parse_doc(text)?;
    let t = find(&mut doc, name)?;
    if array.is_empty() {
        t.remove("groups");
    } else {
        set_value(t, "groups", array);
    }
    Ok(doc.to_string())
}

/// Sets (or, with `None`, removes) a free-form attribute of a user, e.g. `mail`.
pub fn set_attribute(text: &str, name: &str, key: &str, value: Option<&str>) -> Result<String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::UsersFileSyntax {
            line: 0,
            reason: format!("attribute name `{key}` must be letters, digits, `-` or `_`"),
        });
    }
    let mut doc = parse_doc(text)?;
    let t = find(&mut doc, name)?;
    let mut attrs = t
        .get("attributes")
        .and_then(Item::as_inline_table)
        .cloned()
        .unwrap_or_default();
    match value {
        Some(v) => {
            attrs.insert(key, Value::from(v));
        }
        None => {
            attrs.remove(key);
        }
    }
    if attrs.is_empty() {
        t.remove("attributes");
    } else {
        t.insert("attributes", Item::Value(Value::InlineTable(attrs)));
    }
    Ok(doc.to_string())
}

/// Lists the users without any secret. Entries without a string `name` are skipped.
pub fn list_users(text: &str) -> Result<Vec<UserSummary>> {
    parse_doc(text)?;
    // `ImDocument` keeps the spans that `DocumentMut` drops; parse_doc checked the text already.
    let doc = ImDocument::parse(text).map_err(|e| Error::UsersFileSyntax {
        line: line_of(text, e.span().map_or(0, |s| s.start)),
        reason: e.message().trim_end().to_owned(),
    })?;
    let Some(users) = doc.get("user").and_then(Item::as_array_of_tables) else {
        return Ok(Vec::new());
    };
    Ok(users
        .iter()
        .filter_map(|t| {
            let name = table_name(t)?.to_owned();
            let line = t.span().map_or(0, |s| line_of(text, s.start));
            let password_scheme = t
                .get("password")
                .and_then(Item::as_str)
                .map(|p| PasswordHash::parse(p).map_or("invalid", |h| h.scheme().name()));
            let has_nt_hash = t
                .get("nt_hash")
                .and_then(Item::as_str)
                .and_then(parse_nt_hash)
                .is_some();
            Some(UserSummary {
                name,
                line,
                password_scheme,
                has_nt_hash,
                has_chap: t.get("chap").and_then(Item::as_str).is_some(),
                disabled: t.get("disabled").and_then(Item::as_bool).unwrap_or(false),
                groups: t
                    .get("groups")
                    .and_then(Item::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChapOutcome, LocalUsers};

    const SALT: [u8; 16] = [7; 16];

    fn key() -> ReversibleKey {
        ReversibleKey::from_bytes([0x11; 32])
    }

    const BASE: &str = "# Portcullis local users. Managed with `portcullis users`.\n\
                        # Keep this file mode 0600.\n\
                        \n\
                        # Alice is the admin.\n\
                        [[user]]\n\
                        name = \"alice\"\n\
                        nt_hash = \"8846F7EAEE8FB117AD06BDD830B7586C\" # password\n\
                        groups = [\"admins\"]\n\
                        \n\
                        # Bob from accounting.\n\
                        [[user]]\n\
                        name = \"bob\"\n\
                        nt_hash = \"8846F7EAEE8FB117AD06BDD830B7586C\"\n";

    fn load(text: &str) -> LocalUsers {
        LocalUsers::parse(text, "users.toml", Some(&key())).unwrap()
    }

    #[test]
    fn add_user_to_empty_text() {
        let opts = UserOptions {
            groups: vec!["vpn-users".into()],
            ..UserOptions::default()
        };
        let text = add_user("", "carol", "s3cret", &opts, &SALT).unwrap();
        assert!(text.starts_with(NEW_FILE_HEADER), "{text}");
        let rest: Vec<&str> = text[NEW_FILE_HEADER.len()..].lines().collect();
        assert_eq!(rest[..2], ["[[user]]", "name = \"carol\""]);
        assert!(rest[2].starts_with("password = \"{SSHA512}"));
        assert!(rest[3].starts_with("nt_hash = \""));
        assert_eq!(rest[4..], ["groups = [\"vpn-users\"]"]);
        // A second user is separated by a blank line.
        let text = add_user(&text, "dave", "pw", &UserOptions::default(), &SALT).unwrap();
        assert!(text.contains("]\n\n[[user]]\nname = \"dave\"\n"), "{text}");
        assert!(!text.contains("s3cret"));
        let users = load(&text);
        let carol = users.get("carol").unwrap();
        assert!(carol.verify_pap(b"s3cret"));
        assert!(carol.password_hash().is_some());
        assert_eq!(carol.nt_hash(), Some(&nt_hash("s3cret")));
        assert_eq!(carol.groups(), ["vpn-users"]);
        assert!(!carol.has_reversible());
    }

    #[test]
    fn add_user_preserves_comments_and_others() {
        let opts = UserOptions {
            password: PasswordOptions {
                scheme: HashScheme::Pbkdf2Sha256 { iterations: 10 },
                nt_hash: false,
                chap: Some((&key(), [5; 12])),
            },
            disabled: true,
            ..UserOptions::default()
        };
        let text = add_user(BASE, "carol", "pw", &opts, &SALT).unwrap();
        assert!(text.starts_with(BASE), "{text}");
        assert!(
            text[BASE.len()..].starts_with("\n[[user]]\nname = \"carol\"\n"),
            "{text}"
        );
        let users = load(&text);
        assert_eq!(users.len(), 3);
        let carol = users.get("carol").unwrap();
        assert!(carol.is_disabled());
        assert!(carol.verify_pap(b"pw"));
        let resp = crate::chap::chap_response(1, b"pw", &[2; 16]);
        assert_eq!(carol.verify_chap(1, &resp, &[2; 16]), ChapOutcome::Accept);
        // The NT hash is derived from the reversible password.
        assert_eq!(carol.nt_hash(), Some(&nt_hash("pw")));
        assert!(users.get("alice").unwrap().verify_pap(b"password"));
    }

    #[test]
    fn add_user_refuses_existing_and_bad_names() {
        let opts = UserOptions::default();
        for name in ["bob", "BOB"] {
            assert!(matches!(
                add_user(BASE, name, "x", &opts, &SALT),
                Err(Error::UserExists { ref name }) if name == "bob"
            ));
        }
        assert!(matches!(
            add_user(BASE, "a\tb", "x", &opts, &SALT),
            Err(Error::InvalidUserName { .. })
        ));
        let bad_group = UserOptions {
            groups: vec![String::new()],
            ..UserOptions::default()
        };
        assert!(matches!(
            add_user(BASE, "dave", "x", &bad_group, &SALT),
            Err(Error::InvalidGroupName { .. })
        ));
        assert!(matches!(
            add_user("user = 1\n", "dave", "x", &opts, &SALT),
            Err(Error::UsersFileSyntax { .. })
        ));
        assert!(matches!(
            add_user("a\n[[user]\n", "dave", "x", &opts, &SALT),
            Err(Error::UsersFileSyntax { line: 1, .. })
        ));
    }

    #[test]
    fn set_password_keeps_trailing_comment_and_drops_stale_chap() {
        let text =
            set_password(BASE, "alice", "new-pw", &PasswordOptions::default(), &SALT).unwrap();
        assert!(text.contains("# Alice is the admin.\n[[user]]\nname = \"alice\"\n"));
        assert!(text.contains(&format!(
            "nt_hash = \"{}\" # password\n",
            hex::encode_upper(nt_hash("new-pw"))
        )));
        assert!(
            text.ends_with(&BASE[BASE.find("\n# Bob").unwrap()..]),
            "{text}"
        );
        let users = load(&text);
        let alice = users.get("alice").unwrap();
        assert!(alice.verify_pap(b"new-pw"));
        assert!(!alice.verify_pap(b"password"));
        assert_eq!(alice.groups(), ["admins"]);

        // Add a chap entry, then change the password without CHAP: the chap key goes away.
        let with_chap = PasswordOptions {
            chap: Some((&key(), [1; 12])),
            ..PasswordOptions::default()
        };
        let text = set_password(&text, "alice", "pw2", &with_chap, &SALT).unwrap();
        assert!(load(&text).get("alice").unwrap().has_reversible());
        let text = set_password(&text, "alice", "pw3", &PasswordOptions::default(), &SALT).unwrap();
        assert!(!text.contains("chap"));
        assert!(load(&text).get("alice").unwrap().verify_pap(b"pw3"));

        assert!(matches!(
            set_password(BASE, "nobody", "x", &PasswordOptions::default(), &SALT),
            Err(Error::UserNotFound { .. })
        ));
    }

    #[test]
    fn remove_user_keeps_file_header_and_others() {
        let text = remove_user(BASE, "alice").unwrap();
        assert_eq!(
            text,
            "# Portcullis local users. Managed with `portcullis users`.\n\
             # Keep this file mode 0600.\n\
             \n\
             # Bob from accounting.\n\
             [[user]]\n\
             name = \"bob\"\n\
             nt_hash = \"8846F7EAEE8FB117AD06BDD830B7586C\"\n"
        );
        let text = remove_user(&text, "bob").unwrap();
        assert!(text.starts_with("# Portcullis local users."), "{text:?}");
        assert!(!text.contains("[[user]]"));
        assert!(load(&text).is_empty());
        assert!(matches!(
            remove_user(&text, "bob"),
            Err(Error::UserNotFound { .. })
        ));
        let text = remove_user(BASE, "bob").unwrap();
        assert!(text.contains("# Alice is the admin."));
        assert!(!text.contains("Bob"));
        assert_eq!(load(&text).len(), 1);
    }

    #[test]
    fn set_disabled_and_groups() {
        let text = set_disabled(BASE, "bob", true).unwrap();
        assert!(text.contains(
            "name = \"bob\"\nnt_hash = \"8846F7EAEE8FB117AD06BDD830B7586C\"\ndisabled = true\n"
        ));
        assert!(load(&text).get("bob").unwrap().is_disabled());
        let text = set_disabled(&text, "bob", false).unwrap();
        assert_eq!(text, BASE);

        let text = set_groups(BASE, "alice", &["a".into(), "b".into()]).unwrap();
        assert_eq!(load(&text).get("alice").unwrap().groups(), ["a", "b"]);
        let text = set_groups(&text, "alice", &[]).unwrap();
        assert!(load(&text).get("alice").unwrap().groups().is_empty());
        assert!(matches!(
            set_disabled(BASE, "carol", true),
            Err(Error::UserNotFound { .. })
        ));
    }

    #[test]
    fn list_users_without_secrets() {
        let opts = UserOptions {
            password: PasswordOptions {
                chap: Some((&key(), [5; 12])),
                ..PasswordOptions::default()
            },
            ..UserOptions::default()
        };
        let text = add_user(BASE, "carol", "pw", &opts, &SALT).unwrap();
        let text = set_disabled(&text, "bob", true).unwrap();
        let list = list_users(&text).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].name, "alice");
        assert_eq!(list[0].line, 5);
        assert_eq!(list[0].password_scheme, None);
        assert!(list[0].has_nt_hash);
        assert_eq!(list[0].groups, ["admins"]);
        assert!(list[1].disabled);
        assert_eq!(list[1].line, 11);
        assert_eq!(list[2].password_scheme, Some("ssha512"));
        assert!(list[2].has_chap);
        assert!(!format!("{list:?}").contains("SSHA512"));
        assert!(list_users("").unwrap().is_empty());
    }

    #[test]
    fn detached_comment_split() {
        assert_eq!(detached_comments(""), "");
        assert_eq!(detached_comments("# mine\n"), "");
        assert_eq!(detached_comments("# file\n\n# mine\n"), "# file\n\n");
        assert_eq!(detached_comments("\n"), "");
    }

    #[test]
    fn attributes_set_read_and_removed() {
        let text =
            "# keep me\n[[user]]\nname = \"a\"\nnt_hash = \"8846F7EAEE8FB117AD06BDD830B7586C\"\n";
        let t = set_attribute(text, "a", "mail", Some("a@example.com")).unwrap();
        let t = set_attribute(&t, "a", "upn", Some("a@corp.example")).unwrap();
        assert!(t.starts_with("# keep me"), "{t}");
        let users = crate::store::LocalUsers::parse(&t, "u.toml", None).unwrap();
        let u = users.get("a").unwrap();
        assert_eq!(u.attribute("mail"), Some("a@example.com"));
        assert_eq!(u.attribute("upn"), Some("a@corp.example"));
        let t = set_attribute(&t, "a", "mail", None).unwrap();
        let t = set_attribute(&t, "a", "upn", None).unwrap();
        assert!(!t.contains("attributes"), "{t}");
        assert!(set_attribute(&t, "a", "bad key", Some("x")).is_err());
        assert!(set_attribute(&t, "nobody", "mail", Some("x")).is_err());
    }
}
