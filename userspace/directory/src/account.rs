//! The account as the directory describes it, and the rules that turn its attributes, an LDAP
//! bind's diagnostic or an NTLM status into a [`Denial`]. Pure: no I/O, the time is passed in.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::config::NameFormat;
use crate::error::DirectoryError;

/// Why the directory refused a login, each with its own NPS reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No account matches the user name.
    NoSuchUser,
    /// Wrong password (or MS-CHAPv2 response).
    BadCredentials,
    /// userAccountControl ACCOUNTDISABLE.
    AccountDisabled,
    /// Locked out after too many bad passwords.
    AccountLockedOut,
    /// accountExpires is in the past.
    AccountExpired,
    /// The password is older than the domain's maximum age.
    PasswordExpired,
    /// pwdLastSet = 0: the user must set a new password first.
    PasswordMustChange,
    /// Outside the account's logon hours.
    InvalidLogonHours,
    /// Another account restriction (e.g. workstation restriction).
    AccountRestriction,
    /// msNPAllowDialin = FALSE.
    DialinDenied,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::NoSuchUser => "no such user in the directory",
            Denial::BadCredentials => "wrong password",
            Denial::AccountDisabled => "account disabled",
            Denial::AccountLockedOut => "account locked out",
            Denial::AccountExpired => "account expired",
            Denial::PasswordExpired => "password expired",
            Denial::PasswordMustChange => "password must be changed",
            Denial::InvalidLogonHours => "outside the account's logon hours",
            Denial::AccountRestriction => "account restriction",
            Denial::DialinDenied => "dial-in permission denied (msNPAllowDialin = FALSE)",
        }
    }
}

/// A group the user is a member of, directly or through other groups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub dn: String,
    pub cn: String,
}

/// What the directory says about an account (no secrets in it).
#[derive(Debug, Clone, Default)]
pub struct UserInfo {
    pub dn: String,
    pub sam_account_name: String,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    /// msNPAllowDialin: `None` when absent (policy decides).
    pub dialin: Option<bool>,
    pub user_account_control: u32,
    /// msDS-User-Account-Control-Computed, when the DC computed it.
    pub uac_computed: Option<u32>,
    pub lockout_time: i64,
    pub account_expires: i64,
    pub pwd_last_set: Option<i64>,
    /// Nested group membership (filled in after authentication succeeded).
    pub groups: Vec<Group>,
    /// Every attribute read, by lower-cased name (text values only).
    pub attributes: BTreeMap<String, Vec<String>>,
}

const UF_ACCOUNTDISABLE: u32 = 0x2;
const UF_LOCKOUT: u32 = 0x10;
const UF_PASSWORD_EXPIRED: u32 = 0x80_0000;
/// accountExpires: "never" is 0 or 0x7FFFFFFFFFFFFFFF.
const NEVER: i64 = i64::MAX;
/// Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_S: i64 = 11_644_473_600;

/// The attributes every lookup reads.
pub const USER_ATTRIBUTES: &[&str] = &[
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "lockoutTime",
    "accountExpires",
    "pwdLastSet",
    "msNPAllowDialin",
];

/// Now as a Windows FILETIME (100 ns ticks since 1601).
pub fn filetime(now: SystemTime) -> i64 {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64 + FILETIME_UNIX_OFFSET_S) * 10_000_000 + i64::from(d.subsec_nanos() / 100)
}

impl UserInfo {
    /// Builds the record from a search entry's attributes (names in any case).
    pub fn from_attributes(
        dn: String,
        attrs: &std::collections::HashMap<String, Vec<String>>,
    ) -> Self {
        let mut attributes = BTreeMap::new();
        for (k, v) in attrs {
            attributes.insert(k.to_ascii_lowercase(), v.clone());
        }
        let first = |name: &str| {
            attributes
                .get(&name.to_ascii_lowercase())
                .and_then(|v: &Vec<String>| v.first())
                .cloned()
        };
        let int = |name: &str| first(name).and_then(|s| s.trim().parse::<i64>().ok());
        UserInfo {
            sam_account_name: first("sAMAccountName").unwrap_or_default(),
            user_principal_name: first("userPrincipalName"),
            mail: first("mail"),
            dialin: first("msNPAllowDialin").and_then(|v| match v.to_ascii_uppercase().as_str() {
                "TRUE" => Some(true),
                "FALSE" => Some(false),
                _ => None,
            }),
            // userAccountControl is a signed 32-bit integer on the wire.
            user_account_control: int("userAccountControl").map_or(0, |v| v as u32),
            uac_computed: int("msDS-User-Account-Control-Computed").map(|v| v as u32),
            lockout_time: int("lockoutTime").unwrap_or(0),
            account_expires: int("accountExpires").unwrap_or(0),
            pwd_last_set: int("pwdLastSet"),
            groups: Vec::new(),
            attributes,
            dn,
        }
    }

