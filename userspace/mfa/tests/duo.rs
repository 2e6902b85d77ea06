//! The Duo provider against the Duo Auth API v2 stand-in (`portcullis-standins`), which
//! verifies every request's signature and date as Duo documents. With `--features battery`
//! the shared OTP and push batteries run too.

use std::time::{Duration, Instant, SystemTime};

use portcullis_mfa::duo::{self, Duo, DuoConfig};
use portcullis_mfa::{Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, Verdict};
use portcullis_standins::duo::{DuoStandIn, PushBehaviour, UserScript, UserStatus};
use url::Url;

const IKEY: &str = "DIXXXXXXXXXXXXXXXXX1";
const SKEY: &str = "standin-secret-key-0123456789abcdefghij";
const ALICE_CODES: [&str; 2] = ["130579", "864213"];

fn req(user: &str) -> MfaRequest {
    MfaRequest {
        user: user.to_owned(),
        nas_ip: None,
        client: "vpn".into(),
        calling_station: Some("198.51.100.20".to_owned()),
        context_id: format!("ctx-{user}"),
    }
}

/// A stand-in with alice (enrolled, push never answered unless scripted, two passcodes) and
/// bob (enrolled, no push device).
fn stand_in() -> DuoStandIn {
    let s = DuoStandIn::start(IKEY, SKEY);
    s.set_user(
        "alice",
        UserScript {
            passcodes: ALICE_CODES.iter().map(|c| (*c).to_owned()).collect(),
            ..UserScript::enrolled()
        },
    );
    s.set_user(
        "bob",
        UserScript {
            has_push: false,
            passcodes: vec!["555111".to_owned()],
            ..UserScript::enrolled()
        },
    );
    s
}

fn config(s: &DuoStandIn, skey: &str) -> DuoConfig {
    let url = Url::parse(&s.url()).expect("stand-in URL");
    DuoConfig::new("duo", url, IKEY, skey)
}

fn provider(s: &DuoStandIn) -> Duo {
    Duo::new(config(s, SKEY)).expect("Duo provider")
}

async fn push(p: &Duo, user: &str) -> portcullis_mfa::ProviderState {
    match p.begin(&req(user), Factor::Push).await {
        Ok(Begin::PushSent { state }) => state,
        other => panic!("expected PushSent for {user}, got {other:?}"),
    }
}

/// A hand-computed vector (checked with Python's `hmac`): an async push request. The
/// parameters are sorted by key and `@` is `%40`; host and port are as in the `Host` header.
#[test]
fn canonical_request_vector() {
    let params = duo::encode_params(&[
        ("username", "alice@example.org"),
        ("factor", "push"),
        ("device", "auto"),
        ("async", "1"),
    ]);
    let canonical = duo::canonical_request(
        "Mon, 06 Jan 2025 09:15:00 -0000",
        "post",
        "127.0.0.1:8443",
        "/auth/v2/auth",
        &params,
    );
    assert_eq!(
        canonical,
        "Mon, 06 Jan 2025 09:15:00 -0000\n\
         POST\n\
         127.0.0.1:8443\n\
         /auth/v2/auth\n\
         async=1&device=auto&factor=push&username=alice%40example.org"
    );
    assert_eq!(
        duo::sign(SKEY, &canonical),
        "abc1235d0799c53b768e39591b04de29a7c273e0"
    );
    assert_eq!(
        duo::rfc2822_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_154_900)),
        "Mon, 06 Jan 2025 09:15:00 -0000"
    );
}

