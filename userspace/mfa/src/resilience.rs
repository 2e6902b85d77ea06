//! Timeouts, bounded retries with backoff and a circuit breaker, as a provider wrapping another
//! ([`Resilient`]).
//!
//! # What is retried, and why
//!
//! A retry is only safe when repeating the call cannot do twice what the user sees or what the
//! provider counts:
//!
//! * [`begin`](MfaProvider::begin) is retried **only** after [`MfaError::Unreachable`]: a
//!   provider reports that only when the request never left (connection refused, DNS, TLS
//!   handshake), so nothing was sent. After a timeout the request may have arrived: retrying a
//!   push would send a second push (the NPS extension's best-known annoyance), and retrying an
//!   OTP challenge could send a second SMS or e-mail code. Providers must therefore use
//!   `Unreachable` for "nothing was sent" only.
//! * [`verify_otp`](MfaProvider::verify_otp) is **never** retried: the provider may have counted
//!   the code (consumed it, or counted a failure toward a lockout) before the answer was lost, and
//!   a second check of the same code would then fail as a replay or count twice.
//! * [`poll_push`](MfaProvider::poll_push) asks for an answer, which changes nothing at the
//!   provider, so it is retried after `Unreachable` and `Timeout`. A verdict (allow, deny, no
//!   answer in time) is never retried: the push was answered or expired.
//! * Verdicts, `Protocol` and `Config` errors are never retried: asking again gets the same.
//!
//! Backoff is exponential (`backoff`, doubled each time, capped at `max_backoff`), with
//! jitter (a uniform draw in the upper half of the delay) so that many logins failing together do
//! not retry in lockstep.
//!
//! # Timeouts
//!
//! Every attempt of `begin` and `verify_otp` is bounded by `timeout` ([`MfaError::Timeout`]).
//! `poll_push` may be held by the service (a long-poll, [`MfaProvider::poll_hold`]): each attempt
//! is cut off `timeout` after that hold. The server bounds the whole wait by the push deadline.
//!
//! # Circuit breaker
//!
//! After `breaker_failures` consecutive failed attempts (any [`MfaError`]; a verdict, even a
//! deny, is a success), the breaker opens for `breaker_reset`: `begin` and `verify_otp` fail at
//! once with [`MfaError::CircuitOpen`] and the server applies its fail mode. After the reset
//! period the breaker is half-open: one trial call goes through (others still fail fast); its
//! success closes the breaker, its failure opens it for another period. A trial call that is
//! cancelled lets the next call be the trial.
//!
//! `poll_push` is not refused by an open breaker, since its push is already on the user's phone
//! and the wait is bounded; its outcomes still count (a successful poll closes the breaker).
//!
//! Time is tokio's, so tests run with `tokio::time::pause()`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::{Begin, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus, Verdict};

/// Settings of [`Resilient`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResilienceConfig {
    /// Bound of each attempt of `begin` and `verify_otp`, and the grace added to a push wait.
    /// Default 10 s.
    pub timeout: Duration,
    /// Retries after the first attempt, for retryable errors only. Default 2.
    pub retries: u32,
    /// Delay before the first retry, doubled for each further one. Default 200 ms.
    pub backoff: Duration,
    /// Longest delay between retries. Default 5 s.
    pub max_backoff: Duration,
    /// Randomise each delay within its upper half. Default true.
    pub jitter: bool,
    /// Consecutive failed attempts that open the breaker; 0 disables it. Default 5.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a trial call. Default 30 s.
    pub breaker_reset: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            jitter: true,
            breaker_failures: 5,
            breaker_reset: Duration::from_secs(30),
        }
    }
}

impl ResilienceConfig {
    /// The delay before retry number `retry` (0-based), without jitter.
    #[must_use]
    pub fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    fn delay(&self, retry: u32) -> Duration {
        let full = self.backoff_for(retry);
        if self.jitter && !full.is_zero() {
            let half = full / 2;
            half + rand::thread_rng().gen_range(Duration::ZERO..=full - half)
        } else {
            full
        }
    }
}

