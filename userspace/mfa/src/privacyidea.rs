//! The privacyIDEA provider: the `/validate` API of a privacyIDEA 3.x server.
//!
//! - OTP: `POST /validate/check` with the user and the token PIN (empty for tokens without a PIN)
//!   triggers a challenge when the server has a `challenge_response` authentication policy for
//!   the token type; the server answers `CHALLENGE` with a `transaction_id`, which is our
//!   [`ProviderState`]. The code then goes back with `POST /validate/check` and that
//!   `transaction_id`.
//! - Push: the same first call creates the push challenge (privacyIDEA sends the notification
//!   when it creates it); `GET /validate/polltransaction` tells when the phone answered, and a
//!   final `POST /validate/check` with the `transaction_id` and an empty pass collects the
//!   `ACCEPT`.
//!
//! What it does not do: enrol tokens, administer the server (no admin credentials are needed for
//! `/validate`), retry or break circuits (see [`crate::resilience`]). The pass (PIN or code) is
//! never logged.
//!
//! A caveat of privacyIDEA itself: one trigger call starts a challenge on every token of the user
//! that answers to its PIN, so a user with both a TOTP and a push token gets a push notification
//! even when only an OTP was asked for.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::provider::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus,
    Verdict,
};

/// The prompt used when privacyIDEA sends no challenge text.
pub const DEFAULT_OTP_PROMPT: &str = "Enter your one-time code";

/// privacyIDEA's error code for an unknown user (`ERR904: User <...> does not exist.`).
const ERR_USER: i64 = 904;

/// Settings of one privacyIDEA provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyIdeaConfig {
    /// The provider's name in logs and audit lines.
    pub name: String,
    /// The server's base URL (`https://pi.example.org/` or `http://127.0.0.1:5000/`); the API
    /// paths are joined to it, so a path prefix (`https://host/pi/`) is kept.
    pub base_url: Url,
    /// The realm sent with every request; `None` uses the server's default realm.
    pub realm: Option<String>,
    /// Verify the server certificate (default `true`). `false` is for tests only.
    pub verify_tls: bool,
    /// A PEM file with extra trusted root certificates (e.g. a private CA).
    pub ca_file: Option<PathBuf>,
    /// The limit for each HTTP request (connect included).
    pub timeout: Duration,
    /// How often the server asks ([`MfaProvider::poll_push`]) whether the push was answered.
    pub poll_interval: Duration,
    /// The prompt used when the server sends none.
    pub default_prompt: String,
}

impl PrivacyIdeaConfig {
    /// A configuration with the defaults: default realm, TLS verified against the system's
    /// (webpki) roots, 10 s per request, polling every second.
    pub fn new(name: impl Into<String>, base_url: Url) -> Self {
        PrivacyIdeaConfig {
            name: name.into(),
            base_url,
            realm: None,
            verify_tls: true,
            ca_file: None,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            default_prompt: DEFAULT_OTP_PROMPT.to_owned(),
        }
    }
}

/// A privacyIDEA server as an [`MfaProvider`].
#[derive(Debug)]
pub struct PrivacyIdea {
    cfg: PrivacyIdeaConfig,
    http: reqwest::Client,
    check_url: Url,
    poll_url: Url,
}

impl PrivacyIdea {
    /// Builds the HTTP client. Fails with [`MfaError::Config`] for a URL that is not http(s),
    /// a CA file that cannot be read or holds no certificate, or a TLS setup rustls refuses.
    pub fn new(cfg: PrivacyIdeaConfig) -> Result<Self, MfaError> {
        let config_err = |detail: String| MfaError::Config {
            provider: cfg.name.clone(),
            detail,
        };
        let mut base = cfg.base_url.clone();
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(config_err(format!("base URL {base} is not an http(s) URL")));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let join = |p: &str| {
            base.join(p)
                .map_err(|e| config_err(format!("cannot join {p} to {base}: {e}")))
        };
        let check_url = join("validate/check")?;
        let poll_url = join("validate/polltransaction")?;

        let mut headers = reqwest::header::HeaderMap::new();
        // privacyIDEA translates its messages; we match a few of them, in English.
        headers.insert(
            reqwest::header::ACCEPT_LANGUAGE,
            reqwest::header::HeaderValue::from_static("en"),
        );
        let http = crate::http::client(crate::http::HttpSettings {
            name: &cfg.name,
            timeout: cfg.timeout,
            ca_file: cfg.ca_file.as_deref(),
            verify_tls: cfg.verify_tls,
            default_headers: headers,
        })
        .map_err(config_err)?;
        Ok(PrivacyIdea {
            cfg,
            http,
            check_url,
            poll_url,
        })
    }

