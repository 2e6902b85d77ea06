//! What the directory needs to know; the server's TOML parsing fills it in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// A password (the service account's, or a user's for one bind). `Debug` never shows it; the
/// memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(s: String) -> Self {
        Password(Zeroizing::new(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How a RADIUS User-Name becomes a directory lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFormat {
    /// `DOMAIN\user` and `user` look up sAMAccountName (a `DOMAIN` other than the configured
    /// one is no such user); `user@suffix` looks up userPrincipalName.
    Auto,
    /// Always sAMAccountName: a `DOMAIN\` prefix and an `@suffix` are stripped.
    SamAccountName,
}

/// How the transport to the domain controllers is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://` URLs: TLS from the first byte. `ldap://` URLs are refused.
    Ldaps,
    /// `ldap://` URLs upgraded with StartTLS before any bind.
    StartTls,
    /// `ldap://` without TLS: passwords cross the network in clear. Only with an explicit
    /// `insecure_plaintext = true`.
    InsecurePlaintext,
}

/// The NTLM helper pool for MS-CHAPv2 (`ntlm_auth --helper-protocol=ntlm-server-1`).
#[derive(Debug, Clone)]
pub struct NtlmConfig {
    /// The `ntlm_auth` program.
    pub program: PathBuf,
    /// `--configfile` for ntlm_auth (the smb.conf that names winbind's socket directory).
    pub smb_conf: Option<PathBuf>,
    /// How many helper processes run at once (each handles one request at a time).
    pub helpers: usize,
}

#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Domain controllers in order of preference: `ldaps://host[:port]` or `ldap://host[:port]`.
    pub servers: Vec<String>,
    pub transport: Transport,
    /// PEM file of the CA(s) the DC certificates must chain to; `None` = the system roots
    /// (none are bundled: with `None`, TLS needs a certificate from a public CA).
    pub ca_file: Option<PathBuf>,
    /// Where users are searched (subtree).
    pub base_dn: String,
    /// The service account that searches.
    pub bind_dn: String,
    pub bind_password: Password,
    pub name_format: NameFormat,
    /// The NetBIOS domain name (`SAMDOM`): what `DOMAIN\user` must say, and what the NTLM
    /// helper is told.
    pub domain: Option<String>,
    /// Per-operation limit (connect + TLS, each bind, each search, each helper exchange).
    pub timeout: Duration,
    /// The whole request's limit, whatever failover happens inside it.
    pub request_timeout: Duration,
    /// Connections per DC and kind (service searches, user binds).
    pub pool_size: usize,
    /// A DC that failed is skipped for this long, then tried again.
    pub retry_down_after: Duration,
    /// How often DCs marked down are probed in the background.
    pub health_interval: Duration,
    /// How long a user's group list is reused (0 = no cache). Passwords are never cached.
    pub group_cache_ttl: Duration,
    pub group_cache_entries: usize,
    /// Further attributes to read for each user (e.g. for the MFA identity mapping).
    pub attributes: Vec<String>,
    /// msNPAllowDialin = FALSE rejects unless this is set.
    pub ignore_dialin: bool,
    pub ntlm: Option<NtlmConfig>,
}

impl DirectoryConfig {
    /// A configuration with the defaults for everything but the essentials.
    pub fn new(
        servers: Vec<String>,
        base_dn: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: Password,
    ) -> Self {
        DirectoryConfig {
            servers,
            transport: Transport::Ldaps,
            ca_file: None,
            base_dn: base_dn.into(),
            bind_dn: bind_dn.into(),
            bind_password,
            name_format: NameFormat::Auto,
            domain: None,
            timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            pool_size: 8,
            retry_down_after: Duration::from_secs(30),
            health_interval: Duration::from_secs(10),
            group_cache_ttl: Duration::from_secs(60),
            group_cache_entries: 100_000,
            attributes: Vec::new(),
            ignore_dialin: false,
            ntlm: None,
        }
    }
}