/// The breaker's state as seen from outside (stats, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failed attempts.
        failures: u32,
    },
    /// Calls fail fast until the reset period ends.
    Open,
    /// One trial call may go (or is going) through.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
struct Breaker {
    state: Mutex<State>,
    failures_to_open: u32,
    reset: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Trial,
    Refused,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Normal,
            State::Open { until } if Instant::now() < until => Admission::Refused,
            State::Open { .. }
            | State::HalfOpen {
                trial_in_flight: false,
            } => {
                *state = State::HalfOpen {
                    trial_in_flight: true,
                };
                Admission::Trial
            }
            State::HalfOpen {
                trial_in_flight: true,
            } => Admission::Refused,
        }
    }

    /// Records an attempt's outcome; returns true if this opened the breaker.
    fn record(&self, success: bool) -> bool {
        let mut state = self.lock();
        if success {
            *state = State::Closed { failures: 0 };
            return false;
        }
        let open = State::Open {
            until: Instant::now() + self.reset,
        };
        match *state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.failures_to_open > 0 && failures >= self.failures_to_open {
                    *state = open;
                    true
                } else {
                    *state = State::Closed { failures };
                    false
                }
            }
            State::HalfOpen { .. } => {
                *state = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// A trial call ended without an outcome (cancelled): let the next call be the trial.
    fn release_trial(&self) {
        let mut state = self.lock();
        if let State::HalfOpen {
            trial_in_flight: true,
        } = *state
        {
            *state = State::HalfOpen {
                trial_in_flight: false,
            };
        }
    }

    fn public_state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { failures } => BreakerState::Closed { failures },
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Releases a half-open trial if the call is dropped before it recorded an outcome.
struct TrialGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.release_trial();
        }
    }
}

/// Which errors a call may retry after.
#[derive(Debug, Clone, Copy)]
enum RetryOn {
    /// Nothing was sent (begin).
    UnreachableOnly,
    /// A read-only poll (poll_push).
    UnreachableOrTimeout,
    /// Never (verify_otp).
    Never,
}

impl RetryOn {
    fn allows(self, e: &MfaError) -> bool {
        match self {
            Self::Never => false,
            Self::UnreachableOnly => matches!(e, MfaError::Unreachable { .. }),
            Self::UnreachableOrTimeout => {
                matches!(e, MfaError::Unreachable { .. } | MfaError::Timeout { .. })
            }
        }
    }
}

/// A provider wrapped with timeouts, retries and a circuit breaker (see the module docs).
pub struct Resilient {
    inner: Arc<dyn MfaProvider>,
    config: ResilienceConfig,
    breaker: Breaker,
}

impl fmt::Debug for Resilient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilient")
            .field("provider", &self.inner.name())
            .field("config", &self.config)
            .field("breaker", &self.breaker.public_state())
            .finish()
    }
}

