//! The Entra provider against the local Entra stand-in (`portcullis_standins::entra`): token
//! handling (secret and certificate assertion, caching, refresh), the Begin/End calls and their
//! mapping, and, with `--features battery`, the shared OTP and push batteries.
//!
//! The stand-in follows the documented token endpoint and the publicly reverse-engineered
//! Connector calls; these tests prove the provider speaks that, not that Microsoft's service
//! behaves identically in every corner.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_mfa::entra::{Entra, EntraConfig, EntraCredential, MFA_CLIENT_ID, MFA_SCOPE};
use portcullis_mfa::{Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, Verdict};
use portcullis_standins::entra::{
    EntraStandin, EntraStandinConfig, EntraUser, Methods, PushBehaviour,
};
use sha1::Digest as _;
use url::Url;

const TENANT: &str = "contoso.onmicrosoft.com";
const SECRET: &str = "test-client-secret";
const ALICE: &str = "alice@contoso.com";

/// Test-only RSA keys (generated once with `openssl genpkey -algorithm RSA`); the certificates
/// for them are made by rcgen at test time.
const KEY_A: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCmovdXzUIGIQmb
+5/NvnWGd7ed5iAwNWhrzBUAytmjvkiqECE7GMjLcaSlzt0gsqbkSX22DPbsniU6
pFCpmf2jfto045T3KDI6uNei2wcS7MbaNygLCx662RWhh33hlmYH0RldvVIOBWzi
zM+jzP00NbI1xokpJ/hT0w+HwX/lQxvIpR1xtjqiqXX5owiErJSbeXjfqUd9qid1
/8R17XIVThX6EZzFkC6hkuSK0HlHK7J4EvUthNiySwdYP+94ra4HGYFy1jAqUCm3
a0XN8ogjefDyja37NrIf0Rr1KXQ9dW5gXzERhTa1heQOogaMhox9BcmGrQcd9izS
wKwfZOrFAgMBAAECggEAD9FWY0pDoytNqzXWdIRIyavhjSaEFa9sKxdjQwD+adGt
Oh9v2BlBLjaqZ2bcjLcIqpDjUv2mDs3wQMHKOl84uWVYNz8HK/Lv2a0kIvxhjoVV
Vu93aJz0nM3whLXE2D4bj1Bk9QX8nQIc1OaWKzlRK7yRHxOqf3Kg2uwlBED08AEo
fFB0HmUnB+HztUxgaovJxwMnaaiyjqU/sab+v1aqPffNbryXX+/vSoh5DlG49bBE
OSuPzjsOPaDMgd9CHEQkBkr6qZcHt5+66tEJ69NBswcdArqWZXpPM4Jy/MDYOEzf
sGmt6JYGo71MCAoNi6r9OLRJGkdoVjYb/gkYVaoAPQKBgQDc13feE6TKV32yKQzf
3G1zh/FmSWepsUkOnpb9dmMCu/phDjj5mIHwKss7JayarWBbPUf3JoeE5hckBPb2
AmaXzqHz3KR+WQaKqWct+pMLW4aQbSb9xlfGSJ4veU2thJ5PLUBJiZjE3RIlBAo/
NDygFmp015MaXIaRbiwJxUEaAwKBgQDBKlaBDPLOCLaAZjU4DQRPqtireGrXOx/b
3B0Ag3Ql/e3M7mWInKTt6Y9Cu2bPhckfSZ26LY2/a56rSpIZs+lVPvf8q7qMy8FE
FrNdn46AWXfXH+X2h+JkIdxw+BmgkbOw/FVqi2yUVvPmU6HgtJF9Tk6NFCWgpF1z
eHPx8qwxlwKBgQCPzLW+o2fgYYv1YImDkxKp8dEcW5vmgQwjOtzyeg4Kj8B/RjWP
QOELM7JV9zgnF9HwVzzvD+WaggB7ccgldHa9Ts1h70AlDW8XByuqYskw0g4TKSAE
iwxIjqyCGSidXgd/YuXDfJc/SPwxoinR8f+v9iinoF+nAKyXMff2/LxhZQKBgCB8
jFvb36IDGR5zEhRBLC5x30rHT8Cu8ua5GC+T7B7PnATRO0ZEggB5PVzNw7a3G2Il
sV80dhhxcxf/zJ6CAYYStwZJo3A2fGSFJNlkEkVHxr3pYXWa2NpaT4a4UycMGhpz
9bGbjUFNdmuQOTNfavCWEOPtNX7U5dqbsXRJieg1AoGBALwDls/uy1quKlT46ZAE
543Q1fTPg6bp5fFZGyeZS930hO2fO9UyQ2XaesZO8NLdEblAf1SOE1V6mMQVmUkV
JrJ36UT3zxzb/KVvI32QuOYAiL0IbWSSpAVCqB2E4HGmlpNw+aH63MnLgGDerBYr
q+sEP/WX5Xk3ntshigDzRW5r
-----END PRIVATE KEY-----";
const KEY_B: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC3Zcurixmce+Bn
xm0gOcNxotYnougXWOrfG/SNx6chalGlcpe1fyIrwV5Msde3gFvw3HRfTbB0MCex
6rlHXbmtYTHuLBPG2INj31qrm6wIEeSo8+WkGIHmPBI8t9grQlruWrE79sUYVMSJ
02ZLVaMe3njQz4KV/G2097x1DP09zaIf6E6mZrQS6KxOM9VdHWdjRz256wTgv+0u
+rfhmvEVHsoM7n1RbAzc+nOTr4BMd958gRgDHGlYMBudBiiV+ompYWzR/pazuyiN
iqw8Ik3t8O4UgVvWWn9ev0vSz1rJDYfjsrV61C4GPdxImCi9WuZmBkLE/IyKooGs
Bd4ROBf3AgMBAAECggEAFMcqsQ+8YhdC0F8RxAHnW7uIKctyIhsH2SkwptOE4utJ
vsXh3EVAGNb6mRPZDcg0InDHmniR0kgWZzjhru02eSc24fYKc4/aKvmGK0Ui03M7
hczEKrhAF1ac9lYZ3qTQ6opJ5DJMGDqaXcceotBb/8ZSx82KzPVhdIxQxK4pDtRI
zaq34ABaeSex+kWZBEmFmunn5uvIPKknmWRR0nwZqLdG4F38Vf5FmBgpNZDS35tg
HPN9HuA1UHJKZgYcrw1Bhmnlsao4jXwGpE6IeJ2z6XfbDlP0aQ0jSlNu1ibj5Jua
ch2aQKjHbilxNWd9rt7nvnN9GxQ9pA9bJh/oh3ezaQKBgQD3ofm+I8zwWnspvz8P
H3mwhfAlXxwazzm6AUjxCXmr0H9gGKNPjOGNMrqDF7UK2zc0n226C5XCYjhEhunA
1j657OM4RoSrMo7RHxw9gNjnpkxhmTjXL1Jgrs45/1Mxa+EwBu7zwDpJaz03MjWs
rR2L0I6IuKnDVLPCBG8BEc+s5QKBgQC9mC+syriSVInzKkKdss/ibg/M/dTod5m0
n/4AHoCh0Eu3D0KjcTiO9fALCrdz4EN3Rd5Ngh3d3KPtAOx9owzH2ioBiEXQ5ct8
93D92FiEaGetQ5D3ORi5/sSn/hwAJTuL1KBM8UhHu2qVVhN+BCbsABDk0N8Eo/yi
2U4F4DJ/qwKBgQDDe0siLTK/3j1xxDYsYwV2MxVS+xS9mS6RxifllzxERK/4lRp+
VtFK3Gvdxp41Nr4KvXwqLLEJJO4UMoheoQIdVYI9T3W1i5CwRqXNa2RO4blUJld3
jzSxe+zyXbs3vVijyCVjqDCa+pv1cZ5rdLFpSLbr+RKSTtAkbcmPB5dwfQKBgGNU
+KVvEISaBiyAV6aHqKLZRy3/Tyz8fGtF563oTTx6BTFDrYY0K427DKi8VKFBPhef
Y3j4Uu2KS9hAQ6cPZgLPKnLjErD/tD0k5u4YC0hT6v28CJd+MpZABIh/eewZlbkN
DW9CerwaVR0om83KHxpGbpNzW2TzBcnMUDSD4fFBAoGBAPC1Sj3XMKygvhq2Q9Ue
2r/GU61p8Ofud9fTcopwdbSMdltkzA5GRZkYfzPwZzK4C6eEzS/oo4Cm6MQ+B9jY
WmiK4PaMJSlG9RFbeNFWVflTy0PJ+mi3Tnk92Ft0sOYEAmPy9yD1EuR5uI/h/1gZ
+ywJeyWsKAGfc88hitjT6JHw
-----END PRIVATE KEY-----";

