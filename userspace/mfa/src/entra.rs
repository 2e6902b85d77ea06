//! The Entra provider: Microsoft Entra multifactor authentication, spoken the way the Entra MFA
//! NPS extension speaks it.
//!
//! Two protocols are involved, with different standing:
//!
//! - **The token** follows public documentation: the Microsoft identity platform's OAuth 2.0
//!   client-credentials grant, `POST {login}/{tenant}/oauth2/v2.0/token` with
//!   `grant_type=client_credentials`, `client_id`, `scope` and either `client_secret` or
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with a
//!   `client_assertion`: a JWT signed RS256 whose header names the certificate by `x5t` (and
//!   `x5t#S256`), and whose claims are `aud` = the token endpoint, `iss` = `sub` = the client id,
//!   `jti`, `nbf`, `iat`, `exp`. The client is the "Azure Multi-Factor Auth Client" application
//!   ([`MFA_CLIENT_ID`]) and the scope is [`MFA_SCOPE`]. The token is cached until shortly
//!   before its `expires_in` and fetched again once when the service answers 401.
//! - **The MFA calls** are undocumented; what this module sends and understands is what public
//!   reverse engineering of the NPS extension and of the AD FS adapter shows:
//!   `POST {service}/BeginTwoWayAuthentication` with an XML `BeginTwoWayAuthenticationRequest`
//!   (`Version`, `UserPrincipalName`, `Lcid`, `AuthenticationMethodProperties` as a WCF
//!   string-to-string dictionary holding `OverrideNumberMatchingWithOTP`, `ContextId`,
//!   `SyncCall`, `RequireUserMatch`, `CallerName`, `CallerIP`), answered by a
//!   `BeginTwoWayAuthenticationResponse` (`Result/Value`, `Result/Message`, `SessionId`,
//!   `AuthenticationResult` = `true`, `false`, `challenge` or nil, `AffinityUrl`); then
//!   `POST .../EndTwoWayAuthentication` (`SessionId`, `ContextId`, `AdditionalAuthData` = the
//!   code, nil when polling a push) answered by `Result/Value` = `AuthenticationPending`,
//!   `Success` (with `AuthenticationResult` `true`), `OathCodeIncorrect`, `PhoneAppDenied`, ...
//!   The result values mapped here are those in Microsoft's NPS extension troubleshooting
//!   table and in public scripts that call the service.
//!
//! Behaviour:
//!
//! - [`Factor::Otp`] asks with `OverrideNumberMatchingWithOTP=true`: a user with a TOTP method
//!   gets `AuthenticationResult=challenge` ([`Begin::Challenge`]). A user without one gets a push
//!   instead (the service decides, as it does for the NPS extension); that is reported as
//!   [`Begin::PushSent`], because the push is already on the phone and asking again for the other
//!   factor would send a second one.
//! - [`Factor::Push`] asks with `OverrideNumberMatchingWithOTP=false` and `SyncCall=false`: the
//!   call returns at once with a `SessionId` and [`MfaProvider::poll_push`] asks
//!   `EndTwoWayAuthentication` (the server polls every `poll_interval`). A user whose only method takes a code gets a
//!   challenge, reported as [`Begin::FactorUnavailable`] (nothing was sent to the user).
//! - `RequireUserMatch` is always `true`: an unknown or unenrolled user is [`Begin::NotEnrolled`]
//!   and the server applies its own `require_user_match` setting.
//! - When Begin answers an `AffinityUrl` on the service's own origin, End goes there (it pins the
//!   session's data centre); an affinity URL elsewhere is ignored, so the bearer token is never
//!   sent to a host we were not configured with.
//!
//! The state handed to the server is the `SessionId` and the affinity URL; sessions last about
//! three minutes at the service. Never logged: the token, the secret, the assertion, the code.
//! Retries and circuit breaking are [`crate::resilience`]'s; this provider reports
//! [`MfaError::Unreachable`] only when the request could not be sent.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha1::Digest as _;
use url::Url;
use zeroize::Zeroizing;

use crate::provider::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus,
    Verdict,
};

/// The application id of the "Azure Multi-Factor Auth Client" the NPS extension signs in as.
pub const MFA_CLIENT_ID: &str = "981f26a1-7f43-403b-a875-f8b09b8cd720";
/// The scope of the token for the MFA service.
pub const MFA_SCOPE: &str =
    "https://adnotifications.windowsazure.com/StrongAuthenticationService.svc/Connector/.default";
/// The default Microsoft identity platform authority.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// The default MFA service endpoint (the NPS extension's).
pub const DEFAULT_SERVICE_URL: &str =
    "https://adnotifications.windowsazure.com/StrongAuthenticationService.svc/Connector";
/// The prompt of the OTP challenge (the service sends no text of its own).
pub const OTP_PROMPT: &str = "Enter the code from your authenticator app";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The namespace of WCF's serialized dictionaries.
const ARRAYS_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";
/// The largest answer we read; the service's answers are well under 2 KiB.
const MAX_BODY: usize = 64 * 1024;
/// How long a client assertion is valid.
const ASSERTION_LIFETIME: u64 = 600;
/// Refresh the token this long before it expires (at most; a tenth of short lifetimes).
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// How we prove to Entra that we are the tenant's MFA client.
#[derive(Clone, PartialEq, Eq)]
pub enum EntraCredential {
    /// A client secret of the MFA client's service principal.
    Secret(String),
    /// A certificate registered on the service principal (what the NPS extension's setup script
    /// creates), and its RSA private key (PKCS#8 or PKCS#1 PEM).
    Certificate { cert_pem: PathBuf, key_pem: PathBuf },
}

