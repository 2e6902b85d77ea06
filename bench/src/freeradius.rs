//! A FreeRADIUS 3 of our own to compare with: installed from Debian (`freeradius`) when
//! missing, configured from scratch in a temporary directory (no file of /etc/freeradius is
//! read), started in the foreground pinned with `taskset`, observed and stopped like
//! [`crate::server::OwnServer`].
//!
//! The configuration does the same work as the Portcullis the bench starts, and no more:
//! - one client, 127.0.0.0/8, the same secret,
//!   `require_message_authenticator = yes`; Message-Authenticator added to every
//!   Access-Accept and Access-Reject (`&Message-Authenticator := 0x00` in post-auth: Debian's
//!   3.2.1 does not add it on its own);
//! - the same users with the same credential storage: the very `{SSHA512}` salted hash of the
//!   Portcullis users file as `SSHA2-512-Password` (hex) for PAP, the NT hash as `NT-Password` for
//!   MS-CHAPv2; CHAP needs the password itself, which Portcullis keeps encrypted
//!   (ChaCha20-Poly1305) and FreeRADIUS can only take as `Cleartext-Password` (written only for
//!   the chap scenario, so that the PAP and MS-CHAPv2 runs use the hashes);
//! - accounting into one `detail` file (`locking = no`). FreeRADIUS never fsyncs the detail
//!   file: its Accounting-Response means "written to the page cache", while Portcullis answers
//!   only once the record is durable (its journal synced). The comparison says so;
//! - nothing else: no `preprocess`, `suffix`, `eap`, `expiration`, `logintime`, SQL, no
//!   inner-tunnel or status virtual server, `reject_delay = 0` (the default of 1 s would hold
//!   every reject), no auth logging, no debug (`-f`, not `-X`), 4 MiB receive buffers like
//!   Portcullis's 8 MiB (its default, the kernel's 208 KiB, drops bursts), a worker pool of a
//!   fixed size (`--freeradius-threads`; 0 = no pool, `-t`). Pinned to one core, FreeRADIUS
//!   measured fastest here with the smallest pool (see the README's performance section), so
//!   that is the default.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::request::{password, user_name, Users};
use crate::Scenario;

/// The Debian package and the binary it installs.
const PACKAGE: &str = "freeradius";
const BINARY: &str = "/usr/sbin/freeradius";
/// How long FreeRADIUS may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Installs Debian's `freeradius` when it is missing (as root; otherwise says what to run).
pub fn ensure_installed() -> Result<()> {
    if Path::new(BINARY).is_file() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "FreeRADIUS is not installed ({BINARY} missing): run `sudo apt-get install \
             {PACKAGE}` or run the bench as root, which installs it"
        );
    }
    eprintln!("[bench] FreeRADIUS missing: apt-get install -y --no-install-recommends {PACKAGE}");
    let t = Instant::now();
    for args in [
        vec!["update", "-qq"],
        vec!["install", "-y", "-qq", "--no-install-recommends", PACKAGE],
    ] {
        let st = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        if !st.success() {
            bail!("apt-get {} failed ({st})", args.join(" "));
        }
    }
    // The package enables and starts a system service on the standard ports; ours uses its
    // own ports and configuration, so it does not matter, but leave the machine as it was.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "freeradius"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !Path::new(BINARY).is_file() {
        bail!("apt-get installed {PACKAGE} but {BINARY} does not exist");
    }
    eprintln!("[bench] FreeRADIUS installed in {:.0?}", t.elapsed());
    Ok(())
}

