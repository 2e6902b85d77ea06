//! The local user store as the server and the admin see it: loading the configured users file
//! (or the embedded demo users), and the `portcullis users` command that edits it.
//!
//! The file format, hashing and verification live in `portcullis_auth::store`; this module only
//! adds files, prompts and atomic writes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_auth::hash::HashScheme;
use portcullis_auth::reversible::ReversibleKey;
use portcullis_auth::store::{self, LocalUsers, PasswordOptions, UserOptions};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::config::{UsersConfig, UsersSource, EMBEDDED_CHAP_KEY, EMBEDDED_USERS};

/// Loads the users the configuration names. Errors carry file, line and reason.
pub fn load(cfg: &UsersConfig) -> Result<LocalUsers> {
    match &cfg.source {
        UsersSource::None => Ok(LocalUsers::parse("", "<no users file>", None)?),
        UsersSource::Embedded => {
            let key = ReversibleKey::from_key_file(EMBEDDED_CHAP_KEY)
                .context("embedded demo CHAP key")?;
            Ok(LocalUsers::parse(
                EMBEDDED_USERS,
                "<embedded demo users>",
                Some(&key),
            )?)
        }
        UsersSource::File {
            path,
            chap_key_file,
        } => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read users file", path.display()))?;
            let key = match chap_key_file {
                Some(k) => Some(read_key(k)?),
                None => None,
            };
            Ok(LocalUsers::parse(
                &text,
                &path.display().to_string(),
                key.as_ref(),
            )?)
        }
    }
}

pub fn read_key(path: &Path) -> Result<ReversibleKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read CHAP key file", path.display()))?,
    );
    ReversibleKey::from_key_file(&text).with_context(|| format!("{}", path.display()))
}

// ---- `portcullis users` -----------------------------------------------------------------------

#[derive(Args)]
pub struct UsersArgs {
    /// The users file (created when missing).
    #[arg(long, short)]
    file: PathBuf,
    /// The key file for reversibly stored (CHAP) passwords.
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: UsersCmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheme {
    /// Salted SHA-512: fast, for PAP at high request rates.
    Ssha512,
    /// PBKDF2-HMAC-SHA256, 100 000 iterations: slow on purpose, costs milliseconds per PAP request.
    Pbkdf2,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Create the key file for CHAP-capable users (refuses to overwrite an existing one).
    GenKey,
    /// Add a user (the password is prompted for, or read from stdin with --password-stdin).
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// Also store the password reversibly encrypted (needs --key-file), enabling CHAP.
        #[arg(long)]
        chap: bool,
        #[arg(long, value_enum, default_value = "ssha512")]
        scheme: Scheme,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        disabled: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        chap: bool,
        #[arg(long, value_enum, default_value = "ssha512")]
        scheme: Scheme,
    },
    /// Remove a user.
    Remove { name: String },
    /// List the users (names and which credentials they have; never hashes).
    List,
    /// Disable a user (kept in the file, refused at login with NPS reason 34).
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a user attribute (e.g. `mail`, used by `[mfa] login_id_attribute`); without VALUE,
    /// remove it.
    SetAttr {
        name: String,
        key: String,
        value: Option<String>,
    },
    /// Manage local TOTP enrollments (the `totp` MFA provider's store; seeds are encrypted with
    /// --key-file).
    Totp {
        /// The enrollment file; default: totp.toml next to the users file.
        #[arg(long)]
        totp_file: Option<PathBuf>,
        #[command(subcommand)]
        cmd: TotpCmd,
    },
}

#[derive(Subcommand)]
enum TotpCmd {
    /// Enroll a user: prints the otpauth:// URI and a QR code to scan with an authenticator app.
    Enroll {
        name: String,
        /// Use this base32 seed instead of a random one (e.g. to migrate an existing token).
        #[arg(long)]
        seed: Option<String>,
        #[arg(long, default_value = "sha1")]
        algorithm: String,
        #[arg(long, default_value_t = 6)]
        digits: u32,
        #[arg(long, default_value_t = 30)]
        period: u32,
        /// Draw the QR code for a terminal with a light background.
        #[arg(long)]
        light: bool,
    },
    /// Remove a user's enrollment.
    Remove { name: String },
    /// List enrolled users (never seeds).
    List,
}