fn req(user: &str) -> MfaRequest {
    MfaRequest {
        user: user.to_owned(),
        nas_ip: Some("192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}"))),
        client: "vpn".into(),
        calling_station: Some("198.51.100.4".to_owned()),
        context_id: "6a0f7c39-5a9b-4c36-9d7e-2b1f0f3a9e11".to_owned(),
    }
}

fn secret_standin() -> EntraStandin {
    let mut cfg = EntraStandinConfig::new(TENANT);
    cfg.client_secret = Some(SECRET.to_owned());
    EntraStandin::start(cfg)
}

fn config(standin: &EntraStandin, credential: EntraCredential) -> EntraConfig {
    let mut cfg = EntraConfig::new("entra", TENANT, MFA_CLIENT_ID, credential);
    cfg.login_url = Url::parse(&standin.login_url()).unwrap_or_else(|e| panic!("{e}"));
    cfg.service_url = Url::parse(&standin.service_url()).unwrap_or_else(|e| panic!("{e}"));
    cfg.timeout = Duration::from_secs(5);
    cfg.poll_interval = Duration::from_millis(50);
    cfg
}

fn provider(standin: &EntraStandin) -> Entra {
    Entra::new(config(standin, EntraCredential::Secret(SECRET.to_owned())))
        .unwrap_or_else(|e| panic!("cannot build the provider: {e}"))
}

