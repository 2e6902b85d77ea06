//! Starting, observing and stopping a Portcullis of our own: a temporary configuration on
//! free loopback ports, a users file made with the portcullis-auth editing API, the server
//! pinned with `taskset`, its CPU time and RSS read from /proc.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use portcullis_auth::reversible::ReversibleKey;
use portcullis_auth::store::{self, PasswordOptions, UserOptions};
use rand::rngs::OsRng;
use rand::RngCore;

use crate::request::{password, user_name};

/// How long the server may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to stop after SIGTERM (its default shutdown grace is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how the server runs, beyond the defaults of [`OwnServer::start_with`].
pub struct ServerOpts {
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// The `address` of the one client.
    pub client_address: String,
    /// The whole `[xdp]` section.
    pub xdp: String,
    /// More configuration, appended (more `[[client]]`s, `[mfa]`).
    pub extra: String,
    /// `[server] duplicate_cache_entries`, when not the default.
    pub duplicate_cache_entries: Option<usize>,
    /// The users file to use instead of generating one (which holds every credential and is
    /// slow for many users); it must hold the `users` users.
    pub users_text: Option<String>,
    /// The address the server listens on (auth and accounting), instead of 127.0.0.1; the
    /// ports are still chosen free on the caller's loopback, so this is for a server in a
    /// namespace of its own, where every port is free.
    pub listen_ip: Option<IpAddr>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            netns: None,
            client_address: "127.0.0.0/8".to_owned(),
            xdp: "[xdp]\nmode = \"off\"\n".to_owned(),
            extra: String::new(),
            duplicate_cache_entries: None,
            users_text: None,
            listen_ip: None,
        }
    }
}

pub struct OwnServer {
    child: Child,
    dir: tempfile::TempDir,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    /// The users file the server was given (the FreeRADIUS of a comparison gets the same
    /// hashes).
    pub users_text: String,
}

/// What stopping the server found.
pub struct Stopped {
    /// The server's log (stderr), warnings and errors only.
    pub log: String,
}

/// Two distinct free UDP ports on 127.0.0.1 (held together while chosen; released before the
/// server binds them, so another process could in principle take one in between).
pub(crate) fn free_udp_ports() -> Result<(SocketAddr, SocketAddr)> {
    let a = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP port on 127.0.0.1")?;
    let b = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP port on 127.0.0.1")?;
    Ok((a.local_addr()?, b.local_addr()?))
}

/// The users file text for `count` users, every entry written by
/// [`portcullis_auth::store::add_user`], with PAP hash, NT hash and the reversible password
/// CHAP needs.
///
/// `add_user` parses the whole text it is given, so adding N users one after the other to
/// one growing text is quadratic. Each user is added to an empty text instead (which gives
/// the file header and the entry) and the entries are joined under one header.
pub fn users_file_text(count: u32, key: &ReversibleKey) -> Result<String> {
    let mut text = String::from(store::NEW_FILE_HEADER);
    for i in 0..count {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let opts = UserOptions {
            password: PasswordOptions {
                chap: Some((key, nonce)),
                ..PasswordOptions::default()
            },
            ..UserOptions::default()
        };
        let entry = store::add_user("", &user_name(i), &password(i), &opts, &salt)
            .with_context(|| format!("cannot create user {}", user_name(i)))?;
        let entry = entry
            .strip_prefix(store::NEW_FILE_HEADER)
            .context("add_user did not start a new file with its header")?;
        text.push('\n');
        text.push_str(entry.trim_start_matches('\n'));
    }
    Ok(text)
}

