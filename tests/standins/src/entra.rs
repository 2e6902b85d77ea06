//! A local stand-in for Microsoft Entra MFA as the Entra MFA NPS extension uses it: the token
//! endpoint of the Microsoft identity platform and the StrongAuthenticationService Connector.
//!
//! # What it follows, and how far it can be trusted
//!
//! - `POST /{tenant}/oauth2/v2.0/token` follows **public documentation** (the Microsoft identity
//!   platform's client-credentials grant and certificate credentials): a form with
//!   `grant_type=client_credentials`, `client_id`, `scope`, and `client_secret` or
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` +
//!   `client_assertion`. The assertion must be an RS256 JWT whose `x5t` (SHA-1) or `x5t#S256`
//!   thumbprint names the configured certificate, whose signature verifies against that
//!   certificate's key, with `aud` = this token endpoint, `iss` = `sub` = the client id, a
//!   `jti` not seen before, and `nbf` / `exp` around now (5 minutes of skew). Errors are the
//!   documented OAuth shapes: HTTP 400 `invalid_request`, `unsupported_grant_type`,
//!   `invalid_scope`, `unauthorized_client`; HTTP 401 `invalid_client` (bad secret or assertion).
//!   Tokens are opaque and answered with `token_type=Bearer` and `expires_in`.
//! - `POST /StrongAuthenticationService.svc/Connector/BeginTwoWayAuthentication` and
//!   `.../EndTwoWayAuthentication` follow **public reverse engineering** of the NPS extension
//!   and of the AD FS adapter (published request/response traces and scripts calling the
//!   service); Microsoft does not document them. Request and response element names, the WCF
//!   dictionary for `AuthenticationMethodProperties`, `i:nil` elements, the result values
//!   (`Success`, `AuthenticationPending`, `OathCodeIncorrect`, `OathCodeDuplicate`,
//!   `PhoneAppDenied`, `PhoneAppNoResponse`, `UserNotFound`,
//!   `NoDefaultAuthenticationMethodIsConfigured`, `UserIsBlocked`, `InvalidSession`,
//!   `InvalidParameter`) and the `AffinityUrl` (a full End URL with a `dc` query, here pointing
//!   at this server) are taken from those sources. Calls without a valid bearer token get 401.
//!
//! The stand-in is faithful to exactly that, and no more. Its scripted behaviour beyond the
//! traces is an assumption, stated here so nobody mistakes it for Microsoft's: with
//! `OverrideNumberMatchingWithOTP=true` a user with an OTP method is challenged and any other
//! user gets a push; with `false` a user with push gets a push and an OTP-only user is
//! challenged; `RequireUserMatch=false` lets an unenrolled user through (`AuthenticationResult`
//! `true`); each code is accepted once; a session lives `session_lifetime` (3 minutes, as the
//! NPS extension documentation says); `SyncCall=true` is not implemented (InvalidParameter).
//!
//! It runs in a background thread with its own tokio runtime, so it serves plain `#[test]`s and
//! `#[tokio::test]`s alike, on `127.0.0.1` only.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use sha1::Digest as _;

/// The scope the MFA client asks for.
pub const MFA_SCOPE: &str =
    "https://adnotifications.windowsazure.com/StrongAuthenticationService.svc/Connector/.default";
/// The "Azure Multi-Factor Auth Client" application id.
pub const MFA_CLIENT_ID: &str = "981f26a1-7f43-403b-a875-f8b09b8cd720";
const CONNECTOR: &str = "/StrongAuthenticationService.svc/Connector";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SKEW: u64 = 300;

/// The tenant and its MFA client's credentials.
#[derive(Debug, Clone)]
pub struct EntraStandinConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// A client secret the token endpoint accepts, if any.
    pub client_secret: Option<String>,
    /// A PEM certificate whose key may sign client assertions, if any.
    pub certificate_pem: Option<String>,
    /// `expires_in` of issued tokens. Default 3599 s.
    pub token_lifetime: Duration,
    /// How long a Begin session can be completed. Default 180 s.
    pub session_lifetime: Duration,
}