    /// The first value of an attribute (any case), e.g. for the MFA identity mapping.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// An account restriction the attributes show, in the order Windows checks them.
    pub fn restriction(&self, now_filetime: i64) -> Option<Denial> {
        if self.user_account_control & UF_ACCOUNTDISABLE != 0 {
            return Some(Denial::AccountDisabled);
        }
        let locked = match self.uac_computed {
            Some(c) => c & UF_LOCKOUT != 0,
            None => self.lockout_time > 0,
        };
        if locked {
            return Some(Denial::AccountLockedOut);
        }
        if self.account_expires != 0
            && self.account_expires != NEVER
            && self.account_expires <= now_filetime
        {
            return Some(Denial::AccountExpired);
        }
        if self.pwd_last_set == Some(0) {
            return Some(Denial::PasswordMustChange);
        }
        if self.uac_computed.unwrap_or(0) & UF_PASSWORD_EXPIRED != 0 {
            return Some(Denial::PasswordExpired);
        }
        None
    }
}

/// What an LDAP simple bind's "invalid credentials" (49) says in Active Directory's diagnostic
/// text (`... AcceptSecurityContext error, data 52e, v...`).
pub fn bind_denial(diagnostic: &str) -> Denial {
    let code = diagnostic
        .split(", ")
        .find_map(|part| part.trim().strip_prefix("data "))
        .map(|c| c.trim().to_ascii_lowercase());
    match code.as_deref() {
        Some("525") => Denial::NoSuchUser,
        Some("530") => Denial::InvalidLogonHours,
        Some("531") => Denial::AccountRestriction,
        Some("532") => Denial::PasswordExpired,
        Some("533") => Denial::AccountDisabled,
        Some("701") => Denial::AccountExpired,
        Some("773") => Denial::PasswordMustChange,
        Some("775") => Denial::AccountLockedOut,
        _ => Denial::BadCredentials,
    }
}

/// What an NTLM status from winbind means: a denial, or `None` when it says the domain could
/// not be asked (an outage, not an answer).
pub fn ntstatus_denial(status: &str) -> Option<Denial> {
    Some(match status.trim() {
        "NT_STATUS_WRONG_PASSWORD" | "NT_STATUS_LOGON_FAILURE" => Denial::BadCredentials,
        "NT_STATUS_NO_SUCH_USER" => Denial::NoSuchUser,
        "NT_STATUS_ACCOUNT_DISABLED" => Denial::AccountDisabled,
        "NT_STATUS_ACCOUNT_LOCKED_OUT" => Denial::AccountLockedOut,
        "NT_STATUS_ACCOUNT_EXPIRED" => Denial::AccountExpired,
        "NT_STATUS_PASSWORD_EXPIRED" => Denial::PasswordExpired,
        "NT_STATUS_PASSWORD_MUST_CHANGE" => Denial::PasswordMustChange,
        "NT_STATUS_INVALID_LOGON_HOURS" => Denial::InvalidLogonHours,
        "NT_STATUS_ACCOUNT_RESTRICTION" | "NT_STATUS_INVALID_WORKSTATION" => {
            Denial::AccountRestriction
        }
        _ => return None,
    })
}

/// The lookup a user name turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    SamAccountName(String),
    UserPrincipalName(String),
}

impl Lookup {
    /// The LDAP filter, with the value escaped (RFC 4515).
    pub fn filter(&self) -> String {
        let (attr, v) = match self {
            Lookup::SamAccountName(v) => ("sAMAccountName", v),
            Lookup::UserPrincipalName(v) => ("userPrincipalName", v),
        };
        format!(
            "(&(objectCategory=person)(objectClass=user)({attr}={}))",
            ldap3::ldap_escape(v.as_str())
        )
    }
}

