//! The shared behaviour battery every [`MfaProvider`] is tested with (feature `battery`, and
//! this crate's own tests).
//!
//! A test supplies the provider and a [`BatteryEnv`] that knows the provider's world: an
//! enrolled and an unenrolled user, how to get a valid code, and (for push-capable stand-ins)
//! how to answer a push. [`run_otp_battery`] and [`run_push_battery`] then check the behaviour
//! the server relies on. Every check panics with a message naming the provider and the step.
//!
//! Each step begins a fresh login, so providers that consume a transaction on the first answer
//! (privacyIDEA, Entra) are tested the way the server uses them.

use std::time::Duration;

use crate::{Begin, DenyReason, Factor, MfaProvider, MfaRequest, ProviderState, Verdict};

/// What the battery needs to know about the provider under test.
#[async_trait::async_trait]
pub trait BatteryEnv: Send + Sync {
    /// A user enrolled at the provider (for OTP, and for push when supported).
    fn enrolled_user(&self) -> MfaRequest;

    /// A user the provider does not know.
    fn unenrolled_user(&self) -> MfaRequest;

    /// A code the provider will accept now for `user`; `None` if the provider has no OTP.
    /// Called once per step that needs one; it may move a simulated clock.
    async fn valid_code(&self, user: &MfaRequest) -> Option<String>;

    /// A well-formed code the provider must refuse as wrong. The default changes every digit
    /// of a valid code (so it is neither the current nor, with overwhelming odds, a nearby one).
    async fn wrong_code(&self, user: &MfaRequest) -> String {
        let valid = self
            .valid_code(user)
            .await
            .unwrap_or_else(|| "000000".to_owned());
        valid
            .bytes()
            .map(|b| match b {
                b'0'..=b'8' => char::from(b + 1),
                _ => '0',
            })
            .collect()
    }

    /// Whether the provider can send a push to [`BatteryEnv::enrolled_user`].
    fn supports_push(&self) -> bool;

    /// Answers the next (or pending) push sent to `user`: approve or deny. Only called when
    /// [`BatteryEnv::supports_push`] is true; a stand-in answers the push it received.
    async fn answer_next_push(&self, user: &MfaRequest, approve: bool);

