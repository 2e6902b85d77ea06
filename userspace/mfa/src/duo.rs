//! The Duo provider: Duo's Auth API v2 (`/auth/v2/preauth`, `/auth/v2/auth`,
//! `/auth/v2/auth_status`), with requests signed as Duo documents.
//!
//! - `begin` asks `POST /auth/v2/preauth` what Duo wants for the user: `enroll` (not enrolled),
//!   `deny` (refused by a Duo policy or a disabled account), `allow` (a bypass configured at Duo)
//!   or `auth`, with the user's devices and their capabilities. For a push it then sends
//!   `POST /auth/v2/auth` with `factor=push`, the first push-capable device and `async=1`; the
//!   answer's `txid` is our [`ProviderState`]. For an OTP nothing is sent: Duo passcodes (Duo
//!   Mobile, hardware tokens, bypass codes) are typed by the user, so we answer with a prompt.
//! - `verify_otp` sends `POST /auth/v2/auth` with `factor=passcode` (synchronous).
//! - `poll_push` long-polls `GET /auth/v2/auth_status?txid=...` once: Duo holds it until the
//!   status changes (or `long_poll` passes) and says `allow`, `deny` or `waiting`.
//!
//! # Signing
//!
//! Every request but `/ping` carries `Date` (RFC 2822) and `Authorization: Basic
//! base64(ikey:hex(HMAC-SHA1(skey, canonical)))`, where `canonical` is the date, the upper-case
//! method, the lower-case host, the path and the parameters, joined by newlines. The parameters
//! are each percent-encoded (everything but ASCII letters, digits and `_.-~`, upper-case hex),
//! written `key=value`, sorted by key and joined by `&`; the same string is the query of a GET
//! and the `application/x-www-form-urlencoded` body of a POST. See [`canonical_request`].
//!
//! What it does not do: enrol users, phone-call or SMS factors, retries or circuit breaking (see
//! [`crate::resilience`]). The secret key, the signature and passcodes are never logged.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE};
use reqwest::Method;
use serde::Deserialize;
use sha1::Sha1;
use url::Url;
use zeroize::Zeroize;

use crate::provider::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus,
    Verdict,
};

/// The prompt of the OTP challenge.
pub const OTP_PROMPT: &str = "Enter a Duo passcode";

/// The time between two `auth_status` calls for one login: short, since Duo holds each call
/// until something changes.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Settings of one Duo provider (one Auth API application).
#[derive(Clone, PartialEq, Eq)]
pub struct DuoConfig {
    /// The provider's name in logs and audit lines.
    pub name: String,
    /// The API hostname as a URL: `https://api-XXXXXXXX.duosecurity.com` (or `http://` for the
    /// test stand-in). Its path must be empty or `/`.
    pub api_url: Url,
    /// The integration key (ikey), sent as the Basic user name.
    pub integration_key: String,
    /// The secret key (skey) that signs requests. Never logged.
    pub secret_key: String,
    /// A PEM file with extra trusted root certificates.
    pub ca_file: Option<PathBuf>,
    /// Verify the server certificate (default `true`). `false` is for tests only.
    pub verify_tls: bool,
    /// The limit for each request (connect included), except `auth_status`.
    pub timeout: Duration,
    /// How long Duo may hold one `auth_status` call; that call's HTTP limit is
    /// `long_poll + timeout`.
    pub long_poll: Duration,
}

impl fmt::Debug for DuoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuoConfig")
            .field("name", &self.name)
            .field("api_url", &self.api_url.as_str())
            .field("integration_key", &self.integration_key)
            .field("secret_key", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .field("verify_tls", &self.verify_tls)
            .field("timeout", &self.timeout)
            .field("long_poll", &self.long_poll)
            .finish()
    }
}