fn alice(push: PushBehaviour) -> EntraUser {
    let mut user = EntraUser::new(Methods::OtpAndPush);
    user.otp_codes = vec![
        "123456".to_owned(),
        "777777".to_owned(),
        "246810".to_owned(),
    ];
    user.push = push;
    user
}

async fn push_sent(p: &Entra, user: &str) -> portcullis_mfa::ProviderState {
    match p.begin(&req(user), Factor::Push).await {
        Ok(Begin::PushSent { state }) => state,
        other => panic!("expected PushSent, got {other:?}"),
    }
}

async fn challenge(p: &Entra, user: &str) -> portcullis_mfa::ProviderState {
    match p.begin(&req(user), Factor::Otp).await {
        Ok(Begin::Challenge { state, prompt }) => {
            assert!(!prompt.is_empty());
            state
        }
        other => panic!("expected Challenge, got {other:?}"),
    }
}

/// A certificate for `key_pem` made by rcgen, written with the key to a fresh directory.
struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cert_files(key_pem: &str, tag: &str) -> CertFiles {
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap_or_else(|e| panic!("rcgen key: {e}"));
    let params = rcgen::CertificateParams::new(vec![format!("CN={TENANT}, OU=Portcullis")])
        .unwrap_or_else(|e| panic!("rcgen params: {e}"));
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("rcgen cert: {e}"));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "portcullis-entra-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key_path, key_pem).unwrap_or_else(|e| panic!("{e}"));
    CertFiles {
        dir,
        cert: cert_path,
        key: key_path,
        cert_pem: cert.pem(),
    }
}

fn cert_standin(cert_pem: &str) -> EntraStandin {
    let mut cfg = EntraStandinConfig::new(TENANT);
    cfg.certificate_pem = Some(cert_pem.to_owned());
    EntraStandin::start(cfg)
}

fn cert_credential(files: &CertFiles) -> EntraCredential {
    EntraCredential::Certificate {
        cert_pem: files.cert.clone(),
        key_pem: files.key.clone(),
    }
}

