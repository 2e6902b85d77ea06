//! The crate's one error type.
//!
//! No variant ever carries a password, a hash, a key or a ciphertext: reasons are fixed strings or
//! messages we composed ourselves, so errors can be logged as they are.

/// Who is at fault for an [`Error`], for metrics and audit logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The RADIUS peer (NAS) or the end user sent something malformed.
    Peer,
    /// Local configuration: the users file, a stored hash, the reversible-encryption key file.
    Config,
    /// The calling code passed an argument this crate refuses (e.g. an invalid new user name).
    Caller,
}

/// Errors of `portcullis-auth`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored password hash (`{SSHA512}…`, `$pbkdf2-sha256$…`) is malformed.
    #[error("malformed password hash: {reason}")]
    MalformedHash {
        /// What is wrong, without the hash itself.
        reason: &'static str,
    },

    /// The reversible-encryption key file text is not a valid key.
    #[error("malformed reversible-encryption key: {reason}")]
    MalformedKey {
        /// What is wrong, without the key itself.
        reason: &'static str,
    },

    /// A reversibly encrypted password (`rev1:…`) is malformed.
    #[error("malformed reversibly encrypted password: {reason}")]
    MalformedReversible {
        /// What is wrong, without the value itself.
        reason: &'static str,
    },

    /// A reversibly encrypted password failed authentication: wrong key, wrong user, or tampered.
    #[error("reversibly encrypted password of user {user:?} does not decrypt with this key (wrong key, wrong user or tampered)")]
    ReversibleDecrypt {
        /// The user name that was used as associated data.
        user: String,
    },

    /// An MS-CHAP2-Response attribute value (RFC 2548 §2.3.2) is malformed.
    #[error("malformed MS-CHAP2-Response attribute: {reason}")]
    MalformedMsChap2Response {
        /// What is wrong.
        reason: &'static str,
    },

    /// A user name is not acceptable (empty, control characters, longer than 253 bytes).
    #[error("invalid user name: {reason}")]
    InvalidUserName {
        /// What is wrong.
        reason: &'static str,
    },

    /// A group name is not acceptable (empty, control characters, longer than 253 bytes).
    #[error("invalid group name: {reason}")]
    InvalidGroupName {
        /// What is wrong.
        reason: &'static str,
    },

    /// The users file could not be loaded; `line` is 1-based.
    #[error("{origin}:{line}: {reason}")]
    UsersFile {
        /// Where the text came from (normally the file name).
        origin: String,
        /// 1-based line number of the offending entry or value.
        line: usize,
        /// What is wrong, without any secret value.
        reason: String,
    },

    /// The users file text given to an editing function is not valid TOML or not in our shape.
    #[error("users file, line {line}: {reason}")]
    UsersFileSyntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// `add_user` was asked to add a name that already exists.
    #[error("user {name:?} already exists")]
    UserExists {
        /// The existing user name.
        name: String,
    },

    /// An editing function was asked to change a user that does not exist.
    #[error("no user named {name:?}")]
    UserNotFound {
        /// The missing user name.
        name: String,
    },
}

impl Error {
    /// Who is at fault for this error.
    #[must_use]
    pub fn fault(&self) -> Fault {
        match self {
            Self::MalformedMsChap2Response { .. } => Fault::Peer,
            Self::MalformedHash { .. }
            | Self::MalformedKey { .. }
            | Self::MalformedReversible { .. }
            | Self::ReversibleDecrypt { .. }
            | Self::UsersFile { .. }
            | Self::UsersFileSyntax { .. } => Fault::Config,
            Self::InvalidUserName { .. }
            | Self::InvalidGroupName { .. }
            | Self::UserExists { .. }
            | Self::UserNotFound { .. } => Fault::Caller,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest user or group name we accept, in bytes (the RADIUS attribute value limit).
pub const MAX_NAME_LEN: usize = 253;

/// Checks a user name: non-empty, no control characters, at most [`MAX_NAME_LEN`] bytes.
pub fn validate_user_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| Error::InvalidUserName { reason })
}

/// Checks a group name with the same rules as a user name.
pub fn validate_group_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| Error::InvalidGroupName { reason })
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() > MAX_NAME_LEN {
        Err("longer than 253 bytes")
    } else if name.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("DOMAIN\\bob@example.net").is_ok());
        assert!(validate_user_name("").is_err());
        assert!(validate_user_name("a\nb").is_err());
        assert!(validate_user_name("a\u{7f}").is_err());
        assert!(validate_user_name(&"x".repeat(253)).is_ok());
        assert!(validate_user_name(&"x".repeat(254)).is_err());
        assert!(matches!(
            validate_group_name(""),
            Err(Error::InvalidGroupName { .. })
        ));
    }

    #[test]
    fn faults() {
        assert_eq!(
            Error::MalformedMsChap2Response { reason: "x" }.fault(),
            Fault::Peer
        );
        assert_eq!(Error::MalformedHash { reason: "x" }.fault(), Fault::Config);
        assert_eq!(
            Error::UserNotFound { name: "a".into() }.fault(),
            Fault::Caller
        );
    }
}