impl fmt::Debug for EntraCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntraCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            EntraCredential::Certificate { cert_pem, key_pem } => f
                .debug_struct("Certificate")
                .field("cert_pem", cert_pem)
                .field("key_pem", key_pem)
                .finish(),
        }
    }
}

/// Settings of one Entra provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    /// The provider's name in logs and audit lines.
    pub name: String,
    /// The directory (tenant) id: a GUID or a verified domain name.
    pub tenant_id: String,
    /// The client id; [`MFA_CLIENT_ID`] for the NPS extension's application.
    pub client_id: String,
    pub credential: EntraCredential,
    /// The identity platform authority (default [`DEFAULT_LOGIN_URL`]).
    pub login_url: Url,
    /// The MFA service endpoint (default [`DEFAULT_SERVICE_URL`]).
    pub service_url: Url,
    /// A PEM file with extra trusted root certificates.
    pub ca_file: Option<PathBuf>,
    /// Verify server certificates (default `true`). `false` is for tests only.
    pub verify_tls: bool,
    /// The limit for each HTTP request (connect included). Default 10 s.
    pub timeout: Duration,
    /// How often the server asks ([`MfaProvider::poll_push`]) whether the push was answered. Default 1 s.
    pub poll_interval: Duration,
}

impl EntraConfig {
    /// A configuration with the defaults: Microsoft's public cloud endpoints, TLS verified
    /// against the system's (webpki) roots, 10 s per request, polling every second.
    pub fn new(
        name: impl Into<String>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        credential: EntraCredential,
    ) -> Self {
        EntraConfig {
            name: name.into(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            credential,
            login_url: parse_default(DEFAULT_LOGIN_URL),
            service_url: parse_default(DEFAULT_SERVICE_URL),
            ca_file: None,
            verify_tls: true,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

fn parse_default(url: &str) -> Url {
    match Url::parse(url) {
        Ok(u) => u,
        Err(e) => unreachable!("built-in URL {url} does not parse: {e}"),
    }
}

/// The loaded credential.
enum Signer {
    Secret(Zeroizing<String>),
    Certificate {
        key: Box<RsaKeyPair>,
        /// base64url SHA-1 and SHA-256 thumbprints of the DER certificate.
        x5t: String,
        x5t_s256: String,
    },
}

/// A cached access token.
struct Token {
    value: Zeroizing<String>,
    refresh_at: tokio::time::Instant,
}

/// Microsoft Entra MFA, as the NPS extension uses it, as an [`MfaProvider`].
pub struct Entra {
    cfg: EntraConfig,
    http: reqwest::Client,
    signer: Signer,
    token_url: Url,
    begin_url: Url,
    end_url: Url,
    /// One fetch at a time: concurrent logins wait for the same token.
    token: tokio::sync::Mutex<Option<Token>>,
}

impl fmt::Debug for Entra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entra")
            .field("cfg", &self.cfg)
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Entra {
    /// Loads the credential and builds the HTTP client. Fails with [`MfaError::Config`] for a
    /// tenant id that is not a GUID or domain name, URLs that are not http(s), a certificate or
    /// key that cannot be read, a key that is not RSA or does not belong to the certificate, or
    /// a CA file that cannot be read.
    pub fn new(cfg: EntraConfig) -> Result<Entra, MfaError> {
        let config_err = |detail: String| MfaError::Config {
            provider: cfg.name.clone(),
            detail,
        };
        let tenant_ok = !cfg.tenant_id.is_empty()
            && cfg
                .tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !tenant_ok {
            return Err(config_err(format!(
                "tenant id {:?} is not a GUID or domain name",
                cfg.tenant_id
            )));
        }
        if cfg.client_id.trim().is_empty() {
            return Err(config_err("the client id is empty".into()));
        }
        for url in [&cfg.login_url, &cfg.service_url] {
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(config_err(format!("{url} is not an http(s) URL")));
            }
        }
        let token_url = join(
            &cfg.login_url,
            &format!("{}/oauth2/v2.0/token", cfg.tenant_id),
        )
        .map_err(&config_err)?;
        let begin_url = join(&cfg.service_url, "BeginTwoWayAuthentication").map_err(&config_err)?;
        let end_url = join(&cfg.service_url, "EndTwoWayAuthentication").map_err(&config_err)?;

        let signer = match &cfg.credential {
            EntraCredential::Secret(s) if s.is_empty() => {
                return Err(config_err("the client secret is empty".into()))
            }
            EntraCredential::Secret(s) => Signer::Secret(Zeroizing::new(s.clone())),
            EntraCredential::Certificate { cert_pem, key_pem } => {
                load_certificate(cert_pem, key_pem).map_err(&config_err)?
            }
        };

        let http = crate::http::client(crate::http::HttpSettings {
            name: &cfg.name,
            timeout: cfg.timeout,
            ca_file: cfg.ca_file.as_deref(),
            verify_tls: cfg.verify_tls,
            default_headers: reqwest::header::HeaderMap::new(),
        })
        .map_err(config_err)?;
        Ok(Entra {
            cfg,
            http,
            signer,
            token_url,
            begin_url,
            end_url,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration this provider was built from.
    pub fn config(&self) -> &EntraConfig {
        &self.cfg
    }

    fn protocol(&self, detail: String) -> MfaError {
        MfaError::Protocol {
            provider: self.cfg.name.clone(),
            detail,
        }
    }

    fn config_error(&self, detail: String) -> MfaError {
        MfaError::Config {
            provider: self.cfg.name.clone(),
            detail,
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> MfaError {
        crate::http::transport_error(&self.cfg.name, e, self.cfg.timeout)
    }

    /// A valid access token: the cached one, or a new one.
    async fn token(&self) -> Result<Zeroizing<String>, MfaError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if tokio::time::Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let (value, lifetime) = self.fetch_token().await?;
        let margin = TOKEN_MARGIN.min(lifetime / 10);
        *cached = Some(Token {
            value: value.clone(),
            refresh_at: tokio::time::Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(value)
    }

    /// Forgets `used` if it is still the cached token (another login may have replaced it).
    async fn invalidate(&self, used: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value.as_str() == used) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<(Zeroizing<String>, Duration), MfaError> {
        let assertion;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", &self.cfg.client_id),
            ("scope", MFA_SCOPE),
        ];
        match &self.signer {
            Signer::Secret(secret) => form.push(("client_secret", secret.as_str())),
            Signer::Certificate { key, x5t, x5t_s256 } => {
                assertion = self.client_assertion(key, x5t, x5t_s256)?;
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", assertion.as_str()));
            }
        }
        tracing::debug!(provider = %self.cfg.name, url = %self.token_url, "fetching an access token");
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let body = self.read_body(resp).await?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            self.protocol(format!(
                "the token endpoint answered HTTP {status} with a body that is not OAuth JSON: {e}"
            ))
        })?;
        if let Some(error) = &reply.error {
            // The first line of an AADSTS description names the problem; it holds no secret.
            let description = reply
                .error_description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or("");
            let detail = format!("token endpoint: HTTP {status}, {error}: {description}");
            return Err(if status.is_server_error() {
                self.protocol(detail)
            } else {
                self.config_error(detail)
            });
        }
        if !status.is_success() {
            return Err(self.protocol(format!("the token endpoint answered HTTP {status}")));
        }
        if let Some(kind) = &reply.token_type {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(self.protocol(format!("unexpected token type {kind:?}")));
            }
        }
        let Some(token) = reply.access_token.filter(|t| !t.is_empty()) else {
            return Err(self.protocol("the token endpoint answered no access_token".into()));
        };
        let seconds = match &reply.expires_in {
            None => 3599,
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
            Some(_) => 0,
        };
        Ok((Zeroizing::new(token), Duration::from_secs(seconds)))
    }

    /// The RS256 client assertion for one token request.
    fn client_assertion(
        &self,
        key: &RsaKeyPair,
        x5t: &str,
        x5t_s256: &str,
    ) -> Result<Zeroizing<String>, MfaError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": x5t,
            "x5t#S256": x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": self.token_url.as_str(),
            "iss": self.cfg.client_id,
            "sub": self.cfg.client_id,
            "jti": guid(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let mut jwt = Zeroizing::new(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ));
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            jwt.as_bytes(),
            &mut signature,
        )
        .map_err(|_| self.config_error("cannot sign the client assertion".into()))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, MfaError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(self.protocol(format!("answer larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// POSTs `xml` to a Connector endpoint with the bearer token, once more with a new token
    /// after a 401, and parses the answer, whose root must be `root`.
    async fn call(&self, url: &Url, xml: String, root: &str) -> Result<Answer, MfaError> {
        let mut refreshed = false;
        loop {
            let token = self.token().await?;
            let resp = self
                .http
                .post(url.clone())
                .bearer_auth(token.as_str())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/xml; charset=utf-8",
                )
                .body(xml.clone())
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                if refreshed {
                    return Err(self.config_error(format!(
                        "{root}: the MFA service refused a fresh access token (HTTP 401)"
                    )));
                }
                tracing::debug!(provider = %self.cfg.name, "access token refused, fetching a new one");
                self.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if status == reqwest::StatusCode::FORBIDDEN {
                return Err(self.config_error(format!("{root}: HTTP {status}")));
            }
            if !status.is_success() {
                return Err(self.protocol(format!("{root}: HTTP {status}")));
            }
            let body = self.read_body(resp).await?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| self.protocol(format!("{root}: the answer is not UTF-8")))?;
            return parse_answer(text, root).map_err(|e| self.protocol(format!("{root}: {e}")));
        }
    }

    /// Maps the answer to BeginTwoWayAuthentication.
    fn map_begin(&self, answer: &Answer, factor: Factor) -> Result<Begin, MfaError> {
        let value = answer.value.as_str();
        let session = || {
            answer
                .session_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| self.state(s, answer.affinity_url.as_deref()))
                .ok_or_else(|| self.protocol(format!("Begin answered {value} without a SessionId")))
        };
        if is(value, &["Success", "AuthenticationPending"]) {
            return match answer.auth_result.as_deref().map(str::trim) {
                Some(r) if r.eq_ignore_ascii_case("challenge") => match factor {
                    Factor::Otp => Ok(Begin::Challenge {
                        prompt: OTP_PROMPT.to_owned(),
                        state: session()?,
                    }),
                    // The user's method takes a code; nothing was sent to them.
                    Factor::Push => Ok(Begin::FactorUnavailable),
                },
                Some(r) if r.eq_ignore_ascii_case("true") => Ok(Begin::Decided(Verdict::Allow)),
                Some(r) if r.eq_ignore_ascii_case("false") => {
                    Ok(Begin::Decided(Verdict::Deny(DenyReason::Other(
                        answer
                            .message
                            .clone()
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| "refused by the MFA service".to_owned()),
                    ))))
                }
                None | Some("") => Ok(Begin::PushSent { state: session()? }),
                Some(other) => {
                    Err(self.protocol(format!("Begin: unknown AuthenticationResult {other:?}")))
                }
            };
        }
        if is(value, NOT_ENROLLED) {
            return Ok(Begin::NotEnrolled);
        }
        match self.refusal(answer)? {
            Some(reason) => Ok(Begin::Decided(Verdict::Deny(reason))),
            None => Err(self.protocol(format!(
                "Begin answered {value:?}: {}",
                answer.message.as_deref().unwrap_or("")
            ))),
        }
    }

    /// Maps the answer to EndTwoWayAuthentication; `None` while the push is pending.
    fn map_end(&self, answer: &Answer) -> Result<Option<Verdict>, MfaError> {
        let value = answer.value.as_str();
        if is(value, &["Success"]) {
            return match answer.auth_result.as_deref().map(str::trim) {
                Some(r) if r.eq_ignore_ascii_case("true") => Ok(Some(Verdict::Allow)),
                Some(r) if r.eq_ignore_ascii_case("false") => Ok(Some(Verdict::Deny(
                    DenyReason::Other("refused by the MFA service".into()),
                ))),
                other => Err(self.protocol(format!(
                    "End answered Success with AuthenticationResult {other:?}"
                ))),
            };
        }
        if is(value, &["AuthenticationPending"]) {
            return Ok(None);
        }
        if is(value, NOT_ENROLLED) {
            return Ok(Some(Verdict::Deny(DenyReason::Other(
                "the user is no longer enrolled at the MFA service".into(),
            ))));
        }
        match self.refusal(answer)? {
            Some(reason) => Ok(Some(Verdict::Deny(reason))),
            None => Err(self.protocol(format!(
                "End answered {value:?}: {}",
                answer.message.as_deref().unwrap_or("")
            ))),
        }
    }

    /// The result values that refuse the login (both calls), or a configuration error.
    fn refusal(&self, answer: &Answer) -> Result<Option<DenyReason>, MfaError> {
        let value = answer.value.as_str();
        Ok(Some(if is(value, WRONG_CODE) {
            DenyReason::WrongCode
        } else if is(value, &["OathCodeDuplicate"]) {
            DenyReason::Replayed
        } else if is(value, &["PhoneAppDenied", "PhoneAppFraud"]) {
            DenyReason::UserDenied
        } else if is(value, &["PhoneAppNoResponse"]) {
            DenyReason::Timeout
        } else if is(value, LOCKED) || value.to_ascii_lowercase().contains("throttl") {
            DenyReason::Locked
        } else if is(value, &["InvalidSession", "InvalidSessionId"]) {
            DenyReason::Other("the MFA session expired (it lasts about 3 minutes)".into())
        } else if is(value, &["AccessDenied"]) {
            // The user's domain belongs to another tenant.
            DenyReason::Other("the user does not belong to this tenant".into())
        } else if is(value, &["TenantIsBlocked"]) {
            return Err(self.config_error("the MFA service says the tenant is blocked".into()));
        } else {
            return Ok(None);
        }))
    }

    /// The state kept by the server: the session id, and the affinity URL when usable.
    fn state(&self, session: &str, affinity: Option<&str>) -> ProviderState {
        let affinity = affinity
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .and_then(|a| match Url::parse(a) {
                Ok(url) if url.origin() == self.cfg.service_url.origin() => Some(url),
                _ => {
                    tracing::warn!(provider = %self.cfg.name, affinity = a, "ignoring an AffinityUrl outside the service's origin");
                    None
                }
            });
        let mut bytes = session.as_bytes().to_vec();
        if let Some(url) = affinity {
            bytes.push(b'\n');
            bytes.extend_from_slice(url.as_str().as_bytes());
        }
        ProviderState(bytes)
    }

    /// The session id and the End URL of a state.
    fn session<'s>(&self, state: &'s ProviderState) -> Result<(&'s str, Url), MfaError> {
        let text = std::str::from_utf8(&state.0)
            .map_err(|_| self.protocol("state is not an Entra session".into()))?;
        let (session, affinity) = match text.split_once('\n') {
            Some((s, a)) => (s, Some(a)),
            None => (text, None),
        };
        if session.is_empty() {
            return Err(self.protocol("state is not an Entra session".into()));
        }
        let url = match affinity.map(Url::parse) {
            None => self.end_url.clone(),
            Some(Ok(mut url)) => {
                if url.path_segments().and_then(|mut s| s.next_back())
                    != Some("EndTwoWayAuthentication")
                {
                    let path = format!(
                        "{}/EndTwoWayAuthentication",
                        url.path().trim_end_matches('/')
                    );
                    url.set_path(&path);
                }
                url
            }
            Some(Err(_)) => return Err(self.protocol("state holds a bad affinity URL".into())),
        };
        Ok((session, url))
    }

    async fn end(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        code: Option<&str>,
    ) -> Result<Option<Verdict>, MfaError> {
        let (session, url) = self.session(state)?;
        let xml = end_xml(session, &req.context_id, &req.user, code);
        let answer = self
            .call(&url, xml, "EndTwoWayAuthenticationResponse")
            .await?;
        self.map_end(&answer)
    }
}

/// Result values meaning the user cannot do MFA here (unknown, or no method).
const NOT_ENROLLED: &[&str] = &[
    "UserNotFound",
    "BecAccessDenied",
    "AuthenticationMethodNotConfigured",
    "NoDefaultAuthenticationMethodIsConfigured",
    "ProofDataNotFound",
];
/// Result values for a code that does not match.
const WRONG_CODE: &[&str] = &[
    "OathCodeIncorrect",
    "OathCodePinIncorrect",
    "SMSAuthFailedWrongCodeEntered",
    "SMSAuthFailedWrongCodePinEntered",
];
/// Result values for a user blocked or throttled by the service.
const LOCKED: &[&str] = &[
    "UserIsBlocked",
    "AuthenticationMethodLocked",
    "SMSAuthFailedMaxAllowedCodeRetryReached",
    "PhoneAppAllDevicesBlocked",
];

fn is(value: &str, set: &[&str]) -> bool {
    set.iter().any(|v| v.eq_ignore_ascii_case(value.trim()))
}

#[async_trait::async_trait]
impl MfaProvider for Entra {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?factor, "Entra BeginTwoWayAuthentication");
        let xml = begin_xml(req, factor);
        let answer = self
            .call(&self.begin_url, xml, "BeginTwoWayAuthenticationResponse")
            .await?;
        let begin = self.map_begin(&answer, factor)?;
        if matches!(begin, Begin::NotEnrolled | Begin::Decided(_)) {
            tracing::info!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, result = %answer.value, "Entra answered at once");
        }
        Ok(begin)
    }

    async fn verify_otp(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError> {
        // An empty AdditionalAuthData asks "answered yet?"; it is never a code.
        let code = code.trim();
        let verdict = if code.is_empty() {
            Verdict::Deny(DenyReason::WrongCode)
        } else {
            match self.end(req, state, Some(code)).await? {
                Some(v) => v,
                None => Verdict::Deny(DenyReason::WrongCode),
            }
        };
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, "Entra OTP");
        Ok(verdict)
    }

    async fn poll_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
    ) -> Result<PushStatus, MfaError> {
        self.session(state)?;
        match self.end(req, state, None).await? {
            Some(verdict) => {
                tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, "Entra push");
                Ok(PushStatus::Answered(verdict))
            }
            None => Ok(PushStatus::Waiting),
        }
    }

    fn poll_interval(&self) -> Duration {
        self.cfg.poll_interval
    }
}

