//! One audit line per decision, in the vocabulary of Windows NPS so that existing SIEM rules keep
//! working: event 6272 (access granted), 6273 (access denied), 6274 (request discarded), each
//! with the NPS reason code.
//!
//! Lines go through `tracing` with target `audit`. They carry the client, the user name (escaped:
//! a NAS sends whatever bytes it likes), the authentication method and the reason. They never
//! carry a password, a shared secret, a hash or an MS-CHAP response.

use std::fmt;
use std::net::SocketAddr;

/// NPS reason codes (the `Reason-Code` of NPS audit events and log files) that Portcullis emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// 0: the request was granted.
    Success,
    /// 1: an internal error (e.g. accounting could not be written).
    InternalError,
    /// 3: the request was malformed (bad attributes, bad Message-Authenticator, ...).
    MalformedRequest,
    /// 5 (IAS_DOMAIN_UNAVAILABLE): no domain controller could be reached (or the NTLM helper
    /// could not ask one).
    DomainUnavailable,
    /// 8: no such user in the user store.
    NoSuchUser,
    /// 16: bad credentials.
    AuthenticationFailure,
    /// 18: the authentication type is not supported for this user or server.
    UnsupportedAuthType,
    /// 19: CHAP needs a reversibly encrypted password, which this user does not have.
    NoReversiblyEncryptedPassword,
    /// 22: the EAP type cannot be processed (EAP is not served yet).
    EapTypeNotProcessed,
    /// 21: an NPS extension rejected the request — here, the second factor (denied, timed
    /// out, not enrolled with require_user_match, or the MFA service down in `secure` mode).
    MfaRejected,
    /// 33 (IAS_PASSWORD_MUST_CHANGE): the password expired or must be changed at next logon.
    PasswordMustChange,
    /// 34: the account is disabled.
    AccountDisabled,
    /// 35 (IAS_ACCOUNT_EXPIRED): the account expired.
    AccountExpired,
    /// 36 (IAS_ACCOUNT_LOCKED_OUT): the account is locked out.
    AccountLockedOut,
    /// 37 (IAS_INVALID_LOGON_HOURS): outside the account's logon hours.
    InvalidLogonHours,
    /// 38 (IAS_ACCOUNT_RESTRICTION): another account restriction.
    AccountRestriction,
    /// 48 (IAS_NO_POLICY_MATCH): no `[[policy]]` matched and `when_none_match = "deny"`.
    NoPolicyMatch,
    /// 65 (IAS_DIALIN_DISABLED): a `[[policy]]` with `access = "deny"` matched (NPS logs a
    /// matching deny network policy with this code and the policy's name).
    PolicyDenied,
    /// 65 (IAS_DIALIN_DISABLED): the account's dial-in permission is "deny access"
    /// (msNPAllowDialin = FALSE).
    DialinDisabled,
    /// 66: the request carries no authentication type the server accepts.
    InvalidAuthType,
}

impl Reason {
    pub fn code(self) -> u32 {
        match self {
            Reason::Success => 0,
            Reason::InternalError => 1,
            Reason::MalformedRequest => 3,
            Reason::DomainUnavailable => 5,
            Reason::NoSuchUser => 8,
            Reason::AuthenticationFailure => 16,
            Reason::UnsupportedAuthType => 18,
            Reason::NoReversiblyEncryptedPassword => 19,
            Reason::MfaRejected => 21,
            Reason::EapTypeNotProcessed => 22,
            Reason::PasswordMustChange => 33,
            Reason::AccountDisabled => 34,
            Reason::AccountExpired => 35,
            Reason::AccountLockedOut => 36,
            Reason::InvalidLogonHours => 37,
            Reason::AccountRestriction => 38,
            Reason::NoPolicyMatch => 48,
            Reason::PolicyDenied => 65,
            Reason::DialinDisabled => 65,
            Reason::InvalidAuthType => 66,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Reason::Success => "granted",
            Reason::InternalError => "internal error",
            Reason::MalformedRequest => "malformed request",
            Reason::DomainUnavailable => "domain controller unavailable",
            Reason::NoSuchUser => "no such user",
            Reason::AuthenticationFailure => "bad user name or password",
            Reason::UnsupportedAuthType => "authentication type not supported",
            Reason::NoReversiblyEncryptedPassword => "no reversibly encrypted password for CHAP",
            Reason::MfaRejected => "rejected by the second factor",
            Reason::EapTypeNotProcessed => "EAP is not supported",
            Reason::PasswordMustChange => "password expired or must be changed",
            Reason::AccountDisabled => "account disabled",
            Reason::AccountExpired => "account expired",
            Reason::AccountLockedOut => "account locked out",
            Reason::InvalidLogonHours => "outside logon hours",
            Reason::AccountRestriction => "account restriction",
            Reason::NoPolicyMatch => "no network policy matched",
            Reason::PolicyDenied => "denied by network policy",
            Reason::DialinDisabled => "dial-in permission denied",
            Reason::InvalidAuthType => "no supported authentication method in request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Granted,
    Denied,
    Discarded,
}

impl Decision {
    /// The NPS event id of the decision.
    pub fn event_id(self) -> u32 {
        match self {
            Decision::Granted => 6272,
            Decision::Denied => 6273,
            Decision::Discarded => 6274,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Granted => "granted",
            Decision::Denied => "denied",
            Decision::Discarded => "discarded",
        }
    }
}

/// The authentication method of a request, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Pap,
    Chap,
    MsChapV2,
    Eap,
    None,
    Accounting,
    StatusServer,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pap => "PAP",
            Method::Chap => "CHAP",
            Method::MsChapV2 => "MS-CHAPv2",
            Method::Eap => "EAP",
            Method::None => "none",
            Method::Accounting => "accounting",
            Method::StatusServer => "status-server",
        }
    }
}