pub fn cli(args: UsersArgs) -> Result<()> {
    let file = &args.file;
    let current = || -> Result<String> {
        match std::fs::read_to_string(file) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(store::NEW_FILE_HEADER.to_owned())
            }
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", file.display())),
        }
    };
    let key = || -> Result<ReversibleKey> {
        let Some(k) = &args.key_file else {
            bail!("--chap needs --key-file (create one with `portcullis users --file F --key-file K gen-key`)");
        };
        read_key(k)
    };
    match args.cmd {
        UsersCmd::GenKey => {
            let Some(k) = &args.key_file else {
                bail!("gen-key needs --key-file");
            };
            let key = ReversibleKey::generate(&mut rand::rngs::OsRng);
            write_new_private(k, key.to_key_file().as_bytes())?;
            println!("wrote {}", k.display());
        }
        UsersCmd::Add {
            name,
            password_stdin,
            chap,
            scheme,
            groups,
            disabled,
        } => {
            let password = read_password(password_stdin)?;
            let k = if chap { Some(key()?) } else { None };
            let opts = UserOptions {
                password: password_options(scheme, k.as_ref()),
                groups,
                disabled,
            };
            let text = store::add_user(&current()?, &name, &password, &opts, &salt())?;
            write_atomic(file, &text)?;
            println!("added {name}");
        }
        UsersCmd::Passwd {
            name,
            password_stdin,
            chap,
            scheme,
        } => {
            let password = read_password(password_stdin)?;
            let k = if chap { Some(key()?) } else { None };
            let text = store::set_password(
                &current()?,
                &name,
                &password,
                &password_options(scheme, k.as_ref()),
                &salt(),
            )?;
            write_atomic(file, &text)?;
            println!("password changed for {name}");
        }
        UsersCmd::Remove { name } => {
            write_atomic(file, &store::remove_user(&current()?, &name)?)?;
            println!("removed {name}");
        }
        UsersCmd::Disable { name } => {
            write_atomic(file, &store::set_disabled(&current()?, &name, true)?)?;
            println!("disabled {name}");
        }
        UsersCmd::SetAttr { name, key, value } => {
            write_atomic(
                file,
                &store::set_attribute(&current()?, &name, &key, value.as_deref())?,
            )?;
            println!(
                "{name}: {key} {}",
                if value.is_some() { "set" } else { "removed" }
            );
        }
        UsersCmd::Enable { name } => {
            write_atomic(file, &store::set_disabled(&current()?, &name, false)?)?;
            println!("enabled {name}");
        }
        UsersCmd::Totp { totp_file, cmd } => {
            let path = totp_file.unwrap_or_else(|| {
                file.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .join("totp.toml")
            });
            totp_cli(&path, args.key_file.as_deref(), cmd)?;
        }
        UsersCmd::List => {
            let users = store::list_users(&current()?)?;
            println!(
                "{:<24} {:<14} {:<7} {:<5} {:<8} groups",
                "name", "pap", "nt", "chap", "state"
            );
            for u in users {
                println!(
                    "{:<24} {:<14} {:<7} {:<5} {:<8} {}",
                    u.name,
                    u.password_scheme.unwrap_or("-"),
                    if u.has_nt_hash { "yes" } else { "-" },
                    if u.has_chap { "yes" } else { "-" },
                    if u.disabled { "disabled" } else { "enabled" },
                    u.groups.join(",")
                );
            }
        }
    }
    Ok(())
}

