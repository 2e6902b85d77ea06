//! A local stand-in for Duo's Auth API v2, following Duo's public documentation.
//!
//! It serves on `127.0.0.1` (an ephemeral port) from a background thread with its own tokio
//! runtime, so it works from plain `#[test]` functions and from `#[tokio::test]` alike:
//!
//! - `GET /auth/v2/ping` (unsigned) and `GET /auth/v2/check` answer `{"time": <unix>}`;
//! - `POST /auth/v2/preauth` answers `result` `auth` (with `devices`), `enroll`, `allow` or
//!   `deny` from the user's script; an unknown user gets `enroll`;
//! - `POST /auth/v2/auth` checks a passcode (`factor=passcode`; each passcode works once) or
//!   sends a push (`factor=push` or `auto`), answering a `txid` with `async=1` or holding the
//!   request until the push is answered;
//! - `GET /auth/v2/auth_status?txid=` long-polls: the first call for a transaction reports its
//!   current state at once (as Duo reports the `pushed` update); later calls are held until the
//!   push is answered or [`DuoStandIn::set_long_poll`] passes (then `waiting`).
//!
//! Every request but `ping` is verified as Duo does: HTTP Basic with the integration key and
//! `hex(HMAC-SHA1(skey, canonical))`, where `canonical` is the `Date` header, the method, the
//! lower-cased `Host` header, the path and the parameters (of the query for GET, of the
//! form-encoded body otherwise) re-encoded (RFC 3986), sorted and `&`-joined, all joined by
//! newlines. A `Date` more than [`MAX_CLOCK_SKEW`] away from now is refused. Failures answer
//! HTTP 401 with Duo's error JSON (`40103 Invalid signature in request credentials` for a bad
//! signature; `40101`, `40102` for missing credentials or an unknown integration key; the codes
//! for a missing or stale date are ours).
//!
//! Pushes are scripted per user ([`PushBehaviour`]) or answered by the test
//! ([`DuoStandIn::answer_push`]); an unanswered push times out after
//! [`DuoStandIn::set_push_timeout`] (Duo's is 60 s) with `status` `timeout`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha1::Sha1;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The largest difference between the request's `Date` and our clock that is accepted.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What preauth says about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Enrolled: a second factor is required (`result: auth`).
    Auth,
    /// Not enrolled (`result: enroll`).
    Enroll,
    /// Refused by policy or disabled (`result: deny`).
    Deny,
    /// Bypass: let in without a second factor (`result: allow`).
    Allow,
}

/// How the user's phone answers a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushBehaviour {
    Approve {
        after: Duration,
    },
    Deny {
        after: Duration,
    },
    /// Nobody answers; the push times out at the stand-in's push timeout.
    Never,
}

/// A scripted user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScript {
    pub status: UserStatus,
    /// Whether the user has a device with the `push` capability.
    pub has_push: bool,
    /// Passcodes that are accepted, each once.
    pub passcodes: Vec<String>,
    pub push: PushBehaviour,
}

impl UserScript {
    /// An enrolled user with a push device that never answers, and no passcodes.
    pub fn enrolled() -> Self {
        UserScript {
            status: UserStatus::Auth,
            has_push: true,
            passcodes: Vec::new(),
            push: PushBehaviour::Never,
        }
    }
}

