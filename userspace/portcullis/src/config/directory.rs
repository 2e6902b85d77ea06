//! `[directory]`: Active Directory as the primary authentication backend for the users the
//! local store does not hold. Parsed here; `mod.rs` only hooks it in.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Cx};

/// What to do with a request when no domain controller can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Access-Reject with NPS reason 5 (the default).
    Reject,
    /// No answer, so the NAS retries or fails over to another RADIUS server (audited as
    /// discarded, reason 5).
    Discard,
}

/// The `[directory]` section as the server uses it.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    pub directory: portcullis_directory::DirectoryConfig,
    pub on_unavailable: OnUnavailable,
    /// Line of the `[directory]` table.
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    servers: Spanned<Vec<Spanned<String>>>,
    base_dn: Spanned<String>,
    bind_dn: Spanned<String>,
    bind_password: Option<String>,
    bind_password_file: Option<String>,
    ca_file: Option<String>,
    starttls: Option<bool>,
    insecure_plaintext: Option<bool>,
    user_name_format: Option<Spanned<String>>,
    domain: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<i64>>,
    request_timeout_ms: Option<Spanned<i64>>,
    pool_size: Option<Spanned<i64>>,
    retry_down_after_seconds: Option<Spanned<i64>>,
    health_interval_seconds: Option<Spanned<i64>>,
    group_cache_ttl_seconds: Option<Spanned<i64>>,
    group_cache_entries: Option<Spanned<i64>>,
    attributes: Option<Vec<Spanned<String>>>,
    ignore_dialin: Option<bool>,
    on_unavailable: Option<OnUnavailable>,
    ntlm_auth: Option<String>,
    smb_conf: Option<String>,
    ntlm_helpers: Option<Spanned<i64>>,
}