    /// The configuration this provider was built from.
    pub fn config(&self) -> &PrivacyIdeaConfig {
        &self.cfg
    }

    /// `POST /validate/check`. `pass` is the PIN, the code, or empty; it is never logged.
    async fn check(
        &self,
        user: &str,
        pass: &str,
        transaction_id: Option<&str>,
    ) -> Result<Reply, MfaError> {
        let mut form: Vec<(&str, &str)> = vec![("user", user), ("pass", pass)];
        if let Some(realm) = &self.cfg.realm {
            form.push(("realm", realm));
        }
        if let Some(id) = transaction_id {
            form.push(("transaction_id", id));
        }
        let req = self.http.post(self.check_url.clone()).form(&form);
        self.send(req, "/validate/check").await
    }

    /// `GET /validate/polltransaction`.
    async fn poll(&self, transaction_id: &str) -> Result<Reply, MfaError> {
        let req = self
            .http
            .get(self.poll_url.clone())
            .query(&[("transaction_id", transaction_id)]);
        self.send(req, "/validate/polltransaction").await
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Reply, MfaError> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(MfaError::Config {
                provider: self.cfg.name.clone(),
                detail: format!("{what} answered HTTP {status} (an API key or policy?)"),
            });
        }
        if status.is_server_error() {
            return Err(self.protocol(format!("{what} answered HTTP {status}")));
        }
        let body = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        let reply: Reply = serde_json::from_slice(&body).map_err(|e| {
            self.protocol(format!(
                "{what} answered HTTP {status} with a body that is not privacyIDEA JSON: {e}"
            ))
        })?;
        if !status.is_success() && reply.result.error.is_none() {
            return Err(self.protocol(format!("{what} answered HTTP {status}")));
        }
        Ok(reply)
    }

    fn transport_error(&self, e: &reqwest::Error) -> MfaError {
        crate::http::transport_error(&self.cfg.name, e, self.cfg.timeout)
    }

    fn protocol(&self, detail: String) -> MfaError {
        MfaError::Protocol {
            provider: self.cfg.name.clone(),
            detail,
        }
    }

    /// An `result.error` that has no meaning for the caller: a protocol error, or a
    /// configuration error for the authorization codes (API key required, missing rights).
    fn api_error(&self, err: &ApiError, what: &str) -> MfaError {
        let detail = format!("{what}: privacyIDEA error {}: {}", err.code, err.message);
        if (4030..4040).contains(&err.code) || (4300..4310).contains(&err.code) || err.code == 403 {
            MfaError::Config {
                provider: self.cfg.name.clone(),
                detail,
            }
        } else {
            self.protocol(detail)
        }
    }

    fn transaction_id<'s>(&self, state: &'s ProviderState) -> Result<&'s str, MfaError> {
        std::str::from_utf8(&state.0)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.protocol("state is not a privacyIDEA transaction id".to_owned()))
    }

    /// Maps the answer to a call that carries an OTP or finalizes a push.
    fn verdict(&self, reply: Reply, what: &str) -> Result<Verdict, MfaError> {
        if let Some(err) = &reply.result.error {
            if err.code == ERR_USER {
                return Ok(Verdict::Deny(DenyReason::Other(
                    "the user no longer exists at the MFA service".to_owned(),
                )));
            }
            return Err(self.api_error(err, what));
        }
        match reply.authentication() {
            "ACCEPT" => Ok(Verdict::Allow),
            "REJECT" | "CHALLENGE" => Ok(Verdict::Deny(deny_reason(&reply))),
            other => Err(self.protocol(format!("{what}: unknown authentication {other:?}"))),
        }
    }
}

