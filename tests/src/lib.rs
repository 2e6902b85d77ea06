//! Test harness for the black-box tests: starts the real `portcullis` binary on a throw-away
//! configuration, drives it with real peers (`radclient`) and with a small raw RADIUS client
//! written here from the RFCs (independent of `portcullis-proto`), reads its counters, and
//! makes network namespaces for the XDP tests.
//!
//! Helpers panic with a message instead of returning errors: a failing step is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

pub const SECRET: &str = "testing123";

// ---- locating things ----------------------------------------------------------------------

/// The portcullis binary under test (`cargo xtask test` sets PORTCULLIS_BIN).
pub fn portcullis_bin() -> PathBuf {
    let p = std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis")
        });
    assert!(
        p.exists(),
        "portcullis binary not found at {} — run the tests with `cargo xtask test`",
        p.display()
    );
    p
}

/// Fails the test (never skips) when a peer the tests need is missing.
pub fn require_tool(name: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{name}` is not installed — run the tests with `cargo xtask test`, which installs it"
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A UDP port that was free a moment ago on 127.0.0.1 and ::1.
pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        if UdpSocket::bind(("::1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

// ---- the server ---------------------------------------------------------------------------

pub struct User {
    pub name: &'static str,
    pub password: &'static str,
    pub chap: bool,
}

pub const ALICE: User = User {
    name: "alice",
    password: "Alice#Pass1",
    chap: true,
};

/// How to start a test server.
pub struct ServerOpts {
    pub users: Vec<User>,
    /// `[[client]]` tables; `{SECRET}` is the test secret.
    pub clients: String,
    /// Extra top-level TOML (e.g. a `[xdp]` table). XDP is off unless this says otherwise.
    pub xdp: String,
    /// Listen addresses; default: 127.0.0.1 with a free port pair (auth, auth+1).
    pub auth_listen: Vec<String>,
    pub acct_listen: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// TOTP enrollments (user, base32 seed) made with `portcullis users totp enroll` into
    /// `totp.toml`, for a provider declared as `store = "totp.toml"`, `key_file = "users.key"`.
    pub totp: Vec<(&'static str, &'static str)>,
    /// Extra TOML: an `[mfa]` table and `[[mfa.provider]]` entries.
    pub mfa: String,
    /// User attributes (user, key, value) set with `portcullis users set-attr`.
    pub user_attrs: Vec<(&'static str, &'static str, &'static str)>,
    /// Group memberships (user, group) given to `portcullis users add --group`.
    pub user_groups: Vec<(&'static str, &'static str)>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            users: vec![ALICE],
            clients: format!(
                "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\n"
            ),
            xdp: "[xdp]\nmode = \"off\"\n".into(),
            auth_listen: Vec::new(),
            acct_listen: Vec::new(),
            netns: None,
            totp: Vec::new(),
            mfa: String::new(),
            user_attrs: Vec::new(),
            user_groups: Vec::new(),
        }
    }
}

pub struct Server {
    child: Option<Child>,
    netns: Option<String>,
    pub dir: tempfile::TempDir,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub control: PathBuf,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    pub config_path: PathBuf,
}

/// Runs `portcullis` with arguments, returning (status, stdout, stderr).
pub fn portcullis(args: &[&str], stdin: Option<&str>) -> (ExitStatus, String, String) {
    let mut c = Command::new(portcullis_bin());
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn portcullis");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a users file (and CHAP key) with `portcullis users`, the way an admin would.
pub fn make_users(dir: &Path, users: &[User]) -> (PathBuf, PathBuf) {
    make_users_in_groups(dir, users, &[])
}

/// [`make_users`], with group memberships (user, group).
pub fn make_users_in_groups(
    dir: &Path,
    users: &[User],
    groups: &[(&str, &str)],
) -> (PathBuf, PathBuf) {
    let file = dir.join("users.toml");
    let key = dir.join("users.key");
    let (st, _, err) = portcullis(
        &[
            "users",
            "--file",
            file.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "gen-key",
        ],
        None,
    );
    assert!(st.success(), "users gen-key failed: {err}");
    for u in users {
        let mut args = vec![
            "users",
            "--file",
            file.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "add",
            u.name,
            "--password-stdin",
        ];
        if u.chap {
            args.push("--chap");
        }
        for (_, g) in groups.iter().filter(|(n, _)| *n == u.name) {
            args.extend(["--group", g]);
        }
        let (st, _, err) = portcullis(&args, Some(&format!("{}\n", u.password)));
        assert!(st.success(), "users add {} failed: {err}", u.name);
    }
    (file, key)
}

impl Server {
    pub fn start(opts: ServerOpts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (users, key) = make_users_in_groups(dir.path(), &opts.users, &opts.user_groups);
        for (user, k, v) in &opts.user_attrs {
            let (st, _, err) = portcullis(
                &[
                    "users",
                    "--file",
                    users.to_str().unwrap(),
                    "set-attr",
                    user,
                    k,
                    v,
                ],
                None,
            );
            assert!(st.success(), "set-attr {user} {k} failed: {err}");
        }
        for (user, seed) in &opts.totp {
            let (st, _, err) = portcullis(
                &[
                    "users",
                    "--file",
                    users.to_str().unwrap(),
                    "--key-file",
                    key.to_str().unwrap(),
                    "totp",
                    "enroll",
                    user,
                    "--seed",
                    seed,
                ],
                None,
            );
            assert!(st.success(), "totp enroll {user} failed: {err}");
        }
        let port = free_port();
        let auth_listen = if opts.auth_listen.is_empty() {
            vec![format!("127.0.0.1:{port}")]
        } else {
            opts.auth_listen.clone()
        };
        let acct_listen = if opts.acct_listen.is_empty() {
            vec![format!("127.0.0.1:{}", port + 1)]
        } else {
            opts.acct_listen.clone()
        };
        let q = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "data_dir = \"data\"\n\
             [server]\nauth_listen = [{}]\nacct_listen = [{}]\nshards = 2\nshutdown_grace_seconds = 5\n\
             {}\n\
             [users]\nfile = \"{}\"\nchap_key_file = \"{}\"\n\
             [log]\nlevel = \"debug\"\n\
             {}\n{}",
            q(&auth_listen),
            q(&acct_listen),
            opts.xdp,
            users.display(),
            key.display(),
            opts.clients,
            opts.mfa,
        );
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).unwrap();
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        std::fs::File::create(&log_path).unwrap();
        let child = spawn_serve(&config_path, &log_path, opts.netns.as_deref());
        let mut s = Server {
            netns: opts.netns.clone(),
            child: Some(child),
            auth: auth_listen[0].parse().unwrap(),
            acct: acct_listen[0].parse().unwrap(),
            control: data_dir.join("portcullis.sock"),
            data_dir,
            log_path,
            config_path,
            dir,
        };
        s.wait_ready();
        s
    }

    /// Waits (bounded) until the control socket answers, failing with the server log otherwise.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited during start-up ({st}):\n{}", self.log());
            }
            if self.try_stats().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not become ready in 20 s:\n{}", self.log());
    }

    /// The server's log so far. Log lines reach the file through the server's writer thread,
    /// so this reads until the file has stopped growing (bounded), not a half-flushed state.
    pub fn log(&self) -> String {
        let read = || std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let now = read();
            if now.len() == last.len() || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn try_stats(&self) -> Option<BTreeMap<String, String>> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.control).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn stats(&self) -> BTreeMap<String, String> {
        self.try_stats()
            .unwrap_or_else(|| panic!("control socket not answering:\n{}", self.log()))
    }

    /// A counter, 0 when absent.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()
            .get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} = {v} is not a number"))
            })
            .unwrap_or(0)
    }

    /// SIGTERM, then wait for the exit status (bounded).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_bounded(&mut child, Duration::from_secs(20))
    }

    /// Sends a signal to the server (e.g. SIGHUP to reload).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("server stopped").id() as i32;
        // SAFETY: plain kill(2) on our child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Starts the server again, after [`Server::kill9`] or [`Server::terminate`], with the same
    /// configuration and data directory; its log goes on in the same file.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.child = Some(spawn_serve(
            &self.config_path,
            &self.log_path,
            self.netns.as_deref(),
        ));
        self.wait_ready();
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// All accounting records written so far (JSON lines of every daily file).
    pub fn accounting_lines(&self) -> Vec<String> {
        let dir = self.data_dir.join("accounting");
        let mut lines = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            // The daily files only, not the journal beside them.
            let mut files: Vec<_> = rd
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect();
            files.sort();
            for f in files {
                lines.extend(
                    std::fs::read_to_string(&f)
                        .unwrap()
                        .lines()
                        .map(str::to_owned),
                );
            }
        }
        lines
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `portcullis serve --config CONFIG`, its output appended to `log`.
fn spawn_serve(config: &Path, log: &Path, netns: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(portcullis_bin());
            c
        }
        None => Command::new(portcullis_bin()),
    };
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .env("RUST_LOG", "debug");
    cmd.spawn().expect("spawn portcullis serve")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- radclient ----------------------------------------------------------------------------

#[derive(Debug)]
pub struct RadReply {
    /// e.g. "Access-Accept"; None when no reply came.
    pub code: Option<String>,
    pub output: String,
}

/// Sends one request with `radclient` (`cmd` is auth, acct or status) and reports the reply.
pub fn radclient(
    netns: Option<&str>,
    server: SocketAddr,
    cmd: &str,
    secret: &str,
    attrs: &str,
) -> RadReply {
    require_tool("radclient");
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "radclient"]);
            c
        }
        None => Command::new("radclient"),
    };
    if server.is_ipv6() {
        c.arg("-6");
    }
    c.args(["-x", "-r", "1", "-t", "1"])
        .arg(server.to_string())
        .args([cmd, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn radclient");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = output.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Received ")?;
        Some(rest.split_whitespace().next()?.to_owned())
    });
    RadReply { code, output }
}

/// A PAP Access-Request through radclient, with Message-Authenticator (radclient fills it in).
pub fn rad_pap(netns: Option<&str>, server: SocketAddr, user: &str, password: &str) -> RadReply {
    radclient(
        netns,
        server,
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{password}\", Message-Authenticator = 0x00\n"),
    )
}

// ---- a raw RADIUS client written from the RFCs ---------------------------------------------

pub mod attr {
    pub const STATE: u8 = 24;
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
pub const STATUS_SERVER: u8 = 12;
pub const ACCESS_CHALLENGE: u8 = 11;

pub type Attrs = Vec<(u8, Vec<u8>)>;

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut m = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Encodes a packet: header, then attributes in order; `ma` adds a Message-Authenticator first
/// and computes it (RFC 3579 §3.2: HMAC-MD5 over the packet with the field zeroed).
/// For Accounting-Request the Request Authenticator is computed (RFC 2866 §3).
pub fn encode(
    code: u8,
    id: u8,
    authenticator: [u8; 16],
    attrs: &Attrs,
    ma: bool,
    secret: &str,
) -> Vec<u8> {
    let mut p = vec![code, id, 0, 0];
    let auth_field = if code == ACCOUNTING_REQUEST {
        [0u8; 16]
    } else {
        authenticator
    };
    p.extend_from_slice(&auth_field);
    let mut ma_at = None;
    if ma {
        ma_at = Some(p.len() + 2);
        p.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
        p.extend_from_slice(&[0; 16]);
    }
    for (t, v) in attrs {
        assert!(v.len() <= 253);
        p.push(*t);
        p.push((v.len() + 2) as u8);
        p.extend_from_slice(v);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = ma_at {
        let mac = hmac_md5(secret.as_bytes(), &p);
        p[at..at + 16].copy_from_slice(&mac);
    }
    if code == ACCOUNTING_REQUEST {
        let ra = md5(&[&p, secret.as_bytes()]);
        p[4..20].copy_from_slice(&ra);
    }
    p
}

/// RFC 2865 §5.2 User-Password hiding.
pub fn hide_password(password: &[u8], secret: &str, authenticator: &[u8; 16]) -> Vec<u8> {
    let mut padded = password.to_vec();
    let n = padded.len().div_ceil(16).max(1) * 16;
    padded.resize(n, 0);
    let mut out = Vec::with_capacity(n);
    let mut prev: Vec<u8> = authenticator.to_vec();
    for chunk in padded.chunks(16) {
        let b = md5(&[secret.as_bytes(), &prev]);
        let c: Vec<u8> = chunk.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// RFC 2548 §2.4.2 salt decryption (MS-MPPE-Send-Key / Recv-Key); returns the key.
pub fn salt_decrypt(value: &[u8], secret: &str, request_authenticator: &[u8; 16]) -> Vec<u8> {
    assert!(
        value.len() >= 18 && (value.len() - 2) % 16 == 0,
        "bad salted value length {}",
        value.len()
    );
    assert!(value[0] & 0x80 != 0, "salt high bit not set");
    let salt = &value[..2];
    let mut plain = Vec::new();
    let mut prev: Vec<u8> = [request_authenticator.as_slice(), salt].concat();
    for chunk in value[2..].chunks(16) {
        let b = md5(&[secret.as_bytes(), &prev]);
        plain.extend(chunk.iter().zip(b.iter()).map(|(x, y)| x ^ y));
        prev = chunk.to_vec();
    }
    let len = plain[0] as usize;
    assert!(len < plain.len(), "salted key length byte {len} too large");
    plain[1..1 + len].to_vec()
}

pub fn vsa(vendor: u32, vtype: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vendor.to_be_bytes().to_vec();
    v.push(vtype);
    v.push((value.len() + 2) as u8);
    v.extend_from_slice(value);
    v
}

/// A decoded reply, after checking its Response Authenticator and Message-Authenticator.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u8,
    pub id: u8,
    pub attrs: Attrs,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn get(&self, t: u8) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(a, _)| *a == t)
            .map(|(_, v)| v.as_slice())
    }
    pub fn get_all(&self, t: u8) -> Vec<&[u8]> {
        self.attrs
            .iter()
            .filter(|(a, _)| *a == t)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
    /// Value of a vendor-specific sub-attribute.
    pub fn vsa(&self, vendor: u32, vtype: u8) -> Option<&[u8]> {
        self.get_all(attr::VENDOR_SPECIFIC)
            .into_iter()
            .find_map(|v| {
                (v.len() >= 6
                    && v[..4] == vendor.to_be_bytes()
                    && v[4] == vtype
                    && v.len() >= 4 + v[5] as usize)
                    .then(|| &v[6..4 + v[5] as usize])
            })
    }
}

/// Checks a reply against the request it answers and decodes it; panics on any violation.
pub fn check_reply(raw: &[u8], request: &[u8], secret: &str) -> Reply {
    assert!(raw.len() >= 20, "reply too short");
    let len = u16::from_be_bytes([raw[2], raw[3]]) as usize;
    assert_eq!(len, raw.len(), "reply length field");
    assert_eq!(raw[1], request[1], "reply identifier");
    let req_auth: [u8; 16] = request[4..20].try_into().unwrap();
    // Response Authenticator (RFC 2865 §3).
    let expect = md5(&[&raw[..4], &req_auth, &raw[20..], secret.as_bytes()]);
    assert_eq!(
        &raw[4..20],
        &expect,
        "Response Authenticator does not verify"
    );
    let mut attrs = Vec::new();
    let mut i = 20;
    while i < raw.len() {
        let t = raw[i];
        let l = raw[i + 1] as usize;
        assert!(l >= 2 && i + l <= raw.len(), "bad attribute in reply");
        attrs.push((t, raw[i + 2..i + l].to_vec()));
        i += l;
    }
    // Message-Authenticator: present, first, and valid (Blast-RADIUS hardening).
    assert_eq!(
        attrs.first().map(|a| a.0),
        Some(attr::MESSAGE_AUTHENTICATOR),
        "Message-Authenticator is not the first attribute of the reply"
    );
    // The Authenticator field during the HMAC: the request's for answers to Access-Request and
    // Status-Server, zeros for an Accounting-Response to an Accounting-Request (what FreeRADIUS
    // signs and radclient verifies).
    let field = if raw[0] == ACCOUNTING_RESPONSE && request[0] == ACCOUNTING_REQUEST {
        [0u8; 16]
    } else {
        req_auth
    };
    let mut zeroed = raw.to_vec();
    zeroed[4..20].copy_from_slice(&field);
    zeroed[22..38].fill(0);
    assert_eq!(
        &raw[22..38],
        &hmac_md5(secret.as_bytes(), &zeroed),
        "reply Message-Authenticator invalid"
    );
    Reply {
        code: raw[0],
        id: raw[1],
        attrs,
        raw: raw.to_vec(),
    }
}

/// A UDP client socket with a bounded receive timeout.
pub struct RawClient {
    pub sock: UdpSocket,
}

impl RawClient {
    pub fn new(server: SocketAddr) -> RawClient {
        let bind = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        sock.connect(server).unwrap();
        RawClient { sock }
    }

    pub fn send(&self, pkt: &[u8]) {
        self.sock.send(pkt).unwrap();
    }

    /// The next datagram, or None after the timeout.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    pub fn exchange(&self, pkt: &[u8]) -> Option<Vec<u8>> {
        self.send(pkt);
        self.recv()
    }
}

/// A random-enough authenticator for tests (distinct per call).
pub fn authenticator(seed: u64) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(seed.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:?}", Instant::now()).as_bytes());
    h.finalize().into()
}

/// Builds a PAP Access-Request.
pub fn pap_request(id: u8, user: &str, password: &str, ma: bool, extra: Attrs) -> Vec<u8> {
    let auth = authenticator(u64::from(id));
    let mut attrs: Attrs = vec![
        (attr::USER_NAME, user.as_bytes().to_vec()),
        (
            attr::USER_PASSWORD,
            hide_password(password.as_bytes(), SECRET, &auth),
        ),
        (attr::NAS_IP_ADDRESS, vec![127, 0, 0, 1]),
    ];
    attrs.extend(extra);
    encode(ACCESS_REQUEST, id, auth, &attrs, ma, SECRET)
}

// ---- network namespaces -----------------------------------------------------------------

/// A network namespace made by the test and deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        assert!(
            is_root(),
            "network namespace tests need root (CI and `cargo xtask test` run as root)"
        );
        require_tool("ip");
        let name = format!("pc-{tag}-{}", std::process::id());
        // A leftover from a killed run, if any (normally there is none: no message for that).
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name} failed");
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "in netns {}: {args:?} failed", self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