impl EntraStandinConfig {
    /// A tenant whose MFA client ([`MFA_CLIENT_ID`]) has no credential yet.
    pub fn new(tenant_id: impl Into<String>) -> Self {
        EntraStandinConfig {
            tenant_id: tenant_id.into(),
            client_id: MFA_CLIENT_ID.to_owned(),
            client_secret: None,
            certificate_pem: None,
            token_lifetime: Duration::from_secs(3599),
            session_lifetime: Duration::from_secs(180),
        }
    }
}

/// Which methods a user registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    OtpAndPush,
    PushOnly,
    OtpOnly,
}

impl Methods {
    fn otp(self) -> bool {
        matches!(self, Methods::OtpAndPush | Methods::OtpOnly)
    }
    fn push(self) -> bool {
        matches!(self, Methods::OtpAndPush | Methods::PushOnly)
    }
}

/// What the user does with a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushBehaviour {
    /// Approves it this long after it was sent.
    Approve { after: Duration },
    /// Denies it this long after it was sent.
    Deny { after: Duration },
    /// Never answers on their own; [`EntraStandin::answer_push`] answers for them.
    Never,
}

/// A scripted user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraUser {
    /// Registered for MFA at all.
    pub enrolled: bool,
    pub methods: Methods,
    /// Codes the service accepts, each once.
    pub otp_codes: Vec<String>,
    pub push: PushBehaviour,
    /// Blocked/throttled by the service: every call answers `UserIsBlocked`.
    pub throttled: bool,
}

impl EntraUser {
    /// An enrolled user with `methods`, no codes, who never answers pushes.
    pub fn new(methods: Methods) -> Self {
        EntraUser {
            enrolled: true,
            methods,
            otp_codes: Vec::new(),
            push: PushBehaviour::Never,
            throttled: false,
        }
    }
}

/// The fields of a BeginTwoWayAuthentication request, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BeginRecord {
    pub version: Option<String>,
    pub user_principal_name: Option<String>,
    pub lcid: Option<String>,
    pub override_number_matching_with_otp: Option<String>,
    pub context_id: Option<String>,
    pub sync_call: Option<String>,
    pub require_user_match: Option<String>,
    pub caller_name: Option<String>,
    pub caller_ip: Option<String>,
}

enum Kind {
    Otp,
    Push { answer: Option<bool> },
}

struct Session {
    upn: String,
    context_id: Option<String>,
    kind: Kind,
    created: Instant,
}

#[derive(Default)]
struct Counters {
    token_requests: usize,
    begin_calls: usize,
    end_calls: usize,
    affinity_calls: usize,
    unauthorized: usize,
    pushes: HashMap<String, usize>,
}

struct Inner {
    users: HashMap<String, EntraUser>,
    used_codes: HashMap<String, HashSet<String>>,
    sessions: HashMap<String, Session>,
    tokens: HashMap<String, Instant>,
    jtis: HashSet<String>,
    token_lifetime: Duration,
    counters: Counters,
    begins: Vec<BeginRecord>,
}

struct Certificate {
    der: CertificateDer<'static>,
    x5t: String,
    x5t_s256: String,
}

struct Shared {
    cfg: EntraStandinConfig,
    cert: Option<Certificate>,
    addr: SocketAddr,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
}

/// The running stand-in; stops when dropped.
pub struct EntraStandin {
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    server: Mutex<Option<Running>>,
}