#[async_trait::async_trait]
impl MfaProvider for PrivacyIdea {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?factor, "privacyIDEA trigger");
        let reply = self.check(&req.user, "", None).await?;
        self.map_begin(req, &reply, factor)
    }

    async fn verify_otp(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError> {
        let transaction_id = self.transaction_id(state)?;
        let reply = self.check(&req.user, code, Some(transaction_id)).await?;
        let verdict = self.verdict(reply, "/validate/check")?;
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, "privacyIDEA OTP");
        Ok(verdict)
    }

    async fn poll_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
    ) -> Result<PushStatus, MfaError> {
        let transaction_id = self.transaction_id(state)?;
        let reply = self.poll(transaction_id).await?;
        if let Some(err) = &reply.result.error {
            return Err(self.api_error(err, "/validate/polltransaction"));
        }
        let status = reply
            .detail
            .as_ref()
            .and_then(|d| d.challenge_status.as_deref());
        let answered = reply.result.value == Some(serde_json::Value::Bool(true));
        match status {
            Some("declined") | Some("cancelled") => {
                return Ok(PushStatus::Answered(Verdict::Deny(DenyReason::UserDenied)))
            }
            _ if answered => {}
            _ => return Ok(PushStatus::Waiting),
        }
        // Answered: the final /validate/check with an empty pass turns it into an ACCEPT.
        let reply = self.check(&req.user, "", Some(transaction_id)).await?;
        let verdict = match self.verdict(reply, "/validate/check")? {
            // Not a code the user typed: say what privacyIDEA said.
            Verdict::Deny(DenyReason::WrongCode) => Verdict::Deny(DenyReason::Other(
                "privacyIDEA refused to finalize the answered push".to_owned(),
            )),
            v => v,
        };
        tracing::debug!(provider = %self.cfg.name, user = %req.user, context = %req.context_id, ?verdict, "privacyIDEA push");
        Ok(PushStatus::Answered(verdict))
    }

    fn poll_interval(&self) -> Duration {
        self.cfg.poll_interval
    }
}

impl PrivacyIdea {
    /// Maps the answer to the trigger call (user and empty pass).
    fn map_begin(
        &self,
        req: &MfaRequest,
        reply: &Reply,
        factor: Factor,
    ) -> Result<Begin, MfaError> {
        if let Some(err) = &reply.result.error {
            if err.code == ERR_USER {
                tracing::info!(provider = %self.cfg.name, user = %req.user, message = %err.message, "not enrolled: unknown user");
                return Ok(Begin::NotEnrolled);
            }
            return Err(self.api_error(err, "/validate/check"));
        }
        match reply.authentication() {
            "ACCEPT" => Ok(Begin::Decided(Verdict::Allow)),
            "CHALLENGE" => {
                let detail = reply.detail.as_ref();
                let Some(transaction_id) = detail
                    .and_then(|d| d.transaction_id.clone())
                    .filter(|t| !t.is_empty())
                else {
                    return Err(self.protocol("CHALLENGE without a transaction_id".into()));
                };
                let challenges = detail.map(Detail::challenges).unwrap_or_default();
                let state = ProviderState(transaction_id.into_bytes());
                match factor {
                    Factor::Otp => {
                        let otp: Vec<&Challenge> =
                            challenges.iter().filter(|c| c.takes_code()).collect();
                        if otp.is_empty() {
                            return Ok(Begin::FactorUnavailable);
                        }
                        Ok(Begin::Challenge {
                            prompt: self.prompt(&otp),
                            state,
                        })
                    }
                    Factor::Push if challenges.iter().any(Challenge::is_push) => {
                        Ok(Begin::PushSent { state })
                    }
                    Factor::Push => Ok(Begin::FactorUnavailable),
                }
            }
            "REJECT" => {
                let message = reply.message();
                if message == NO_TOKENS {
                    return Ok(Begin::NotEnrolled);
                }
                // A PIN we do not know, a locked or disabled token, a policy: a refusal.
                tracing::info!(provider = %self.cfg.name, user = %req.user, message, "privacyIDEA refused the trigger");
                Ok(Begin::Decided(Verdict::Deny(deny_reason(reply))))
            }
            other => {
                Err(self.protocol(format!("/validate/check: unknown authentication {other:?}")))
            }
        }
    }

    fn prompt(&self, challenges: &[&Challenge]) -> String {
        let mut messages: Vec<&str> = Vec::new();
        for m in challenges.iter().filter_map(|c| c.message.as_deref()) {
            let m = m.trim();
            if !m.is_empty() && !messages.contains(&m) {
                messages.push(m);
            }
        }
        if messages.is_empty() {
            self.cfg.default_prompt.clone()
        } else {
            messages.join(", ")
        }
    }
}

/// `detail.message` when the user exists but has no token (privacyIDEA 3.x, English).
const NO_TOKENS: &str = "The user has no tokens assigned";

fn deny_reason(reply: &Reply) -> DenyReason {
    let message = reply.message();
    if message.contains("Failcounter exceeded") || message.contains("locked") {
        DenyReason::Locked
    } else if message.is_empty()
        || message.starts_with("Response did not match")
        || message.starts_with("wrong otp")
        || message.starts_with("OTP verification failed")
    {
        DenyReason::WrongCode
    } else {
        DenyReason::Other(message.to_owned())
    }
}

/// The parts of a privacyIDEA JSON answer we read.
#[derive(Debug, Deserialize)]
struct Reply {
    result: ResultField,
    #[serde(default)]
    detail: Option<Detail>,
}