#[tokio::test]
async fn begin_sends_the_extension_fields() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    challenge(&p, ALICE).await;
    push_sent(&p, ALICE).await;
    let sent = s.begin_requests();
    assert_eq!(sent.len(), 2);
    for (r, otp) in sent.iter().zip(["true", "false"]) {
        assert_eq!(r.user_principal_name.as_deref(), Some(ALICE));
        assert_eq!(r.version.as_deref(), Some("1.0"));
        assert_eq!(r.lcid.as_deref(), Some("en-us"));
        assert_eq!(r.override_number_matching_with_otp.as_deref(), Some(otp));
        assert_eq!(
            r.context_id.as_deref(),
            Some(req(ALICE).context_id.as_str())
        );
        assert_eq!(r.sync_call.as_deref(), Some("false"));
        assert_eq!(r.require_user_match.as_deref(), Some("true"));
        assert_eq!(r.caller_name.as_deref(), Some("radius"));
        assert_eq!(r.caller_ip.as_deref(), Some("192.0.2.10"));
    }
}

#[tokio::test]
async fn one_token_for_many_calls() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    for _ in 0..5 {
        challenge(&p, ALICE).await;
    }
    // Concurrent logins share the one fetch too.
    let p = Arc::new(provider(&s));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { challenge(&p, ALICE).await }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(s.token_requests(), 2, "one token per provider");
    assert_eq!(s.begin_calls(), 9);
}

#[tokio::test]
async fn refreshes_once_after_a_401() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    challenge(&p, ALICE).await;
    s.expire_tokens();
    challenge(&p, ALICE).await;
    assert_eq!(s.token_requests(), 2);
    assert_eq!(s.unauthorized_calls(), 1);
    assert_eq!(s.begin_calls(), 2);
}

#[tokio::test]
async fn refreshes_before_expires_in() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    s.set_token_lifetime(Duration::from_secs(1));
    let p = provider(&s);
    challenge(&p, ALICE).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    challenge(&p, ALICE).await;
    assert_eq!(s.token_requests(), 2);
    assert_eq!(
        s.unauthorized_calls(),
        0,
        "the provider renewed before expiry"
    );
}

#[tokio::test]
async fn wrong_secret_is_a_config_error() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = Entra::new(config(&s, EntraCredential::Secret("wrong".into())))
        .unwrap_or_else(|e| panic!("{e}"));
    let b = p.begin(&req(ALICE), Factor::Otp).await;
    match b {
        Err(MfaError::Config { detail, .. }) => {
            assert!(detail.contains("invalid_client"), "{detail}");
            assert!(!detail.contains("wrong"), "{detail}");
        }
        other => panic!("expected Config, got {other:?}"),
    }
    let mut cfg = config(&s, EntraCredential::Secret(SECRET.into()));
    cfg.client_id = "00000000-0000-0000-0000-000000000000".into();
    let p = Entra::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let b = p.begin(&req(ALICE), Factor::Otp).await;
    assert!(matches!(b, Err(MfaError::Config { .. })), "{b:?}");
}