impl EntraStandin {
    /// Starts the stand-in on a free loopback port. Panics (it is a test fixture) when the
    /// runtime cannot start, the port cannot be bound, or the certificate does not parse.
    pub fn start(cfg: EntraStandinConfig) -> Self {
        let cert = cfg.certificate_pem.as_ref().map(|pem| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes())
                .unwrap_or_else(|e| panic!("Entra stand-in: bad certificate PEM: {e}"));
            Certificate {
                x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)),
                x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der)),
                der,
            }
        });
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("Entra stand-in: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("Entra stand-in: no local address: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("entra-standin")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("Entra stand-in: cannot start a runtime: {e}"));
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                users: HashMap::new(),
                used_codes: HashMap::new(),
                sessions: HashMap::new(),
                tokens: HashMap::new(),
                jtis: HashSet::new(),
                token_lifetime: cfg.token_lifetime,
                counters: Counters::default(),
                begins: Vec::new(),
            }),
            cfg,
            cert,
            addr,
        });
        let standin = EntraStandin {
            shared,
            rt: Some(rt),
            server: Mutex::new(None),
        };
        standin.serve(listener);
        standin
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let Some(rt) = &self.rt else { return };
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("Entra stand-in: {e}"));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                &format!("{CONNECTOR}/BeginTwoWayAuthentication"),
                post(begin),
            )
            .route(&format!("{CONNECTOR}/EndTwoWayAuthentication"), post(end))
            .with_state(self.shared.clone());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .unwrap_or_else(|e| panic!("Entra stand-in: {e}"));
            let shutdown = async {
                let _ = stop_rx.await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
            let _ = done_tx.send(());
        });
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running { stop, done });
    }

    fn stop(&self) {
        let running = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(running) = running {
            let _ = running.stop.send(());
            let _ = running.done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// `true` closes the port (connections are refused, as when the service cannot be
    /// reached); `false` listens again on the same port.
    pub fn unavailable(&self, down: bool) {
        let running = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if down && running {
            self.stop();
        } else if !down && !running {
            let listener = std::net::TcpListener::bind(self.shared.addr).unwrap_or_else(|e| {
                panic!(
                    "Entra stand-in: cannot listen again on {}: {e}",
                    self.shared.addr
                )
            });
            self.serve(listener);
        }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The authority to configure as the login URL (`http://127.0.0.1:port`).
    pub fn login_url(&self) -> String {
        self.shared.base()
    }

    /// The token endpoint of the configured tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.base(),
            self.shared.cfg.tenant_id
        )
    }

    /// The Connector base to configure as the service URL.
    pub fn service_url(&self) -> String {
        format!("{}{CONNECTOR}", self.shared.base())
    }

    /// Adds or replaces a user.
    pub fn set_user(&self, upn: &str, user: EntraUser) {
        self.shared.lock().users.insert(upn.to_owned(), user);
    }

    /// Answers the newest pending push of `upn`; `false` if there is none.
    pub fn answer_push(&self, upn: &str, approve: bool) -> bool {
        let mut inner = self.shared.lock();
        let newest = inner
            .sessions
            .values_mut()
            .filter(|s| s.upn == upn)
            .filter_map(|s| match &mut s.kind {
                Kind::Push { answer: a @ None } => Some((s.created, a)),
                _ => None,
            })
            .max_by_key(|(created, _)| *created);
        match newest {
            Some((_, answer)) => {
                *answer = Some(approve);
                true
            }
            None => false,
        }
    }

    /// The first of `upn`'s codes not used yet.
    pub fn unused_code(&self, upn: &str) -> Option<String> {
        let inner = self.shared.lock();
        let used = inner.used_codes.get(upn);
        inner
            .users
            .get(upn)?
            .otp_codes
            .iter()
            .find(|c| !used.is_some_and(|u| u.contains(*c)))
            .cloned()
    }

    /// Pushes sent to `upn`.
    pub fn pushes_started(&self, upn: &str) -> usize {
        self.shared
            .lock()
            .counters
            .pushes
            .get(upn)
            .copied()
            .unwrap_or(0)
    }

    /// Requests to the token endpoint (accepted or not).
    pub fn token_requests(&self) -> usize {
        self.shared.lock().counters.token_requests
    }

    /// BeginTwoWayAuthentication calls with a valid token.
    pub fn begin_calls(&self) -> usize {
        self.shared.lock().counters.begin_calls
    }

    /// EndTwoWayAuthentication calls with a valid token.
    pub fn end_calls(&self) -> usize {
        self.shared.lock().counters.end_calls
    }

    /// EndTwoWayAuthentication calls that came through the AffinityUrl (its `dc` query).
    pub fn affinity_calls(&self) -> usize {
        self.shared.lock().counters.affinity_calls
    }

    /// Connector calls refused with 401.
    pub fn unauthorized_calls(&self) -> usize {
        self.shared.lock().counters.unauthorized
    }

    /// The Begin requests received, oldest first.
    pub fn begin_requests(&self) -> Vec<BeginRecord> {
        self.shared.lock().begins.clone()
    }

    /// Makes every token issued so far expire now (the next Connector call gets 401).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Sets `expires_in` for tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }
}