fn totp_cli(path: &Path, key_file: Option<&Path>, cmd: TotpCmd) -> Result<()> {
    use portcullis_mfa::totp;
    let current = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    match cmd {
        TotpCmd::Enroll {
            name,
            seed,
            algorithm,
            digits,
            period,
            light,
        } => {
            let Some(k) = key_file else {
                bail!("totp enroll needs --key-file (seeds are stored encrypted)");
            };
            let key = read_key(k)?;
            let algorithm = totp::Algorithm::parse(&algorithm).with_context(|| {
                format!("unknown algorithm `{algorithm}` (sha1, sha256, sha512)")
            })?;
            let opts = totp::TotpOptions {
                algorithm,
                digits,
                period,
            };
            let seed = match seed {
                Some(b32) => totp::base32_decode(&b32)?,
                None => totp::generate_seed(&mut rand::rngs::OsRng, algorithm),
            };
            let mut nonce = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let text = totp::enroll(&current, &name, &seed, &opts, &key, nonce)?;
            write_atomic(path, &text)?;
            let uri = totp::otpauth_uri("Portcullis", &name, &seed, &opts);
            let qr = totp::render_qr(
                &uri,
                if light {
                    totp::TerminalBackground::Light
                } else {
                    totp::TerminalBackground::Dark
                },
            )?;
            println!("enrolled {name} in {}", path.display());
            println!(
                "Scan this with the user's authenticator app (shown once; it contains the seed):"
            );
            print!("{}", &*qr);
            println!("{}", &*uri);
        }
        TotpCmd::Remove { name } => {
            write_atomic(path, &totp::remove(&current, &name)?)?;
            println!("removed the TOTP enrollment of {name}");
        }
        TotpCmd::List => {
            println!("{:<24} {:<8} {:<6} period", "name", "hash", "digits");
            for u in totp::list(&current)? {
                match u.options {
                    Some(o) => println!(
                        "{:<24} {:<8} {:<6} {}",
                        u.name,
                        o.algorithm.name(),
                        o.digits,
                        o.period
                    ),
                    None => println!("{:<24} (invalid entry, line {})", u.name, u.line),
                }
            }
        }
    }
    Ok(())
}

fn password_options(scheme: Scheme, key: Option<&ReversibleKey>) -> PasswordOptions<'_> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    PasswordOptions {
        scheme: match scheme {
            Scheme::Ssha512 => HashScheme::Ssha512,
            Scheme::Pbkdf2 => HashScheme::pbkdf2_sha256(),
        },
        nt_hash: true,
        chap: key.map(|k| (k, nonce)),
    }
}

fn salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

fn read_password(from_stdin: bool) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        if !from_stdin {
            bail!("stdin is not a terminal: pass --password-stdin to read the password from it");
        }
        let mut line = Zeroizing::new(String::new());
        stdin.lock().read_line(&mut line)?;
        let pw = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned());
        if pw.is_empty() {
            bail!("empty password");
        }
        return Ok(pw);
    }
    let a = Zeroizing::new(rpassword::prompt_password("Password: ")?);
    let b = Zeroizing::new(rpassword::prompt_password("Again: ")?);
    if *a != *b {
        bail!("the passwords differ");
    }
    if a.is_empty() {
        bail!("empty password");
    }
    Ok(a)
}

/// Writes via a temporary file, fsync and rename, so a crash leaves the old or the new file.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("users")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot replace", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create (it must not exist yet)", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_demo_users_verify_with_their_documented_passwords() {
        let users = load(&UsersConfig {
            source: UsersSource::Embedded,
        })
        .unwrap();
        let alice = users.get("alice").unwrap();
        assert!(alice.verify_pap(b"Alice#Pass1"));
        assert!(!alice.verify_pap(b"Bob#Pass1"));
        let bob = users.get("bob").unwrap();
        assert!(bob.verify_pap(b"Bob#Pass1"));
        assert!(bob.has_reversible());
        assert!(alice.nt_hash().is_some());
    }
}