fn write_private(path: &Path, content: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

impl OwnServer {
    /// Writes the configuration (the defaults with `opts`) and users, starts `bin` pinned to
    /// `cpus` and waits until its control socket accepts a connection. The free ports are chosen
    /// in the caller's network namespace, which must be `opts.netns` when one is given.
    pub fn start_with(
        bin: &Path,
        cpus: &str,
        shards: usize,
        users: u32,
        secret: &str,
        opts: &ServerOpts,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let (mut auth, mut acct) = free_udp_ports()?;
        if let Some(ip) = opts.listen_ip {
            auth.set_ip(ip);
            acct.set_ip(ip);
        }

        let t = Instant::now();
        let key = ReversibleKey::generate(&mut OsRng);
        let text = match &opts.users_text {
            Some(t) => t.clone(),
            None => users_file_text(users, &key)?,
        };
        // Check that what we wrote loads, before the server tells us less clearly.
        let loaded = portcullis_auth::store::LocalUsers::parse(&text, "users.toml", Some(&key))
            .context("the generated users file does not load")?;
        if loaded.len() != users as usize {
            bail!(
                "the generated users file holds {} users, not {users}",
                loaded.len()
            );
        }
        write_private(&dir.path().join("users.toml"), &text)?;
        write_private(&dir.path().join("users.key"), &key.to_key_file())?;
        eprintln!(
            "[bench] {users} users written in {:.2}s",
            t.elapsed().as_secs_f64()
        );

        let config = format!(
            r#"# Written by portcullis-bench.
data_dir = "data"

[server]
auth_listen = ["{auth}"]
acct_listen = ["{acct}"]
shards = {shards}
{dedup}

{xdp}
[[client]]
name = "bench"
address = "{client_address}"
secret = "{secret}"
require_message_authenticator = true

[users]
file = "users.toml"
chap_key_file = "users.key"

[log]
level = "warn"
format = "text"
{extra}"#,
            dedup = opts
                .duplicate_cache_entries
                .map_or(String::new(), |n| format!("duplicate_cache_entries = {n}")),
            extra = opts.extra,
            xdp = opts.xdp,
            client_address = opts.client_address,
        );
        let config_path = dir.path().join("portcullis.toml");
        write_private(&config_path, &config)?;
        let log_path = dir.path().join("server.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;

        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpus);
        // taskset and `ip netns exec` both exec the next program: the pid stays the server's.
        if let Some(ns) = &opts.netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        let child = cmd
            .arg(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start taskset -c {cpus} {}", bin.display()))?;
        let mut server = Self {
            child,
            dir,
            auth,
            acct,
            users_text: text,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn read_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let sock = self.dir.path().join("data").join("portcullis.sock");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited during start-up ({status}); its log:\n{}",
                    self.read_log()
                );
            }
            if UnixStream::connect(&sock).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server did not open {} within {START_TIMEOUT:?}; its log:\n{}",
                    sock.display(),
                    self.read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The counters of the control socket (`name value` lines).
    pub fn stats(&self) -> Result<BTreeMap<String, String>> {
        let path = self.dir.path().join("data").join("portcullis.sock");
        let mut s = UnixStream::connect(&path)
            .with_context(|| format!("cannot connect to {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's data directory (accounting files, control socket).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's CPU time so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        crate::procfs::process_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// The server's resident set size, in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kib * 1024)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(mut self) -> Result<Stopped> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot send SIGTERM to the server: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; its log:\n{}",
                    self.read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.read_log();
        if !status.success() {
            bail!("the server exited with {status} after SIGTERM; its log:\n{log}");
        }
        Ok(Stopped { log })
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // On an error path: never leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn users_file_loads_with_every_credential() {
        let key = ReversibleKey::generate(&mut OsRng);
        let text = users_file_text(3, &key).unwrap();
        assert!(text.starts_with(store::NEW_FILE_HEADER));
        let users =
            portcullis_auth::store::LocalUsers::parse(&text, "users.toml", Some(&key)).unwrap();
        assert_eq!(users.len(), 3);
        let u = users.get("user0002").unwrap();
        assert!(u.verify_pap(password(2).as_bytes()));
        assert!(!u.verify_pap(b"nope"));
        assert!(u.has_reversible());
        assert!(u.nt_hash().is_some());
        // The same text as adding the users one after the other to one file.
        let listed = store::list_users(&text).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|s| s.has_chap && s.has_nt_hash));
    }
}