impl Drop for EntraStandin {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({
        "error": error,
        "error_description": description,
        "error_codes": [description
            .strip_prefix("AADSTS")
            .and_then(|d| d.split(':').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)],
    });
    (status, axum::Json(body)).into_response()
}

async fn token(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.lock().counters.token_requests += 1;
    let field = |k: &str| form.get(k).map(String::as_str);
    if tenant != s.cfg.tenant_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: Tenant not found.",
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if field("client_id") != Some(s.cfg.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    if field("scope") != Some(MFA_SCOPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid.",
        );
    }
    let authenticated =
        match (field("client_secret"), field("client_assertion")) {
            (Some(_), Some(_)) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "AADSTS90014: Only one client credential may be sent.",
                )
            }
            (Some(secret), None) => s.cfg.client_secret.as_deref() == Some(secret),
            (None, Some(jwt)) => {
                if field("client_assertion_type") != Some(ASSERTION_TYPE) {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "AADSTS50027: Invalid client_assertion_type.",
                    );
                }
                let aud = format!("{}/{tenant}/oauth2/v2.0/token", s.base());
                verify_assertion(&s, jwt, &aud).is_ok()
            }
            (None, None) => return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS7000218: The request body must contain client_assertion or client_secret.",
            ),
        };
    if !authenticated {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret or client assertion provided.",
        );
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let mut inner = s.lock();
    let lifetime = inner.token_lifetime;
    inner
        .tokens
        .insert(token.clone(), Instant::now() + lifetime);
    let body = serde_json::json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": token,
    });
    axum::Json(body).into_response()
}

/// Checks a client assertion; the error says why (for the stand-in's own tests).
fn verify_assertion(s: &Shared, jwt: &str, aud: &str) -> Result<(), &'static str> {
    let cert = s.cert.as_ref().ok_or("no certificate registered")?;
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWS compact serialization");
    };
    let json = |part: &str| -> Result<serde_json::Value, &'static str> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| "bad base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "bad JSON")
    };
    let header = json(h)?;
    let claims = json(c)?;
    if header["alg"] != "RS256" {
        return Err("alg is not RS256");
    }
    let x5t = header["x5t"].as_str();
    let x5t_s256 = header["x5t#S256"].as_str();
    let named = x5t.is_some() || x5t_s256.is_some();
    if !named || x5t.is_some_and(|t| t != cert.x5t) || x5t_s256.is_some_and(|t| t != cert.x5t_s256)
    {
        return Err("the thumbprint does not name the registered certificate");
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| "bad signature encoding")?;
    let ee = webpki::EndEntityCert::try_from(&cert.der).map_err(|_| "unparsable certificate")?;
    ee.verify_signature(
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        format!("{h}.{c}").as_bytes(),
        &signature,
    )
    .map_err(|_| "bad signature")?;
    if claims["aud"] != aud {
        return Err("wrong aud");
    }
    let client = s.cfg.client_id.as_str();
    if claims["iss"] != client || claims["sub"] != client {
        return Err("iss and sub must be the client id");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let nbf = claims["nbf"].as_u64().unwrap_or(0);
    if exp + SKEW < now || nbf > now + SKEW {
        return Err("outside its validity");
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty())
        .ok_or("no jti")?;
    if !s.lock().jtis.insert(jti.to_owned()) {
        return Err("jti replayed");
    }
    Ok(())
}

/// Checks the bearer token; `Some` is the 401 answer.
fn authorize(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut inner = s.lock();
    let valid = token
        .and_then(|t| inner.tokens.get(t))
        .is_some_and(|expiry| Instant::now() < *expiry);
    if valid {
        return None;
    }
    inner.counters.unauthorized += 1;
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response(),
    )
}

/// A parsed request: the text of each element by local name (first occurrence; `None` for
/// `i:nil`), and the `Key`/`Value` pairs of WCF dictionaries.
struct Request {
    root: String,
    fields: HashMap<String, Option<String>>,
    properties: HashMap<String, String>,
}

