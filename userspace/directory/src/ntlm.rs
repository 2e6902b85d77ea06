//! MS-CHAPv2 against the domain through Samba: a pool of long-running
//! `ntlm_auth --helper-protocol=ntlm-server-1 --allow-mschapv2` processes, each answering one
//! request at a time over its stdin/stdout.
//!
//! A request is `Key: value` lines ended by a line `.`: `Username`, `NT-Domain`,
//! `LANMAN-Challenge` (the 8-byte MS-CHAPv2 ChallengeHash, hex), `NT-Response` (24 bytes, hex)
//! and `Request-User-Session-Key: Yes`. The answer is `Authenticated: Yes` with
//! `User-Session-Key` (for MS-CHAPv2: MD4 of the NT hash, the `PasswordHashHash` the
//! authenticator response and the MPPE keys are made from), or `Authenticated: No` with
//! `Authentication-Error` (winbind's description of the NT status), then `.`. Samba 4.17 writes
//! an extra `.` after a refusal; leading `.` lines of an answer are skipped.
//!
//! A helper that times out, exits or says something unexpected is killed and replaced by a new
//! one on the next request; helpers are started ahead of time, never one per request.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::account::Denial;
use crate::config::NtlmConfig;
use crate::error::DirectoryError;
use crate::ldap::lock;

struct Helper {
    // Killed when dropped (kill_on_drop).
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub(crate) enum NtlmAnswer {
    Authenticated { session_key: [u8; 16] },
    Refused(Denial),
}

pub(crate) struct NtlmPool {
    config: NtlmConfig,
    domain: String,
    timeout: Duration,
    idle: Mutex<Vec<Helper>>,
    permits: Semaphore,
}

impl NtlmPool {
    pub(crate) fn new(config: NtlmConfig, domain: String, timeout: Duration) -> Self {
        let helpers = config.helpers.max(1);
        NtlmPool {
            config,
            domain,
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(helpers),
        }
    }

    fn spawn(&self) -> Result<Helper, DirectoryError> {
        let mut c = Command::new(&self.config.program);
        if let Some(conf) = &self.config.smb_conf {
            c.arg(format!("--configfile={}", conf.display()));
        }
        c.arg("--helper-protocol=ntlm-server-1")
            .arg("--allow-mschapv2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = c.spawn().map_err(|e| DirectoryError::Helper {
            message: format!("cannot start {}: {e}", self.config.program.display()),
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(DirectoryError::Internal {
                message: "helper started without pipes".into(),
            });
        };
        Ok(Helper {
            _child: child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Starts the helpers ahead of the first request.
    pub(crate) fn warm(&self) -> Result<(), DirectoryError> {
        let mut idle = lock(&self.idle);
        while idle.len() < self.config.helpers.max(1) {
            idle.push(self.spawn()?);
        }
        Ok(())
    }

    /// Checks an MS-CHAPv2 NT-Response for `user` (the sAMAccountName) against the domain.
    pub(crate) async fn mschapv2(
        &self,
        user: &str,
        challenge_hash: &[u8; 8],
        nt_response: &[u8; 24],
    ) -> Result<NtlmAnswer, DirectoryError> {
        let _permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| DirectoryError::Timeout {
                operation: "waiting for a free NTLM helper",
                after: self.timeout,
            })?
            .map_err(|_| DirectoryError::Internal {
                message: "helper pool closed".into(),
            })?;
        let pooled = lock(&self.idle).pop();
        let mut helper = match pooled {
            Some(h) => h,
            None => self.spawn()?,
        };
        let mut request = String::with_capacity(256);
        request.push_str(&field("Username", user));
        request.push_str(&field("NT-Domain", &self.domain));
        request.push_str("LANMAN-Challenge: ");
        request.push_str(&hex::encode(challenge_hash));
        request.push_str("\nNT-Response: ");
        request.push_str(&hex::encode(nt_response));
        request.push_str("\nRequest-User-Session-Key: Yes\n.\n");
        let exchange = async {
            helper.stdin.write_all(request.as_bytes()).await?;
            helper.stdin.flush().await?;
            read_answer(&mut helper.stdout).await
        };
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                // The helper is dropped (killed): the next request starts a new one.
                return Err(DirectoryError::Timeout {
                    operation: "NTLM helper exchange",
                    after: self.timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(DirectoryError::Helper {
                    message: format!("helper died: {e}"),
                })
            }
            Ok(Ok(a)) => a,
        };
        let result = interpret(&answer);
        if result.is_ok() {
            lock(&self.idle).push(helper);
        }
        result
    }
}

/// A `Key: value` line, base64 (`Key:: ...`) when the value is not plain printable ASCII.
fn field(key: &str, value: &str) -> String {
    if value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && !value.starts_with(' ') {
        format!("{key}: {value}\n")
    } else {
        format!("{key}:: {}\n", base64(value.as_bytes()))
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one answer: its `Key: value` lines up to the terminating `.` (leading `.` skipped).
async fn read_answer(r: &mut BufReader<ChildStdout>) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "helper closed its output",
            ));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l == "." {
            if out.is_empty() {
                continue;
            }
            return Ok(out);
        }
        if out.len() > 32 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "helper answer too long",
            ));
        }
        if let Some((k, v)) = l.split_once(':') {
            out.push((k.to_owned(), v.trim().to_owned()));
        } else {
            out.push((l.to_owned(), String::new()));
        }
    }
}