/// The running stand-in; stopped (listener closed, requests cut) on drop.
pub struct DuoStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DuoStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuoStandIn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DuoStandIn {
    /// Starts a stand-in that accepts requests signed with `ikey` and `skey`.
    ///
    /// # Panics
    /// If no loopback port can be bound or the runtime cannot be built.
    pub fn start(ikey: impl Into<String>, skey: impl Into<String>) -> DuoStandIn {
        let listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port for Duo");
        let addr = listener.local_addr().expect("the stand-in's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared {
            ikey: ikey.into(),
            skey: skey.into(),
            inner: Mutex::new(Inner {
                long_poll: Duration::from_secs(3),
                push_timeout: Duration::from_secs(60),
                ..Inner::default()
            }),
            changed: watch::channel(0).0,
            unavailable: AtomicBool::new(false),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("duo-standin-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the Duo stand-in");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a tokio listener for the Duo stand-in");
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops the connection tasks: held requests are cut.
            })
            .expect("spawn the Duo stand-in thread");
        DuoStandIn {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (the "API hostname" to configure).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces a user.
    pub fn set_user(&self, name: &str, script: UserScript) {
        self.shared.lock().users.insert(name.to_owned(), script);
        self.shared.bump();
    }

    /// Changes how the user answers pushes sent from now on.
    pub fn set_push(&self, name: &str, push: PushBehaviour) {
        if let Some(u) = self.shared.lock().users.get_mut(name) {
            u.push = push;
        }
    }

    /// Answers the user's pending pushes now (approve or deny); with none pending, the next
    /// push the user gets is answered this way as soon as it arrives.
    pub fn answer_push(&self, name: &str, approve: bool) {
        let now = Instant::now();
        {
            let mut inner = self.shared.lock();
            let push_timeout = inner.push_timeout;
            let mut answered = false;
            for tx in inner.txs.values_mut().filter(|t| t.user == name) {
                if tx.settle(now, push_timeout).is_none() {
                    tx.outcome = Some(if approve {
                        Outcome::Allow
                    } else {
                        Outcome::Deny
                    });
                    answered = true;
                }
            }
            if !answered {
                inner.next_answer.insert(name.to_owned(), approve);
            }
        }
        self.shared.bump();
    }

    /// The passcodes the user has not used yet.
    pub fn passcodes(&self, name: &str) -> Vec<String> {
        self.shared
            .lock()
            .users
            .get(name)
            .map(|u| u.passcodes.clone())
            .unwrap_or_default()
    }

    /// How many pushes were sent to the user.
    pub fn pushes_sent(&self, name: &str) -> usize {
        self.shared.lock().pushes.get(name).copied().unwrap_or(0)
    }

    /// How many requests arrived for `path` (e.g. `/auth/v2/auth`), whatever their answer.
    pub fn requests(&self, path: &str) -> usize {
        self.shared.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// While `true`, every request is answered HTTP 503.
    pub fn unavailable(&self, yes: bool) {
        self.shared.unavailable.store(yes, Ordering::SeqCst);
    }

    /// How long `auth_status` holds a request for a push nobody answered (default 3 s).
    pub fn set_long_poll(&self, hold: Duration) {
        self.shared.lock().long_poll = hold;
    }

    /// When an unanswered push times out (default 60 s, as at Duo).
    pub fn set_push_timeout(&self, timeout: Duration) {
        self.shared.lock().push_timeout = timeout;
        self.shared.bump();
    }

    /// Stops serving: the listener is closed (connections are refused) and held requests are
    /// cut. Also done on drop.
    pub fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DuoStandIn {
    fn drop(&mut self) {
        self.close();
    }
}

struct Shared {
    ikey: String,
    skey: String,
    inner: Mutex<Inner>,
    /// Bumped whenever a transaction may have changed; long polls wait on it.
    changed: watch::Sender<u64>,
    unavailable: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, UserScript>,
    txs: HashMap<String, Tx>,
    pushes: HashMap<String, usize>,
    requests: HashMap<String, usize>,
    next_answer: HashMap<String, bool>,
    long_poll: Duration,
    push_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allow,
    Deny,
    Timeout,
}

struct Tx {
    user: String,
    created: Instant,
    behaviour: PushBehaviour,
    outcome: Option<Outcome>,
    /// Whether an `auth_status` call already reported this transaction's state.
    reported: bool,
}

impl Tx {
    /// The outcome at `now`, recorded once reached.
    fn settle(&mut self, now: Instant, push_timeout: Duration) -> Option<Outcome> {
        if self.outcome.is_none() {
            let elapsed = now.saturating_duration_since(self.created);
            self.outcome = match self.behaviour {
                PushBehaviour::Approve { after } if elapsed >= after => Some(Outcome::Allow),
                PushBehaviour::Deny { after } if elapsed >= after => Some(Outcome::Deny),
                _ if elapsed >= push_timeout => Some(Outcome::Timeout),
                _ => None,
            };
        }
        self.outcome
    }

    /// When the outcome may next change by itself.
    fn next_change(&self, push_timeout: Duration) -> Instant {
        let timeout = self.created + push_timeout;
        match self.behaviour {
            PushBehaviour::Approve { after } | PushBehaviour::Deny { after } => {
                timeout.min(self.created + after)
            }
            PushBehaviour::Never => timeout,
        }
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(response: Value) -> Response {
    reply(StatusCode::OK, json!({"stat": "OK", "response": response}))
}

fn fail(status: StatusCode, code: u32, message: &str, detail: Option<&str>) -> Response {
    let mut body = json!({"stat": "FAIL", "code": code, "message": message});
    if let Some(d) = detail {
        body["message_detail"] = json!(d);
    }
    reply(status, body)
}

fn bad_param(name: &str) -> Response {
    fail(
        StatusCode::BAD_REQUEST,
        40002,
        "Invalid request parameters",
        Some(name),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    *shared.lock().requests.entry(path.clone()).or_default() += 1;
    if shared.unavailable.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return bad_param("body");
    };
    let method = parts.method.clone();

    let expected_method = match path.as_str() {
        "/auth/v2/ping" | "/auth/v2/check" | "/auth/v2/auth_status" => Method::GET,
        "/auth/v2/preauth" | "/auth/v2/auth" => Method::POST,
        _ => return fail(StatusCode::NOT_FOUND, 40401, "Resource not found", None),
    };
    if method != expected_method {
        return fail(
            StatusCode::METHOD_NOT_ALLOWED,
            40501,
            "Method not allowed",
            None,
        );
    }
    if path == "/auth/v2/ping" {
        return ok(json!({"time": unix_now()}));
    }

    // The signed parameters: the query of a GET, the form body otherwise.
    let raw = if method == Method::GET {
        parts.uri.query().unwrap_or("").to_owned()
    } else {
        if !body.is_empty() {
            let form = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return bad_param("Content-Type");
            }
        }
        String::from_utf8_lossy(&body).into_owned()
    };
    let Some(params) = parse_params(&raw) else {
        return bad_param("encoding");
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Err(resp) = shared.verify(
        method.as_str(),
        &host,
        &path,
        &params,
        header(header::DATE).as_deref(),
        header(header::AUTHORIZATION).as_deref(),
        SystemTime::now(),
    ) {
        return fail(StatusCode::UNAUTHORIZED, resp.0, resp.1, None);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    match path.as_str() {
        "/auth/v2/check" => ok(json!({"time": unix_now()})),
        "/auth/v2/preauth" => preauth(&shared, get("username")),
        "/auth/v2/auth" => {
            let Some(user) = get("username") else {
                return bad_param("username");
            };
            auth(
                &shared,
                user,
                get("factor").unwrap_or(""),
                get("device"),
                get("passcode"),
                get("async") == Some("1"),
            )
            .await
        }
        _ => match get("txid") {
            Some(txid) => auth_status(&shared, txid).await,
            None => bad_param("txid"),
        },
    }
}

/// A stable device id per user, shaped like Duo's (`DP` and 18 characters).
fn device_id(user: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(b"device")
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(user.as_bytes());
    let hex = hex::encode_upper(mac.finalize().into_bytes());
    format!("DP{}", &hex[..18])
}

fn preauth(shared: &Shared, user: Option<&str>) -> Response {
    let Some(user) = user else {
        return bad_param("username");
    };
    let script = shared.lock().users.get(user).cloned();
    let enroll = json!({
        "result": "enroll",
        "status_msg": "Enroll an authentication device to proceed",
        "enroll_portal_url": "https://127.0.0.1/portal?code=standin",
    });
    let Some(script) = script else {
        return ok(enroll);
    };
    match script.status {
        UserStatus::Enroll => ok(enroll),
        UserStatus::Deny => ok(json!({"result": "deny", "status_msg": "Login denied"})),
        UserStatus::Allow => ok(json!({
            "result": "allow",
            "status_msg": "Two-factor authentication is not required for this user",
        })),
        UserStatus::Auth => {
            let capabilities: &[&str] = if script.has_push {
                &["auto", "push", "sms", "phone", "mobile_otp"]
            } else {
                &["auto", "phone"]
            };
            ok(json!({
                "result": "auth",
                "status_msg": "Account is active",
                "devices": [{
                    "device": device_id(user),
                    "type": "phone",
                    "number": "XXX-XXX-0100",
                    "name": "",
                    "capabilities": capabilities,
                }],
            }))
        }
    }
}

fn decided(result: &str, status: &str, msg: &str) -> Value {
    json!({"result": result, "status": status, "status_msg": msg})
}

fn outcome_json(outcome: Option<Outcome>) -> Value {
    match outcome {
        Some(Outcome::Allow) => decided("allow", "allow", "Success. Logging you in..."),
        Some(Outcome::Deny) => decided("deny", "deny", "Login request denied."),
        Some(Outcome::Timeout) => decided("deny", "timeout", "Login timed out."),
        None => decided(
            "waiting",
            "pushed",
            "Pushed a login request to your device...",
        ),
    }
}

async fn auth(
    shared: &Arc<Shared>,
    user: &str,
    factor: &str,
    device: Option<&str>,
    passcode: Option<&str>,
    is_async: bool,
) -> Response {
    let now = Instant::now();
    let txid;
    {
        let mut inner = shared.lock();
        let Some(script) = inner.users.get_mut(user) else {
            return bad_param("username");
        };
        match script.status {
            UserStatus::Auth => {}
            UserStatus::Allow => {
                return ok(decided("allow", "bypass", "Allowing unknown user"));
            }
            UserStatus::Deny | UserStatus::Enroll => {
                return ok(decided("deny", "deny", "Login denied"));
            }
        }
        let outcome = match factor {
            "passcode" => {
                let Some(code) = passcode else {
                    return bad_param("passcode");
                };
                match script.passcodes.iter().position(|p| p == code) {
                    Some(i) => {
                        script.passcodes.remove(i);
                        Some(Outcome::Allow)
                    }
                    None => {
                        let body = decided("deny", "deny", "Incorrect passcode. Please try again.");
                        if !is_async {
                            return ok(body);
                        }
                        Some(Outcome::Deny)
                    }
                }
            }
            "push" | "auto" if script.has_push => {
                let ours = device_id(user);
                if !matches!(device, Some("auto") | None) && device != Some(ours.as_str()) {
                    return bad_param("device");
                }
                None
            }
            "push" => return bad_param("device"),
            _ => return bad_param("factor"),
        };
        if outcome == Some(Outcome::Allow) && !is_async {
            return ok(outcome_json(outcome));
        }
        let behaviour = script.push;
        let mut tx = Tx {
            user: user.to_owned(),
            created: now,
            behaviour,
            outcome,
            reported: false,
        };
        if outcome.is_none() {
            *inner.pushes.entry(user.to_owned()).or_default() += 1;
            if let Some(approve) = inner.next_answer.remove(user) {
                tx.outcome = Some(if approve {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                });
            }
        }
        txid = format!("{:032x}", rand::thread_rng().gen::<u128>());
        inner.txs.insert(txid.clone(), tx);
    }
    // No bump: a new transaction changes no other one, and waking every held long-poll for
    // each push would make a stand-in with many pending pushes spin.
    if is_async {
        return ok(json!({"txid": txid}));
    }
    // A synchronous push: held until it is answered or times out.
    let push_timeout = shared.lock().push_timeout;
    let outcome = wait_for(shared, &txid, now + push_timeout + Duration::from_secs(1)).await;
    ok(outcome_json(outcome))
}

/// Waits until the transaction has an outcome or `until` passes.
async fn wait_for(shared: &Shared, txid: &str, until: Instant) -> Option<Outcome> {
    let mut changed = shared.changed.subscribe();
    loop {
        changed.borrow_and_update();
        let wake = {
            let mut inner = shared.lock();
            let push_timeout = inner.push_timeout;
            let tx = inner.txs.get_mut(txid)?;
            if let Some(o) = tx.settle(Instant::now(), push_timeout) {
                return Some(o);
            }
            tx.next_change(push_timeout)
        };
        if Instant::now() >= until {
            return None;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(wake.min(until)) => {}
        }
    }
}

async fn auth_status(shared: &Shared, txid: &str) -> Response {
    let now = Instant::now();
    let hold = {
        let mut inner = shared.lock();
        let (push_timeout, long_poll) = (inner.push_timeout, inner.long_poll);
        let Some(tx) = inner.txs.get_mut(txid) else {
            return bad_param("txid");
        };
        let outcome = tx.settle(now, push_timeout);
        if outcome.is_some() || !std::mem::replace(&mut tx.reported, true) {
            return ok(outcome_json(outcome));
        }
        long_poll
    };
    let outcome = wait_for(shared, txid, now + hold).await;
    ok(outcome_json(outcome))
}

impl Shared {
    /// Checks the credentials and the signature of a request; the error is Duo's code and
    /// message for the 401 answer.
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        method: &str,
        host: &str,
        path: &str,
        params: &[(String, String)],
        date: Option<&str>,
        authorization: Option<&str>,
        now: SystemTime,
    ) -> Result<(), (u32, &'static str)> {
        let unauthorized = |code, message| (code, message);
        let creds = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let Some((ikey, sig)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
            return Err(unauthorized(40101, "Missing request credentials"));
        };
        if ikey != self.ikey {
            return Err(unauthorized(
                40102,
                "Invalid integration key in request credentials",
            ));
        }
        let Some(date) = date else {
            return Err(unauthorized(40104, "Missing request timestamp"));
        };
        let fresh = parse_rfc2822(date).is_some_and(|t| {
            let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            t.abs_diff(now) <= MAX_CLOCK_SKEW.as_secs()
        });
        if !fresh {
            return Err(unauthorized(40105, "Invalid request timestamp"));
        }
        let canonical = [
            date.to_owned(),
            method.to_ascii_uppercase(),
            host.to_ascii_lowercase(),
            path.to_owned(),
            canonical_params(params),
        ]
        .join("\n");
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(self.skey.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(canonical.as_bytes());
        let valid = hex::decode(sig).is_ok_and(|sig| mac.verify_slice(&sig).is_ok());
        if !valid {
            return Err(unauthorized(
                40103,
                "Invalid signature in request credentials",
            ));
        }
        Ok(())
    }
}

/// Decodes `application/x-www-form-urlencoded` (also a query string); `None` for bad escapes
/// or non-UTF-8.
fn parse_params(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// RFC 3986 encoding of the canonical form (everything but `A-Za-z0-9-_.~`, upper-case hex).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The parameters as Duo signs them: encoded, sorted, `&`-joined.
fn canonical_params(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses an RFC 2822 date (`[Tue, ]21 Aug 2012 17:29:18 -0000`, zones `+hhmm`, `-hhmm`,
/// `GMT`, `UT`, `UTC`, `Z`) to Unix seconds.
fn parse_rfc2822(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((weekday, rest)) => {
            const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            if !DAYS.contains(&weekday.trim()) {
                return None;
            }
            rest
        }
        None => s,
    };
    let fields: Vec<&str> = s.split_whitespace().collect();
    let [day, month, year, time, zone] = fields.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let year: u64 = year.parse().ok().filter(|y| *y >= 1970)?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = match hms.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [h, m] => (*h, *m, 0),
        _ => return None,
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let offset: i64 = match *zone {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let off = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(i64::try_from(local).ok()? - offset).ok()
}

/// (year, month 1-12, day) to days since 1970-01-01 (proleptic Gregorian, year >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Signs a request the way a Duo client does, for tests of the stand-in itself.
#[cfg(test)]
fn sign_for_tests(
    skey: &str,
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let canonical = [
        date.to_owned(),
        method.to_ascii_uppercase(),
        host.to_ascii_lowercase(),
        path.to_owned(),
        canonical_params(&owned),
    ]
    .join("\n");
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(skey.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
    const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
    const DOC_DATE: &str = "Tue, 21 Aug 2012 17:29:18 -0000";

    fn shared() -> Shared {
        Shared {
            ikey: IKEY.into(),
            skey: SKEY.into(),
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
            unavailable: AtomicBool::new(false),
        }
    }

    fn basic(ikey: &str, sig: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ikey}:{sig}"))
        )
    }

    fn doc_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_345_570_158)
    }

    fn code(resp: Result<(), (u32, &str)>) -> Option<u32> {
        resp.err().map(|(code, _)| code)
    }

    /// Duo's documented example (POST /accounts/v1/account/list, realname=First Last,
    /// username=root) verifies, with the documented signature.
    #[test]
    fn documented_example_verifies() {
        let params = parse_params("username=root&realname=First+Last").unwrap();
        let sig = "2d97d6166319781b5a3a07af39d366f491234edc";
        assert_eq!(
            sign_for_tests(
                SKEY,
                DOC_DATE,
                "POST",
                "api-XXXXXXXX.duosecurity.com",
                "/accounts/v1/account/list",
                &[("realname", "First Last"), ("username", "root")]
            ),
            sig
        );
        let s = shared();
        let check = |ikey: &str, sig: &str, params: &[(String, String)], date: &str| {
            s.verify(
                "POST",
                "API-xxxxxxxx.duosecurity.com",
                "/accounts/v1/account/list",
                params,
                Some(date),
                Some(&basic(ikey, sig)),
                doc_time() + Duration::from_secs(30),
            )
        };
        assert!(check(IKEY, sig, &params, DOC_DATE).is_ok());
        // The same date in another zone spelling is another canonical string.
        assert_eq!(
            code(check(IKEY, sig, &params, "Tue, 21 Aug 2012 17:29:18 GMT")),
            Some(40103)
        );
        let tampered = parse_params("username=root2&realname=First+Last").unwrap();
        assert_eq!(code(check(IKEY, sig, &tampered, DOC_DATE)), Some(40103));
        assert_eq!(
            code(check("DIXXXXXXXXXXXXXXXXXX", sig, &params, DOC_DATE)),
            Some(40102)
        );
        assert_eq!(code(check(IKEY, "zz", &params, DOC_DATE)), Some(40103));
        // Stale: ten minutes later.
        let stale = s.verify(
            "POST",
            "api-xxxxxxxx.duosecurity.com",
            "/accounts/v1/account/list",
            &params,
            Some(DOC_DATE),
            Some(&basic(IKEY, sig)),
            doc_time() + Duration::from_secs(600),
        );
        assert_eq!(code(stale), Some(40105));
        let missing = s.verify(
            "GET",
            "h",
            "/auth/v2/check",
            &[],
            Some(DOC_DATE),
            None,
            doc_time(),
        );
        assert_eq!(code(missing), Some(40101));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_rfc2822(DOC_DATE), Some(1_345_570_158));
        assert_eq!(
            parse_rfc2822("21 Aug 2012 19:29:18 +0200"),
            Some(1_345_570_158)
        );
        assert_eq!(
            parse_rfc2822("Tue, 21 Aug 2012 17:29:18 GMT"),
            Some(1_345_570_158)
        );
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 -0000"), Some(0));
        assert_eq!(
            parse_rfc2822("Tue, 29 Feb 2000 01:01:01 -0000"),
            Some(951_786_061)
        );
        for bad in [
            "",
            "Xyz, 21 Aug 2012 17:29:18 -0000",
            "21 Foo 2012 17:29:18 GMT",
            "21 Aug 2012 25:00:00 GMT",
            "1345570158",
        ] {
            assert_eq!(parse_rfc2822(bad), None, "{bad}");
        }
    }

    #[test]
    fn params() {
        assert_eq!(
            parse_params("b=2&a=x%20y&c=&d").unwrap(),
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "".into())
            ]
        );
        assert_eq!(parse_params("a=%zz"), None);
        assert_eq!(parse_params("a=%4"), None);
        let p = parse_params("username=a%40b.c&factor=push").unwrap();
        assert_eq!(canonical_params(&p), "factor=push&username=a%40b.c");
        assert_eq!(device_id("alice").len(), 20);
    }

    #[test]
    fn transactions_settle() {
        let t0 = Instant::now();
        let mut tx = Tx {
            user: "u".into(),
            created: t0,
            behaviour: PushBehaviour::Approve {
                after: Duration::from_secs(2),
            },
            outcome: None,
            reported: false,
        };
        let timeout = Duration::from_secs(60);
        assert_eq!(tx.settle(t0 + Duration::from_secs(1), timeout), None);
        assert_eq!(tx.next_change(timeout), t0 + Duration::from_secs(2));
        assert_eq!(
            tx.settle(t0 + Duration::from_secs(2), timeout),
            Some(Outcome::Allow)
        );
        tx.behaviour = PushBehaviour::Deny {
            after: Duration::ZERO,
        };
        assert_eq!(
            tx.settle(t0, timeout),
            Some(Outcome::Allow),
            "recorded once"
        );
        let mut never = Tx {
            outcome: None,
            behaviour: PushBehaviour::Never,
            ..tx
        };
        assert_eq!(never.settle(t0 + Duration::from_secs(59), timeout), None);
        assert_eq!(never.settle(t0 + timeout, timeout), Some(Outcome::Timeout));
    }

    #[test]
    fn ping_needs_no_signature_and_check_does() {
        let duo = DuoStandIn::start(IKEY, SKEY);
        let ping = raw_get(duo.addr(), "/auth/v2/ping");
        assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
        assert!(ping.contains(r#""stat":"OK""#), "{ping}");
        let check = raw_get(duo.addr(), "/auth/v2/check");
        assert!(check.starts_with("HTTP/1.1 401"), "{check}");
        assert!(check.contains("40101"), "{check}");
        assert_eq!(duo.requests("/auth/v2/check"), 1);
        duo.unavailable(true);
        let down = raw_get(duo.addr(), "/auth/v2/ping");
        assert!(down.starts_with("HTTP/1.1 503"), "{down}");
        let mut duo = duo;
        duo.close();
        assert!(std::net::TcpStream::connect(duo.addr()).is_err());
    }

    /// A bare HTTP/1.1 GET, returning the whole answer.
    fn raw_get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}