impl DuoConfig {
    /// A configuration with the defaults: TLS verified against the webpki roots, 10 s per
    /// request, 60 s per `auth_status` long poll.
    pub fn new(
        name: impl Into<String>,
        api_url: Url,
        integration_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        DuoConfig {
            name: name.into(),
            api_url,
            integration_key: integration_key.into(),
            secret_key: secret_key.into(),
            ca_file: None,
            verify_tls: true,
            timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(60),
        }
    }
}

/// A Duo Auth API application as an [`MfaProvider`].
pub struct Duo {
    cfg: DuoConfig,
    http: reqwest::Client,
    /// The host as signed: lower case, with the port when it is not the scheme's default
    /// (what the `Host` header carries).
    host: String,
}

impl fmt::Debug for Duo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duo")
            .field("cfg", &self.cfg)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Drop for Duo {
    fn drop(&mut self) {
        self.cfg.secret_key.zeroize();
    }
}

impl Duo {
    /// Builds the HTTP client. Fails with [`MfaError::Config`] for a URL that is not http(s)
    /// or has a path, empty keys, a CA file that cannot be read or holds no certificate, or a
    /// TLS setup rustls refuses.
    pub fn new(cfg: DuoConfig) -> Result<Duo, MfaError> {
        let config_err = |detail: String| MfaError::Config {
            provider: cfg.name.clone(),
            detail,
        };
        let url = &cfg.api_url;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(config_err(format!("API URL {url} is not an http(s) URL")));
        }
        let Some(host) = url.host_str() else {
            return Err(config_err(format!("API URL {url} has no host")));
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(config_err(format!(
                "API URL {url} must be the API hostname only (no path or query)"
            )));
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", host.to_ascii_lowercase()),
            None => host.to_ascii_lowercase(),
        };
        if cfg.integration_key.is_empty() || cfg.secret_key.is_empty() {
            return Err(config_err(
                "the integration key and the secret key must not be empty".to_owned(),
            ));
        }