/// Turns a RADIUS User-Name into a lookup. `Ok(None)`: the name names another domain.
pub fn normalise(
    name: &str,
    format: NameFormat,
    domain: Option<&str>,
) -> Result<Option<Lookup>, DirectoryError> {
    if name.is_empty() {
        return Err(DirectoryError::InvalidUserName { reason: "empty" });
    }
    if name.len() > 256 {
        return Err(DirectoryError::InvalidUserName {
            reason: "longer than 256 bytes",
        });
    }
    if name.chars().any(char::is_control) {
        return Err(DirectoryError::InvalidUserName {
            reason: "contains control characters",
        });
    }
    let (prefix, rest) = match name.split_once('\\') {
        Some((d, u)) => (Some(d), u),
        None => (None, name),
    };
    if let (Some(p), Some(d)) = (prefix, domain) {
        if format == NameFormat::Auto && !p.eq_ignore_ascii_case(d) {
            return Ok(None);
        }
    }
    let out = match format {
        NameFormat::Auto if prefix.is_none() && rest.contains('@') => {
            Lookup::UserPrincipalName(rest.to_owned())
        }
        NameFormat::Auto => Lookup::SamAccountName(rest.to_owned()),
        NameFormat::SamAccountName => {
            Lookup::SamAccountName(rest.split('@').next().unwrap_or(rest).to_owned())
        }
    };
    match &out {
        Lookup::SamAccountName(s) | Lookup::UserPrincipalName(s) if s.is_empty() => {
            Err(DirectoryError::InvalidUserName {
                reason: "nothing left after the domain",
            })
        }
        _ => Ok(Some(out)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn user(pairs: &[(&str, &str)]) -> UserInfo {
        let mut m = HashMap::new();
        for (k, v) in pairs {
            m.insert((*k).to_owned(), vec![(*v).to_owned()]);
        }
        UserInfo::from_attributes("CN=x".into(), &m)
    }

    const NOW: i64 = 134_000_000_000_000_000;

    #[test]
    fn restrictions_in_windows_order() {
        assert_eq!(
            user(&[("userAccountControl", "512")]).restriction(NOW),
            None
        );
        assert_eq!(
            user(&[("userAccountControl", "514"), ("lockoutTime", "5")]).restriction(NOW),
            Some(Denial::AccountDisabled)
        );
        // The computed attribute wins over a stale lockoutTime.
        assert_eq!(
            user(&[
                ("lockoutTime", "5"),
                ("msDS-User-Account-Control-Computed", "0")
            ])
            .restriction(NOW),
            None
        );
        assert_eq!(
            user(&[("lockoutTime", "5")]).restriction(NOW),
            Some(Denial::AccountLockedOut)
        );
        assert_eq!(
            user(&[("msDS-User-Account-Control-Computed", "16")]).restriction(NOW),
            Some(Denial::AccountLockedOut)
        );
        assert_eq!(
            user(&[("accountExpires", "125911584000000000")]).restriction(NOW),
            Some(Denial::AccountExpired)
        );
        assert_eq!(
            user(&[("accountExpires", "9223372036854775807")]).restriction(NOW),
            None
        );
        assert_eq!(user(&[("accountExpires", "0")]).restriction(NOW), None);
        assert_eq!(
            user(&[
                ("pwdLastSet", "0"),
                ("msDS-User-Account-Control-Computed", "8388608")
            ])
            .restriction(NOW),
            Some(Denial::PasswordMustChange)
        );
        assert_eq!(
            user(&[
                ("pwdLastSet", "1"),
                ("msDS-User-Account-Control-Computed", "8388608")
            ])
            .restriction(NOW),
            Some(Denial::PasswordExpired)
        );
    }

    #[test]
    fn dialin_and_attributes() {
        assert_eq!(user(&[("msNPAllowDialin", "FALSE")]).dialin, Some(false));
        assert_eq!(user(&[("msnpallowdialin", "TRUE")]).dialin, Some(true));
        assert_eq!(user(&[]).dialin, None);
        assert_eq!(user(&[("Mail", "a@b")]).attribute("mail"), Some("a@b"));
    }

    #[test]
    fn bind_diagnostics() {
        let d = |c| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {c}, v1db1")
        };
        assert_eq!(bind_denial(&d("52e")), Denial::BadCredentials);
        assert_eq!(bind_denial(&d("533")), Denial::AccountDisabled);
        assert_eq!(bind_denial(&d("701")), Denial::AccountExpired);
        assert_eq!(bind_denial(&d("773")), Denial::PasswordMustChange);
        assert_eq!(bind_denial(&d("775")), Denial::AccountLockedOut);
        assert_eq!(bind_denial(&d("532")), Denial::PasswordExpired);
        assert_eq!(bind_denial("something else"), Denial::BadCredentials);
    }

    #[test]
    fn ntstatus() {
        assert_eq!(
            ntstatus_denial("NT_STATUS_WRONG_PASSWORD"),
            Some(Denial::BadCredentials)
        );
        assert_eq!(
            ntstatus_denial("NT_STATUS_ACCOUNT_DISABLED"),
            Some(Denial::AccountDisabled)
        );
        assert_eq!(ntstatus_denial("NT_STATUS_NO_LOGON_SERVERS"), None);
    }

    #[test]
    fn names() {
        let n = |s| normalise(s, NameFormat::Auto, Some("SAMDOM")).unwrap();
        assert_eq!(n("alice"), Some(Lookup::SamAccountName("alice".into())));
        assert_eq!(
            n("samdom\\alice"),
            Some(Lookup::SamAccountName("alice".into()))
        );
        assert_eq!(n("OTHER\\alice"), None);
        assert_eq!(
            n("alice@samdom.test"),
            Some(Lookup::UserPrincipalName("alice@samdom.test".into()))
        );
        let s = |s| normalise(s, NameFormat::SamAccountName, None).unwrap();
        assert_eq!(s("X\\bob"), Some(Lookup::SamAccountName("bob".into())));
        assert_eq!(s("bob@x.y"), Some(Lookup::SamAccountName("bob".into())));
        assert!(normalise("", NameFormat::Auto, None).is_err());
        assert!(normalise("a\nb", NameFormat::Auto, None).is_err());
        assert!(normalise("D\\", NameFormat::Auto, None).is_err());
        // Filter values are escaped.
        assert_eq!(
            Lookup::SamAccountName("a*)(x".into()).filter(),
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName=a\\2a\\29\\28x))"
        );
    }

    #[test]
    fn filetime_epoch() {
        assert_eq!(filetime(SystemTime::UNIX_EPOCH), 116_444_736_000_000_000);
    }
}
