//! The privacyIDEA provider against a real privacyIDEA server (installed from PyPI by
//! `tests/privacyidea/setup.sh`, started by `tests/privacyidea/run.sh` on a free loopback port
//! with HTTPS and a private CA).
//!
//! The test fails, with the reason, when privacyIDEA cannot be installed or started; only
//! `PORTCULLIS_SKIP_PRIVACYIDEA=1` skips it. With `--features battery` it also runs the shared
//! OTP and push batteries against the server.

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use portcullis_mfa::privacyidea::{PrivacyIdea, PrivacyIdeaConfig};
use portcullis_mfa::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, Verdict,
};
use url::Url;

const REALM: &str = "portcullis";
const ADMIN: (&str, &str) = ("admin", "admin-test-pw");
/// RFC 6238's SHA1 test seed ("12345678901234567890") for pi-alice, another for pi-carol.
const ALICE_SEED: &str = "3132333435363738393031323334353637383930";
#[cfg(feature = "battery")]
const CAROL_SEED: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334";

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/privacyidea")
}

/// Runs setup.sh and returns the directory it prepared.
fn setup() -> PathBuf {
    let script = harness_dir().join("setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "privacyIDEA could not be installed or configured by {} ({}); the log above says why. \
         Set PORTCULLIS_SKIP_PRIVACYIDEA=1 to skip this test deliberately.",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("setup.sh printed no directory"));
    PathBuf::from(dir.trim())
}

/// The running server; killed on drop.
struct PiServer {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl PiServer {
    fn start(dir: &Path) -> PiServer {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = dir.join(format!("server-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("server log file");
        let child = Command::new("bash")
            .arg(harness_dir().join("run.sh"))
            .arg(port.to_string())
            .arg("--tls")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file)
            .spawn()
            .expect("cannot start tests/privacyidea/run.sh");
        let mut server = PiServer {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return server;
            }
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the privacyIDEA server exited ({status}) before listening:\n{}",
                        server.log_tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the privacyIDEA server did not listen on port {port} within 60 s:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("https://127.0.0.1:{}/", self.port)).expect("server URL")
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// RFC 6238 TOTP (HMAC-SHA1, 30 s, 6 digits) at `offset` steps from now.
fn totp(seed_hex: &str, offset: i64) -> String {
    let key = hex::decode(seed_hex).expect("hex seed");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let step = (now / 30)
        .checked_add_signed(offset)
        .expect("step in range");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("HMAC key");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let at = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
    format!("{:06}", bin % 1_000_000)
}

fn req(user: &str) -> MfaRequest {
    MfaRequest {
        user: user.to_owned(),
        nas_ip: None,
        client: "vpn".into(),
        calling_station: None,
        context_id: format!("test-{user}"),
    }
}

/// The admin REST API, for enrolling tokens.
struct Admin {
    http: reqwest::Client,
    base: Url,
    jwt: String,
}

impl Admin {
    async fn login(base: Url, ca: &Path) -> Admin {
        let pem = std::fs::read(ca).expect("CA file");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA cert"))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("admin HTTP client");
        let reply: serde_json::Value = http
            .post(base.join("auth").expect("URL"))
            .form(&[("username", ADMIN.0), ("password", ADMIN.1)])
            .send()
            .await
            .expect("POST /auth")
            .json()
            .await
            .expect("POST /auth JSON");
        let jwt = reply["result"]["value"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no JWT from POST /auth: {reply}"))
            .to_owned();
        Admin { http, base, jwt }
    }

    async fn enroll_totp(&self, user: &str, seed_hex: &str) {
        let reply: serde_json::Value = self
            .http
            .post(self.base.join("token/init").expect("URL"))
            .header("Authorization", &self.jwt)
            .form(&[
                ("type", "totp"),
                ("otpkey", seed_hex),
                ("user", user),
                ("realm", REALM),
                ("pin", ""),
            ])
            .send()
            .await
            .expect("POST /token/init")
            .json()
            .await
            .expect("POST /token/init JSON");
        assert_eq!(
            reply["result"]["value"],
            serde_json::Value::Bool(true),
            "TOTP enrollment for {user} failed: {}",
            reply["result"]
        );
    }
}

/// The emulated smartphone of tests/privacyidea/helper.py.
#[derive(Clone)]
struct Phone {
    python: PathBuf,
    url: String,
    ca: PathBuf,
    keys: PathBuf,
}

impl Phone {
    fn helper(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(harness_dir().join("helper.py"));
        cmd
    }

    fn enroll(&self, jwt: &str, user: &str) -> String {
        let out = self
            .helper()
            .args(["push-enroll", &self.url, jwt, user, REALM])
            .arg(&self.keys)
            .arg(&self.ca)
            .stderr(Stdio::inherit())
            .output()
            .expect("run helper.py push-enroll");
        assert!(out.status.success(), "push enrollment failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Answers the open push challenge of `serial` (waits up to 10 s for one to appear).
    async fn answer(&self, serial: &str, approve: bool) {
        let mut cmd = self.helper();
        cmd.args(["push-answer", &self.url, serial])
            .arg(&self.keys)
            .arg(if approve { "approve" } else { "decline" })
            .arg(&self.ca)
            .stderr(Stdio::inherit());
        let status = tokio::task::spawn_blocking(move || cmd.status())
            .await
            .expect("join")
            .expect("run helper.py push-answer");
        assert!(status.success(), "the phone could not answer: {status}");
    }
}

fn provider(base: Url, ca: Option<&Path>) -> PrivacyIdea {
    let mut cfg = PrivacyIdeaConfig::new("privacyidea-test", base);
    cfg.realm = Some(REALM.to_owned());
    cfg.ca_file = ca.map(Path::to_path_buf);
    cfg.timeout = Duration::from_secs(10);
    cfg.poll_interval = Duration::from_millis(250);
    PrivacyIdea::new(cfg).expect("provider")
}

async fn challenge(p: &PrivacyIdea, user: &str) -> ProviderState {
    match p.begin(&req(user), Factor::Otp).await {
        Ok(Begin::Challenge { prompt, state }) => {
            assert!(!prompt.trim().is_empty(), "empty prompt");
            state
        }
        other => panic!("begin(Otp) for {user}: expected Challenge, got {other:?}"),
    }
}

async fn push_sent(p: &PrivacyIdea, user: &str) -> ProviderState {
    match p.begin(&req(user), Factor::Push).await {
        Ok(Begin::PushSent { state }) => state,
        other => panic!("begin(Push) for {user}: expected PushSent, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacyidea_real_server() {
    if std::env::var_os("PORTCULLIS_SKIP_PRIVACYIDEA").is_some_and(|v| v == "1") {
        eprintln!("PORTCULLIS_SKIP_PRIVACYIDEA=1: privacyIDEA test skipped");
        return;
    }
    let t0 = Instant::now();
    let dir = setup();
    let t_setup = t0.elapsed();
    let mut server = PiServer::start(&dir);
    let t_start = t0.elapsed() - t_setup;
    let ca = dir.join("conf/tls/ca.pem");
    let base = server.url();
    let p = provider(base.clone(), Some(&ca));
    let admin = Admin::login(base.clone(), &ca).await;
    admin.enroll_totp("pi-alice", ALICE_SEED).await;

    // OTP: challenge, right code, the same code again, a wrong code.
    let state = challenge(&p, "pi-alice").await;
    let code = totp(ALICE_SEED, 0);
    let v = p.verify_otp(&req("pi-alice"), &state, &code).await;
    assert_eq!(v, Ok(Verdict::Allow), "right code");
    let state = challenge(&p, "pi-alice").await;
    let v = p.verify_otp(&req("pi-alice"), &state, &code).await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::WrongCode)), "replayed code");
    let state = challenge(&p, "pi-alice").await;
    let wrong = totp(ALICE_SEED, -100);
    let v = p.verify_otp(&req("pi-alice"), &state, &wrong).await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::WrongCode)), "wrong code");
    // A transaction is used once: a second answer to an answered one is refused.
    let state = challenge(&p, "pi-alice").await;
    let next = totp(ALICE_SEED, 1);
    let first = p.verify_otp(&req("pi-alice"), &state, &next).await;
    assert_eq!(first, Ok(Verdict::Allow), "next step's code");
    let again = p.verify_otp(&req("pi-alice"), &state, &next).await;
    assert!(
        matches!(again, Ok(Verdict::Deny(_))),
        "reused transaction: {again:?}"
    );

    // Users without a second factor: unknown to privacyIDEA, or known without tokens.
    for user in ["pi-nobody", "pi-bob"] {
        for factor in [Factor::Otp, Factor::Push] {
            let b = p.begin(&req(user), factor).await;
            assert_eq!(b, Ok(Begin::NotEnrolled), "{user} {factor:?}");
        }
    }
    // A TOTP-only user has no push.
    let b = p.begin(&req("pi-alice"), Factor::Push).await;
    assert_eq!(b, Ok(Begin::FactorUnavailable), "push for a TOTP-only user");

    // Push, answered by an emulated privacyIDEA Authenticator.
    let phone = Phone {
        python: dir.join("venv/bin/python"),
        url: base.as_str().trim_end_matches('/').to_owned(),
        ca: ca.clone(),
        keys: dir.join("conf/phone-keys"),
    };
    let serial = phone.enroll(&admin.jwt, "pi-push");
    let b = p.begin(&req("pi-push"), Factor::Otp).await;
    assert_eq!(b, Ok(Begin::FactorUnavailable), "OTP for a push-only user");
    for (approve, want) in [
        (true, Verdict::Allow),
        (false, Verdict::Deny(DenyReason::UserDenied)),
    ] {
        let state = push_sent(&p, "pi-push").await;
        let user = req("pi-push");
        let (v, ()) = tokio::join!(
            p.wait_push(&user, &state, Duration::from_secs(20)),
            phone.answer(&serial, approve)
        );
        assert_eq!(v, Ok(want), "push approve={approve}");
    }
    let state = push_sent(&p, "pi-push").await;
    let started = Instant::now();
    let v = p
        .wait_push(&req("pi-push"), &state, Duration::from_secs(2))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Timeout)), "unanswered push");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "push limit kept"
    );

    // TLS: without our CA the certificate is refused; verify_tls = false accepts it.
    let b = provider(base.clone(), None)
        .begin(&req("pi-bob"), Factor::Otp)
        .await;
    assert!(
        matches!(b, Err(MfaError::Unreachable { .. })),
        "unknown CA: {b:?}"
    );
    let mut cfg = PrivacyIdeaConfig::new("privacyidea-insecure", base.clone());
    cfg.verify_tls = false;
    let b = PrivacyIdea::new(cfg)
        .expect("provider")
        .begin(&req("pi-bob"), Factor::Otp)
        .await;
    assert_eq!(
        b,
        Ok(Begin::NotEnrolled),
        "verify_tls = false, default realm"
    );

    #[cfg(feature = "battery")]
    battery::run(&p, &admin, &phone, &serial).await;

    let t_tests = t0.elapsed() - t_setup - t_start;
    // The server is gone: unreachable.
    server.stop();
    let b = p.begin(&req("pi-alice"), Factor::Otp).await;
    assert!(
        matches!(b, Err(MfaError::Unreachable { .. })),
        "stopped server: {b:?}"
    );
    eprintln!(
        "privacyIDEA timings: setup {:.1} s, server start {:.1} s, checks {:.1} s",
        t_setup.as_secs_f64(),
        t_start.as_secs_f64(),
        t_tests.as_secs_f64()
    );
}