/// The `{SSHA512}` PAP hash of each user in a Portcullis users file, by user name.
pub fn ssha512_by_user(users_toml: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut name: Option<String> = None;
    let value = |line: &str| -> Option<String> {
        let (_, rest) = line.split_once('=')?;
        let rest = rest.trim().strip_prefix('"')?;
        Some(rest.split_once('"')?.0.to_owned())
    };
    for line in users_toml.lines() {
        let line = line.trim();
        if line == "[[user]]" {
            name = None;
        } else if line.starts_with("name ") || line.starts_with("name=") {
            name = value(line);
        } else if line.starts_with("password ") || line.starts_with("password=") {
            if let (Some(n), Some(v)) = (&name, value(line)) {
                if let Some(b64) = v.strip_prefix("{SSHA512}") {
                    out.insert(n.clone(), b64.to_owned());
                }
            }
        }
    }
    out
}

/// The FreeRADIUS `users` file (the `files` module) for `users`, with the PAP hashes taken
/// from the Portcullis users file text.
pub fn users_file(users: &Users, portcullis_users: &str, scenario: Scenario) -> Result<String> {
    let hashes = ssha512_by_user(portcullis_users);
    let mut out = String::from("# Written by portcullis-bench: the users of the Portcullis run.\n");
    for i in 0..users.len() {
        let name = user_name(i as u32);
        let ssha = hashes.get(&name).with_context(|| {
            format!("no {{SSHA512}} hash for {name} in the Portcullis users file")
        })?;
        let nt = hex_upper(users.nt_hash(i));
        let mut checks = Vec::new();
        if scenario == Scenario::Chap {
            checks.push(format!("Cleartext-Password := \"{}\"", password(i as u32)));
        }
        // Hex, not the base64 text: SSHA2-512-Password is an `octets` attribute, and a quoted
        // value that happens to start with "0x" would be read as (invalid) hex.
        let raw = base64_decode(ssha)
            .with_context(|| format!("the {{SSHA512}} hash of {name} is not base64"))?;
        checks.push(format!("SSHA2-512-Password := 0x{}", hex_upper(&raw)));
        checks.push(format!("NT-Password := 0x{nt}"));
        out.push_str(&format!("{name}\t{}\n\n", checks.join(", ")));
    }
    Ok(out)
}

/// Standard base64 (padding optional) to bytes; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The whole radiusd.conf: everything inline, nothing included.
pub fn radiusd_conf(
    dir: &Path,
    auth: SocketAddr,
    acct: SocketAddr,
    secret: &str,
    threads: u32,
) -> String {
    let d = dir.display();
    let (ai, ap, ci, cp) = (auth.ip(), auth.port(), acct.ip(), acct.port());
    // 0 means no pool at all (`-t`); the section must still name a valid pool.
    let threads = threads.max(1);
    format!(
        r#"# Written by portcullis-bench: a minimal FreeRADIUS for the side-by-side benchmark.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
raddbdir = {d}
confdir = {d}
modconfdir = {d}
logdir = {d}/log
radacctdir = {d}/radacct
run_dir = {d}/run
db_dir = {d}
name = freeradius
pidfile = {d}/run/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 262144
hostname_lookups = no

log {{
	destination = files
	file = {d}/log/radius.log
	colourise = no
	auth = no
	auth_badpass = no
	auth_goodpass = no
}}

security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}}

# Sized by --freeradius-threads (fixed, so no thread is started or stopped during a run).
thread pool {{
	start_servers = {threads}
	max_servers = {threads}
	min_spare_servers = 1
	max_spare_servers = {threads}
	max_requests_per_server = 0
	max_queue_size = 65536
}}

client bench {{
	ipaddr = 127.0.0.0/8
	secret = "{secret}"
	require_message_authenticator = yes
}}

modules {{
	pap {{
		normalise = yes
	}}
	chap {{
	}}
	mschap {{
		use_mppe = yes
		require_encryption = no
		require_strong = no
	}}
	files {{
		filename = {d}/users
	}}
	detail {{
		filename = {d}/radacct/detail
		escape_filenames = no
		permissions = 0600
		header = "%t"
		locking = no
	}}
}}