    /// How long `wait_push` may wait in the steps that expect an answer.
    fn push_limit(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// The limit used for the step where nobody answers (expects `Deny(Timeout)`).
    fn short_push_limit(&self) -> Duration {
        Duration::from_secs(2)
    }
}

fn fail(p: &dyn MfaProvider, step: &str, detail: impl std::fmt::Debug) -> ! {
    panic!(
        "MFA battery, provider {:?}, step {step:?}: {detail:?}",
        p.name()
    )
}

/// Begins an OTP challenge for `user` and returns its state, or panics.
async fn challenge(p: &dyn MfaProvider, user: &MfaRequest, step: &str) -> ProviderState {
    match p.begin(user, Factor::Otp).await {
        Ok(Begin::Challenge { prompt, state }) => {
            if prompt.trim().is_empty() {
                fail(p, step, "the challenge has an empty prompt");
            }
            state
        }
        other => fail(p, step, format_args!("expected a Challenge, got {other:?}")),
    }
}

async fn verify(
    p: &dyn MfaProvider,
    user: &MfaRequest,
    state: &ProviderState,
    code: &str,
    step: &str,
) -> Verdict {
    match p.verify_otp(user, state, code).await {
        Ok(v) => v,
        Err(e) => fail(p, step, format_args!("verify_otp failed: {e}")),
    }
}

/// Checks the OTP behaviour:
///
/// 1. an unenrolled user gets `NotEnrolled` for OTP;
/// 2. an enrolled user gets a `Challenge` with a prompt (or, if the env has no codes,
///    `FactorUnavailable`, and the battery stops there);
/// 3. a wrong code is `Deny(WrongCode)`; malformed codes are denied, never allowed or errors;
/// 4. the right code is `Allow`;
/// 5. the same code again (new challenge) is denied (`Replayed` or `WrongCode`), never allowed.
pub async fn run_otp_battery(p: &dyn MfaProvider, env: &impl BatteryEnv) {
    let stranger = env.unenrolled_user();
    match p.begin(&stranger, Factor::Otp).await {
        Ok(Begin::NotEnrolled) => {}
        other => fail(
            p,
            "otp: unenrolled user",
            format_args!("expected NotEnrolled, got {other:?}"),
        ),
    }

    let user = env.enrolled_user();
    let Some(_) = env.valid_code(&user).await else {
        match p.begin(&user, Factor::Otp).await {
            Ok(Begin::FactorUnavailable) => return,
            other => fail(
                p,
                "otp: provider without OTP",
                format_args!("expected FactorUnavailable, got {other:?}"),
            ),
        }
    };

    let step = "otp: wrong code";
    let state = challenge(p, &user, step).await;
    let wrong = env.wrong_code(&user).await;
    match verify(p, &user, &state, &wrong, step).await {
        Verdict::Deny(DenyReason::WrongCode) => {}
        other => fail(
            p,
            step,
            format_args!("expected Deny(WrongCode), got {other:?}"),
        ),
    }

    for malformed in ["", "abc", "1"] {
        let step = "otp: malformed code";
        let state = challenge(p, &user, step).await;
        if let Verdict::Allow = verify(p, &user, &state, malformed, step).await {
            fail(p, step, format_args!("{malformed:?} was allowed"));
        }
    }

    let step = "otp: right code";
    let state = challenge(p, &user, step).await;
    let code = match env.valid_code(&user).await {
        Some(code) => code,
        None => fail(p, step, "the env stopped giving codes"),
    };
    match verify(p, &user, &state, &code, step).await {
        Verdict::Allow => {}
        other => fail(p, step, format_args!("expected Allow, got {other:?}")),
    }

    let step = "otp: same code again";
    let state = challenge(p, &user, step).await;
    match verify(p, &user, &state, &code, step).await {
        Verdict::Deny(DenyReason::Replayed | DenyReason::WrongCode) => {}
        other => fail(
            p,
            step,
            format_args!("expected Deny(Replayed or WrongCode), got {other:?}"),
        ),
    }
}

async fn push(p: &dyn MfaProvider, user: &MfaRequest, step: &str) -> ProviderState {
    match p.begin(user, Factor::Push).await {
        Ok(Begin::PushSent { state }) => state,
        other => fail(p, step, format_args!("expected PushSent, got {other:?}")),
    }
}

async fn wait(
    p: &dyn MfaProvider,
    user: &MfaRequest,
    state: &ProviderState,
    limit: Duration,
    step: &str,
) -> Verdict {
    match p.wait_push(user, state, limit).await {
        Ok(v) => v,
        Err(e) => fail(p, step, format_args!("wait_push failed: {e}")),
    }
}

/// Checks the push behaviour:
///
/// 1. an unenrolled user gets `NotEnrolled` for push;
/// 2. if the env says the provider has no push, an enrolled user gets `FactorUnavailable` and
///    the battery stops there;
/// 3. a push approved while `wait_push` runs is `Allow`;
/// 4. a push denied is `Deny(UserDenied)`;
/// 5. a push nobody answers is `Deny(Timeout)` once the short limit passes.
pub async fn run_push_battery(p: &dyn MfaProvider, env: &impl BatteryEnv) {
    let stranger = env.unenrolled_user();
    match p.begin(&stranger, Factor::Push).await {
        Ok(Begin::NotEnrolled) => {}
        other => fail(
            p,
            "push: unenrolled user",
            format_args!("expected NotEnrolled, got {other:?}"),
        ),
    }

    let user = env.enrolled_user();
    if !env.supports_push() {
        match p.begin(&user, Factor::Push).await {
            Ok(Begin::FactorUnavailable) => return,
            other => fail(
                p,
                "push: provider without push",
                format_args!("expected FactorUnavailable, got {other:?}"),
            ),
        }
    }

    for (approve, step, want) in [
        (true, "push: approved", Verdict::Allow),
        (false, "push: denied", Verdict::Deny(DenyReason::UserDenied)),
    ] {
        let state = push(p, &user, step).await;
        // The answer arrives while the server waits, as it does in production.
        let (verdict, ()) = tokio::join!(wait(p, &user, &state, env.push_limit(), step), async {
            tokio::task::yield_now().await;
            env.answer_next_push(&user, approve).await;
        });
        if verdict != want {
            fail(p, step, format_args!("expected {want:?}, got {verdict:?}"));
        }
    }

    let step = "push: no answer";
    let state = push(p, &user, step).await;
    match wait(p, &user, &state, env.short_push_limit(), step).await {
        Verdict::Deny(DenyReason::Timeout) => {}
        other => fail(
            p,
            step,
            format_args!("expected Deny(Timeout), got {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The battery's own checks: a push-only double passes it, and providers that break the
    //! contract are caught. (Real providers run it in their own tests.)
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::watch;

    use super::*;
    use crate::{MfaError, PushStatus};

    /// Push-only double: begin(Push) sends, the env answers through a watch channel.
    struct PushDouble {
        answer: watch::Sender<Option<bool>>,
    }

    #[async_trait::async_trait]
    impl MfaProvider for PushDouble {
        fn name(&self) -> &str {
            "push-double"
        }
        async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
            Ok(match (req.user.as_str(), factor) {
                ("carol", Factor::Push) => {
                    self.answer.send_replace(None);
                    Begin::PushSent {
                        state: ProviderState(b"tx".to_vec()),
                    }
                }
                ("carol", Factor::Otp) => Begin::FactorUnavailable,
                _ => Begin::NotEnrolled,
            })
        }
        async fn verify_otp(
            &self,
            _: &MfaRequest,
            _: &ProviderState,
            _: &str,
        ) -> Result<Verdict, MfaError> {
            Ok(Verdict::Deny(DenyReason::WrongCode))
        }
        async fn poll_push(
            &self,
            _: &MfaRequest,
            state: &ProviderState,
        ) -> Result<PushStatus, MfaError> {
            assert_eq!(state.0, b"tx");
            Ok(match *self.answer.borrow() {
                Some(true) => PushStatus::Answered(Verdict::Allow),
                Some(false) => PushStatus::Answered(Verdict::Deny(DenyReason::UserDenied)),
                None => PushStatus::Waiting,
            })
        }
        fn poll_interval(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    fn req(user: &str) -> MfaRequest {
        MfaRequest {
            user: user.to_owned(),
            nas_ip: None,
            client: "vpn".into(),
            calling_station: None,
            context_id: "ctx".to_owned(),
        }
    }

    struct PushEnv<'a>(&'a PushDouble);

    #[async_trait::async_trait]
    impl BatteryEnv for PushEnv<'_> {
        fn enrolled_user(&self) -> MfaRequest {
            req("carol")
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("mallory")
        }
        async fn valid_code(&self, _: &MfaRequest) -> Option<String> {
            None
        }
        fn supports_push(&self) -> bool {
            true
        }
        async fn answer_next_push(&self, _: &MfaRequest, approve: bool) {
            self.0.answer.send_replace(Some(approve));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn push_double_passes() {
        let p = PushDouble {
            answer: watch::channel(None).0,
        };
        run_otp_battery(&p, &PushEnv(&p)).await;
        run_push_battery(&p, &PushEnv(&p)).await;
    }

    /// An OTP double that accepts "123456" once, or forever when `replays` is set.
    struct OtpDouble {
        used: AtomicBool,
        replays: bool,
    }

    #[async_trait::async_trait]
    impl MfaProvider for OtpDouble {
        fn name(&self) -> &str {
            "otp-double"
        }
        async fn begin(&self, req: &MfaRequest, _: Factor) -> Result<Begin, MfaError> {
            Ok(if req.user == "carol" {
                Begin::Challenge {
                    prompt: "Code".into(),
                    state: ProviderState::default(),
                }
            } else {
                Begin::NotEnrolled
            })
        }
        async fn verify_otp(
            &self,
            _: &MfaRequest,
            _: &ProviderState,
            code: &str,
        ) -> Result<Verdict, MfaError> {
            if code != "123456" {
                return Ok(Verdict::Deny(DenyReason::WrongCode));
            }
            if self.used.swap(true, Ordering::SeqCst) && !self.replays {
                return Ok(Verdict::Deny(DenyReason::Replayed));
            }
            Ok(Verdict::Allow)
        }
        async fn poll_push(
            &self,
            _: &MfaRequest,
            _: &ProviderState,
        ) -> Result<PushStatus, MfaError> {
            Ok(PushStatus::Answered(Verdict::Deny(DenyReason::Other(
                "no push".into(),
            ))))
        }
        fn poll_interval(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    struct OtpEnv;

    #[async_trait::async_trait]
    impl BatteryEnv for OtpEnv {
        fn enrolled_user(&self) -> MfaRequest {
            req("carol")
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("mallory")
        }
        async fn valid_code(&self, _: &MfaRequest) -> Option<String> {
            Some("123456".into())
        }
        fn supports_push(&self) -> bool {
            false
        }
        async fn answer_next_push(&self, _: &MfaRequest, _: bool) {}
    }

    #[tokio::test]
    async fn wrong_code_default_differs() {
        assert_eq!(OtpEnv.wrong_code(&req("carol")).await, "234567");
    }

    #[tokio::test]
    async fn otp_double_passes() {
        let p = OtpDouble {
            used: AtomicBool::new(false),
            replays: false,
        };
        run_otp_battery(&p, &OtpEnv).await;
    }

    #[tokio::test]
    #[should_panic(expected = "provider \"otp-double\", step \"otp: same code again\"")]
    async fn a_replay_is_caught() {
        let p = OtpDouble {
            used: AtomicBool::new(false),
            replays: true,
        };
        run_otp_battery(&p, &OtpEnv).await;
    }

    #[tokio::test]
    #[should_panic(expected = "step \"push: provider without push\"")]
    async fn a_missing_push_is_caught() {
        let p = OtpDouble {
            used: AtomicBool::new(false),
            replays: false,
        };
        // OtpDouble answers Challenge to a push request: not FactorUnavailable.
        run_push_battery(&p, &OtpEnv).await;
    }
}