#[tokio::test]
async fn certificate_assertion_is_accepted() {
    let files = cert_files(KEY_A, "ok");
    let s = cert_standin(&files.cert_pem);
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = Entra::new(config(&s, cert_credential(&files))).unwrap_or_else(|e| panic!("{e}"));
    challenge(&p, ALICE).await;
    s.expire_tokens();
    // A second assertion (a new jti) after the refresh.
    challenge(&p, ALICE).await;
    assert_eq!(s.token_requests(), 2);
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused() {
    let registered = cert_files(KEY_A, "reg");
    let other = cert_files(KEY_B, "other");
    let s = cert_standin(&registered.cert_pem);
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = Entra::new(config(&s, cert_credential(&other))).unwrap_or_else(|e| panic!("{e}"));
    let b = p.begin(&req(ALICE), Factor::Otp).await;
    assert!(matches!(b, Err(MfaError::Config { .. })), "{b:?}");
    // A key that does not belong to the certificate is refused at startup.
    let mixed = EntraCredential::Certificate {
        cert_pem: registered.cert.clone(),
        key_pem: other.key.clone(),
    };
    let e = Entra::new(config(&s, mixed));
    assert!(matches!(e, Err(MfaError::Config { .. })), "{e:?}");
}

/// Signs an assertion by hand, to check that the stand-in verifies what it should.
fn assertion(key_pem: &str, cert_pem: &str, aud: &str, jti: &str) -> String {
    use rustls_pki_types::pem::PemObject as _;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let key = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der())
        .unwrap_or_else(|e| panic!("{e}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT",
        "x5t": URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&cert))});
    let claims = serde_json::json!({"aud": aud, "iss": MFA_CLIENT_ID, "sub": MFA_CLIENT_ID,
        "jti": jti, "nbf": now, "exp": now + 600});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn the_standin_verifies_assertions() {
    let files = cert_files(KEY_A, "jwt");
    let s = cert_standin(&files.cert_pem);
    let http = reqwest::Client::new();
    let post = |jwt: String| {
        let http = http.clone();
        let url = s.token_url();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", MFA_CLIENT_ID),
                    ("scope", MFA_SCOPE),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", jwt.as_str()),
                ])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .status()
                .as_u16()
        }
    };
    let aud = s.token_url();
    assert_eq!(
        post(assertion(KEY_A, &files.cert_pem, &aud, "j1")).await,
        200
    );
    assert_eq!(
        post(assertion(KEY_A, &files.cert_pem, &aud, "j1")).await,
        401,
        "replayed jti"
    );
    let wrong_aud = assertion(KEY_A, &files.cert_pem, "https://elsewhere/token", "j2");
    assert_eq!(post(wrong_aud).await, 401, "wrong aud");
    // Signed by another key under the registered certificate's thumbprint.
    let forged = assertion(KEY_B, &files.cert_pem, &aud, "j3");
    assert_eq!(post(forged).await, 401, "bad signature");
    let mut tampered = assertion(KEY_A, &files.cert_pem, &aud, "j4");
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(post(tampered).await, 401, "tampered signature");
}

#[tokio::test]
async fn push_approved_after_a_delay() {
    let s = secret_standin();
    s.set_user(
        ALICE,
        alice(PushBehaviour::Approve {
            after: Duration::from_millis(400),
        }),
    );
    let p = provider(&s);
    let state = push_sent(&p, ALICE).await;
    let v = p
        .wait_push(&req(ALICE), &state, Duration::from_secs(10))
        .await;
    assert_eq!(v, Ok(Verdict::Allow));
    assert_eq!(s.pushes_started(ALICE), 1, "exactly one push");
    assert_eq!(s.begin_calls(), 1);
    assert!(
        s.end_calls() >= 2,
        "polled while pending: {}",
        s.end_calls()
    );
    assert_eq!(
        s.affinity_calls(),
        s.end_calls(),
        "End goes to the AffinityUrl"
    );
}

#[tokio::test]
async fn push_denied() {
    let s = secret_standin();
    s.set_user(
        ALICE,
        alice(PushBehaviour::Deny {
            after: Duration::from_millis(100),
        }),
    );
    let p = provider(&s);
    let state = push_sent(&p, ALICE).await;
    let v = p
        .wait_push(&req(ALICE), &state, Duration::from_secs(10))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::UserDenied)));
}

#[tokio::test]
async fn push_not_answered_times_out() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    let state = push_sent(&p, ALICE).await;
    let started = std::time::Instant::now();
    let v = p
        .wait_push(&req(ALICE), &state, Duration::from_millis(500))
        .await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Timeout)));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.pushes_started(ALICE), 1);
}

#[tokio::test]
async fn otp_right_wrong_and_replayed() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    let state = challenge(&p, ALICE).await;
    let v = p.verify_otp(&req(ALICE), &state, "999999").await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::WrongCode)));
    let state = challenge(&p, ALICE).await;
    assert_eq!(
        p.verify_otp(&req(ALICE), &state, "123456").await,
        Ok(Verdict::Allow)
    );
    let state = challenge(&p, ALICE).await;
    let v = p.verify_otp(&req(ALICE), &state, "123456").await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Replayed)));
    assert_eq!(s.pushes_started(ALICE), 0, "OTP logins send no push");
}