/// Sends a POST signed over `signed` but carrying `sent` in the body.
async fn post_signed(
    s: &DuoStandIn,
    path: &str,
    signed: &[(&str, &str)],
    sent: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let date = duo::rfc2822_date(SystemTime::now());
    let host = s.addr().to_string();
    let canonical = duo::canonical_request(&date, "POST", &host, path, &duo::encode_params(signed));
    let auth = duo::authorization(IKEY, &duo::sign(SKEY, &canonical));
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", s.url()))
        .header("Date", date)
        .header("Authorization", auth)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(duo::encode_params(sent))
        .send()
        .await
        .expect("the stand-in answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

#[tokio::test]
async fn stand_in_checks_signatures_both_ways() {
    let s = stand_in();
    let params = [("username", "alice")];
    let (status, body) = post_signed(&s, "/auth/v2/preauth", &params, &params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["result"], "auth");

    // A parameter changed after signing.
    let (status, body) = post_signed(&s, "/auth/v2/preauth", &params, &[("username", "bob")]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["stat"], "FAIL");
    assert_eq!(body["code"], 40103);
    assert_eq!(body["message"], "Invalid signature in request credentials");

    // The provider with a wrong secret key, or a wrong integration key: a configuration error.
    let wrong_skey = Duo::new(config(&s, "not-the-secret-key")).expect("provider");
    let err = wrong_skey.begin(&req("alice"), Factor::Push).await;
    assert!(
        matches!(&err, Err(MfaError::Config { detail, .. }) if detail.contains("40103")),
        "{err:?}"
    );
    let mut cfg = config(&s, SKEY);
    cfg.integration_key = "DIWRONGWRONGWRONGWRO".into();
    let err = Duo::new(cfg)
        .expect("provider")
        .begin(&req("alice"), Factor::Otp)
        .await;
    assert!(matches!(err, Err(MfaError::Config { .. })), "{err:?}");
    assert_eq!(s.pushes_sent("alice"), 0, "nothing was sent unsigned");

    // The provider's own requests verify.
    assert!(matches!(
        provider(&s).begin(&req("alice"), Factor::Otp).await,
        Ok(Begin::Challenge { .. })
    ));
}

#[tokio::test]
async fn preauth_outcomes() {
    let s = stand_in();
    let p = provider(&s);
    let script = |status| UserScript {
        status,
        ..UserScript::enrolled()
    };
    s.set_user("carol", script(UserStatus::Enroll));
    s.set_user("dave", script(UserStatus::Deny));
    s.set_user("erin", script(UserStatus::Allow));
    for factor in [Factor::Otp, Factor::Push] {
        assert_eq!(p.begin(&req("carol"), factor).await, Ok(Begin::NotEnrolled));
        assert_eq!(
            p.begin(&req("nobody"), factor).await,
            Ok(Begin::NotEnrolled)
        );
        assert_eq!(
            p.begin(&req("dave"), factor).await,
            Ok(Begin::Decided(Verdict::Deny(DenyReason::Other(
                "Login denied".into()
            ))))
        );
        assert_eq!(
            p.begin(&req("erin"), factor).await,
            Ok(Begin::Decided(Verdict::Allow))
        );
    }
    assert_eq!(
        p.begin(&req("bob"), Factor::Push).await,
        Ok(Begin::FactorUnavailable)
    );
    assert_eq!(
        p.begin(&req("bob"), Factor::Otp).await,
        Ok(Begin::Challenge {
            prompt: duo::OTP_PROMPT.into(),
            state: Default::default()
        })
    );
    assert_eq!(s.requests("/auth/v2/auth"), 0, "preauth only");
    assert_eq!(s.requests("/auth/v2/preauth"), 10);
}

#[tokio::test]
async fn passcodes_work_once() {
    let s = stand_in();
    let p = provider(&s);
    let st = Default::default();
    let alice = req("alice");
    assert_eq!(
        p.verify_otp(&alice, &st, "000000").await,
        Ok(Verdict::Deny(DenyReason::WrongCode))
    );
    assert_eq!(
        p.verify_otp(&alice, &st, ALICE_CODES[1]).await,
        Ok(Verdict::Allow)
    );
    assert_eq!(
        p.verify_otp(&alice, &st, ALICE_CODES[1]).await,
        Ok(Verdict::Deny(DenyReason::WrongCode))
    );
    assert_eq!(s.passcodes("alice"), [ALICE_CODES[0]]);
    // Codes with characters that need encoding are signed correctly too.
    assert_eq!(
        p.verify_otp(&alice, &st, "12 34+/&=").await,
        Ok(Verdict::Deny(DenyReason::WrongCode))
    );
}

#[tokio::test]
async fn push_approved_after_a_delay_is_one_push() {
    let s = stand_in();
    s.set_push(
        "alice",
        PushBehaviour::Approve {
            after: Duration::from_secs(3),
        },
    );
    let p = provider(&s);
    let state = push(&p, "alice").await;
    let v = p
        .wait_push(&req("alice"), &state, Duration::from_secs(20))
        .await;
    assert_eq!(v, Ok(Verdict::Allow));
    assert_eq!(s.pushes_sent("alice"), 1);
    assert_eq!(s.requests("/auth/v2/auth"), 1);
    assert!(s.requests("/auth/v2/auth_status") >= 2, "long-polled");
}

#[tokio::test]
async fn push_denied() {
    let s = stand_in();
    s.set_push(
        "alice",
        PushBehaviour::Deny {
            after: Duration::from_secs(1),
        },
    );
    let p = provider(&s);
    let state = push(&p, "alice").await;
    let v = p
        .wait_push(&req("alice"), &state, Duration::from_secs(20))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::UserDenied)));
    assert_eq!(s.pushes_sent("alice"), 1);
}