/// Joins `path` below `base`, keeping the base's path (`.../Connector` + `x` = `.../Connector/x`).
fn join(base: &Url, path: &str) -> Result<Url, String> {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    if url.path() != joined {
        return Err(format!("cannot join {path} to {base}"));
    }
    Ok(url)
}

fn load_certificate(cert_pem: &PathBuf, key_pem: &PathBuf) -> Result<Signer, String> {
    let cert = CertificateDer::from_pem_file(cert_pem)
        .map_err(|e| format!("cannot read a certificate from {}: {e}", cert_pem.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key_pem.display()))?;
    let key = match &key {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err(format!("{} is not an RSA private key", key_pem.display())),
    }
    .map_err(|e| format!("{} is not a usable RSA key: {e}", key_pem.display()))?;
    // The certificate's SubjectPublicKeyInfo holds the DER RSAPublicKey verbatim.
    let public = key.public().as_ref();
    if !cert.windows(public.len()).any(|w| w == public) {
        return Err(format!(
            "the key in {} does not belong to the certificate in {}",
            key_pem.display(),
            cert_pem.display()
        ));
    }
    Ok(Signer::Certificate {
        key: Box::new(key),
        x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cert)),
        x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert)),
    })
}

/// A random (version 4) GUID for `jti`.
fn guid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn esc(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// The BeginTwoWayAuthenticationRequest body.
fn begin_xml(req: &MfaRequest, factor: Factor) -> String {
    let override_otp = matches!(factor, Factor::Otp);
    let caller_ip = req
        .nas_ip
        .map_or_else(|| "UNKNOWN:".to_owned(), |ip| ip.to_string());
    let property = |key: &str, value: bool| {
        format!("<a:KeyValueOfstringstring><a:Key>{key}</a:Key><a:Value>{value}</a:Value></a:KeyValueOfstringstring>")
    };
    format!(
        "<BeginTwoWayAuthenticationRequest>\
         <Version>1.0</Version>\
         <UserPrincipalName>{upn}</UserPrincipalName>\
         <Lcid>en-us</Lcid>\
         <AuthenticationMethodProperties xmlns:a=\"{ARRAYS_NS}\">{voice}{otp}</AuthenticationMethodProperties>\
         <ContextId>{context}</ContextId>\
         <SyncCall>false</SyncCall>\
         <RequireUserMatch>true</RequireUserMatch>\
         <CallerName>radius</CallerName>\
         <CallerIP>{ip}</CallerIP>\
         </BeginTwoWayAuthenticationRequest>",
        upn = esc(&req.user),
        voice = property("OverrideVoiceOtp", false),
        otp = property("OverrideNumberMatchingWithOTP", override_otp),
        context = esc(&req.context_id),
        ip = esc(&caller_ip),
    )
}

/// The EndTwoWayAuthenticationRequest body; `code` is `None` when polling a push.
fn end_xml(session: &str, context: &str, upn: &str, code: Option<&str>) -> String {
    let data = match code {
        Some(code) => format!("<AdditionalAuthData>{}</AdditionalAuthData>", esc(code)),
        None => "<AdditionalAuthData i:nil=\"true\"/>".to_owned(),
    };
    format!(
        "<EndTwoWayAuthenticationRequest xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <Version>1.0</Version>\
         <SessionId>{session}</SessionId>\
         <ContextId>{context}</ContextId>\
         {data}\
         <UserPrincipalName>{upn}</UserPrincipalName>\
         </EndTwoWayAuthenticationRequest>",
        session = esc(session),
        context = esc(context),
        upn = esc(upn),
    )
}

/// The fields we read from a Begin or End answer; nil elements are `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Answer {
    value: String,
    message: Option<String>,
    session_id: Option<String>,
    auth_result: Option<String>,
    affinity_url: Option<String>,
}