impl Reply {
    /// `result.authentication` (ACCEPT, REJECT, CHALLENGE); servers before 3.8 lack it, so it
    /// is inferred from `result.value` and `detail.transaction_id` as they documented.
    fn authentication(&self) -> &str {
        match self.result.authentication.as_deref() {
            Some(a) => a,
            None if self.result.value == Some(serde_json::Value::Bool(true)) => "ACCEPT",
            None if self
                .detail
                .as_ref()
                .is_some_and(|d| d.transaction_id.as_deref().is_some_and(|t| !t.is_empty())) =>
            {
                "CHALLENGE"
            }
            None => "REJECT",
        }
    }

    fn message(&self) -> &str {
        self.detail
            .as_ref()
            .and_then(|d| d.message.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Deserialize)]
struct ResultField {
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    authentication: Option<String>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct Detail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    multi_challenge: Vec<Challenge>,
    #[serde(default)]
    challenge_status: Option<String>,
    /// Single-challenge answers of older servers: the token type at the top level.
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Detail {
    /// The challenges, including the single one an old server describes at the top level.
    fn challenges(&self) -> Vec<Challenge> {
        if self.multi_challenge.is_empty() {
            self.kind
                .iter()
                .map(|kind| Challenge {
                    kind: kind.clone(),
                    message: self.message.clone(),
                    client_mode: None,
                })
                .collect()
        } else {
            self.multi_challenge.clone()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Challenge {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: Option<String>,
    /// `interactive` (type a code), `poll` (push), `webauthn`, `u2f` (privacyIDEA 3.8+).
    #[serde(default)]
    client_mode: Option<String>,
}

/// Token types whose challenge is answered by typing a code, for servers without `client_mode`.
const CODE_TYPES: &[&str] = &[
    "hotp",
    "totp",
    "email",
    "sms",
    "motp",
    "daypassword",
    "indexedsecret",
    "question",
    "remote",
];

impl Challenge {
    fn takes_code(&self) -> bool {
        match self.client_mode.as_deref() {
            Some(mode) => mode == "interactive",
            None => CODE_TYPES.contains(&self.kind.as_str()),
        }
    }

    fn is_push(&self) -> bool {
        self.kind == "push"
    }
}

#[cfg(test)]
mod tests {
    //! The mapping of answers recorded from a privacyIDEA 3.14 server (signatures and images
    //! cut). The real server itself is exercised by `tests/privacyidea.rs`.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pi() -> PrivacyIdea {
        let url = Url::parse("http://127.0.0.1:1/pi").unwrap();
        PrivacyIdea::new(PrivacyIdeaConfig::new("pi", url)).unwrap()
    }

    fn req() -> MfaRequest {
        MfaRequest {
            user: "pi-alice".into(),
            nas_ip: None,
            client: "vpn".into(),
            calling_station: None,
            context_id: "c".into(),
        }
    }

    fn reply(json: &str) -> Reply {
        serde_json::from_str(json).unwrap()
    }

    const TOTP_CHALLENGE: &str = r#"{"detail": {"client_mode": "interactive", "message": "please enter otp: ", "messages": ["please enter otp: "], "multi_challenge": [{"client_mode": "interactive", "message": "please enter otp: ", "serial": "TOTP0000B55C", "transaction_id": "15361554133625872339", "type": "totp"}], "preferred_client_mode": "interactive", "serial": "TOTP0000B55C", "threadid": 1, "transaction_id": "15361554133625872339", "transaction_ids": ["15361554133625872339"], "type": "totp"}, "id": 2, "jsonrpc": "2.0", "result": {"authentication": "CHALLENGE", "status": true, "value": false}, "version": "privacyIDEA 3.14", "versionnumber": "3.14"}"#;
    const PUSH_CHALLENGE: &str = r#"{"detail": {"attributes": {"hideResponseInput": true}, "client_mode": "poll", "message": "Please confirm the authentication on your mobile device!", "multi_challenge": [{"attributes": {"hideResponseInput": true}, "client_mode": "poll", "message": "Please confirm the authentication on your mobile device!", "serial": "PIPU0000C0EA", "transaction_id": "14778920112752799430", "type": "push"}], "transaction_id": "14778920112752799430", "type": "push"}, "result": {"authentication": "CHALLENGE", "status": true, "value": false}}"#;
    const NO_TOKEN: &str = r#"{"detail": {"message": "The user has no tokens assigned", "threadid": 1}, "id": 2, "jsonrpc": "2.0", "result": {"authentication": "REJECT", "status": true, "value": false}}"#;
    const NO_USER: &str = r#"{"detail": null, "id": 1, "jsonrpc": "2.0", "result": {"error": {"code": 904, "message": "ERR904: User <nobody@portcullis> does not exist."}, "status": false}}"#;
    const ACCEPT: &str = r#"{"detail": {"message": "Found matching challenge", "serial": "TOTP0000B55C"}, "result": {"authentication": "ACCEPT", "status": true, "value": true}}"#;
    const NO_MATCH: &str = r#"{"detail": {"message": "Response did not match the challenge.", "serial": "TOTP0000B55C", "type": "totp"}, "result": {"authentication": "REJECT", "status": true, "value": false}}"#;

    #[test]
    fn totp_challenge() {
        let b = pi().map_begin(&req(), &reply(TOTP_CHALLENGE), Factor::Otp);
        assert_eq!(
            b,
            Ok(Begin::Challenge {
                prompt: "please enter otp:".into(),
                state: ProviderState(b"15361554133625872339".to_vec()),
            })
        );
        let b = pi().map_begin(&req(), &reply(TOTP_CHALLENGE), Factor::Push);
        assert_eq!(b, Ok(Begin::FactorUnavailable));
    }

    #[test]
    fn push_challenge() {
        let b = pi().map_begin(&req(), &reply(PUSH_CHALLENGE), Factor::Push);
        assert_eq!(
            b,
            Ok(Begin::PushSent {
                state: ProviderState(b"14778920112752799430".to_vec()),
            })
        );
        let b = pi().map_begin(&req(), &reply(PUSH_CHALLENGE), Factor::Otp);
        assert_eq!(b, Ok(Begin::FactorUnavailable));
    }

    #[test]
    fn not_enrolled_and_decided() {
        for json in [NO_TOKEN, NO_USER] {
            let b = pi().map_begin(&req(), &reply(json), Factor::Otp);
            assert_eq!(b, Ok(Begin::NotEnrolled), "{json}");
        }
        let b = pi().map_begin(&req(), &reply(ACCEPT), Factor::Otp);
        assert_eq!(b, Ok(Begin::Decided(Verdict::Allow)));
        let locked = r#"{"detail": {"message": "matching 1 tokens, Failcounter exceeded"}, "result": {"authentication": "REJECT", "status": true, "value": false}}"#;
        let b = pi().map_begin(&req(), &reply(locked), Factor::Otp);
        assert_eq!(b, Ok(Begin::Decided(Verdict::Deny(DenyReason::Locked))));
    }

    #[test]
    fn verdicts() {
        assert_eq!(pi().verdict(reply(ACCEPT), "t"), Ok(Verdict::Allow));
        assert_eq!(
            pi().verdict(reply(NO_MATCH), "t"),
            Ok(Verdict::Deny(DenyReason::WrongCode))
        );
        // Before 3.8: no `authentication`, only the boolean.
        let old = r#"{"result": {"status": true, "value": true}}"#;
        assert_eq!(pi().verdict(reply(old), "t"), Ok(Verdict::Allow));
        let param = r#"{"detail": null, "result": {"error": {"code": 905, "message": "ERR905: Missing parameter: pass"}, "status": false}}"#;
        assert!(matches!(
            pi().verdict(reply(param), "t"),
            Err(MfaError::Protocol { .. })
        ));
        let auth = r#"{"detail": null, "result": {"error": {"code": 4033, "message": "Authentication failure. Missing Authorization header."}, "status": false}}"#;
        assert!(matches!(
            pi().verdict(reply(auth), "t"),
            Err(MfaError::Config { .. })
        ));
    }

    #[test]
    fn old_single_challenge() {
        let json = r#"{"detail": {"message": "please enter otp: ", "transaction_id": "42", "type": "hotp"}, "result": {"status": true, "value": false}}"#;
        let b = pi().map_begin(&req(), &reply(json), Factor::Otp);
        assert!(matches!(b, Ok(Begin::Challenge { .. })), "{b:?}");
    }

    #[test]
    fn config_checks() {
        let url = Url::parse("ftp://example.org/").unwrap();
        assert!(matches!(
            PrivacyIdea::new(PrivacyIdeaConfig::new("pi", url)),
            Err(MfaError::Config { .. })
        ));
        let mut cfg = PrivacyIdeaConfig::new("pi", Url::parse("https://h/").unwrap());
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            PrivacyIdea::new(cfg),
            Err(MfaError::Config { .. })
        ));
        // A path prefix is kept.
        assert_eq!(
            pi().check_url.as_str(),
            "http://127.0.0.1:1/pi/validate/check"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Port 1 on loopback: nothing listens there.
        let b = pi().begin(&req(), Factor::Otp).await;
        assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    }
}