        let http = crate::http::client(crate::http::HttpSettings {
            name: &cfg.name,
            timeout: cfg.timeout,
            ca_file: cfg.ca_file.as_deref(),
            verify_tls: cfg.verify_tls,
            default_headers: reqwest::header::HeaderMap::new(),
        })
        .map_err(config_err)?;
        Ok(Duo { cfg, http, host })
    }

    /// The configuration this provider was built from.
    pub fn config(&self) -> &DuoConfig {
        &self.cfg
    }

    /// One signed call; returns the `response` member of an `OK` answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        limit: Duration,
    ) -> Result<serde_json::Value, MfaError> {
        let encoded = encode_params(params);
        // A call that changes nothing at Duo is sent once more when a kept-alive connection
        // turns out to have been closed by the server (the request may not have been read).
        // A push or a passcode check is never sent twice.
        let idempotent = method == Method::GET || path == "/auth/v2/preauth";
        let mut retried = false;
        let resp = loop {
            let req = self.signed(&method, path, &encoded)?;
            match req.timeout(limit).send().await {
                Ok(resp) => break resp,
                Err(e)
                    if idempotent
                        && !retried
                        && e.is_request()
                        && !e.is_connect()
                        && !e.is_timeout() =>
                {
                    tracing::debug!(provider = %self.cfg.name, path, error = %crate::http::error_chain(&e), "Duo request failed on a reused connection; sending it again");
                    retried = true;
                }
                Err(e) => return Err(self.transport_error(&e, limit)),
            }
        };
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, limit))?;
        let reply: Option<Envelope> = serde_json::from_slice(&body).ok();
        let fail = || {
            reply
                .as_ref()
                .map(Envelope::failure)
                .unwrap_or_else(|| "no Duo JSON in the body".to_owned())
        };
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.config_err(format!(
                "{path} answered HTTP {status} ({}): check the integration key, secret key and API hostname",
                fail()
            )));
        }
        if !status.is_success() {
            return Err(self.protocol(format!("{path} answered HTTP {status} ({})", fail())));
        }
        match reply {
            Some(Envelope {
                stat,
                response: Some(response),
                ..
            }) if stat == "OK" => Ok(response),
            _ => Err(self.protocol(format!("{path} answered HTTP {status} ({})", fail()))),
        }
    }

    /// The request with its `Date` and `Authorization` headers (a fresh date each time).
    fn signed(
        &self,
        method: &Method,
        path: &str,
        encoded: &str,
    ) -> Result<reqwest::RequestBuilder, MfaError> {
        let date = rfc2822_date(SystemTime::now());
        let canonical = canonical_request(&date, method.as_str(), &self.host, path, encoded);
        let mut auth = HeaderValue::try_from(authorization(
            &self.cfg.integration_key,
            &sign(&self.cfg.secret_key, &canonical),
        ))
        .map_err(|_| self.config_err("the integration key is not a valid header value".into()))?;
        auth.set_sensitive(true);

        let mut url = self.cfg.api_url.clone();
        url.set_path(path);
        let req = if *method == Method::GET {
            url.set_query((!encoded.is_empty()).then_some(encoded));
            self.http.get(url)
        } else {
            self.http
                .request(method.clone(), url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encoded.to_owned())
        };
        Ok(req.header(DATE, date).header(AUTHORIZATION, auth))
    }

    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        limit: Duration,
    ) -> Result<T, MfaError> {
        let value = self.call(method, path, params, limit).await?;
        serde_json::from_value(value)
            .map_err(|e| self.protocol(format!("{path}: unexpected response: {e}")))
    }

    fn transport_error(&self, e: &reqwest::Error, limit: Duration) -> MfaError {
        crate::http::transport_error(&self.cfg.name, e, limit)
    }

    fn protocol(&self, detail: String) -> MfaError {
        MfaError::Protocol {
            provider: self.cfg.name.clone(),
            detail,
        }
    }

    fn config_err(&self, detail: String) -> MfaError {
        MfaError::Config {
            provider: self.cfg.name.clone(),
            detail,
        }
    }

    fn txid<'s>(&self, state: &'s ProviderState) -> Result<&'s str, MfaError> {
        std::str::from_utf8(&state.0)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.protocol("state is not a Duo transaction id".to_owned()))
    }

    /// Maps a preauth answer: a final [`Begin`], or the device to push to.
    fn map_preauth(
        &self,
        req: &MfaRequest,
        pre: &Preauth,
        factor: Factor,
    ) -> Result<Next, MfaError> {
        let msg = pre.status_msg.as_deref().unwrap_or("");
        match pre.result.as_str() {
            "enroll" => Ok(Next::Done(Begin::NotEnrolled)),
            "deny" => {
                tracing::info!(provider = %self.cfg.name, user = %req.user, status_msg = msg, "Duo preauth denied");
                let reason = if msg.is_empty() {
                    "denied by Duo".to_owned()
                } else {
                    msg.to_owned()
                };
                Ok(Next::Done(Begin::Decided(Verdict::Deny(
                    DenyReason::Other(reason),
                ))))
            }
            "allow" => {
                tracing::info!(provider = %self.cfg.name, user = %req.user, status_msg = msg, "Duo preauth allowed without a second factor");
                Ok(Next::Done(Begin::Decided(Verdict::Allow)))
            }
            "auth" => match factor {
                Factor::Otp => Ok(Next::Done(Begin::Challenge {
                    prompt: OTP_PROMPT.to_owned(),
                    state: ProviderState::default(),
                })),
                Factor::Push => Ok(pre
                    .devices
                    .iter()
                    .find(|d| d.capabilities.iter().any(|c| c == "push"))
                    .map_or(Next::Done(Begin::FactorUnavailable), |d| {
                        Next::Push(d.device.clone())
                    })),
            },
            other => Err(self.protocol(format!("/auth/v2/preauth: unknown result {other:?}"))),
        }
    }
}

/// What `begin` does after preauth.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Done(Begin),
    Push(String),
}