/// Parses an answer whose root element must be `root` (namespace prefixes are ignored).
fn parse_answer(xml: &str, root: &str) -> Result<Answer, String> {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut nil: Vec<bool> = Vec::new();
    let mut text = String::new();
    let mut answer = Answer::default();
    let mut seen_root = false;
    let mut value = None;

    let mut record = |path: &[String], content: Option<String>| match path {
        [_, a, b] if a == "Result" && b == "Value" => value = content,
        [_, a, b] if a == "Result" && b == "Message" => answer.message = content,
        [_, a] if a == "SessionId" => answer.session_id = content,
        [_, a] if a == "AuthenticationResult" => answer.auth_result = content,
        [_, a] if a == "AffinityUrl" => answer.affinity_url = content,
        _ => {}
    };
    let is_nil = |e: &quick_xml::events::BytesStart<'_>| {
        e.attributes().flatten().any(|a| {
            a.key.local_name().as_ref() == b"nil" && a.value.as_ref().eq_ignore_ascii_case(b"true")
        })
    };
    loop {
        match reader.read_event().map_err(|e| format!("bad XML: {e}"))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    if seen_root || name != root {
                        return Err(format!("expected a {root}, got a {name}"));
                    }
                    seen_root = true;
                }
                nil.push(is_nil(&e));
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    return Err(format!("expected a {root}, got an empty {name}"));
                }
                let content = (!is_nil(&e)).then(String::new);
                stack.push(name);
                record(&stack, content);
                stack.pop();
            }
            Event::Text(t) => {
                text.push_str(&t.unescape().map_err(|e| format!("bad XML text: {e}"))?);
            }
            Event::CData(c) => {
                text.push_str(&c.decode().map_err(|e| format!("bad XML CDATA: {e}"))?);
            }
            Event::End(_) => {
                let content = (!nil.pop().unwrap_or(false)).then(|| text.trim().to_owned());
                record(&stack, content);
                stack.pop();
                text.clear();
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !seen_root || !stack.is_empty() {
        return Err(format!("no complete {root}"));
    }
    answer.value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "no Result/Value".to_owned())?;
    Ok(answer)
}