impl Cx<'_> {
    pub(super) fn directory(
        &self,
        d: &Spanned<RawDirectory>,
        login_id_attribute: Option<&str>,
    ) -> Result<DirectorySettings, ConfigError> {
        use portcullis_directory::{DirectoryConfig, NameFormat, NtlmConfig, Password, Transport};
        let line = self.line_of(d.span().start);
        let r = d.get_ref();
        let starttls = r.starttls.unwrap_or(false);
        let insecure = r.insecure_plaintext.unwrap_or(false);
        let transport = match (starttls, insecure) {
            (true, true) => {
                return Err(self.err_line(
                    line,
                    "directory: starttls and insecure_plaintext exclude each other",
                ))
            }
            (true, false) => Transport::StartTls,
            (false, true) => Transport::InsecurePlaintext,
            (false, false) => Transport::Ldaps,
        };
        if r.servers.get_ref().is_empty() {
            return Err(self.err(
                &r.servers,
                "directory.servers must list at least one server",
            ));
        }
        let mut servers = Vec::new();
        for s in r.servers.get_ref() {
            let v = s.get_ref();
            let Ok(u) = url::Url::parse(v) else {
                return Err(self.err(
                    s,
                    format!("directory.servers: `{v}` is not a URL (ldaps://host:636)"),
                ));
            };
            if u.host_str().is_none_or(str::is_empty) {
                return Err(self.err(s, format!("directory.servers: `{v}` has no host")));
            }
            match (u.scheme(), transport) {
                ("ldaps", Transport::Ldaps) => {}
                ("ldap", Transport::StartTls | Transport::InsecurePlaintext) => {}
                ("ldaps", _) => {
                    return Err(self.err(
                        s,
                        format!("directory.servers: `{v}` is ldaps://, which starttls / insecure_plaintext do not use (give ldap:// URLs)"),
                    ))
                }
                ("ldap", _) => {
                    return Err(self.err(
                        s,
                        format!("directory.servers: `{v}` is plain ldap://: use ldaps://, or starttls = true (insecure_plaintext = true sends passwords in clear)"),
                    ))
                }
                (other, _) => {
                    return Err(self.err(
                        s,
                        format!("directory.servers: scheme `{other}` is not ldaps or ldap"),
                    ))
                }
            }
            if servers.contains(v) {
                return Err(self.err(s, format!("directory.servers: `{v}` is listed twice")));
            }
            servers.push(v.clone());
        }
        for (v, what) in [(&r.base_dn, "base_dn"), (&r.bind_dn, "bind_dn")] {
            if v.get_ref().trim().is_empty() || !v.get_ref().contains('=') {
                return Err(self.err(
                    v,
                    format!("directory.{what} must be a DN (e.g. DC=corp,DC=example)"),
                ));
            }
        }
        let bind_password = self.secret_value(
            &r.bind_password,
            &r.bind_password_file,
            &r.bind_dn,
            "bind_password",
        )?;
        let name_format = match &r.user_name_format {
            None => NameFormat::Auto,
            Some(f) => match f.get_ref().as_str() {
                "auto" => NameFormat::Auto,
                "samaccountname" => NameFormat::SamAccountName,
                other => {
                    return Err(self.err(
                        f,
                        format!(
                            "directory.user_name_format `{other}` is not auto or samaccountname"
                        ),
                    ))
                }
            },
        };
        let domain = match &r.domain {
            None => None,
            Some(d) => {
                let v = d.get_ref();
                if v.is_empty()
                    || v.len() > 15
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(self.err(
                        d,
                        format!("directory.domain `{v}` is not a NetBIOS domain name (e.g. CORP)"),
                    ));
                }
                Some(v.clone())
            }
        };
        let ms = |v: &Option<Spanned<i64>>, d: usize, lo: i64, hi: i64, what: &str| {
            self.positive(v, d, lo, hi, what)
                .map(|n| Duration::from_millis(n as u64))
        };
        let secs = |v: &Option<Spanned<i64>>, d: usize, lo: i64, hi: i64, what: &str| {
            self.positive(v, d, lo, hi, what)
                .map(|n| Duration::from_secs(n as u64))
        };
        let timeout = ms(&r.timeout_ms, 3000, 100, 60_000, "directory.timeout_ms")?;
        let request_timeout = ms(
            &r.request_timeout_ms,
            10_000,
            100,
            // Below the duplicate cache's in-progress limit (the MFA timeouts + 60 s).
            60_000,
            "directory.request_timeout_ms",
        )?;
        if request_timeout < timeout {
            let at = r
                .request_timeout_ms
                .as_ref()
                .map_or(line, |s| self.line_of(s.span().start));
            return Err(self.err_line(
                at,
                "directory.request_timeout_ms must not be below timeout_ms",
            ));
        }
        let mut attributes = Vec::new();
        for a in r.attributes.iter().flatten() {
            let v = a.get_ref();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(self.err(
                    a,
                    format!("directory.attributes: `{v}` is not an LDAP attribute name"),
                ));
            }
            attributes.push(v.clone());
        }
        if let Some(a) = login_id_attribute {
            if !attributes.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attributes.push(a.to_owned());
            }
        }
        let ntlm = match (&r.ntlm_auth, &r.smb_conf, &r.ntlm_helpers) {
            (None, None, None) => None,
            (None, _, _) => return Err(self.err_line(
                line,
                "directory: smb_conf / ntlm_helpers need ntlm_auth (the path of Samba's ntlm_auth)",
            )),
            (Some(p), conf, helpers) => {
                if domain.is_none() {
                    return Err(self.err_line(
                        line,
                        "directory: MS-CHAPv2 through ntlm_auth needs `domain` (the NetBIOS domain name)",
                    ));
                }
                Some(NtlmConfig {
                    program: self.path(p),
                    smb_conf: conf.as_deref().map(|c| self.path(c)),
                    helpers: self.positive(helpers, 4, 1, 64, "directory.ntlm_helpers")?,
                })
            }
        };
        let mut c = DirectoryConfig::new(
            servers,
            r.base_dn.get_ref().clone(),
            r.bind_dn.get_ref().clone(),
            Password::new(bind_password.expose().to_owned()),
        );
        c.transport = transport;
        c.ca_file = r.ca_file.as_deref().map(|p| self.path(p));
        c.name_format = name_format;
        c.domain = domain;
        c.timeout = timeout;
        c.request_timeout = request_timeout;
        c.pool_size = self.positive(&r.pool_size, 8, 1, 256, "directory.pool_size")?;
        c.retry_down_after = secs(
            &r.retry_down_after_seconds,
            30,
            1,
            3600,
            "directory.retry_down_after_seconds",
        )?;
        c.health_interval = secs(
            &r.health_interval_seconds,
            10,
            1,
            3600,
            "directory.health_interval_seconds",
        )?;
        c.group_cache_ttl = secs(
            &r.group_cache_ttl_seconds,
            60,
            0,
            3600,
            "directory.group_cache_ttl_seconds",
        )?;
        c.group_cache_entries = self.positive(
            &r.group_cache_entries,
            100_000,
            1,
            10_000_000,
            "directory.group_cache_entries",
        )?;
        c.attributes = attributes;
        c.ignore_dialin = r.ignore_dialin.unwrap_or(false);
        c.ntlm = ntlm;
        Ok(DirectorySettings {
            directory: c,
            on_unavailable: r.on_unavailable.unwrap_or(OnUnavailable::Reject),
            line,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Config, Origin};
    use std::path::PathBuf;

    fn parse(text: &str) -> Result<Config, super::ConfigError> {
        Config::parse(
            text,
            Origin::File(PathBuf::from("/etc/portcullis/test.toml")),
        )
    }

    const OK: &str = "[directory]\nservers = [\"ldaps://dc1.corp.example:636\", \"ldaps://dc2.corp.example\"]\nbase_dn = \"DC=corp,DC=example\"\nbind_dn = \"CN=svc,CN=Users,DC=corp,DC=example\"\nbind_password = \"Svc#Secret-1\"\n";

    #[test]
    fn a_minimal_directory_and_its_defaults() {
        let c = parse(OK).unwrap();
        let d = c.directory.unwrap();
        assert_eq!(d.line, 1);
        assert_eq!(d.directory.servers.len(), 2);
        assert_eq!(
            d.directory.transport,
            portcullis_directory::Transport::Ldaps
        );
        assert_eq!(d.directory.timeout.as_millis(), 3000);
        assert_eq!(d.directory.group_cache_ttl.as_secs(), 60);
        assert!(!d.directory.ignore_dialin);
        assert!(d.directory.ntlm.is_none());
        assert_eq!(d.on_unavailable, super::OnUnavailable::Reject);
        // The service password never prints.
        assert!(!format!("{d:?}").contains("Svc#Secret-1"));
        assert!(parse("").unwrap().directory.is_none());
    }

    #[test]
    fn mfa_login_id_attribute_is_read_from_the_directory() {
        let c = parse(&format!("[mfa]\nlogin_id_attribute = \"mail\"\n{OK}")).unwrap();
        assert_eq!(c.directory.unwrap().directory.attributes, ["mail"]);
    }

    #[test]
    fn errors_name_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("servers = [\"ldap://dc1\"]", 2, "plain ldap://"),
            ("servers = [\"http://dc1\"]", 2, "not ldaps or ldap"),
            ("servers = []", 2, "at least one"),
            ("servers = [\"ldaps://dc1\", \"ldaps://dc1\"]", 2, "twice"),
            (
                "servers = [\"ldaps://dc1\"]\nfrobnicate = 1",
                3,
                "unknown field",
            ),
            (
                "servers = [\"ldaps://dc1\"]\ntimeout_ms = 5",
                3,
                "between 100",
            ),
            (
                "servers = [\"ldaps://dc1\"]\nuser_name_format = \"x\"",
                3,
                "auto or samaccountname",
            ),
            (
                "servers = [\"ldaps://dc1\"]\nntlm_auth = \"/usr/bin/ntlm_auth\"",
                1,
                "needs `domain`",
            ),
            (
                "servers = [\"ldaps://dc1\"]\ndomain = \"NOT A DOMAIN\"",
                3,
                "NetBIOS",
            ),
            (
                "servers = [\"ldaps://dc1\"]\nstarttls = true\ninsecure_plaintext = true",
                1,
                "exclude",
            ),
        ];
        for (extra, line, want) in cases {
            let text = format!("[directory]\n{extra}\nbase_dn = \"DC=x\"\nbind_dn = \"CN=s,DC=x\"\nbind_password = \"p\"\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, *line, "{extra}: {e}");
            assert!(e.reason.contains(want), "{extra}: {e}");
            assert_eq!(e.file, "/etc/portcullis/test.toml");
        }
        let e = parse("[directory]\nservers = [\"ldaps://dc1\"]\nbase_dn = \"DC=x\"\nbind_dn = \"CN=s,DC=x\"\n").unwrap_err();
        assert!(e.reason.contains("bind_password"), "{e}");
        let e = parse("[directory]\nservers = [\"ldap://dc1\"]\nstarttls = true\nbase_dn = \"DC=x\"\nbind_dn = \"CN=s,DC=x\"\nbind_password_file = \"/nonexistent/pw\"\n").unwrap_err();
        assert!(e.reason.contains("cannot read bind_password_file"), "{e}");
    }

    #[test]
    fn starttls_plaintext_and_helpers() {
        let c = parse("[directory]\nservers = [\"ldap://dc1:389\"]\nstarttls = true\nbase_dn = \"DC=x\"\nbind_dn = \"CN=s,DC=x\"\nbind_password = \"p\"\ndomain = \"CORP\"\nntlm_auth = \"/usr/bin/ntlm_auth\"\nsmb_conf = \"smb.conf\"\nntlm_helpers = 2\non_unavailable = \"discard\"\nuser_name_format = \"samaccountname\"\n").unwrap();
        let d = c.directory.unwrap();
        assert_eq!(
            d.directory.transport,
            portcullis_directory::Transport::StartTls
        );
        let n = d.directory.ntlm.unwrap();
        assert_eq!(n.helpers, 2);
        assert_eq!(
            n.smb_conf.unwrap(),
            PathBuf::from("/etc/portcullis/smb.conf")
        );
        assert_eq!(d.on_unavailable, super::OnUnavailable::Discard);
    }
}