/// The `ipaddr` parameter: the Calling-Station-Id when it is an IPv4 address (Duo documents a
/// dotted quad; its policies use it for authorized networks and location).
fn ipaddr(req: &MfaRequest) -> Option<String> {
    let station = req.calling_station.as_deref()?.trim();
    match station.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => Some(v4.to_string()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl MfaProvider for Duo {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?factor, "Duo preauth");
        let ip = ipaddr(req);
        let mut params = vec![("username", req.user.as_str())];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        let pre: Preauth = self
            .call_as(Method::POST, "/auth/v2/preauth", &params, self.cfg.timeout)
            .await?;
        let device = match self.map_preauth(req, &pre, factor)? {
            Next::Done(begin) => return Ok(begin),
            Next::Push(device) => device,
        };
        params.extend([("factor", "push"), ("device", &device), ("async", "1")]);
        let auth: AuthReply = self
            .call_as(Method::POST, "/auth/v2/auth", &params, self.cfg.timeout)
            .await?;
        match auth.txid.filter(|t| !t.is_empty()) {
            Some(txid) => {
                tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, "Duo push sent");
                Ok(Begin::PushSent {
                    state: ProviderState(txid.into_bytes()),
                })
            }
            None => Err(self.protocol("/auth/v2/auth (async) answered without a txid".into())),
        }
    }

    async fn verify_otp(
        &self,
        req: &MfaRequest,
        _state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError> {
        let code = code.trim();
        // Duo refuses a missing passcode as a bad request; it is simply a wrong code.
        if code.is_empty() || code.len() > 64 || code.chars().any(char::is_control) {
            return Ok(Verdict::Deny(DenyReason::WrongCode));
        }
        let ip = ipaddr(req);
        let mut params = vec![
            ("username", req.user.as_str()),
            ("factor", "passcode"),
            ("passcode", code),
        ];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        let reply: AuthReply = self
            .call_as(Method::POST, "/auth/v2/auth", &params, self.cfg.timeout)
            .await?;
        let verdict = match reply.verdict(false) {
            Some(v) => v,
            None => {
                return Err(self.protocol(format!(
                    "/auth/v2/auth (passcode): unexpected result {:?}",
                    reply.result
                )))
            }
        };
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, status = ?reply.status, "Duo passcode");
        Ok(verdict)
    }

    async fn poll_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
    ) -> Result<PushStatus, MfaError> {
        let txid = self.txid(state)?;
        let per_call = self.cfg.long_poll + self.cfg.timeout;
        let params = [("txid", txid)];
        let reply = self
            .call_as::<AuthReply>(Method::GET, "/auth/v2/auth_status", &params, per_call)
            .await?;
        if let Some(verdict) = reply.verdict(true) {
            tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, status = ?reply.status, "Duo push");
            return Ok(PushStatus::Answered(verdict));
        }
        if reply.result.as_deref() != Some("waiting") {
            return Err(self.protocol(format!(
                "/auth/v2/auth_status: unexpected result {:?}",
                reply.result
            )));
        }
        Ok(PushStatus::Waiting)
    }

    fn poll_interval(&self) -> Duration {
        MIN_POLL_INTERVAL
    }

    fn poll_hold(&self) -> Duration {
        self.cfg.long_poll
    }
}