/// The token endpoint's JSON (success and error share one shape here).
#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    /// A number in v2.0; older endpoints sent a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    //! Request shapes and the mapping of answers. The answers follow the shapes published in
    //! public traces of the service (AD FS adapter deep-dive, NPS-extension scripts).
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entra() -> Entra {
        let mut cfg = EntraConfig::new(
            "entra",
            "contoso.onmicrosoft.com",
            MFA_CLIENT_ID,
            EntraCredential::Secret("s3cret".into()),
        );
        cfg.service_url =
            Url::parse("http://127.0.0.1:1/StrongAuthenticationService.svc/Connector/").unwrap();
        cfg.login_url = Url::parse("http://127.0.0.1:1").unwrap();
        Entra::new(cfg).unwrap()
    }

    fn req() -> MfaRequest {
        MfaRequest {
            user: "alice@contoso.com".into(),
            nas_ip: Some("192.0.2.7".parse().unwrap()),
            client: "vpn".into(),
            calling_station: None,
            context_id: "ctx-<1>".into(),
        }
    }

    const BEGIN_PUSH: &str = r#"<BeginTwoWayAuthenticationResponse xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
	<Version>1</Version>
	<Result><Value>Success</Value><Message i:nil="true"/><Retry>false</Retry><Error i:nil="true"/><Exception i:nil="true"/><RenewCert>false</RenewCert></Result>
	<SessionId>270867b8-6bac-434b-9a2a-cb682f461cbe</SessionId>
	<AuthenticationResult i:nil="true"/>
	<UserPrincipalName>testuser@contoso.com</UserPrincipalName>
	<AffinityUrl>http://127.0.0.1:1/StrongAuthenticationService.svc/Connector/EndTwoWayAuthentication?dc=KRS</AffinityUrl>
	<ValidEntropyNumber>0</ValidEntropyNumber>