fn interpret(answer: &[(String, String)]) -> Result<NtlmAnswer, DirectoryError> {
    let get = |k: &str| {
        answer
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    match get("Authenticated") {
        Some("Yes") => {
            let key = get("User-Session-Key").ok_or_else(|| DirectoryError::Helper {
                message: "authenticated without a User-Session-Key".into(),
            })?;
            let mut session_key = [0u8; 16];
            hex::decode_to_slice(key, &mut session_key).map_err(|_| DirectoryError::Helper {
                message: "User-Session-Key is not 16 bytes of hex".into(),
            })?;
            Ok(NtlmAnswer::Authenticated { session_key })
        }
        Some("No") => {
            let error = get("Authentication-Error").unwrap_or("");
            match status_denial(error) {
                Some(d) => Ok(NtlmAnswer::Refused(d)),
                None => Err(DirectoryError::Helper {
                    message: format!("the domain could not check the response: {error}"),
                }),
            }
        }
        _ => Err(DirectoryError::Helper {
            message: format!(
                "unexpected answer from the helper ({})",
                answer
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// winbind reports the NT status by its description (Samba's table of NT status texts) or,
/// with some versions, by its name; both are recognised.
fn status_denial(error: &str) -> Option<Denial> {
    if let Some(d) = error
        .split_whitespace()
        .find(|w| w.starts_with("NT_STATUS_"))
        .and_then(crate::account::ntstatus_denial)
    {
        return Some(d);
    }
    const TEXTS: &[(&str, Denial)] = &[
        (
            "value provided as the current password is not correct",
            Denial::BadCredentials,
        ),
        ("attempted logon is invalid", Denial::BadCredentials),
        ("specified account does not exist", Denial::NoSuchUser),
        (
            "currently disabled and cannot be logged on",
            Denial::AccountDisabled,
        ),
        ("automatically locked", Denial::AccountLockedOut),
        ("account has expired", Denial::AccountExpired),
        ("password has expired", Denial::PasswordExpired),
        (
            "must be changed before logging on",
            Denial::PasswordMustChange,
        ),
        ("time restrictions", Denial::InvalidLogonHours),
        ("source workstation", Denial::AccountRestriction),
        ("some user account restriction", Denial::AccountRestriction),
    ];
    TEXTS
        .iter()
        .find(|(t, _)| error.contains(t))
        .map(|(_, d)| *d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn answers() {
        match interpret(&a(&[
            ("Authenticated", "Yes"),
            ("User-Session-Key", "000102030405060708090A0B0C0D0E0F"),
        ]))
        .unwrap()
        {
            NtlmAnswer::Authenticated { session_key } => assert_eq!(session_key[15], 15),
            NtlmAnswer::Refused(_) => panic!(),
        }
        let refused = |text: &str| match interpret(&a(&[
            ("Authenticated", "No"),
            ("Authentication-Error", text),
        ])) {
            Ok(NtlmAnswer::Refused(d)) => Some(d),
            _ => None,
        };
        assert_eq!(
            refused("When trying to update a password, this return status indicates that the value provided as the current password is not correct."),
            Some(Denial::BadCredentials)
        );
        assert_eq!(
            refused("The referenced account is currently disabled and cannot be logged on to."),
            Some(Denial::AccountDisabled)
        );
        assert_eq!(
            refused("NT_STATUS_ACCOUNT_LOCKED_OUT"),
            Some(Denial::AccountLockedOut)
        );
        assert_eq!(refused("No logon servers are currently available"), None);
        assert!(interpret(&a(&[("BH", "")])).is_err());
    }

    #[test]
    fn fields() {
        assert_eq!(field("Username", "alice"), "Username: alice\n");
        assert_eq!(field("Username", "j\u{f6}rg"), "Username:: asO2cmc=\n");
        assert_eq!(base64(b"ad-alice"), "YWQtYWxpY2U=");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