impl Request {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(|v| v.as_deref())
    }
}

fn parse_request(xml: &str) -> Result<Request, String> {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut root = None;
    let mut depth = 0usize;
    let mut fields = HashMap::new();
    let mut properties = HashMap::new();
    let mut key: Option<String> = None;
    let mut text = String::new();
    let mut nil = Vec::new();
    let is_nil = |e: &quick_xml::events::BytesStart<'_>| {
        e.attributes()
            .flatten()
            .any(|a| a.key.local_name().as_ref() == b"nil" && a.value.as_ref() == b"true")
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if depth == 0 {
                    if root.is_some() {
                        return Err("two root elements".into());
                    }
                    root = Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                }
                depth += 1;
                nil.push(is_nil(&e));
                text.clear();
            }
            Event::Empty(e) => {
                if depth == 0 {
                    return Err("empty root".into());
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let value = (!is_nil(&e)).then(String::new);
                fields.entry(name).or_insert(value);
            }
            Event::Text(t) => text.push_str(&t.unescape().map_err(|e| e.to_string())?),
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| e.to_string())?),
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let value = (!nil.pop().unwrap_or(false)).then(|| text.trim().to_owned());
                match name.as_str() {
                    "Key" => key = value.clone(),
                    "Value" => {
                        if let (Some(k), Some(v)) = (key.take(), value.clone()) {
                            properties.insert(k, v);
                        }
                    }
                    _ => {}
                }
                fields.entry(name).or_insert(value);
                depth = depth.saturating_sub(1);
                text.clear();
            }
            Event::DocType(_) => return Err("DOCTYPE".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    match root {
        Some(root) if depth == 0 => Ok(Request {
            root,
            fields,
            properties,
        }),
        _ => Err("incomplete document".into()),
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn nil_or(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("<{name}>{}</{name}>", esc(v)),
        None => format!("<{name} i:nil=\"true\"/>"),
    }
}

/// An answer in the shape of the published traces.
struct Answer<'a> {
    value: &'a str,
    message: Option<&'a str>,
    session_id: Option<&'a str>,
    auth_result: Option<&'a str>,
    upn: Option<&'a str>,
    affinity: Option<String>,
}

impl<'a> Answer<'a> {
    fn new(value: &'a str, message: Option<&'a str>) -> Self {
        Answer {
            value,
            message,
            session_id: None,
            auth_result: None,
            upn: None,
            affinity: None,
        }
    }

    fn result(&self) -> String {
        let retry = self.value == "AuthenticationPending";
        format!(
            "<Result><Value>{}</Value>{}<Retry>{retry}</Retry><Error i:nil=\"true\"/>\
             <Exception i:nil=\"true\"/><RenewCert>false</RenewCert></Result>",
            esc(self.value),
            nil_or("Message", self.message)
        )
    }

    fn begin(&self) -> Response {
        xml_response(format!(
            "<BeginTwoWayAuthenticationResponse xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
             <Version>1</Version>{}{}{}{}{}<ValidEntropyNumber>0</ValidEntropyNumber>\
             </BeginTwoWayAuthenticationResponse>",
            self.result(),
            nil_or("SessionId", self.session_id),
            nil_or("AuthenticationResult", self.auth_result),
            nil_or("UserPrincipalName", self.upn),
            nil_or("AffinityUrl", self.affinity.as_deref()),
        ))
    }

    fn end(&self) -> Response {
        xml_response(format!(
            "<EndTwoWayAuthenticationResponse xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
             <Version>1</Version>{}{}<LocationData i:nil=\"true\"/>\
             <CompletedInteractively>{}</CompletedInteractively></EndTwoWayAuthenticationResponse>",
            self.result(),
            nil_or("AuthenticationResult", self.auth_result),
            self.auth_result == Some("true"),
        ))
    }
}