#[cfg(feature = "battery")]
mod battery {
    use portcullis_mfa::battery::{run_otp_battery, run_push_battery, BatteryEnv};

    use super::*;

    struct Env<'a> {
        enrolled: &'a str,
        seed: Option<&'a str>,
        phone: Option<(&'a Phone, &'a str)>,
    }

    #[async_trait::async_trait]
    impl BatteryEnv for Env<'_> {
        fn enrolled_user(&self) -> MfaRequest {
            req(self.enrolled)
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("pi-bob")
        }
        async fn valid_code(&self, _: &MfaRequest) -> Option<String> {
            self.seed.map(|s| totp(s, 0))
        }
        fn supports_push(&self) -> bool {
            self.phone.is_some()
        }
        async fn answer_next_push(&self, _: &MfaRequest, approve: bool) {
            let (phone, serial) = self.phone.expect("push env");
            phone.answer(serial, approve).await;
        }
    }

    pub(super) async fn run(p: &PrivacyIdea, admin: &Admin, phone: &Phone, serial: &str) {
        admin.enroll_totp("pi-carol", CAROL_SEED).await;
        let otp = Env {
            enrolled: "pi-carol",
            seed: Some(CAROL_SEED),
            phone: None,
        };
        run_otp_battery(p, &otp).await;
        run_push_battery(p, &otp).await;
        let push = Env {
            enrolled: "pi-push",
            seed: None,
            phone: Some((phone, serial)),
        };
        run_otp_battery(p, &push).await;
        run_push_battery(p, &push).await;
    }
}