</BeginTwoWayAuthenticationResponse>"#;

    const END_PENDING: &str = r#"<EndTwoWayAuthenticationResponse xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Version>1</Version><Result><Value>AuthenticationPending</Value><Message>The authentication has not been completed yet, please try again.</Message><Retry>true</Retry><Error i:nil="true"/><Exception i:nil="true"/><RenewCert>false</RenewCert></Result><AuthenticationResult i:nil="true"/><LocationData i:nil="true"/><CompletedInteractively>false</CompletedInteractively></EndTwoWayAuthenticationResponse>"#;

    fn begin_answer(value: &str, auth: &str) -> String {
        format!(
            "<BeginTwoWayAuthenticationResponse><Result><Value>{value}</Value><Message>m &amp; n</Message></Result>\
             <SessionId>s-1</SessionId><AuthenticationResult>{auth}</AuthenticationResult></BeginTwoWayAuthenticationResponse>"
        )
    }

    fn end_answer(value: &str, auth: &str) -> String {
        format!(
            "<EndTwoWayAuthenticationResponse><Result><Value>{value}</Value></Result>\
             <AuthenticationResult>{auth}</AuthenticationResult></EndTwoWayAuthenticationResponse>"
        )
    }

    fn begin(xml: &str, factor: Factor) -> Result<Begin, MfaError> {
        let e = entra();
        let a = parse_answer(xml, "BeginTwoWayAuthenticationResponse").unwrap();
        e.map_begin(&a, factor)
    }

    fn end(xml: &str) -> Result<Option<Verdict>, MfaError> {
        let a = parse_answer(xml, "EndTwoWayAuthenticationResponse").unwrap();
        entra().map_end(&a)
    }

    #[test]
    fn parses_published_shapes() {
        let a = parse_answer(BEGIN_PUSH, "BeginTwoWayAuthenticationResponse").unwrap();
        assert_eq!(
            a,
            Answer {
                value: "Success".into(),
                message: None,
                session_id: Some("270867b8-6bac-434b-9a2a-cb682f461cbe".into()),
                auth_result: None,
                affinity_url: Some("http://127.0.0.1:1/StrongAuthenticationService.svc/Connector/EndTwoWayAuthentication?dc=KRS".into()),
            }
        );
        let a = parse_answer(END_PENDING, "EndTwoWayAuthenticationResponse").unwrap();
        assert_eq!(a.value, "AuthenticationPending");
        assert_eq!(
            a.message.as_deref(),
            Some("The authentication has not been completed yet, please try again.")
        );
        // Prefixed elements, entities.
        let xml = begin_answer("Success", "challenge")
            .replace("<Result>", "<b:Result>")
            .replace("</Result>", "</b:Result>");
        let a = parse_answer(&xml, "BeginTwoWayAuthenticationResponse").unwrap();
        assert_eq!(a.message.as_deref(), Some("m & n"));
        assert_eq!(a.auth_result.as_deref(), Some("challenge"));
    }

    #[test]
    fn rejects_bad_xml() {
        for bad in [
            "",
            "not xml",
            "<BeginTwoWayAuthenticationResponse><Result><Value>Success</Value></Result>",
            "<Other><Result><Value>Success</Value></Result></Other>",
            "<BeginTwoWayAuthenticationResponse><Result></Result></BeginTwoWayAuthenticationResponse>",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><BeginTwoWayAuthenticationResponse/>",
            "<BeginTwoWayAuthenticationResponse><Result><Value>&bogus;</Value></Result></BeginTwoWayAuthenticationResponse>",
        ] {
            assert!(
                parse_answer(bad, "BeginTwoWayAuthenticationResponse").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn begin_request_round_trip() {
        let xml = begin_xml(&req(), Factor::Otp);
        assert!(xml.contains("<UserPrincipalName>alice@contoso.com</UserPrincipalName>"));
        assert!(xml.contains("<ContextId>ctx-&lt;1&gt;</ContextId>"));
        assert!(xml.contains("<a:Key>OverrideNumberMatchingWithOTP</a:Key><a:Value>true</a:Value>"));
        assert!(xml.contains("<SyncCall>false</SyncCall><RequireUserMatch>true</RequireUserMatch>"));
        assert!(xml.contains("<CallerIP>192.0.2.7</CallerIP>"));
        let xml = begin_xml(&req(), Factor::Push);
        assert!(
            xml.contains("<a:Key>OverrideNumberMatchingWithOTP</a:Key><a:Value>false</a:Value>")
        );
        // Well-formed, and the escaped context id reads back unchanged.
        let mut r = quick_xml::Reader::from_str(&xml);
        let mut texts = Vec::new();
        loop {
            match r.read_event().unwrap() {
                quick_xml::events::Event::Text(t) => texts.push(t.unescape().unwrap().into_owned()),
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert!(texts.contains(&"ctx-<1>".to_owned()), "{texts:?}");
        let mut no_ip = req();
        no_ip.nas_ip = None;
        assert!(begin_xml(&no_ip, Factor::Push).contains("<CallerIP>UNKNOWN:</CallerIP>"));
    }

    #[test]
    fn end_request() {
        let xml = end_xml("s-1", "c", "u", Some("12<34"));
        assert!(xml.contains("<AdditionalAuthData>12&lt;34</AdditionalAuthData>"));
        let xml = end_xml("s-1", "c", "u", None);
        assert!(xml.contains("<AdditionalAuthData i:nil=\"true\"/>"));
        assert!(xml.contains("<SessionId>s-1</SessionId><ContextId>c</ContextId>"));
    }

    #[test]
    fn begin_mapping() {
        let e = entra();
        match begin(BEGIN_PUSH, Factor::Push).unwrap() {
            Begin::PushSent { state } => {
                let (session, url) = e.session(&state).unwrap();
                assert_eq!(session, "270867b8-6bac-434b-9a2a-cb682f461cbe");
                assert_eq!(url.query(), Some("dc=KRS"));
            }
            other => panic!("{other:?}"),
        }
        match begin(&begin_answer("Success", "challenge"), Factor::Otp).unwrap() {
            Begin::Challenge { prompt, state } => {
                assert_eq!(prompt, OTP_PROMPT);
                assert_eq!(state.0, b"s-1");
                assert_eq!(
                    e.session(&state).unwrap().1.as_str(),
                    "http://127.0.0.1:1/StrongAuthenticationService.svc/Connector/EndTwoWayAuthentication"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            begin(&begin_answer("Success", "challenge"), Factor::Push),
            Ok(Begin::FactorUnavailable)
        );
        assert_eq!(
            begin(&begin_answer("Success", "true"), Factor::Push),
            Ok(Begin::Decided(Verdict::Allow))
        );
        assert_eq!(
            begin(&begin_answer("Success", "false"), Factor::Push),
            Ok(Begin::Decided(Verdict::Deny(DenyReason::Other(
                "m & n".into()
            ))))
        );
        for v in [
            "UserNotFound",
            "NoDefaultAuthenticationMethodIsConfigured",
            "userNotFound",
        ] {
            assert_eq!(
                begin(&begin_answer(v, ""), Factor::Otp),
                Ok(Begin::NotEnrolled)
            );
        }
        for v in ["UserIsBlocked", "AuthenticationThrottled"] {
            assert_eq!(
                begin(&begin_answer(v, ""), Factor::Otp),
                Ok(Begin::Decided(Verdict::Deny(DenyReason::Locked)))
            );
        }
        assert_eq!(
            begin(&begin_answer("PhoneAppDenied", "false"), Factor::Push),
            Ok(Begin::Decided(Verdict::Deny(DenyReason::UserDenied)))
        );
        assert!(matches!(
            begin(&begin_answer("InternalError", ""), Factor::Otp),
            Err(MfaError::Protocol { .. })
        ));
        assert!(matches!(
            begin(&begin_answer("TenantIsBlocked", ""), Factor::Otp),
            Err(MfaError::Config { .. })
        ));
        let no_session = "<BeginTwoWayAuthenticationResponse><Result><Value>Success</Value></Result><AuthenticationResult>challenge</AuthenticationResult></BeginTwoWayAuthenticationResponse>";
        assert!(matches!(
            begin(no_session, Factor::Otp),
            Err(MfaError::Protocol { .. })
        ));
    }

    #[test]
    fn foreign_affinity_is_ignored() {
        let xml = BEGIN_PUSH.replace("http://127.0.0.1:1/", "https://evil.example/");
        let Begin::PushSent { state } = begin(&xml, Factor::Push).unwrap() else {
            panic!()
        };
        assert_eq!(state.0, b"270867b8-6bac-434b-9a2a-cb682f461cbe");
    }

    #[test]
    fn end_mapping() {
        assert_eq!(end(END_PENDING), Ok(None));
        assert_eq!(
            end(&end_answer("Success", "true")),
            Ok(Some(Verdict::Allow))
        );
        assert!(matches!(
            end(&end_answer("Success", "")),
            Err(MfaError::Protocol { .. })
        ));
        let cases = [
            ("OathCodeIncorrect", DenyReason::WrongCode),
            ("SMSAuthFailedWrongCodeEntered", DenyReason::WrongCode),
            ("OathCodeDuplicate", DenyReason::Replayed),
            ("PhoneAppDenied", DenyReason::UserDenied),
            ("PhoneAppFraud", DenyReason::UserDenied),
            ("PhoneAppNoResponse", DenyReason::Timeout),
            ("UserIsBlocked", DenyReason::Locked),
            (
                "SMSAuthFailedMaxAllowedCodeRetryReached",
                DenyReason::Locked,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(
                end(&end_answer(value, "false")),
                Ok(Some(Verdict::Deny(reason))),
                "{value}"
            );
        }
        assert!(matches!(
            end(&end_answer("InvalidSession", "")),
            Ok(Some(Verdict::Deny(DenyReason::Other(_))))
        ));
        assert!(matches!(
            end(&end_answer("Whatever", "")),
            Err(MfaError::Protocol { .. })
        ));
    }

    #[test]
    fn config_checks() {
        let base = || {
            EntraConfig::new(
                "entra",
                "00000000-0000-0000-0000-000000000001",
                MFA_CLIENT_ID,
                EntraCredential::Secret("x".into()),
            )
        };
        let e = Entra::new(base()).unwrap();
        assert_eq!(
            e.token_url.as_str(),
            "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/oauth2/v2.0/token"
        );
        assert_eq!(
            e.begin_url.as_str(),
            "https://adnotifications.windowsazure.com/StrongAuthenticationService.svc/Connector/BeginTwoWayAuthentication"
        );
        let mut cfg = base();
        cfg.tenant_id = "../x".into();
        assert!(matches!(Entra::new(cfg), Err(MfaError::Config { .. })));
        let mut cfg = base();
        cfg.credential = EntraCredential::Secret(String::new());
        assert!(matches!(Entra::new(cfg), Err(MfaError::Config { .. })));
        let mut cfg = base();
        cfg.credential = EntraCredential::Certificate {
            cert_pem: "/nonexistent/c.pem".into(),
            key_pem: "/nonexistent/k.pem".into(),
        };
        assert!(matches!(Entra::new(cfg), Err(MfaError::Config { .. })));
        let mut cfg = base();
        cfg.service_url = Url::parse("ftp://x/").unwrap();
        assert!(matches!(Entra::new(cfg), Err(MfaError::Config { .. })));
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let cfg = EntraConfig::new("e", "t", "c", EntraCredential::Secret("hunter2".into()));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let e = Entra::new(cfg).unwrap();
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn empty_code_is_wrong_without_a_call() {
        // Port 1: a call would fail as unreachable.
        let v = entra()
            .verify_otp(&req(), &ProviderState(b"s".to_vec()), " ")
            .await;
        assert_eq!(v, Ok(Verdict::Deny(DenyReason::WrongCode)));
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        let b = entra().begin(&req(), Factor::Otp).await;
        assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    }
}
