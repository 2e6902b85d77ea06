//! Configuration: the TOML schema, its validation, and the embedded default.
//!
//! Every error names the file, the line and the reason (`portcullis check-config` prints exactly
//! that). Values that need checking beyond their TOML type are read as [`toml::Spanned`] so the
//! error can point at the offending line. Secrets are kept in [`Secret`], whose `Debug` is redacted.
//!
//! The key reference lives in `docs/configuration.md`; every example there and the embedded
//! default are parsed by tests.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

mod directory;
mod policy;
pub use directory::{DirectorySettings, OnUnavailable};
pub use policy::{PoliciesConfig, PolicyAccess, PolicyConfig, PolicyMfa};

/// The configuration `portcullis serve` uses when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../defaults/portcullis.toml");
/// The demo users of the embedded default (`alice`, `bob`); see README.
pub const EMBEDDED_USERS: &str = include_str!("../../defaults/users.toml");
/// The reversible-encryption key for the demo users' CHAP entries. Demo only: a real deployment
/// generates its own with `portcullis users gen-key`.
pub const EMBEDDED_CHAP_KEY: &str = include_str!("../../defaults/users.key");
/// The demo TOTP enrollments of the embedded default: `bob` with the seed `JBSWY3DPEHPK3PXP`
/// (README), encrypted with the demo key above.
pub const EMBEDDED_TOTP: &str = include_str!("../../defaults/totp.toml");
/// Name used in error messages for the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// A configuration that could not be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem is not tied to a line (e.g. the file cannot be read).
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A shared secret or other secret string from the config. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the configuration came from; relative paths resolve against `base_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Embedded,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: Origin,
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub xdp: XdpConfig,
    pub clients: Vec<ClientConfig>,
    pub users: UsersConfig,
    pub accounting: AccountingConfig,
    pub log: LogConfig,
    pub mfa: MfaConfig,
    /// `[directory]`: Active Directory for the users the local store does not hold.
    pub directory: Option<DirectorySettings>,
    /// `[[policy]]` (in order) and `[policies]`: network policies after the first factor.
    pub policies: PoliciesConfig,
}

/// What to do when the MFA service cannot answer (unreachable, timeout, circuit open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Reject the login (the default).
    Secure,
    /// Accept on the first factor alone, with an audit line saying so.
    Safe,
}

/// The second factor: the NPS extension's settings with the same meaning, and the providers.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// REQUIRE_USER_MATCH: users without a second factor are rejected (`true`) or let in on
    /// their first factor with an audit line (`false`, meant for onboarding).
    pub require_user_match: bool,
    /// OVERRIDE_NUMBER_MATCHING_WITH_OTP: ask PAP users with a code-capable method for a code
    /// through Access-Challenge (`true`) rather than sending a push (`false`).
    pub override_number_matching_with_otp: bool,
    /// IP_WHITELIST: NAS-IP-Address values (the attribute, not the packet source) for which
    /// the second factor is skipped.
    pub skip_nas_ip: Vec<std::net::IpAddr>,
    /// LDAP_ALTERNATE_LOGINID_ATTRIBUTE: send this user attribute (e.g. `mail`) as the MFA
    /// identity instead of the user name; users without it fall back to their user name.
    pub login_id_attribute: Option<String>,
    /// A new login by the same user on the same NAS while a push is pending joins it.
    pub join_pending_logins: bool,
    pub push_timeout: Duration,
    pub challenge_timeout: Duration,
    pub max_pending_per_shard: usize,
    pub max_pending_per_client: usize,
    pub max_pending_per_user: usize,
    pub max_challenges: usize,
    /// Provider calls (push sends and status polls) one shard runs at once.
    pub max_provider_calls_per_shard: usize,
    /// Status polls one shard sends per second, over all its pending pushes.
    pub max_status_polls_per_second_per_shard: u32,
    pub providers: Vec<MfaProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct Resilience {
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub breaker_failures: u32,
    pub breaker_reset: Duration,
}

#[derive(Debug, Clone)]
pub struct MfaProviderConfig {
    pub name: String,
    pub fail_mode: FailMode,
    pub resilience: Resilience,
    pub kind: MfaProviderKind,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum MfaProviderKind {
    /// Local TOTP (RFC 6238); enrollments in a store file, seeds encrypted with the key file.
    Totp {
        /// `None`: the embedded demo store (embedded default only).
        store: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
    /// Duo Auth API v2 (preauth, auth with async=1, auth_status long-poll; signed requests).
    Duo {
        api_url: String,
        integration_key: String,
        secret_key: Secret,
        ca_file: Option<PathBuf>,
    },
    /// The Entra MFA service as the NPS extension speaks to it (OAuth2 client credentials,
    /// BeginTwoWayAuthentication / EndTwoWayAuthentication).
    Entra {
        tenant_id: String,
        client_id: String,
        client_secret: Option<Secret>,
        certificate: Option<(PathBuf, PathBuf)>,
        login_url: String,
        service_url: String,
        ca_file: Option<PathBuf>,
    },
    /// A privacyIDEA server (/validate/check, challenge-response, push polling).
    PrivacyIdea {
        url: String,
        realm: Option<String>,
        verify_tls: bool,
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth_listen: Vec<SocketAddr>,
    pub acct_listen: Vec<SocketAddr>,
    /// Number of shards (threads, each with its own SO_REUSEPORT sockets); 0 = one per core.
    pub shards: usize,
    pub recv_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    /// How long answered requests stay in the RFC 5080 duplicate cache.
    pub duplicate_window: Duration,
    /// Upper bound on duplicate-cache entries per shard (oldest are evicted first).
    pub duplicate_cache_entries: usize,
    /// Datagrams read per recvmmsg call.
    pub batch: usize,
    /// Replies to the same NAS address with the same length are sent as one UDP GSO message.
    pub udp_gso: bool,
    pub control_socket: PathBuf,
    /// How long shutdown waits for in-flight work before giving up.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    Off,
    Auto,
    Generic,
    Native,
}

/// Largest packets-per-second or burst value of an XDP rate limit.
const MAX_RATE_LIMIT: i64 = 100_000_000;

#[derive(Debug, Clone)]
pub struct XdpConfig {
    pub mode: XdpModeSetting,
    pub interfaces: Vec<String>,
    /// Refuse to start when the program cannot be attached.
    pub required: bool,
    /// Packets per second from all known clients together, enforced in XDP (0 = unlimited).
    pub global_rate_limit_pps: u32,
    /// Bucket size of the global limit in packets (0 = one second's worth).
    pub global_rate_limit_burst: u32,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub name: String,
    pub network: IpNet,
    pub secret: Secret,
    /// During a secret change-over: the next secret, accepted as well as `secret` (replies are
    /// signed with whichever verified the request).
    pub secret_next: Option<Secret>,
    pub require_message_authenticator: bool,
    /// Packets per second this client may send, enforced in XDP (0 = unlimited).
    pub rate_limit_pps: u32,
    /// Bucket size of the client's limit in packets (0 = one second's worth).
    pub rate_limit_burst: u32,
    /// The MFA provider every login through this client must pass; `None` = first factor only.
    pub mfa: Option<String>,
    /// Line of the `[[client]]` entry, for later diagnostics.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum UsersSource {
    /// No local users at all.
    None,
    /// The demo users compiled into the binary (embedded default only).
    Embedded,
    File {
        path: PathBuf,
        chap_key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub source: UsersSource,
}

#[derive(Debug, Clone)]
pub struct AccountingConfig {
    /// Directory of the daily accounting files (`accounting-YYYY-MM-DD.jsonl`).
    pub directory: PathBuf,
    /// Most records written per fsync (group commit).
    pub max_batch: usize,
    /// Size of the accounting journal (`journal_mib`); `None`: no journal, the day's file is
    /// synced after every batch.
    pub journal_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

// ---- raw TOML schema ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    xdp: RawXdp,
    #[serde(default, rename = "client")]
    clients: Vec<Spanned<RawClient>>,
    users: Option<RawUsers>,
    #[serde(default)]
    accounting: RawAccounting,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    mfa: RawMfa,
    directory: Option<Spanned<directory::RawDirectory>>,
    #[serde(default, rename = "policy")]
    policy: Vec<Spanned<policy::RawPolicy>>,
    #[serde(default)]
    policies: policy::RawPolicies,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMfa {
    require_user_match: Option<bool>,
    override_number_matching_with_otp: Option<bool>,
    skip_nas_ip: Option<Vec<Spanned<String>>>,
    login_id_attribute: Option<String>,
    join_pending_logins: Option<bool>,
    push_timeout_seconds: Option<Spanned<i64>>,
    challenge_timeout_seconds: Option<Spanned<i64>>,
    max_pending_per_shard: Option<Spanned<i64>>,
    max_pending_per_client: Option<Spanned<i64>>,
    max_pending_per_user: Option<Spanned<i64>>,
    max_challenges: Option<Spanned<i64>>,
    max_provider_calls_per_shard: Option<Spanned<i64>>,
    max_status_polls_per_second_per_shard: Option<Spanned<i64>>,
    #[serde(default, rename = "provider")]
    providers: Vec<Spanned<RawProvider>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    fail_mode: Option<FailMode>,
    timeout_seconds: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
    backoff_ms: Option<Spanned<i64>>,
    breaker_failures: Option<Spanned<i64>>,
    breaker_reset_seconds: Option<Spanned<i64>>,
    // totp
    store: Option<String>,
    key_file: Option<String>,
    // privacyidea
    url: Option<Spanned<String>>,
    realm: Option<String>,
    verify_tls: Option<bool>,
    ca_file: Option<String>,
    // duo
    api_url: Option<Spanned<String>>,
    integration_key: Option<String>,
    secret_key: Option<String>,
    secret_key_file: Option<String>,
    // entra
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    client_certificate: Option<String>,
    client_key: Option<String>,
    login_url: Option<Spanned<String>>,
    service_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    auth_listen: Option<Vec<Spanned<String>>>,
    acct_listen: Option<Vec<Spanned<String>>>,
    shards: Option<Spanned<i64>>,
    recv_buffer_bytes: Option<Spanned<i64>>,
    send_buffer_bytes: Option<Spanned<i64>>,
    duplicate_window_seconds: Option<Spanned<i64>>,
    duplicate_cache_entries: Option<Spanned<i64>>,
    batch: Option<Spanned<i64>>,
    udp_gso: Option<bool>,
    control_socket: Option<String>,
    shutdown_grace_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawXdp {
    mode: Option<XdpModeSetting>,
    interfaces: Option<Vec<Spanned<String>>>,
    required: Option<bool>,
    global_rate_limit_pps: Option<Spanned<i64>>,
    global_rate_limit_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Option<String>,
    address: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    secret_next: Option<String>,
    secret_next_file: Option<String>,
    require_message_authenticator: Option<bool>,
    rate_limit_pps: Option<Spanned<i64>>,
    rate_limit_burst: Option<Spanned<i64>>,
    mfa: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    file: Spanned<String>,
    chap_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccounting {
    directory: Option<String>,
    max_batch: Option<Spanned<i64>>,
    journal_mib: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<LogFormat>,
}

// ---- loading ----------------------------------------------------------------------------------

impl Config {
    /// The embedded default configuration (what `cargo xtask run` serves).
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, Origin::Embedded)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, Origin::File(path.to_path_buf()))
    }

    /// Parses and validates configuration text. Relative paths resolve against the file's
    /// directory (the working directory for the embedded default).
    pub fn parse(text: &str, origin: Origin) -> Result<Config, ConfigError> {
        let file = match &origin {
            Origin::Embedded => EMBEDDED_NAME.to_owned(),
            Origin::File(p) => p.display().to_string(),
        };
        let base_dir = match &origin {
            Origin::Embedded => PathBuf::from("."),
            Origin::File(p) => p
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        let cx = Cx {
            text,
            file: &file,
            base_dir: &base_dir,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| cx.line_of(s.start)).unwrap_or(0);
            cx.err_line(line, e.message().trim().to_owned())
        })?;
        cx.build(raw, origin.clone())
    }

    /// Every UDP port the server listens on (auth and accounting), deduplicated.
    pub fn listen_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .server
            .auth_listen
            .iter()
            .chain(&self.server.acct_listen)
            .map(SocketAddr::port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

impl Cx<'_> {
    fn mfa(&self, m: &RawMfa, origin: &Origin) -> Result<MfaConfig, ConfigError> {
        let secs = |v: &Option<Spanned<i64>>, d: usize, lo: i64, hi: i64, what: &str| {
            self.positive(v, d, lo, hi, what)
                .map(|n| Duration::from_secs(n as u64))
        };
        let mut skip = Vec::new();
        for ip in m.skip_nas_ip.iter().flatten() {
            skip.push(ip.get_ref().parse().map_err(|_| {
                self.err(
                    ip,
                    format!("mfa.skip_nas_ip: `{}` is not an IP address", ip.get_ref()),
                )
            })?);
        }
        let mut providers: Vec<MfaProviderConfig> = Vec::new();
        for p in &m.providers {
            let line = self.line_of(p.span().start);
            let p = p.get_ref();
            let name = p.name.get_ref().clone();
            if name.is_empty() || name == "none" {
                return Err(self.err(&p.name, "provider name must not be empty or `none`"));
            }
            if let Some(prev) = providers.iter().find(|q| q.name == name) {
                return Err(self.err(
                    &p.name,
                    format!("provider `{name}` is already defined (line {})", prev.line),
                ));
            }
            let resilience = Resilience {
                timeout: secs(&p.timeout_seconds, 10, 1, 300, "timeout_seconds")?,
                retries: self.positive(&p.retries, 2, 0, 10, "retries")? as u32,
                backoff: Duration::from_millis(self.positive(
                    &p.backoff_ms,
                    200,
                    0,
                    60_000,
                    "backoff_ms",
                )? as u64),
                breaker_failures: self.positive(
                    &p.breaker_failures,
                    5,
                    1,
                    1000,
                    "breaker_failures",
                )? as u32,
                breaker_reset: secs(
                    &p.breaker_reset_seconds,
                    30,
                    1,
                    3600,
                    "breaker_reset_seconds",
                )?,
            };
            let kind = match p.kind.get_ref().as_str() {
                "totp" => {
                    let store = p.store.as_deref().map(|s| self.path(s));
                    if store.is_none() && *origin != Origin::Embedded {
                        return Err(self.err(
                            &p.kind,
                            "a totp provider needs `store` (the enrollment file)",
                        ));
                    }
                    MfaProviderKind::Totp {
                        store,
                        key_file: p.key_file.as_deref().map(|s| self.path(s)),
                    }
                }
                "privacyidea" => {
                    let Some(url) = &p.url else {
                        return Err(self.err(&p.kind, "a privacyidea provider needs `url`"));
                    };
                    let u = url.get_ref();
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        return Err(self.err(url, format!("`{u}` is not an http(s) URL")));
                    }
                    MfaProviderKind::PrivacyIdea {
                        url: u.clone(),
                        realm: p.realm.clone(),
                        verify_tls: p.verify_tls.unwrap_or(true),
                        ca_file: p.ca_file.as_deref().map(|s| self.path(s)),
                    }
                }
                "duo" => {
                    let Some(api_url) = &p.api_url else {
                        return Err(self.err(&p.kind, "a duo provider needs `api_url`"));
                    };
                    self.http_url(api_url)?;
                    let Some(ikey) = &p.integration_key else {
                        return Err(self.err(&p.kind, "a duo provider needs `integration_key`"));
                    };
                    let skey = self.secret_value(
                        &p.secret_key,
                        &p.secret_key_file,
                        &p.kind,
                        "secret_key",
                    )?;
                    MfaProviderKind::Duo {
                        api_url: api_url.get_ref().clone(),
                        integration_key: ikey.clone(),
                        secret_key: skey,
                        ca_file: p.ca_file.as_deref().map(|s| self.path(s)),
                    }
                }
                "entra" => {
                    let Some(tenant) = &p.tenant_id else {
                        return Err(self.err(&p.kind, "an entra provider needs `tenant_id`"));
                    };
                    let secret = match (&p.client_secret, &p.client_secret_file) {
                        (None, None) => None,
                        _ => Some(self.secret_value(
                            &p.client_secret,
                            &p.client_secret_file,
                            &p.kind,
                            "client_secret",
                        )?),
                    };
                    let certificate = match (&p.client_certificate, &p.client_key) {
                        (Some(c), Some(k)) => Some((self.path(c), self.path(k))),
                        (None, None) => None,
                        _ => {
                            return Err(
                                self.err(&p.kind, "client_certificate and client_key go together")
                            )
                        }
                    };
                    if secret.is_none() == certificate.is_none() {
                        return Err(self.err(
                            &p.kind,
                            "an entra provider needs exactly one of client_secret(_file) or client_certificate + client_key",
                        ));
                    }
                    for u in [&p.login_url, &p.service_url].into_iter().flatten() {
                        self.http_url(u)?;
                    }
                    MfaProviderKind::Entra {
                        tenant_id: tenant.clone(),
                        // The application id the NPS extension authenticates as.
                        client_id: p.client_id.clone().unwrap_or_else(|| "981f26a1-7f43-403b-a875-f8b09b8cd720".to_owned()),
                        client_secret: secret,
                        certificate,
                        login_url: p.login_url.as_ref().map(|u| u.get_ref().clone()).unwrap_or_else(|| "https://login.microsoftonline.com".to_owned()),
                        service_url: p.service_url.as_ref().map(|u| u.get_ref().clone()).unwrap_or_else(|| "https://adnotifications.windowsazure.com/StrongAuthenticationService.svc/Connector".to_owned()),
                        ca_file: p.ca_file.as_deref().map(|s| self.path(s)),
                    }
                }
                other => {
                    return Err(self.err(
                        &p.kind,
                        format!("unknown provider type `{other}` (totp, privacyidea, duo, entra)"),
                    ))
                }
            };
            providers.push(MfaProviderConfig {
                name,
                fail_mode: p.fail_mode.unwrap_or(FailMode::Secure),
                resilience,
                kind,
                line,
            });
        }
        Ok(MfaConfig {
            require_user_match: m.require_user_match.unwrap_or(true),
            override_number_matching_with_otp: m.override_number_matching_with_otp.unwrap_or(true),
            skip_nas_ip: skip,
            login_id_attribute: m.login_id_attribute.clone().filter(|a| !a.is_empty()),
            join_pending_logins: m.join_pending_logins.unwrap_or(true),
            push_timeout: secs(
                &m.push_timeout_seconds,
                90,
                5,
                600,
                "mfa.push_timeout_seconds",
            )?,
            challenge_timeout: secs(
                &m.challenge_timeout_seconds,
                120,
                10,
                900,
                "mfa.challenge_timeout_seconds",
            )?,
            max_pending_per_shard: self.positive(
                &m.max_pending_per_shard,
                1_000_000,
                1,
                50_000_000,
                "mfa.max_pending_per_shard",
            )?,
            max_pending_per_client: self.positive(
                &m.max_pending_per_client,
                1_000_000,
                1,
                50_000_000,
                "mfa.max_pending_per_client",
            )?,
            max_pending_per_user: self.positive(
                &m.max_pending_per_user,
                4,
                1,
                1000,
                "mfa.max_pending_per_user",
            )?,
            max_challenges: self.positive(
                &m.max_challenges,
                1_000_000,
                1,
                50_000_000,
                "mfa.max_challenges",
            )?,
            max_provider_calls_per_shard: self.positive(
                &m.max_provider_calls_per_shard,
                256,
                1,
                100_000,
                "mfa.max_provider_calls_per_shard",
            )?,
            max_status_polls_per_second_per_shard: u32::try_from(self.positive(
                &m.max_status_polls_per_second_per_shard,
                2000,
                1,
                1_000_000,
                "mfa.max_status_polls_per_second_per_shard",
            )?)
            .unwrap_or(u32::MAX),
            providers,
        })
    }
}

impl Cx<'_> {
    fn http_url(&self, u: &Spanned<String>) -> Result<(), ConfigError> {
        let v = u.get_ref();
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(())
        } else {
            Err(self.err(u, format!("`{v}` is not an http(s) URL")))
        }
    }

    /// A secret given inline or in a file (first line), never both.
    fn secret_value(
        &self,
        inline: &Option<String>,
        file: &Option<String>,
        at: &Spanned<String>,
        what: &str,
    ) -> Result<Secret, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                Err(self.err(at, format!("give either {what} or {what}_file, not both")))
            }
            (None, None) => Err(self.err(at, format!("{what} (or {what}_file) is required"))),
            (Some(v), None) if !v.is_empty() => Ok(Secret::new(v.clone())),
            (Some(_), None) => Err(self.err(at, format!("{what} must not be empty"))),
            (None, Some(f)) => {
                let p = self.path(f);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    self.err(at, format!("cannot read {what}_file {}: {e}", p.display()))
                })?;
                Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned()))
            }
        }
    }
}

struct Cx<'a> {
    text: &'a str,
    file: &'a str,
    base_dir: &'a Path,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err_line(&self, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line,
            reason: reason.into(),
        }
    }

    fn err<T>(&self, at: &Spanned<T>, reason: impl Into<String>) -> ConfigError {
        self.err_line(self.line_of(at.span().start), reason)
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn positive(
        &self,
        v: &Option<Spanned<i64>>,
        default: usize,
        min: i64,
        max: i64,
        what: &str,
    ) -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                let n = *s.get_ref();
                if n < min || n > max {
                    Err(self.err(
                        s,
                        format!("{what} must be between {min} and {max}, not {n}"),
                    ))
                } else {
                    usize::try_from(n).map_err(|_| self.err(s, format!("{what} out of range")))
                }
            }
        }
    }

    fn listen(
        &self,
        v: &Option<Vec<Spanned<String>>>,
        default: &str,
        what: &str,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        let Some(list) = v else {
            return default
                .parse()
                .map(|a| vec![a])
                .map_err(|_| self.err_line(0, format!("bad built-in default for {what}")));
        };
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            let addr: SocketAddr = s.get_ref().parse().map_err(|_| {
                self.err(
                    s,
                    format!(
                        "{what}: `{}` is not an address:port (e.g. 127.0.0.1:1812 or [::1]:1812)",
                        s.get_ref()
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(self.err(s, format!("{what}: port 0 is not allowed")));
            }
            if out.contains(&addr) {
                return Err(self.err(s, format!("{what}: `{addr}` is listed twice")));
            }
            out.push(addr);
        }
        if out.is_empty() {
            return Err(self.err_line(0, format!("{what} must list at least one address")));
        }
        Ok(out)
    }

    fn build(&self, raw: RawConfig, origin: Origin) -> Result<Config, ConfigError> {
        let data_dir = match &raw.data_dir {
            Some(d) if d.get_ref().is_empty() => {
                return Err(self.err(d, "data_dir must not be empty"))
            }
            Some(d) => self.path(d.get_ref()),
            None => PathBuf::from("/var/lib/portcullis"),
        };

        let s = &raw.server;
        let auth_listen = self.listen(&s.auth_listen, "127.0.0.1:1812", "server.auth_listen")?;
        let acct_listen = self.listen(&s.acct_listen, "127.0.0.1:1813", "server.acct_listen")?;
        for a in &acct_listen {
            if auth_listen.contains(a) {
                let at = s
                    .acct_listen
                    .as_ref()
                    .and_then(|l| l.iter().find(|x| x.get_ref().parse().ok() == Some(*a)));
                let line = at.map(|x| self.line_of(x.span().start)).unwrap_or(0);
                return Err(self.err_line(
                    line,
                    format!("`{a}` is both an auth and an accounting listener"),
                ));
            }
        }
        let server = ServerConfig {
            auth_listen,
            acct_listen,
            shards: self.positive(&s.shards, 0, 0, 256, "server.shards")?,
            recv_buffer_bytes: self.positive(
                &s.recv_buffer_bytes,
                8 << 20,
                65536,
                1 << 30,
                "server.recv_buffer_bytes",
            )?,
            send_buffer_bytes: self.positive(
                &s.send_buffer_bytes,
                4 << 20,
                65536,
                1 << 30,
                "server.send_buffer_bytes",
            )?,
            duplicate_window: Duration::from_secs(self.positive(
                &s.duplicate_window_seconds,
                10,
                1,
                3600,
                "server.duplicate_window_seconds",
            )? as u64),
            duplicate_cache_entries: self.positive(
                &s.duplicate_cache_entries,
                1 << 18,
                1024,
                1 << 26,
                "server.duplicate_cache_entries",
            )?,
            batch: self.positive(&s.batch, 32, 1, 1024, "server.batch")?,
            udp_gso: s.udp_gso.unwrap_or(true),
            control_socket: s
                .control_socket
                .as_deref()
                .map(|p| self.path(p))
                .unwrap_or_else(|| data_dir.join("portcullis.sock")),
            shutdown_grace: Duration::from_secs(self.positive(
                &s.shutdown_grace_seconds,
                10,
                0,
                600,
                "server.shutdown_grace_seconds",
            )? as u64),
        };

        let xdp = XdpConfig {
            mode: raw.xdp.mode.unwrap_or(XdpModeSetting::Auto),
            interfaces: match &raw.xdp.interfaces {
                None => vec!["lo".to_owned()],
                Some(l) => {
                    let mut v = Vec::new();
                    for i in l {
                        let name = i.get_ref();
                        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                            return Err(self.err(i, format!("`{name}` is not an interface name")));
                        }
                        v.push(name.clone());
                    }
                    v
                }
            },
            required: raw.xdp.required.unwrap_or(false),
            global_rate_limit_pps: self.positive(
                &raw.xdp.global_rate_limit_pps,
                0,
                0,
                MAX_RATE_LIMIT,
                "xdp.global_rate_limit_pps",
            )? as u32,
            global_rate_limit_burst: self.positive(
                &raw.xdp.global_rate_limit_burst,
                0,
                0,
                MAX_RATE_LIMIT,
                "xdp.global_rate_limit_burst",
            )? as u32,
        };
        if xdp.required && xdp.mode == XdpModeSetting::Off {
            return Err(self.err_line(0, "xdp.required = true contradicts xdp.mode = \"off\""));
        }

        let mut clients: Vec<ClientConfig> = Vec::with_capacity(raw.clients.len());
        for c in &raw.clients {
            let line = self.line_of(c.span().start);
            let c = c.get_ref();
            let addr = c.address.get_ref().trim();
            let network: IpNet = match addr.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match addr.parse::<std::net::IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(self.err(
                            &c.address,
                            format!("`{addr}` is not an IP address or CIDR network"),
                        ))
                    }
                },
            };
            if network != network.trunc() {
                return Err(self.err(
                    &c.address,
                    format!(
                        "`{addr}` has host bits set; did you mean `{}`?",
                        network.trunc()
                    ),
                ));
            }
            if let Some(prev) = clients.iter().find(|p| p.network == network) {
                return Err(self.err(
                    &c.address,
                    format!(
                        "client network {network} is already configured by client `{}` (line {})",
                        prev.name, prev.line
                    ),
                ));
            }
            let secret = match (&c.secret, &c.secret_file) {
                (Some(_), Some(f)) => {
                    return Err(self.err(f, "give either secret or secret_file, not both"))
                }
                (None, None) => {
                    return Err(self.err(&c.address, "client has no secret (secret or secret_file)"))
                }
                (Some(s), None) => s.get_ref().clone(),
                (None, Some(f)) => {
                    let p = self.path(f.get_ref());
                    let text = std::fs::read_to_string(&p).map_err(|e| {
                        self.err(f, format!("cannot read secret_file {}: {e}", p.display()))
                    })?;
                    text.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            if secret.is_empty() {
                let at = c.secret.as_ref().map(|s| s.span().start).unwrap_or(0);
                return Err(self.err_line(self.line_of(at), "client secret must not be empty"));
            }
            if secret.len() > 128 {
                return Err(self.err_line(line, "client secret longer than 128 octets"));
            }
            let secret_next = match (&c.secret_next, &c.secret_next_file) {
                (None, None) => None,
                _ => {
                    let n = self.secret_value(
                        &c.secret_next,
                        &c.secret_next_file,
                        &c.address,
                        "secret_next",
                    )?;
                    if n.expose().len() > 128 {
                        return Err(
                            self.err_line(line, "client secret_next longer than 128 octets")
                        );
                    }
                    if n.expose() == secret {
                        return Err(self.err_line(line, "secret_next is the same as secret"));
                    }
                    Some(n)
                }
            };
            clients.push(ClientConfig {
                secret_next,
                name: c.name.clone().unwrap_or_else(|| network.to_string()),
                network,
                secret: Secret::new(secret),
                require_message_authenticator: c.require_message_authenticator.unwrap_or(true),
                rate_limit_pps: self.positive(
                    &c.rate_limit_pps,
                    0,
                    0,
                    MAX_RATE_LIMIT,
                    "client rate_limit_pps",
                )? as u32,
                rate_limit_burst: self.positive(
                    &c.rate_limit_burst,
                    0,
                    0,
                    MAX_RATE_LIMIT,
                    "client rate_limit_burst",
                )? as u32,
                mfa: c.mfa.as_ref().map(|m| m.get_ref().clone()),
                line,
            });
        }

        let users = match (&raw.users, &origin) {
            (Some(u), _) => UsersConfig {
                source: UsersSource::File {
                    path: self.path(u.file.get_ref()),
                    chap_key_file: u.chap_key_file.as_ref().map(|k| self.path(k.get_ref())),
                },
            },
            (None, Origin::Embedded) => UsersConfig {
                source: UsersSource::Embedded,
            },
            (None, Origin::File(_)) => UsersConfig {
                source: UsersSource::None,
            },
        };

        let accounting = AccountingConfig {
            directory: raw
                .accounting
                .directory
                .as_deref()
                .map(|p| self.path(p))
                .unwrap_or_else(|| data_dir.join("accounting")),
            max_batch: self.positive(
                &raw.accounting.max_batch,
                256,
                1,
                65536,
                "accounting.max_batch",
            )?,
            journal_bytes: match self.positive(
                &raw.accounting.journal_mib,
                64,
                0,
                65536,
                "accounting.journal_mib",
            )? {
                0 => None,
                mib => Some(mib as u64 * 1024 * 1024),
            },
        };

        let level = match &raw.log.level {
            None => "info".to_owned(),
            Some(l) => {
                let v = l.get_ref().to_ascii_lowercase();
                if !["error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                    return Err(self.err(
                        l,
                        format!("log.level `{v}` is not one of error, warn, info, debug, trace"),
                    ));
                }
                v
            }
        };

        let mfa = self.mfa(&raw.mfa, &origin)?;
        let directory = match &raw.directory {
            Some(d) => Some(self.directory(d, mfa.login_id_attribute.as_deref())?),
            None => None,
        };
        for c in &raw.clients {
            if let Some(m) = &c.get_ref().mfa {
                if m.get_ref() != "none" && !mfa.providers.iter().any(|p| &p.name == m.get_ref()) {
                    return Err(self.err(
                        m,
                        format!("client mfa = `{}` names no [[mfa.provider]]", m.get_ref()),
                    ));
                }
            }
        }
        for c in &mut clients {
            if c.mfa.as_deref() == Some("none") {
                c.mfa = None;
            }
        }
        let policies = self.policies(&raw.policy, &raw.policies, &clients, &mfa.providers)?;

        Ok(Config {
            directory,
            policies,
            mfa,
            origin,
            data_dir,
            server,
            xdp,
            clients,
            users,
            accounting,
            log: LogConfig {
                level,
                format: raw.log.format.unwrap_or(LogFormat::Text),
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Origin::File(PathBuf::from("/etc/portcullis/test.toml")),
        )
    }

    #[test]
    fn embedded_default_is_the_documented_demo() {
        let c = Config::embedded().unwrap();
        assert_eq!(
            c.server.auth_listen,
            vec!["127.0.0.1:1812".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            c.server.acct_listen,
            vec!["127.0.0.1:1813".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.clients.len(), 1);
        assert_eq!(
            c.clients[0].network,
            "127.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(c.clients[0].secret.expose(), "testing123");
        assert!(c.clients[0].require_message_authenticator);
        assert_eq!(c.xdp.mode, XdpModeSetting::Generic);
        assert_eq!(c.xdp.interfaces, vec!["lo".to_owned()]);
        assert!(!c.xdp.required);
        assert!(matches!(c.users.source, UsersSource::Embedded));
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.accounting.directory, PathBuf::from("./data/accounting"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let c =
            parse("data_dir = \"var\"\n[users]\nfile = \"users.toml\"\nchap_key_file = \"/k\"\n")
                .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/portcullis/var"));
        match c.users.source {
            UsersSource::File {
                path,
                chap_key_file,
            } => {
                assert_eq!(path, PathBuf::from("/etc/portcullis/users.toml"));
                assert_eq!(chap_key_file, Some(PathBuf::from("/k")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let e =
            parse("data_dir = \"/d\"\n\n[[client]]\naddress = \"10.0.0.300\"\nsecret = \"s\"\n")
                .unwrap_err();
        assert_eq!(e.file, "/etc/portcullis/test.toml");
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("10.0.0.300"), "{e}");
        assert_eq!(e.to_string().split(':').nth(1), Some("4"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = parse("[server]\nauth_listen = [\"127.0.0.1:1812\"]\nshardz = 2\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("shardz"), "{e}");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("[server]\nshards = \n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn duplicate_client_networks_are_refused() {
        let e = parse(
            "[[client]]\nname = \"a\"\naddress = \"10.0.0.0/8\"\nsecret = \"x\"\n\
             [[client]]\nname = \"b\"\naddress = \"10.0.0.0/8\"\nsecret = \"y\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.reason.contains("`a`"), "{e}");
    }

    #[test]
    fn client_without_secret_and_host_bits_are_refused() {
        let e = parse("[[client]]\naddress = \"10.0.0.0/8\"\n").unwrap_err();
        assert!(e.reason.contains("no secret"), "{e}");
        let e = parse("[[client]]\naddress = \"10.0.0.1/8\"\nsecret = \"x\"\n").unwrap_err();
        assert!(e.reason.contains("10.0.0.0/8"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn accounting_journal_size_and_its_absence() {
        let c = parse("").unwrap();
        assert_eq!(c.accounting.journal_bytes, Some(64 << 20));
        let c = parse("[accounting]\njournal_mib = 0\n").unwrap();
        assert_eq!(c.accounting.journal_bytes, None);
        let e = parse("[accounting]\njournal_mib = -1\n").unwrap_err();
        assert!(e.reason.contains("accounting.journal_mib"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn udp_gso_is_on_unless_turned_off() {
        assert!(parse("").unwrap().server.udp_gso);
        assert!(!parse("[server]\nudp_gso = false\n").unwrap().server.udp_gso);
        let e = parse("[server]\nudp_gso = \"no\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn numeric_ranges_are_checked() {
        let e = parse("[server]\nbatch = 0\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("server.batch"), "{e}");
    }

    #[test]
    fn listener_overlap_and_bad_addresses() {
        let e = parse(
            "[server]\nauth_listen = [\"127.0.0.1:1812\"]\nacct_listen = [\"127.0.0.1:1812\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[server]\nauth_listen = [\"localhost\"]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::embedded().unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("testing123"), "{dbg}");
    }

    #[test]
    fn ipv6_clients_and_listeners() {
        let c = parse(
            "[server]\nauth_listen = [\"[::1]:1812\", \"127.0.0.1:1812\"]\n\
             [[client]]\naddress = \"::1\"\nsecret = \"x\"\nrequire_message_authenticator = false\n",
        )
        .unwrap();
        assert_eq!(c.server.auth_listen.len(), 2);
        assert_eq!(c.clients[0].network, "::1/128".parse::<IpNet>().unwrap());
        assert!(!c.clients[0].require_message_authenticator);
    }

    #[test]
    fn mfa_errors_name_their_line() {
        let e = parse("[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"s\"\nmfa = \"nope\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.reason.contains("nope"), "{e}");
        let e = parse("[[mfa.provider]]\nname = \"a\"\ntype = \"carrier-pigeon\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse(
            "[[mfa.provider]]\nname = \"a\"\ntype = \"privacyidea\"\nurl = \"https://x\"\n\
             [[mfa.provider]]\nname = \"a\"\ntype = \"privacyidea\"\nurl = \"https://y\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        let e = parse("[[mfa.provider]]\nname = \"t\"\ntype = \"totp\"\n").unwrap_err();
        assert!(e.reason.contains("store"), "{e}");
        let e = parse("[mfa]\nskip_nas_ip = [\"not-an-ip\"]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[[mfa.provider]]\nname = \"e\"\ntype = \"entra\"\ntenant_id = \"t\"\n")
            .unwrap_err();
        assert!(e.reason.contains("client_secret"), "{e}");
    }

    #[test]
    fn mfa_client_none_and_secrets_redacted() {
        let c = parse(
            "[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"s\"\nmfa = \"none\"\n\
             [[mfa.provider]]\nname = \"d\"\ntype = \"duo\"\napi_url = \"https://api-x.duosecurity.com\"\n\
             integration_key = \"DIXXXXXXXXXXXXXXXXXX\"\nsecret_key = \"duo-skey-value\"\n",
        )
        .unwrap();
        assert_eq!(c.clients[0].mfa, None);
        assert!(!format!("{c:?}").contains("duo-skey-value"));
    }

    #[test]
    fn secret_next_is_checked_and_never_printed() {
        let c = parse(
            "[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"a\"\nsecret_next = \"b-next-one\"\n",
        )
        .unwrap();
        assert_eq!(
            c.clients[0].secret_next.as_ref().map(Secret::expose),
            Some("b-next-one")
        );
        assert!(!format!("{c:?}").contains("b-next-one"));
        let e =
            parse("[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"a\"\nsecret_next = \"a\"\n")
                .unwrap_err();
        assert!(e.reason.contains("same"), "{e}");
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().and_then(|e| e.to_str()) == Some("toml")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("users")
            {
                // Example configs may reference secret files next to them; parse as if in place.
                Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no example configs found in {}", dir.display());
    }
}