/// Percent-encodes as Duo's canonical form wants (RFC 3986: everything but unreserved
/// characters, upper-case hex).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parameters as signed and sent: `key=value` percent-encoded, sorted (by key, then value),
/// joined by `&`.
pub fn encode_params(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request of Duo's v2 signature: date, upper-case method, lower-case host,
/// path and the encoded parameters ([`encode_params`]), joined by newlines.
pub fn canonical_request(date: &str, method: &str, host: &str, path: &str, params: &str) -> String {
    [
        date,
        &method.to_ascii_uppercase(),
        &host.to_ascii_lowercase(),
        path,
        params,
    ]
    .join("\n")
}

/// `hex(HMAC-SHA1(secret_key, canonical))`.
pub fn sign(secret_key: &str, canonical: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value: `Basic base64(ikey:signature)`.
pub fn authorization(integration_key: &str, signature: &str) -> String {
    let creds = format!("{integration_key}:{signature}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
}

/// An RFC 2822 date in UTC, the way Duo's clients write it: `Tue, 21 Aug 2012 17:29:18 -0000`.
pub fn rfc2822_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[(days % 7) as usize];
    let month = MONTHS[(m - 1) as usize];
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} -0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift to an era starting on 0000-03-01 so that leap days end the year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Duo's answer envelope: `{"stat":"OK","response":...}` or
/// `{"stat":"FAIL","code":...,"message":...,"message_detail":...}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    stat: String,
    #[serde(default)]
    response: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_detail: Option<String>,
}

impl Envelope {
    fn failure(&self) -> String {
        let mut out = format!("stat {}", self.stat);
        if let Some(code) = self.code {
            out.push_str(&format!(", code {code}"));
        }
        if let Some(m) = &self.message {
            out.push_str(&format!(": {m}"));
        }
        if let Some(d) = &self.message_detail {
            out.push_str(&format!(" ({d})"));
        }
        out
    }
}

#[derive(Debug, Deserialize)]
struct Preauth {
    result: String,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    devices: Vec<Device>,
}

#[derive(Debug, Deserialize)]
struct Device {
    #[serde(default)]
    device: String,
    #[serde(default)]
    capabilities: Vec<String>,
}

/// The answer of `/auth` (synchronous or async) and `/auth_status`.
#[derive(Debug, Deserialize)]
struct AuthReply {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    txid: Option<String>,
}

impl AuthReply {
    /// `None` while `waiting` (or for an unknown result).
    fn verdict(&self, push: bool) -> Option<Verdict> {
        let status = self.status.as_deref().unwrap_or("");
        let msg = || {
            self.status_msg
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("denied by Duo ({status})"))
        };
        match self.result.as_deref()? {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny(match (status, push) {
                ("locked_out", _) => DenyReason::Locked,
                ("timeout", _) => DenyReason::Timeout,
                // The user rejected the push, or rejected it and reported fraud.
                ("deny" | "rejected" | "fraud", true) => DenyReason::UserDenied,
                ("fraud", false) | (_, true) => DenyReason::Other(msg()),
                // "deny": the passcode was not accepted.
                (_, false) => DenyReason::WrongCode,
            })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn duo() -> Duo {
        let url = Url::parse("http://127.0.0.1:1").unwrap();
        Duo::new(DuoConfig::new("duo", url, "DIXXXXXXXXXXXXXXXXXX", "sekrit")).unwrap()
    }

    fn req() -> MfaRequest {
        MfaRequest {
            user: "alice".into(),
            nas_ip: None,
            client: "vpn".into(),
            calling_station: Some("192.0.2.7".into()),
            context_id: "c".into(),
        }
    }

    /// The example of Duo's API documentation: date `Tue, 21 Aug 2012 17:29:18 -0000`, POST to
    /// `api-XXXXXXXX.duosecurity.com/accounts/v1/account/list` with `realname=First Last` and
    /// `username=root`, ikey `DIWJ8X6AEYOR5OMC6TQ1`, skey
    /// `Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep`, documented signature
    /// `2d97d6166319781b5a3a07af39d366f491234edc`.
    #[test]
    fn documented_signature() {
        let params = encode_params(&[("username", "root"), ("realname", "First Last")]);
        assert_eq!(params, "realname=First%20Last&username=root");
        let canon = canonical_request(
            "Tue, 21 Aug 2012 17:29:18 -0000",
            "post",
            "api-XXXXXXXX.duosecurity.com",
            "/accounts/v1/account/list",
            &params,
        );
        assert_eq!(
            canon,
            "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-xxxxxxxx.duosecurity.com\n\
             /accounts/v1/account/list\nrealname=First%20Last&username=root"
        );
        let sig = sign("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep", &canon);
        assert_eq!(sig, "2d97d6166319781b5a3a07af39d366f491234edc");
        assert_eq!(
            authorization("DIWJ8X6AEYOR5OMC6TQ1", &sig),
            "Basic RElXSjhYNkFFWU9SNU9NQzZUUTE6MmQ5N2Q2MTY2MzE5NzgxYjVhM2EwN2FmMzlkMzY2ZjQ5MTIzNGVkYw=="
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(percent_encode("a-z_A.Z~09"), "a-z_A.Z~09");
        assert_eq!(percent_encode("a b+c/d@e=f&g"), "a%20b%2Bc%2Fd%40e%3Df%26g");
        assert_eq!(percent_encode("é"), "%C3%A9");
        // Sorted by encoded key; no parameters is an empty line.
        assert_eq!(
            encode_params(&[("username", "u"), ("async", "1"), ("factor", "push")]),
            "async=1&factor=push&username=u"
        );
        assert_eq!(encode_params(&[]), "");
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_345_570_158);
        assert_eq!(rfc2822_date(t), "Tue, 21 Aug 2012 17:29:18 -0000");
        assert_eq!(rfc2822_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 -0000");
        // 2000-02-29 (a leap day of a century leap year), 2100-03-01.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(rfc2822_date(t), "Tue, 29 Feb 2000 01:01:01 -0000");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_400);
        assert_eq!(rfc2822_date(t), "Mon, 01 Mar 2100 00:00:00 -0000");
    }

    fn preauth(json: &str) -> Preauth {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn preauth_mapping() {
        let d = duo();
        let auth = r#"{"result":"auth","status_msg":"Account is active","devices":[
            {"device":"DHTOKEN","type":"token","capabilities":[]},
            {"device":"DPFZRS9FB0D46QFTM891","type":"phone","number":"XXX-XXX-0100",
             "capabilities":["auto","push","sms","phone","mobile_otp"]}]}"#;
        assert_eq!(
            d.map_preauth(&req(), &preauth(auth), Factor::Push),
            Ok(Next::Push("DPFZRS9FB0D46QFTM891".into()))
        );
        assert_eq!(
            d.map_preauth(&req(), &preauth(auth), Factor::Otp),
            Ok(Next::Done(Begin::Challenge {
                prompt: OTP_PROMPT.into(),
                state: ProviderState::default()
            }))
        );
        let no_push = r#"{"result":"auth","devices":[{"device":"DP1","capabilities":["auto","phone","sms"]}]}"#;
        assert_eq!(
            d.map_preauth(&req(), &preauth(no_push), Factor::Push),
            Ok(Next::Done(Begin::FactorUnavailable))
        );
        let enroll = r#"{"result":"enroll","status_msg":"Enroll an authentication device to proceed","enroll_portal_url":"https://x/portal"}"#;
        assert_eq!(
            d.map_preauth(&req(), &preauth(enroll), Factor::Push),
            Ok(Next::Done(Begin::NotEnrolled))
        );
        let allow = r#"{"result":"allow","status_msg":"Allowing unknown user"}"#;
        assert_eq!(
            d.map_preauth(&req(), &preauth(allow), Factor::Otp),
            Ok(Next::Done(Begin::Decided(Verdict::Allow)))
        );
        let deny = r#"{"result":"deny","status_msg":"Login denied"}"#;
        assert_eq!(
            d.map_preauth(&req(), &preauth(deny), Factor::Otp),
            Ok(Next::Done(Begin::Decided(Verdict::Deny(
                DenyReason::Other("Login denied".into())
            ))))
        );
        assert!(matches!(
            d.map_preauth(&req(), &preauth(r#"{"result":"maybe"}"#), Factor::Otp),
            Err(MfaError::Protocol { .. })
        ));
    }

    fn reply(json: &str) -> AuthReply {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn auth_verdicts() {
        let allow = reply(
            r#"{"result":"allow","status":"allow","status_msg":"Success. Logging you in..."}"#,
        );
        assert_eq!(allow.verdict(false), Some(Verdict::Allow));
        assert_eq!(allow.verdict(true), Some(Verdict::Allow));
        let wrong = reply(
            r#"{"result":"deny","status":"deny","status_msg":"Incorrect passcode. Please try again."}"#,
        );
        assert_eq!(
            wrong.verdict(false),
            Some(Verdict::Deny(DenyReason::WrongCode))
        );
        assert_eq!(
            wrong.verdict(true),
            Some(Verdict::Deny(DenyReason::UserDenied))
        );
        let fraud = reply(r#"{"result":"deny","status":"fraud","status_msg":"Fraud reported."}"#);
        assert_eq!(
            fraud.verdict(false),
            Some(Verdict::Deny(DenyReason::Other("Fraud reported.".into())))
        );
        assert_eq!(
            fraud.verdict(true),
            Some(Verdict::Deny(DenyReason::UserDenied))
        );
        let locked = reply(
            r#"{"result":"deny","status":"locked_out","status_msg":"Your account is locked"}"#,
        );
        assert_eq!(
            locked.verdict(false),
            Some(Verdict::Deny(DenyReason::Locked))
        );
        let timeout =
            reply(r#"{"result":"deny","status":"timeout","status_msg":"Login timed out."}"#);
        assert_eq!(
            timeout.verdict(true),
            Some(Verdict::Deny(DenyReason::Timeout))
        );
        let failed =
            reply(r#"{"result":"deny","status":"push_failed","status_msg":"Push failed."}"#);
        assert_eq!(
            failed.verdict(true),
            Some(Verdict::Deny(DenyReason::Other("Push failed.".into())))
        );
        let waiting = reply(
            r#"{"result":"waiting","status":"pushed","status_msg":"Pushed a login request to your device..."}"#,
        );
        assert_eq!(waiting.verdict(true), None);
    }

    #[test]
    fn config_checks_and_redaction() {
        let ok = Url::parse("https://API-XXXXXXXX.duosecurity.com").unwrap();
        let d = Duo::new(DuoConfig::new("duo", ok.clone(), "DI", "topsecret")).unwrap();
        assert_eq!(d.host, "api-xxxxxxxx.duosecurity.com");
        assert!(!format!("{d:?}").contains("topsecret"));
        assert_eq!(duo().host, "127.0.0.1:1");
        for bad in ["ftp://h/", "https://h/auth/v2", "https://h/?x=1"] {
            let cfg = DuoConfig::new("duo", Url::parse(bad).unwrap(), "DI", "s");
            assert!(
                matches!(Duo::new(cfg), Err(MfaError::Config { .. })),
                "{bad}"
            );
        }
        let cfg = DuoConfig::new("duo", ok.clone(), "DI", "");
        assert!(matches!(Duo::new(cfg), Err(MfaError::Config { .. })));
        let mut cfg = DuoConfig::new("duo", ok, "DI", "s");
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(Duo::new(cfg), Err(MfaError::Config { .. })));
    }

    #[test]
    fn ip_parameter() {
        assert_eq!(ipaddr(&req()).as_deref(), Some("192.0.2.7"));
        let mut r = req();
        r.calling_station = Some("00-11-22-33-44-55".into());
        assert_eq!(ipaddr(&r), None);
        r.calling_station = Some("2001:db8::1".into());
        assert_eq!(ipaddr(&r), None);
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        let b = duo().begin(&req(), Factor::Otp).await;
        assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    }

    #[tokio::test]
    async fn empty_code_is_wrong_without_asking() {
        // Nothing listens on port 1: a call would be an error.
        let v = duo()
            .verify_otp(&req(), &ProviderState::default(), " ")
            .await;
        assert_eq!(v, Ok(Verdict::Deny(DenyReason::WrongCode)));
    }
}