#[tokio::test]
async fn push_never_answered_times_out_within_the_limit() {
    let s = stand_in();
    let p = provider(&s);
    let state = push(&p, "alice").await;
    let start = Instant::now();
    let v = p
        .wait_push(&req("alice"), &state, Duration::from_secs(2))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Timeout)));
    assert!(start.elapsed() < Duration::from_secs(10), "bounded wait");

    // Duo's own push timeout: status "timeout".
    s.set_push_timeout(Duration::from_secs(1));
    let state = push(&p, "alice").await;
    let v = p
        .wait_push(&req("alice"), &state, Duration::from_secs(20))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Timeout)));
    assert_eq!(s.pushes_sent("alice"), 2);
}

#[tokio::test]
async fn a_held_long_poll_beyond_our_limit_is_a_timeout_error() {
    let s = stand_in();
    let mut cfg = config(&s, SKEY);
    cfg.timeout = Duration::from_millis(500);
    cfg.long_poll = Duration::ZERO;
    let p = Duo::new(cfg).expect("provider");
    let state = push(&p, "alice").await;
    // The stand-in holds the second auth_status call for 3 s.
    let v = p
        .wait_push(&req("alice"), &state, Duration::from_secs(20))
        .await;
    assert!(matches!(v, Err(MfaError::Timeout { .. })), "{v:?}");
}

#[tokio::test]
async fn stand_in_down() {
    let mut s = stand_in();
    let p = provider(&s);
    s.unavailable(true);
    let b = p.begin(&req("alice"), Factor::Push).await;
    assert!(
        matches!(&b, Err(MfaError::Protocol { detail, .. }) if detail.contains("503")),
        "{b:?}"
    );
    s.unavailable(false);
    let state = push(&p, "alice").await;
    s.close();
    let b = p.begin(&req("alice"), Factor::Otp).await;
    assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    let w = p
        .wait_push(&req("alice"), &state, Duration::from_secs(5))
        .await;
    assert!(matches!(w, Err(MfaError::Unreachable { .. })), "{w:?}");
}

/// The stand-in also serves plain (non-async) tests.
#[test]
fn usable_from_a_plain_test() {
    let s = stand_in();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let p = provider(&s);
    let v = rt.block_on(async {
        let state = push(&p, "alice").await;
        s.answer_push("alice", true);
        p.wait_push(&req("alice"), &state, Duration::from_secs(10))
            .await
    });
    assert_eq!(v, Ok(Verdict::Allow));
    assert_eq!(s.pushes_sent("alice"), 1);
}

#[cfg(feature = "battery")]
mod battery {
    use portcullis_mfa::battery::{run_otp_battery, run_push_battery, BatteryEnv};

    use super::*;

    struct Env<'a>(&'a DuoStandIn);

    #[async_trait::async_trait]
    impl BatteryEnv for Env<'_> {
        fn enrolled_user(&self) -> MfaRequest {
            req("alice")
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("nobody")
        }
        async fn valid_code(&self, user: &MfaRequest) -> Option<String> {
            self.0.passcodes(&user.user).into_iter().next()
        }
        fn supports_push(&self) -> bool {
            true
        }
        async fn answer_next_push(&self, user: &MfaRequest, approve: bool) {
            // Give the provider time to start waiting, as a user would.
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.0.answer_push(&user.user, approve);
        }
        fn short_push_limit(&self) -> Duration {
            Duration::from_secs(2)
        }
    }

    #[tokio::test]
    async fn otp_battery() {
        let s = stand_in();
        run_otp_battery(&provider(&s), &Env(&s)).await;
    }

    #[tokio::test]
    async fn push_battery() {
        let s = stand_in();
        run_push_battery(&provider(&s), &Env(&s)).await;
        assert_eq!(s.pushes_sent("alice"), 3);
    }

    /// A user without a push device: the push battery expects `FactorUnavailable`.
    #[tokio::test]
    async fn push_battery_without_push() {
        struct NoPush<'a>(Env<'a>);
        #[async_trait::async_trait]
        impl BatteryEnv for NoPush<'_> {
            fn enrolled_user(&self) -> MfaRequest {
                req("bob")
            }
            fn unenrolled_user(&self) -> MfaRequest {
                req("nobody")
            }
            async fn valid_code(&self, user: &MfaRequest) -> Option<String> {
                self.0.valid_code(user).await
            }
            fn supports_push(&self) -> bool {
                false
            }
            async fn answer_next_push(&self, _: &MfaRequest, _: bool) {}
        }
        let s = stand_in();
        run_push_battery(&provider(&s), &NoPush(Env(&s))).await;
        run_otp_battery(&provider(&s), &NoPush(Env(&s))).await;
    }
}
