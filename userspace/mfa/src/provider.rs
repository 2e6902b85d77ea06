//! The provider contract.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Who asks for a second factor, and from where.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaRequest {
    /// The MFA identity (the user name, or the alternate login id the server mapped it to).
    pub user: String,
    /// The NAS-IP-Address attribute, if present.
    pub nas_ip: Option<IpAddr>,
    /// The RADIUS client (NAS) name from the configuration.
    pub client: std::sync::Arc<str>,
    /// Calling-Station-Id, if present (the user's address or MAC), for the provider's logs.
    pub calling_station: Option<String>,
    /// A correlation id for this login, unique per attempt (logged by us and, where the
    /// protocol has a field for it, sent to the provider).
    pub context_id: String,
}

impl fmt::Debug for MfaRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaRequest")
            .field("user", &self.user)
            .field("client", &self.client)
            .field("context_id", &self.context_id)
            .finish_non_exhaustive()
    }
}

/// Which second factor the server wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A one-time code typed by the user (RADIUS Access-Challenge round trip).
    Otp,
    /// An out-of-band approval (push notification, phone call) the server waits for.
    Push,
}

/// Opaque per-login provider data (a transaction id, a session id, ...) that must come back
/// unchanged with [`MfaProvider::verify_otp`] or [`MfaProvider::poll_push`]. Never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderState(pub Vec<u8>);

impl fmt::Debug for ProviderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderState({} bytes)", self.0.len())
    }
}

/// How [`MfaProvider::begin`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Ask the user for a code with this prompt; keep `state` for `verify_otp`.
    Challenge {
        prompt: String,
        state: ProviderState,
    },
    /// A push was sent; poll for its answer with `state` ([`MfaProvider::poll_push`]).
    PushSent { state: ProviderState },
    /// The provider decided at once (e.g. a bypass configured at the provider).
    Decided(Verdict),
    /// The user has no second factor at this provider.
    NotEnrolled,
    /// The user is enrolled but has no method for the requested factor (e.g. push asked of a
    /// TOTP-only user); the server may try the other factor.
    FactorUnavailable,
}

/// Why a second factor was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    WrongCode,
    /// A code that was already used (TOTP replay).
    Replayed,
    /// The user rejected the push.
    UserDenied,
    /// No answer to the push in time.
    Timeout,
    /// The provider locked the user out or throttled them.
    Locked,
    /// Anything else the provider said, in its words (never a secret).
    Other(String),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::WrongCode => f.write_str("wrong code"),
            DenyReason::Replayed => f.write_str("code already used"),
            DenyReason::UserDenied => f.write_str("denied by the user"),
            DenyReason::Timeout => f.write_str("no answer in time"),
            DenyReason::Locked => f.write_str("locked out or throttled by the MFA service"),
            DenyReason::Other(s) => write!(f, "{s}"),
        }
    }
}

/// The provider's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(DenyReason),
}

/// The provider could not give an answer: the server applies its fail mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MfaError {
    /// The service could not be reached (connection refused, DNS, TLS).
    #[error("MFA service {provider} unreachable: {detail}")]
    Unreachable { provider: String, detail: String },
    /// The service did not answer within the timeout.
    #[error("MFA service {provider} timed out after {after:?}")]
    Timeout { provider: String, after: Duration },
    /// The service answered something we do not understand, or an HTTP error.
    #[error("MFA service {provider} protocol error: {detail}")]
    Protocol { provider: String, detail: String },
    /// The circuit breaker is open after repeated failures; the service is not asked.
    #[error("MFA service {provider} circuit open after repeated failures")]
    CircuitOpen { provider: String },
    /// Our side: configuration or credentials the service refused (e.g. bad API key).
    #[error("MFA service {provider} refused our credentials or configuration: {detail}")]
    Config { provider: String, detail: String },
}

/// A second-factor provider. Implementations are shared by all shards (`Send + Sync`) and
/// must bound every network call by a timeout.
#[async_trait::async_trait]
pub trait MfaProvider: Send + Sync {
    /// The configured name (for logs and audit lines).
    fn name(&self) -> &str;

    /// Starts a second factor of the wanted kind for `req`.
    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError>;

    /// Checks a one-time code typed by the user for a login begun with a challenge.
    async fn verify_otp(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError>;

    /// Asks once whether a push was answered. One status call (which may be a long-poll where
    /// the protocol has one, bounded by the provider's own settings); `Waiting` while the user
    /// has not answered. The server decides when to ask again ([`poll_interval`]) and when to
    /// give up, so a pending login costs no task and no timer between two polls.
    ///
    /// [`poll_interval`]: MfaProvider::poll_interval
    async fn poll_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
    ) -> Result<PushStatus, MfaError>;

    /// The time to leave between two [`poll_push`](MfaProvider::poll_push) calls for one login.
    fn poll_interval(&self) -> Duration;

    /// The longest the service may hold one [`poll_push`](MfaProvider::poll_push) call before
    /// answering `Waiting` (a long-poll); zero when it answers at once.
    fn poll_hold(&self) -> Duration {
        Duration::ZERO
    }

    /// Waits (at most `limit`) for the answer to a push by polling:
    /// `Ok(Verdict::Deny(Timeout))` when the user did not answer in time. Costs a task for the
    /// whole wait: the server drives [`poll_push`](MfaProvider::poll_push) from its own timer
    /// instead; this is for tools and tests.
    async fn wait_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        limit: Duration,
    ) -> Result<Verdict, MfaError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Ok(Verdict::Deny(DenyReason::Timeout));
            }
            match tokio::time::timeout(remaining, self.poll_push(req, state)).await {
                Err(_) => return Ok(Verdict::Deny(DenyReason::Timeout)),
                Ok(Ok(PushStatus::Answered(v))) => return Ok(v),
                Ok(Ok(PushStatus::Waiting)) => {}
                Ok(Err(e)) => return Err(e),
            }
            let next = tokio::time::Instant::now() + self.poll_interval();
            tokio::time::sleep_until(next.min(deadline)).await;
        }
    }
}

/// What one [`MfaProvider::poll_push`] call learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// No answer yet.
    Waiting,
    /// The push was answered (or the provider gave up on it: `Deny(Timeout)`).
    Answered(Verdict),
}