fn xml_response(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

const BLOCKED: &str = "The user is blocked: too many authentication attempts.";

async fn begin(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    if let Some(unauthorized) = authorize(&s, &headers) {
        return unauthorized;
    }
    let req = match parse_request(&body) {
        Ok(r) if r.root == "BeginTwoWayAuthenticationRequest" => r,
        _ => return (StatusCode::BAD_REQUEST, "bad request").into_response(),
    };
    let record = BeginRecord {
        version: req.get("Version").map(str::to_owned),
        user_principal_name: req.get("UserPrincipalName").map(str::to_owned),
        lcid: req.get("Lcid").map(str::to_owned),
        override_number_matching_with_otp: req
            .properties
            .get("OverrideNumberMatchingWithOTP")
            .cloned(),
        context_id: req.get("ContextId").map(str::to_owned),
        sync_call: req.get("SyncCall").map(str::to_owned),
        require_user_match: req.get("RequireUserMatch").map(str::to_owned),
        caller_name: req.get("CallerName").map(str::to_owned),
        caller_ip: req.get("CallerIP").map(str::to_owned),
    };
    let mut inner = s.lock();
    inner.counters.begin_calls += 1;
    inner.begins.push(record.clone());
    let Some(upn) = record.user_principal_name.filter(|u| !u.is_empty()) else {
        return Answer::new(
            "InvalidParameter",
            Some("UserPrincipalName must not be null or empty"),
        )
        .begin();
    };
    if record.sync_call.as_deref() == Some("true") {
        return Answer::new(
            "InvalidParameter",
            Some("SyncCall=true is not implemented by the stand-in"),
        )
        .begin();
    }
    let Some(user) = inner.users.get(&upn).cloned() else {
        return Answer::new("UserNotFound", Some("The specified user was not found")).begin();
    };
    if user.throttled {
        return Answer::new("UserIsBlocked", Some(BLOCKED)).begin();
    }
    if !user.enrolled {
        if record.require_user_match.as_deref() == Some("false") {
            let mut a = Answer::new("Success", None);
            a.auth_result = Some("true");
            return a.begin();
        }
        return Answer::new(
            "NoDefaultAuthenticationMethodIsConfigured",
            Some("No default authentication method was configured for the user"),
        )
        .begin();
    }
    let override_otp = record.override_number_matching_with_otp.as_deref() == Some("true");
    let otp = (override_otp && user.methods.otp()) || !user.methods.push();
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let session_id = hex_guid(&id);
    let kind = if otp {
        Kind::Otp
    } else {
        *inner.counters.pushes.entry(upn.clone()).or_default() += 1;
        Kind::Push { answer: None }
    };
    inner.sessions.insert(
        session_id.clone(),
        Session {
            upn: upn.clone(),
            context_id: record.context_id,
            kind,
            created: Instant::now(),
        },
    );
    drop(inner);
    let mut a = Answer::new("Success", None);
    a.session_id = Some(&session_id);
    a.auth_result = otp.then_some("challenge");
    a.upn = Some(&upn);
    a.affinity = Some(format!(
        "{}{CONNECTOR}/EndTwoWayAuthentication?dc=LOCAL",
        s.base()
    ));
    a.begin()
}

async fn end(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(unauthorized) = authorize(&s, &headers) {
        return unauthorized;
    }
    let req = match parse_request(&body) {
        Ok(r) if r.root == "EndTwoWayAuthenticationRequest" => r,
        _ => return (StatusCode::BAD_REQUEST, "bad request").into_response(),
    };
    let mut inner = s.lock();
    inner.counters.end_calls += 1;
    if query.contains_key("dc") {
        inner.counters.affinity_calls += 1;
    }
    let Some(session_id) = req.get("SessionId").filter(|id| !id.is_empty()) else {
        return Answer::new(
            "InvalidParameter",
            Some("SessionId must not be null or empty"),
        )
        .end();
    };
    let invalid = || {
        Answer::new(
            "InvalidSession",
            Some("The specified session is invalid or may have expired"),
        )
        .end()
    };
    let Some(session) = inner.sessions.get(session_id) else {
        return invalid();
    };
    if req
        .get("ContextId")
        .is_some_and(|c| Some(c) != session.context_id.as_deref())
    {
        return invalid();
    }
    let upn = session.upn.clone();
    let user = inner.users.get(&upn).cloned();
    let elapsed = session.created.elapsed();
    let expired = elapsed > s.cfg.session_lifetime;
    let is_push = matches!(session.kind, Kind::Push { .. });
    let explicit = match session.kind {
        Kind::Push { answer } => answer,
        Kind::Otp => None,
    };
    if user.as_ref().is_none_or(|u| u.throttled) {
        inner.sessions.remove(session_id);
        return Answer::new("UserIsBlocked", Some(BLOCKED)).end();
    }
    let user = user.unwrap_or_else(|| EntraUser::new(Methods::OtpAndPush));
    let done = |inner: &mut Inner, value: &'static str, ok: bool| {
        inner.sessions.remove(session_id);
        let mut a = Answer::new(value, None);
        a.auth_result = Some(if ok { "true" } else { "false" });
        a.end()
    };
    if is_push {
        if expired && explicit.is_none() {
            return done(&mut inner, "PhoneAppNoResponse", false);
        }
        let answer = explicit.or(match user.push {
            PushBehaviour::Approve { after } if elapsed >= after => Some(true),
            PushBehaviour::Deny { after } if elapsed >= after => Some(false),
            _ => None,
        });
        return match answer {
            Some(true) => done(&mut inner, "Success", true),
            Some(false) => done(&mut inner, "PhoneAppDenied", false),
            None => Answer::new(
                "AuthenticationPending",
                Some("The authentication has not been completed yet, please try again."),
            )
            .end(),
        };
    }
    if expired {
        inner.sessions.remove(session_id);
        return invalid();
    }
    let Some(code) = req.get("AdditionalAuthData").filter(|c| !c.is_empty()) else {
        // Nothing typed yet: the session waits for the code.
        return Answer::new("AuthenticationPending", None).end();
    };
    let code = code.to_owned();
    let used = inner.used_codes.entry(upn).or_default();
    if used.contains(&code) {
        return done(&mut inner, "OathCodeDuplicate", false);
    }
    if user.otp_codes.contains(&code) {
        used.insert(code);
        done(&mut inner, "Success", true)
    } else {
        done(&mut inner, "OathCodeIncorrect", false)
    }
}