/// A user name from the wire, printable in a log line without letting the peer forge lines:
/// control characters, quotes, backslashes and non-UTF-8 bytes are escaped, length is capped.
pub struct SafeName<'a>(pub &'a [u8]);

impl fmt::Display for SafeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = &self.0[..self.0.len().min(253)];
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() || c == '"' || c == '\\' {
                    for e in c.escape_default() {
                        f.write_fmt(format_args!("{e}"))?;
                    }
                } else {
                    f.write_fmt(format_args!("{c}"))?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > 253 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Writes one audit line.
pub fn decision(
    decision: Decision,
    client: &str,
    from: SocketAddr,
    user: Option<&[u8]>,
    method: Method,
    reason: Reason,
    detail: &str,
) {
    decision_by_policy(decision, client, from, user, method, reason, None, detail);
}

/// Writes one audit line naming the network policy that decided (NPS "Network Policy Name").
#[allow(clippy::too_many_arguments)]
pub fn decision_by_policy(
    decision: Decision,
    client: &str,
    from: SocketAddr,
    user: Option<&[u8]>,
    method: Method,
    reason: Reason,
    policy: Option<&str>,
    detail: &str,
) {
    let user = user.map(SafeName);
    if let Some(policy) = policy {
        tracing::info!(
            target: "audit",
            event_id = decision.event_id(),
            decision = decision.as_str(),
            client = client,
            client_addr = %from,
            user = %user.as_ref().map(|u| u as &dyn fmt::Display).unwrap_or(&"-"),
            method = method.as_str(),
            reason_code = reason.code(),
            reason = reason.text(),
            policy = policy,
            detail = detail,
        );
        return;
    }
    tracing::info!(
        target: "audit",
        event_id = decision.event_id(),
        decision = decision.as_str(),
        client = client,
        client_addr = %from,
        user = %user.as_ref().map(|u| u as &dyn fmt::Display).unwrap_or(&"-"),
        method = method.as_str(),
        reason_code = reason.code(),
        reason = reason.text(),
        detail = detail,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_name_escapes_what_could_forge_a_line() {
        assert_eq!(SafeName(b"alice").to_string(), "alice");
        assert_eq!(SafeName(b"a\nb").to_string(), "a\\nb");
        assert_eq!(SafeName(b"a\"b\\").to_string(), "a\\\"b\\\\");
        assert_eq!(SafeName(b"\xffx").to_string(), "\\xffx");
        assert_eq!(SafeName(&[b'a'; 300]).to_string().len(), 256);
        assert_eq!(SafeName("j\u{f6}rg".as_bytes()).to_string(), "j\u{f6}rg");
    }

    #[test]
    fn nps_codes() {
        assert_eq!(Decision::Granted.event_id(), 6272);
        assert_eq!(Decision::Denied.event_id(), 6273);
        assert_eq!(Decision::Discarded.event_id(), 6274);
        assert_eq!(Reason::AuthenticationFailure.code(), 16);
        assert_eq!(Reason::NoSuchUser.code(), 8);
        assert_eq!(Reason::AccountDisabled.code(), 34);
        // The IAS_* reason codes of the directory path.
        assert_eq!(Reason::DomainUnavailable.code(), 5);
        assert_eq!(Reason::PasswordMustChange.code(), 33);
        assert_eq!(Reason::AccountExpired.code(), 35);
        assert_eq!(Reason::AccountLockedOut.code(), 36);
        assert_eq!(Reason::InvalidLogonHours.code(), 37);
        assert_eq!(Reason::AccountRestriction.code(), 38);
        assert_eq!(Reason::DialinDisabled.code(), 65);
        assert_eq!(Reason::NoPolicyMatch.code(), 48);
        assert_eq!(Reason::PolicyDenied.code(), 65);
    }
}