impl Resilient {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn MfaProvider>, config: ResilienceConfig) -> Self {
        let breaker = Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: config.breaker_failures,
            reset: config.breaker_reset,
        };
        Self {
            inner,
            config,
            breaker,
        }
    }

    /// The wrapped provider.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn MfaProvider> {
        &self.inner
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }

    /// The breaker's state now.
    #[must_use]
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.public_state()
    }

    fn timeout_error(&self, after: Duration) -> MfaError {
        MfaError::Timeout {
            provider: self.inner.name().to_owned(),
            after,
        }
    }

    fn record(&self, result: &Result<impl Sized, MfaError>, guard: &mut TrialGuard<'_>, op: &str) {
        guard.armed = false;
        if self.breaker.record(result.is_ok()) {
            tracing::warn!(
                provider = %self.inner.name(),
                op,
                reset = ?self.config.breaker_reset,
                "MFA circuit breaker opened"
            );
        }
    }

    /// Runs `attempt` under the breaker, with a timeout per attempt and retries.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        retry: RetryOn,
        mut attempt: F,
    ) -> Result<T, MfaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, MfaError>>,
    {
        let mut retries = 0;
        let mut last_error = None;
        loop {
            let admission = self.breaker.admit();
            if admission == Admission::Refused {
                return Err(last_error.unwrap_or_else(|| MfaError::CircuitOpen {
                    provider: self.inner.name().to_owned(),
                }));
            }
            let mut guard = TrialGuard {
                breaker: &self.breaker,
                armed: admission == Admission::Trial,
            };
            let result = tokio::time::timeout(self.config.timeout, attempt())
                .await
                .unwrap_or_else(|_| Err(self.timeout_error(self.config.timeout)));
            self.record(&result, &mut guard, op);
            match result {
                Err(e) if retries < self.config.retries && retry.allows(&e) => {
                    let delay = self.config.delay(retries);
                    tracing::warn!(provider = %self.inner.name(), op, error = %e, ?delay, "MFA call failed, retrying");
                    retries += 1;
                    last_error = Some(e);
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

#[async_trait::async_trait]
impl MfaProvider for Resilient {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn begin(&self, req: &MfaRequest, factor: Factor) -> Result<Begin, MfaError> {
        self.call("begin", RetryOn::UnreachableOnly, || {
            self.inner.begin(req, factor)
        })
        .await
    }

    async fn verify_otp(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
        code: &str,
    ) -> Result<Verdict, MfaError> {
        self.call("verify_otp", RetryOn::Never, || {
            self.inner.verify_otp(req, state, code)
        })
        .await
    }

    async fn poll_push(
        &self,
        req: &MfaRequest,
        state: &ProviderState,
    ) -> Result<PushStatus, MfaError> {
        let mut retries = 0;
        let cut_off = self.inner.poll_hold() + self.config.timeout;
        loop {
            // Not gated by the breaker (the push is out); the outcome still counts.
            let mut guard = TrialGuard {
                breaker: &self.breaker,
                armed: false,
            };
            let result = tokio::time::timeout(cut_off, self.inner.poll_push(req, state))
                .await
                .unwrap_or_else(|_| Err(self.timeout_error(cut_off)));
            self.record(&result, &mut guard, "poll_push");
            match result {
                Err(e)
                    if retries < self.config.retries
                        && RetryOn::UnreachableOrTimeout.allows(&e) =>
                {
                    let delay = self.config.delay(retries);
                    tracing::warn!(provider = %self.inner.name(), op = "poll_push", error = %e, ?delay, "MFA call failed, retrying");
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }

    fn poll_hold(&self) -> Duration {
        self.inner.poll_hold()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;

    use super::*;
    use crate::DenyReason;

    /// A scripted provider: each call pops the next (delay, result) of its method; an empty
    /// script hangs for an hour.
    #[derive(Default)]
    struct Fake {
        begins: Mutex<VecDeque<(Duration, Result<Begin, MfaError>)>>,
        verifies: Mutex<VecDeque<(Duration, Result<Verdict, MfaError>)>>,
        waits: Mutex<VecDeque<(Duration, Result<PushStatus, MfaError>)>>,
        calls: Mutex<Vec<&'static str>>,
    }

    fn pop<T>(q: &Mutex<VecDeque<(Duration, T)>>) -> Option<(Duration, T)> {
        q.lock().unwrap().pop_front()
    }

    async fn play<T>(step: Option<(Duration, Result<T, MfaError>)>) -> Result<T, MfaError> {
        match step {
            Some((delay, result)) => {
                tokio::time::sleep(delay).await;
                result
            }
            None => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                panic!("unscripted call")
            }
        }
    }

    #[async_trait::async_trait]
    impl MfaProvider for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        async fn begin(&self, _req: &MfaRequest, _factor: Factor) -> Result<Begin, MfaError> {
            self.calls.lock().unwrap().push("begin");
            play(pop(&self.begins)).await
        }
        async fn verify_otp(
            &self,
            _req: &MfaRequest,
            _state: &ProviderState,
            _code: &str,
        ) -> Result<Verdict, MfaError> {
            self.calls.lock().unwrap().push("verify_otp");
            play(pop(&self.verifies)).await
        }
        async fn poll_push(
            &self,
            _req: &MfaRequest,
            _state: &ProviderState,
        ) -> Result<PushStatus, MfaError> {
            self.calls.lock().unwrap().push("poll_push");
            play(pop(&self.waits)).await
        }
        fn poll_interval(&self) -> Duration {
            2 * S
        }
        fn poll_hold(&self) -> Duration {
            5 * S
        }
    }

    impl Fake {
        fn calls(&self) -> usize {
            self.calls.lock().unwrap().len()
        }
    }

    fn unreachable() -> MfaError {
        MfaError::Unreachable {
            provider: "fake".into(),
            detail: "connection refused".into(),
        }
    }

    fn protocol() -> MfaError {
        MfaError::Protocol {
            provider: "fake".into(),
            detail: "HTTP 500".into(),
        }
    }

    fn challenge() -> Begin {
        Begin::Challenge {
            prompt: "code?".into(),
            state: ProviderState::default(),
        }
    }

    fn req() -> MfaRequest {
        MfaRequest {
            user: "alice".into(),
            nas_ip: None,
            client: "vpn".into(),
            calling_station: None,
            context_id: "c".into(),
        }
    }

    fn config() -> ResilienceConfig {
        ResilienceConfig {
            jitter: false,
            ..ResilienceConfig::default()
        }
    }

    fn wrap(fake: &Arc<Fake>, config: ResilienceConfig) -> Resilient {
        Resilient::new(Arc::clone(fake) as Arc<dyn MfaProvider>, config)
    }

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn defaults_and_backoff() {
        let c = ResilienceConfig::default();
        assert_eq!(c.timeout, 10 * S);
        assert_eq!((c.retries, c.breaker_failures), (2, 5));
        assert_eq!(c.breaker_reset, 30 * S);
        assert_eq!(c.backoff_for(0), 200 * MS);
        assert_eq!(c.backoff_for(1), 400 * MS);
        assert_eq!(c.backoff_for(2), 800 * MS);
        assert_eq!(c.backoff_for(10), 5 * S);
        assert_eq!(c.backoff_for(u32::MAX), 5 * S);
        for _ in 0..100 {
            let d = c.delay(1);
            assert!(d >= 200 * MS && d <= 400 * MS, "{d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn begin_times_out_and_is_not_retried() {
        let fake = Arc::new(Fake::default());
        fake.begins
            .lock()
            .unwrap()
            .push_back((60 * S, Ok(challenge())));
        let r = wrap(&fake, config());
        let start = Instant::now();
        let err = r.begin(&req(), Factor::Push).await.unwrap_err();
        assert_eq!(
            err,
            MfaError::Timeout {
                provider: "fake".into(),
                after: 10 * S
            }
        );
        assert_eq!(start.elapsed(), 10 * S);
        assert_eq!(
            fake.calls(),
            1,
            "a push that may have been sent is not sent again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn begin_retries_unreachable_with_backoff() {
        let fake = Arc::new(Fake::default());
        fake.begins.lock().unwrap().extend([
            (Duration::ZERO, Err(unreachable())),
            (Duration::ZERO, Err(unreachable())),
            (Duration::ZERO, Ok(challenge())),
        ]);
        let r = wrap(&fake, config());
        let start = Instant::now();
        assert_eq!(r.begin(&req(), Factor::Otp).await.unwrap(), challenge());
        assert_eq!(start.elapsed(), 600 * MS); // 200 + 400
        assert_eq!(fake.calls(), 3);
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 0 });

        // Bounded: three attempts, then the error.
        fake.begins
            .lock()
            .unwrap()
            .extend((0..3).map(|_| (Duration::ZERO, Err(unreachable()))));
        assert_eq!(r.begin(&req(), Factor::Otp).await, Err(unreachable()));
        assert_eq!(fake.calls(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn protocol_errors_and_verdicts_are_not_retried() {
        let fake = Arc::new(Fake::default());
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Err(protocol())));
        let r = wrap(&fake, config());
        assert_eq!(r.begin(&req(), Factor::Otp).await, Err(protocol()));
        assert_eq!(fake.calls(), 1);
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Ok(Begin::NotEnrolled)));
        assert_eq!(r.begin(&req(), Factor::Otp).await, Ok(Begin::NotEnrolled));
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn verify_otp_is_never_retried() {
        let fake = Arc::new(Fake::default());
        fake.verifies
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Err(unreachable())));
        let r = wrap(&fake, config());
        let st = ProviderState::default();
        assert_eq!(
            r.verify_otp(&req(), &st, "123456").await,
            Err(unreachable())
        );
        assert_eq!(fake.calls(), 1);
        // A slow check times out, once.
        fake.verifies
            .lock()
            .unwrap()
            .push_back((30 * S, Ok(Verdict::Allow)));
        assert!(matches!(
            r.verify_otp(&req(), &st, "123456").await,
            Err(MfaError::Timeout { .. })
        ));
        assert_eq!(fake.calls(), 2);
        fake.verifies
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Ok(Verdict::Deny(DenyReason::WrongCode))));
        assert_eq!(
            r.verify_otp(&req(), &st, "123456").await,
            Ok(Verdict::Deny(DenyReason::WrongCode))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn poll_push_is_retried_and_cut_off_after_hold_plus_timeout() {
        let fake = Arc::new(Fake::default());
        fake.waits.lock().unwrap().extend([
            (S, Err(unreachable())),
            (5 * S, Ok(PushStatus::Answered(Verdict::Allow))),
        ]);
        let r = wrap(&fake, config());
        let st = ProviderState::default();
        let start = Instant::now();
        assert_eq!(
            r.poll_push(&req(), &st).await,
            Ok(PushStatus::Answered(Verdict::Allow))
        );
        assert_eq!(start.elapsed(), S + 200 * MS + 5 * S);
        assert_eq!(fake.calls(), 2);

        // Waiting is an answer, not a failure: not retried.
        fake.waits
            .lock()
            .unwrap()
            .push_back((S, Ok(PushStatus::Waiting)));
        assert_eq!(r.poll_push(&req(), &st).await, Ok(PushStatus::Waiting));
        assert_eq!(fake.calls(), 3);

        // A poll held longer than the provider's hold + timeout (5 s + 10 s) is cut off, and
        // retried (it only reads) until the retries are spent: three attempts in all.
        let start = Instant::now();
        assert_eq!(
            r.poll_push(&req(), &st).await,
            Err(MfaError::Timeout {
                provider: "fake".into(),
                after: 15 * S
            })
        );
        assert_eq!(
            start.elapsed(),
            15 * S + 200 * MS + 15 * S + 400 * MS + 15 * S
        );
        assert_eq!(fake.calls(), 6);

        // The provided wait_push polls every poll_interval until an answer, within its limit.
        fake.waits.lock().unwrap().extend([
            (S, Ok(PushStatus::Waiting)),
            (
                S,
                Ok(PushStatus::Answered(Verdict::Deny(DenyReason::UserDenied))),
            ),
        ]);
        let start = Instant::now();
        assert_eq!(
            r.wait_push(&req(), &st, 60 * S).await,
            Ok(Verdict::Deny(DenyReason::UserDenied))
        );
        assert_eq!(start.elapsed(), S + 2 * S + S);
        // ... and says Timeout when the limit passes first.
        let start = Instant::now();
        assert_eq!(
            r.wait_push(&req(), &st, 3 * S).await,
            Ok(Verdict::Deny(DenyReason::Timeout))
        );
        assert_eq!(start.elapsed(), 3 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_half_opens_and_closes() {
        let fake = Arc::new(Fake::default());
        let cfg = ResilienceConfig {
            retries: 0,
            breaker_failures: 3,
            ..config()
        };
        let r = Arc::new(wrap(&fake, cfg));
        let fail = |n: usize| {
            fake.begins
                .lock()
                .unwrap()
                .extend((0..n).map(|_| (Duration::ZERO, Err(protocol()))));
        };
        // A deny verdict is a success: it resets the count.
        fail(2);
        for _ in 0..2 {
            assert!(r.begin(&req(), Factor::Otp).await.is_err());
        }
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 2 });
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Ok(Begin::NotEnrolled)));
        assert!(r.begin(&req(), Factor::Otp).await.is_ok());
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 0 });

        fail(3);
        for _ in 0..3 {
            assert_eq!(r.begin(&req(), Factor::Otp).await, Err(protocol()));
        }
        assert_eq!(r.breaker_state(), BreakerState::Open);
        let calls = fake.calls();
        let open = Err(MfaError::CircuitOpen {
            provider: "fake".into(),
        });
        assert_eq!(r.begin(&req(), Factor::Otp).await, open);
        assert_eq!(
            r.verify_otp(&req(), &ProviderState::default(), "1").await,
            Err(MfaError::CircuitOpen {
                provider: "fake".into()
            })
        );
        assert_eq!(fake.calls(), calls, "fail fast: the service is not asked");

        // After the reset period: one trial; a failed trial opens it again.
        tokio::time::advance(30 * S).await;
        assert_eq!(r.breaker_state(), BreakerState::HalfOpen);
        fail(1);
        assert_eq!(r.begin(&req(), Factor::Otp).await, Err(protocol()));
        assert_eq!(r.breaker_state(), BreakerState::Open);
        assert_eq!(r.begin(&req(), Factor::Otp).await, open);

        // Next trial: slow but successful; concurrent calls fail fast meanwhile.
        tokio::time::advance(30 * S).await;
        fake.begins
            .lock()
            .unwrap()
            .push_back((2 * S, Ok(challenge())));
        let trial = tokio::spawn({
            let r = Arc::clone(&r);
            async move { r.begin(&req(), Factor::Otp).await }
        });
        tokio::time::sleep(S).await;
        assert_eq!(r.begin(&req(), Factor::Otp).await, open);
        assert_eq!(trial.await.unwrap(), Ok(challenge()));
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 0 });
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Ok(Begin::NotEnrolled)));
        assert_eq!(r.begin(&req(), Factor::Otp).await, Ok(Begin::NotEnrolled));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_trial_lets_the_next_call_through() {
        let fake = Arc::new(Fake::default());
        let cfg = ResilienceConfig {
            retries: 0,
            breaker_failures: 1,
            ..config()
        };
        let r = wrap(&fake, cfg);
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Err(protocol())));
        assert!(r.begin(&req(), Factor::Otp).await.is_err());
        assert_eq!(r.breaker_state(), BreakerState::Open);
        tokio::time::advance(30 * S).await;
        fake.begins
            .lock()
            .unwrap()
            .push_back((5 * S, Ok(challenge())));
        // The trial is dropped half-way.
        assert!(tokio::time::timeout(S, r.begin(&req(), Factor::Otp))
            .await
            .is_err());
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Ok(challenge())));
        assert_eq!(r.begin(&req(), Factor::Otp).await, Ok(challenge()));
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_does_not_refuse_a_push_wait() {
        let fake = Arc::new(Fake::default());
        let cfg = ResilienceConfig {
            retries: 0,
            breaker_failures: 1,
            ..config()
        };
        let r = wrap(&fake, cfg);
        fake.begins
            .lock()
            .unwrap()
            .push_back((Duration::ZERO, Err(unreachable())));
        assert!(r.begin(&req(), Factor::Push).await.is_err());
        assert_eq!(r.breaker_state(), BreakerState::Open);
        fake.waits.lock().unwrap().push_back((
            S,
            Ok(PushStatus::Answered(Verdict::Deny(DenyReason::UserDenied))),
        ));
        assert_eq!(
            r.wait_push(&req(), &ProviderState::default(), 60 * S).await,
            Ok(Verdict::Deny(DenyReason::UserDenied))
        );
        // The service answered: the breaker closes.
        assert_eq!(r.breaker_state(), BreakerState::Closed { failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_disabled_with_zero() {
        let fake = Arc::new(Fake::default());
        let cfg = ResilienceConfig {
            retries: 0,
            breaker_failures: 0,
            ..config()
        };
        let r = wrap(&fake, cfg);
        fake.begins
            .lock()
            .unwrap()
            .extend((0..20).map(|_| (Duration::ZERO, Err(protocol()))));
        for _ in 0..20 {
            assert_eq!(r.begin(&req(), Factor::Otp).await, Err(protocol()));
        }
        assert_eq!(fake.calls(), 20);
        assert!(format!("{r:?}").contains("fake"));
    }
}