#[tokio::test]
async fn throttled_user_is_locked() {
    let s = secret_standin();
    let mut user = alice(PushBehaviour::Never);
    user.throttled = true;
    s.set_user(ALICE, user);
    let p = provider(&s);
    for factor in [Factor::Otp, Factor::Push] {
        let b = p.begin(&req(ALICE), factor).await;
        assert_eq!(b, Ok(Begin::Decided(Verdict::Deny(DenyReason::Locked))));
    }
    // Throttled between Begin and End.
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let state = challenge(&p, ALICE).await;
    let mut user = alice(PushBehaviour::Never);
    user.throttled = true;
    s.set_user(ALICE, user);
    let v = p.verify_otp(&req(ALICE), &state, "123456").await;
    assert_eq!(v, Ok(Verdict::Deny(DenyReason::Locked)));
}

#[tokio::test]
async fn enrolment_and_methods() {
    let s = secret_standin();
    let mut unenrolled = alice(PushBehaviour::Never);
    unenrolled.enrolled = false;
    s.set_user("bob@contoso.com", unenrolled);
    let mut otp_only = EntraUser::new(Methods::OtpOnly);
    otp_only.otp_codes = vec!["111111".into()];
    s.set_user("carol@contoso.com", otp_only);
    s.set_user("dave@contoso.com", EntraUser::new(Methods::PushOnly));
    let p = provider(&s);
    for user in ["bob@contoso.com", "nobody@contoso.com"] {
        for factor in [Factor::Otp, Factor::Push] {
            assert_eq!(
                p.begin(&req(user), factor).await,
                Ok(Begin::NotEnrolled),
                "{user}"
            );
        }
    }
    // An OTP-only user asked for a push: nothing is sent, the server may ask for a code.
    let b = p.begin(&req("carol@contoso.com"), Factor::Push).await;
    assert_eq!(b, Ok(Begin::FactorUnavailable));
    assert_eq!(s.pushes_started("carol@contoso.com"), 0);
    // A push-only user asked for a code gets the push the service sent instead.
    let b = p.begin(&req("dave@contoso.com"), Factor::Otp).await;
    assert!(matches!(b, Ok(Begin::PushSent { .. })), "{b:?}");
    assert_eq!(s.pushes_started("dave@contoso.com"), 1);
}

#[tokio::test]
async fn standin_down_is_unreachable() {
    let s = secret_standin();
    s.set_user(ALICE, alice(PushBehaviour::Never));
    let p = provider(&s);
    challenge(&p, ALICE).await;
    s.unavailable(true);
    // Let the client's pooled connection notice that the stand-in closed it (otherwise the
    // next request may race the close and fail as a protocol error, not as unreachable).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = p.begin(&req(ALICE), Factor::Otp).await;
    assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    // A fresh provider fails at the token endpoint the same way.
    let b = provider(&s).begin(&req(ALICE), Factor::Otp).await;
    assert!(matches!(b, Err(MfaError::Unreachable { .. })), "{b:?}");
    s.unavailable(false);
    challenge(&p, ALICE).await;
}

#[cfg(feature = "battery")]
mod battery {
    use portcullis_mfa::battery::{run_otp_battery, run_push_battery, BatteryEnv};

    use super::*;

    struct Env {
        standin: Arc<EntraStandin>,
    }

    #[async_trait::async_trait]
    impl BatteryEnv for Env {
        fn enrolled_user(&self) -> MfaRequest {
            req(ALICE)
        }
        fn unenrolled_user(&self) -> MfaRequest {
            req("nobody@contoso.com")
        }
        async fn valid_code(&self, user: &MfaRequest) -> Option<String> {
            self.standin.unused_code(&user.user)
        }
        fn supports_push(&self) -> bool {
            true
        }
        async fn answer_next_push(&self, user: &MfaRequest, approve: bool) {
            // The push is begun before the wait starts; give the poll a moment to run first.
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(
                self.standin.answer_push(&user.user, approve),
                "no pending push for {}",
                user.user
            );
        }
    }

    #[tokio::test]
    async fn entra_passes_the_batteries() {
        let standin = Arc::new(secret_standin());
        standin.set_user(ALICE, alice(PushBehaviour::Never));
        let p = provider(&standin);
        let env = Env {
            standin: standin.clone(),
        };
        run_otp_battery(&p, &env).await;
        run_push_battery(&p, &env).await;
        assert_eq!(standin.pushes_started(ALICE), 3, "one push per push step");
        assert_eq!(standin.token_requests(), 1);
    }
}