server default {{
	listen {{
		type = auth
		ipaddr = {ai}
		port = {ap}
		recv_buff = 4194304
	}}
	listen {{
		type = acct
		ipaddr = {ci}
		port = {cp}
		recv_buff = 4194304
	}}
	authorize {{
		files
		pap
		chap
		mschap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
		Auth-Type CHAP {{
			chap
		}}
		Auth-Type MS-CHAP {{
			mschap
		}}
	}}
	preacct {{
	}}
	accounting {{
		detail
	}}
	post-auth {{
		update reply {{
			&Message-Authenticator := 0x00
		}}
		Post-Auth-Type REJECT {{
			update reply {{
				&Message-Authenticator := 0x00
			}}
		}}
	}}
}}
"#
    )
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

pub struct FreeRadius {
    child: Child,
    dir: tempfile::TempDir,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
}

impl FreeRadius {
    /// Writes the raddb and starts FreeRADIUS pinned to `cpus`; returns when its log says it
    /// is ready.
    pub fn start(
        cpus: &str,
        users: &Users,
        portcullis_users: &str,
        scenario: Scenario,
        secret: &str,
        threads: u32,
    ) -> Result<Self> {
        ensure_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("freeradius-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        for sub in ["log", "radacct", "run"] {
            fs::create_dir(dir.path().join(sub))?;
        }
        let (auth, acct) = crate::server::free_udp_ports()?;
        write_private(&dir.path().join("dictionary"), "# nothing local\n")?;
        write_private(
            &dir.path().join("users"),
            &users_file(users, portcullis_users, scenario)?,
        )?;
        write_private(
            &dir.path().join("radiusd.conf"),
            &radiusd_conf(dir.path(), auth, acct, secret, threads),
        )?;
        let out = fs::File::create(dir.path().join("log/stdout.log"))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpus).arg(BINARY).arg("-f");
        if threads == 0 {
            // No thread pool: the thread that reads a request also answers it.
            cmd.arg("-t");
        }
        let child = cmd
            .arg("-d")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start taskset -c {cpus} {BINARY}"))?;
        let mut s = Self {
            child,
            dir,
            auth,
            acct,
        };
        s.wait_ready()?;
        Ok(s)
    }

    fn log(&self) -> String {
        let mut text = String::new();
        for f in ["log/radius.log", "log/stdout.log"] {
            text.push_str(&fs::read_to_string(self.dir.path().join(f)).unwrap_or_default());
        }
        text
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "FreeRADIUS exited during start-up ({st}); its log:\n{}",
                    self.log()
                );
            }
            if self.log().contains("Ready to process requests") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "FreeRADIUS did not get ready within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Records in the detail file: each starts with an unindented time-stamp line.
    pub fn detail_records(&self) -> Result<u64> {
        let path = self.dir.path().join("radacct/detail");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))
            .count() as u64)
    }

    /// Errors and warnings of its log.
    pub fn problems(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("Error") || l.contains("ERROR") || l.contains("WARNING"))
            .map(str::to_owned)
            .collect()
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("FreeRADIUS did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
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
    use portcullis_auth::reversible::ReversibleKey;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("T").is_none());
        assert!(base64_decode("T*==").is_none());
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn users_file_carries_the_portcullis_hashes() {
        let key = ReversibleKey::generate(&mut rand::rngs::OsRng);
        let text = crate::server::users_file_text(2, &key).unwrap();
        let hashes = ssha512_by_user(&text);
        assert_eq!(hashes.len(), 2);
        let users = Users::new(2);
        let fr = users_file(&users, &text, Scenario::Pap).unwrap();
        let raw = base64_decode(&hashes["user0001"]).unwrap();
        assert_eq!(raw.len(), 64 + 16);
        assert!(fr.contains(&format!(
            "user0001\tSSHA2-512-Password := 0x{}, NT-Password := 0x",
            hex_upper(&raw)
        )));
        assert!(!fr.contains("Cleartext-Password"));
        let fr = users_file(&users, &text, Scenario::Chap).unwrap();
        assert!(fr.contains("user0000\tCleartext-Password := \"Bench#0000pw\", SSHA2-512"));
    }
}