fn hex_guid(b: &[u8; 16]) -> String {
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

#[cfg(test)]
mod tests {
    //! The stand-in's own checks over plain HTTP (std only, no client library): the provider in
    //! `portcullis-mfa` exercises it fully.
    #![allow(clippy::unwrap_used)]

    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use super::*;

    /// One HTTP/1.1 request; returns the status and body.
    fn http(addr: SocketAddr, path: &str, headers: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn form(pairs: &[(&str, &str)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A").replace('/', "%2F")))
            .collect::<Vec<_>>()
            .join("&")
    }

    const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

    fn standin() -> EntraStandin {
        let mut cfg = EntraStandinConfig::new("contoso");
        cfg.client_secret = Some("pw".into());
        EntraStandin::start(cfg)
    }

    fn get_token(s: &EntraStandin) -> String {
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", MFA_CLIENT_ID),
            ("scope", MFA_SCOPE),
            ("client_secret", "pw"),
        ]);
        let (status, body) = http(s.addr(), "/contoso/oauth2/v2.0/token", FORM, &body);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 3599);
        v["access_token"].as_str().unwrap().to_owned()
    }

    #[test]
    fn token_endpoint_checks_the_request() {
        let s = standin();
        get_token(&s);
        let cases = [
            (
                "contoso",
                "client_credentials",
                MFA_CLIENT_ID,
                MFA_SCOPE,
                "bad",
                401,
                "invalid_client",
            ),
            (
                "contoso",
                "password",
                MFA_CLIENT_ID,
                MFA_SCOPE,
                "pw",
                400,
                "unsupported_grant_type",
            ),
            (
                "contoso",
                "client_credentials",
                "other",
                MFA_SCOPE,
                "pw",
                400,
                "unauthorized_client",
            ),
            (
                "contoso",
                "client_credentials",
                MFA_CLIENT_ID,
                "https://graph.microsoft.com/.default",
                "pw",
                400,
                "invalid_scope",
            ),
            (
                "fabrikam",
                "client_credentials",
                MFA_CLIENT_ID,
                MFA_SCOPE,
                "pw",
                400,
                "invalid_request",
            ),
        ];
        for (tenant, grant, client, scope, secret, status, error) in cases {
            let body = form(&[
                ("grant_type", grant),
                ("client_id", client),
                ("scope", scope),
                ("client_secret", secret),
            ]);
            let (got, body) = http(
                s.addr(),
                &format!("/{tenant}/oauth2/v2.0/token"),
                FORM,
                &body,
            );
            assert_eq!(got, status, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], error);
        }
        assert_eq!(s.token_requests(), 6);
    }

    #[test]
    fn connector_requires_a_token_and_answers_xml() {
        let s = standin();
        let mut user = EntraUser::new(Methods::OtpAndPush);
        user.otp_codes = vec!["123456".into()];
        s.set_user("alice@contoso.com", user);
        let begin = "<BeginTwoWayAuthenticationRequest><Version>1.0</Version>\
            <UserPrincipalName>alice@contoso.com</UserPrincipalName><Lcid>en-us</Lcid>\
            <AuthenticationMethodProperties xmlns:a=\"http://schemas.microsoft.com/2003/10/Serialization/Arrays\">\
            <a:KeyValueOfstringstring><a:Key>OverrideNumberMatchingWithOTP</a:Key><a:Value>true</a:Value></a:KeyValueOfstringstring>\
            </AuthenticationMethodProperties><ContextId>c1</ContextId><SyncCall>false</SyncCall>\
            <RequireUserMatch>true</RequireUserMatch><CallerName>radius</CallerName><CallerIP>UNKNOWN:</CallerIP>\
            </BeginTwoWayAuthenticationRequest>";
        let path = format!("{CONNECTOR}/BeginTwoWayAuthentication");
        let (status, _) = http(s.addr(), &path, "", begin);
        assert_eq!(status, 401);
        let auth = format!("Authorization: Bearer {}\r\n", get_token(&s));
        let (status, body) = http(s.addr(), &path, &auth, begin);
        assert_eq!(status, 200);
        assert!(body.contains("<Value>Success</Value>"), "{body}");
        assert!(body.contains("<AuthenticationResult>challenge</AuthenticationResult>"));
        let session = body
            .split("<SessionId>")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap();
        let end = |code: &str| {
            format!(
                "<EndTwoWayAuthenticationRequest><Version>1.0</Version><SessionId>{session}</SessionId>\
                 <ContextId>c1</ContextId><AdditionalAuthData>{code}</AdditionalAuthData></EndTwoWayAuthenticationRequest>"
            )
        };
        let end_path = format!("{CONNECTOR}/EndTwoWayAuthentication");
        let (_, body) = http(s.addr(), &end_path, &auth, &end("123456"));
        assert!(body.contains("<Value>Success</Value>"), "{body}");
        assert!(body.contains("<AuthenticationResult>true</AuthenticationResult>"));
        // The session is closed.
        let (_, body) = http(s.addr(), &end_path, &auth, &end("123456"));
        assert!(body.contains("<Value>InvalidSession</Value>"), "{body}");
        assert_eq!(
            s.begin_requests()[0]
                .override_number_matching_with_otp
                .as_deref(),
            Some("true")
        );
        s.expire_tokens();
        let (status, _) = http(s.addr(), &path, &auth, begin);
        assert_eq!(status, 401);
    }

    #[test]
    fn unavailable_closes_the_port() {
        let s = standin();
        s.unavailable(true);
        assert!(TcpStream::connect(s.addr()).is_err());
        s.unavailable(false);
        get_token(&s);
    }

    #[test]
    fn request_parser() {
        let r = parse_request(
            "<a:R xmlns:a=\"x\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><a:U>x &amp; y</a:U><N i:nil=\"true\"/><E/></a:R>",
        )
        .unwrap();
        assert_eq!(r.root, "R");
        assert_eq!(r.get("U"), Some("x & y"));
        assert_eq!(r.fields.get("N"), Some(&None));
        assert_eq!(r.get("E"), Some(""));
        assert!(parse_request("<R><U></R>").is_err());
        assert!(parse_request("").is_err());
    }
}
