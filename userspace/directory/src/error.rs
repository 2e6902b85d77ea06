//! The one error type of the crate. A denial (bad password, disabled account, ...) is not an
//! error: it is a [`Verdict`](crate::Verdict). Errors are what keeps the directory from giving
//! an answer at all.

use std::time::Duration;

/// Who is at fault, for metrics and audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself (e.g. a user name that cannot be looked up).
    Peer,
    /// A domain controller or the NTLM helper (down, slow, refusing the service account).
    Backend,
    /// This process or its configuration.
    Internal,
}

/// Why the directory could not answer. Never carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Every domain controller was tried and none answered; `last` is the last failure.
    #[error("no domain controller answered ({tried} tried): {last}")]
    Unavailable { tried: usize, last: String },
    /// Every domain controller is marked down after recent failures and none is due for a
    /// retry yet; nothing was sent.
    #[error("all {servers} domain controllers are marked down (next retry in {retry_in:?})")]
    AllDown { servers: usize, retry_in: Duration },
    /// The service account could not bind (wrong bind_dn or password, or the account is
    /// disabled): a configuration problem, reported as such rather than as a user's denial.
    #[error("the service account bind to {server} was refused: {message}")]
    ServiceBind { server: String, message: String },
    /// A search answered with an LDAP error result.
    #[error("LDAP {operation} on {server} failed: {message}")]
    Ldap {
        server: String,
        operation: &'static str,
        message: String,
    },
    /// The whole request took longer than its deadline.
    #[error("{operation} did not finish within {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The user name matches more than one account.
    #[error("user name `{user}` matches {count} directory entries")]
    Ambiguous { user: String, count: usize },
    /// The user name cannot be used for a lookup (empty, control characters, ...).
    #[error("user name cannot be looked up: {reason}")]
    InvalidUserName { reason: &'static str },
    /// The NTLM helper (ntlm_auth) failed, timed out or could not reach winbind/the DC.
    #[error("NTLM helper: {message}")]
    Helper { message: String },
    /// MS-CHAPv2 was asked for but no NTLM helper is configured.
    #[error("MS-CHAPv2 against the directory needs the NTLM helper (ntlm_auth) configured")]
    NtlmNotConfigured,
    /// The configured CA file cannot be used.
    #[error("ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    /// A configuration value this crate cannot use.
    #[error("directory configuration: {reason}")]
    Config { reason: String },
    /// A bug or resource problem in this process.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl DirectoryError {
    pub fn fault(&self) -> Fault {
        match self {
            DirectoryError::InvalidUserName { .. } => Fault::Peer,
            DirectoryError::Unavailable { .. }
            | DirectoryError::AllDown { .. }
            | DirectoryError::ServiceBind { .. }
            | DirectoryError::Ldap { .. }
            | DirectoryError::Timeout { .. }
            | DirectoryError::Ambiguous { .. }
            | DirectoryError::Helper { .. } => Fault::Backend,
            DirectoryError::NtlmNotConfigured
            | DirectoryError::CaFile { .. }
            | DirectoryError::Config { .. }
            | DirectoryError::Internal { .. } => Fault::Internal,
        }
    }

    /// True when no domain controller could be reached at all (the NPS "domain unavailable"
    /// case), as opposed to one that answered with an error.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            DirectoryError::Unavailable { .. }
                | DirectoryError::AllDown { .. }
                | DirectoryError::Timeout { .. }
        )
    }
}
