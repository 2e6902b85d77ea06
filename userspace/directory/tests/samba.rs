//! The directory crate against a real Samba AD DC on loopback, provisioned by
//! `tests/samba/setup.sh` (which `cargo xtask test` runs and points `PORTCULLIS_SAMBA_DIR` at).
//! Under CI=true a missing DC fails the tests; elsewhere they are skipped with a loud message.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_auth::mppe::MppeKeys;
use portcullis_auth::mschapv2::{generate_authenticator_response, generate_nt_response};
use portcullis_auth::nt::{nt_hash, nt_hash_hash};
use portcullis_directory::{
    Denial, Directory, DirectoryConfig, DirectoryError, MsChapV2, NtlmConfig, Password, Transport,
    Verdict,
};

struct Dc {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Dc {
    fn get(&self, k: &str) -> String {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing in {}/env", self.dir.display()))
            .clone()
    }
}

fn dc() -> Option<Dc> {
    let Some(dir) = std::env::var_os("PORTCULLIS_SAMBA_DIR").map(PathBuf::from) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PORTCULLIS_SAMBA_DIR is not set: run the tests through `cargo xtask test` (it provisions the Samba AD DC)");
        }
        eprintln!("\n*** SKIPPED: no Samba AD DC (set PORTCULLIS_SAMBA_DIR after tests/samba/setup.sh, or run `cargo xtask test`) ***\n");
        return None;
    };
    let text = std::fs::read_to_string(dir.join("env"))
        .unwrap_or_else(|e| panic!("{}/env: {e} (run tests/samba/setup.sh)", dir.display()));
    let env = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Dc { dir, env })
}

fn config(dc: &Dc, servers: Vec<String>) -> DirectoryConfig {
    let mut c = DirectoryConfig::new(
        servers,
        dc.get("BASE_DN"),
        dc.get("SVC_DN"),
        Password::new(dc.get("SVC_PASS")),
    );
    c.ca_file = Some(PathBuf::from(dc.get("CA_FILE")));
    c.domain = Some(dc.get("DOMAIN"));
    c.timeout = Duration::from_millis(1500);
    c.request_timeout = Duration::from_secs(8);
    c.retry_down_after = Duration::from_secs(60);
    c.attributes = vec!["displayName".into()];
    c.ntlm = Some(NtlmConfig {
        program: PathBuf::from("/usr/bin/ntlm_auth"),
        smb_conf: Some(PathBuf::from(dc.get("SMB_CONF"))),
        helpers: 2,
    });
    c
}

const DC: &str = "ldaps://127.0.0.1:636";

fn pw(dc: &Dc) -> Password {
    Password::new(dc.get("PASSWORD"))
}

fn denial(v: &Verdict) -> Option<Denial> {
    match v {
        Verdict::Denied { denial, .. } => Some(*denial),
        Verdict::Granted { .. } => None,
    }
}

#[tokio::test]
async fn pap_accept_reject_and_nested_groups() {
    let Some(dc) = dc() else { return };
    let d = Directory::start(config(&dc, vec![DC.into()])).unwrap();
    let v = d.pap("ad-alice", pw(&dc)).await.unwrap();
    let Verdict::Granted { user, ms_chap2 } = v else {
        panic!("ad-alice not granted: {v:?}")
    };
    assert!(ms_chap2.is_none());
    assert_eq!(user.sam_account_name, "ad-alice");
    assert_eq!(user.dn, "CN=ad-alice,CN=Users,DC=samdom,DC=test");
    assert_eq!(
        user.user_principal_name.as_deref(),
        Some("ad-alice@samdom.test")
    );
    assert_eq!(user.mail.as_deref(), Some("alice.mail@samdom.test"));
    assert_eq!(user.attribute("MAIL"), Some("alice.mail@samdom.test"));
    assert_eq!(user.dialin, None);
    // vpn-users directly, staff through vpn-users.
    let cns: Vec<&str> = user.groups.iter().map(|g| g.cn.as_str()).collect();
    assert_eq!(cns, ["staff", "vpn-users"], "{:?}", user.groups);
    assert_eq!(user.groups[0].dn, "CN=staff,CN=Users,DC=samdom,DC=test");

    // The same user by the other name forms.
    for name in [
        "SAMDOM\\ad-alice",
        "samdom\\ad-alice",
        "ad-alice@samdom.test",
    ] {
        let v = d.pap(name, pw(&dc)).await.unwrap();
        assert!(matches!(v, Verdict::Granted { .. }), "{name}: {v:?}");
    }
    let cases = [
        ("ad-alice", "Wrong#Pass1", Denial::BadCredentials),
        ("ad-alice", "", Denial::BadCredentials),
        ("no-such-user", "Ad#Test-Pass1", Denial::NoSuchUser),
        ("OTHER\\ad-alice", "Ad#Test-Pass1", Denial::NoSuchUser),
    ];
    for (name, p, want) in cases {
        let v = d.pap(name, Password::new(p.into())).await.unwrap();
        assert_eq!(denial(&v), Some(want), "{name}: {v:?}");
    }
    // Plain user: no groups.
    match d.pap("ad-bob", pw(&dc)).await.unwrap() {
        Verdict::Granted { user, .. } => assert!(user.groups.is_empty(), "{:?}", user.groups),
        v => panic!("{v:?}"),
    }
}

#[tokio::test]
async fn account_restrictions_and_dialin() {
    let Some(dc) = dc() else { return };
    let d = Directory::start(config(&dc, vec![DC.into()])).unwrap();
    let cases = [
        ("ad-disabled", Some(Denial::AccountDisabled)),
        ("ad-expired", Some(Denial::AccountExpired)),
        ("ad-mustchange", Some(Denial::PasswordMustChange)),
        ("ad-nodialin", Some(Denial::DialinDenied)),
        ("ad-dialin", None),
    ];
    for (name, want) in cases {
        let v = d.pap(name, pw(&dc)).await.unwrap();
        assert_eq!(denial(&v), want, "{name}: {v:?}");
    }
    // A wrong password is a wrong password whatever the account's state (as AD says).
    for name in ["ad-disabled", "ad-nodialin"] {
        let v = d
            .pap(name, Password::new("Wrong#Pass1".into()))
            .await
            .unwrap();
        assert_eq!(denial(&v), Some(Denial::BadCredentials), "{name}: {v:?}");
    }
    match d.lookup("ad-nodialin").await.unwrap() {
        Some(u) => assert_eq!(u.dialin, Some(false)),
        None => panic!("ad-nodialin not found"),
    }
    assert!(d.lookup("nobody-here").await.unwrap().is_none());

    let mut c = config(&dc, vec![DC.into()]);
    c.ignore_dialin = true;
    let d = Directory::start(c).unwrap();
    let v = d.pap("ad-nodialin", pw(&dc)).await.unwrap();
    assert!(matches!(v, Verdict::Granted { .. }), "{v:?}");
}

fn exchange(user: &str, password: &str, seed: u8) -> MsChapV2 {
    let authenticator_challenge = [seed; 16];
    let mut peer_challenge = [0u8; 16];
    for (i, b) in peer_challenge.iter_mut().enumerate() {
        *b = seed.wrapping_mul(7).wrapping_add(i as u8);
    }
    let name = user.rsplit('\\').next().unwrap();
    let nt_response = generate_nt_response(
        &authenticator_challenge,
        &peer_challenge,
        name.as_bytes(),
        &nt_hash(password),
    );
    MsChapV2 {
        authenticator_challenge,
        peer_challenge,
        nt_response,
    }
}

#[tokio::test]
async fn mschapv2_through_the_ntlm_helpers() {
    let Some(dc) = dc() else { return };
    let password = dc.get("PASSWORD");
    let d = Directory::start(config(&dc, vec![DC.into()])).unwrap();
    for name in ["ad-alice", "SAMDOM\\ad-alice"] {
        let x = exchange(name, &password, 3);
        let v = d.mschapv2(name, x.clone()).await.unwrap();
        let Verdict::Granted { user, ms_chap2 } = v else {
            panic!("{name}: {v:?}")
        };
        assert_eq!(user.groups.len(), 2);
        let ok = ms_chap2.expect("MS-CHAPv2 success");
        // Computed independently from the known password.
        let expected = generate_authenticator_response(
            &nt_hash(&password),
            &x.nt_response,
            &x.peer_challenge,
            &x.authenticator_challenge,
            b"ad-alice",
        );
        assert_eq!(ok.authenticator_response(), &expected);
        let keys = MppeKeys::derive(&nt_hash_hash(&nt_hash(&password)), &x.nt_response);
        assert_eq!(ok.mppe_keys().send_key(), keys.send_key());
        assert_eq!(ok.mppe_keys().recv_key(), keys.recv_key());
    }
    let cases = [
        ("ad-alice", "Wrong#Pass1", Denial::BadCredentials),
        ("ad-disabled", password.as_str(), Denial::AccountDisabled),
        ("ad-expired", password.as_str(), Denial::AccountExpired),
        (
            "ad-mustchange",
            password.as_str(),
            Denial::PasswordMustChange,
        ),
        ("ad-nodialin", password.as_str(), Denial::DialinDenied),
        ("no-such-user", password.as_str(), Denial::NoSuchUser),
    ];
    for (name, p, want) in cases {
        let v = d.mschapv2(name, exchange(name, p, 9)).await.unwrap();
        assert_eq!(denial(&v), Some(want), "{name}: {v:?}");
    }
    // More requests at once than helpers: they queue, none fails, nothing is spawned per request.
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        tasks.push(d.mschapv2("ad-bob", exchange("ad-bob", &password, i)));
    }
    for t in tasks {
        let v = t.await.unwrap();
        assert!(matches!(v, Verdict::Granted { .. }), "{v:?}");
    }
}

#[tokio::test]
async fn a_hung_or_broken_helper_fails_in_time_and_is_replaced() {
    let Some(dc) = dc() else { return };
    let tmp = std::env::temp_dir().join(format!("portcullis-ntlm-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let hang = tmp.join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    let echo = tmp.join("echo.sh");
    std::fs::write(&echo, "#!/bin/sh\nexec cat\n").unwrap();
    for p in [&hang, &echo] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let password = dc.get("PASSWORD");
    for (program, want_timeout) in [(&hang, true), (&echo, false)] {
        let mut c = config(&dc, vec![DC.into()]);
        c.timeout = Duration::from_millis(700);
        c.ntlm.as_mut().unwrap().program = program.clone();
        let d = Directory::start(c).unwrap();
        for _ in 0..2 {
            let t = Instant::now();
            let e = d
                .mschapv2("ad-alice", exchange("ad-alice", &password, 1))
                .await
                .unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            match (&e, want_timeout) {
                (DirectoryError::Timeout { .. }, true) | (DirectoryError::Helper { .. }, false) => {
                }
                _ => panic!("{}: {e:?}", program.display()),
            }
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// A TCP port that accepts connections (the kernel completes the handshake) but never says
/// anything: a DC that hangs.
fn blackhole() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldaps://127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, url)
}

/// A port nothing listens on: connection refused.
fn closed() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("ldaps://127.0.0.1:{port}")
}

#[tokio::test]
async fn failover_to_the_next_dc_and_all_down() {
    let Some(dc) = dc() else { return };
    let (_hole, hole_url) = blackhole();
    let refused = closed();
    let mut c = config(&dc, vec![refused.clone(), hole_url.clone(), DC.into()]);
    c.timeout = Duration::from_millis(800);
    let d = Directory::start(c).unwrap();
    let t = Instant::now();
    let v = d.pap("ad-alice", pw(&dc)).await.unwrap();
    assert!(matches!(v, Verdict::Granted { .. }), "{v:?}");
    let first = t.elapsed();
    let s = d.servers();
    assert!(!s[0].up && !s[1].up && s[2].up, "{s:?}");
    assert!(
        s[1].last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{s:?}"
    );
    // The dead DCs are skipped now: no more waiting for the black hole.
    let t = Instant::now();
    let v = d.pap("ad-alice", pw(&dc)).await.unwrap();
    assert!(matches!(v, Verdict::Granted { .. }), "{v:?}");
    assert!(t.elapsed() < first, "{:?} vs {first:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );

    // Only dead DCs: a clear error in bounded time, then immediately while they are down.
    let (_hole2, hole2_url) = blackhole();
    let mut c = config(&dc, vec![closed(), hole2_url]);
    c.timeout = Duration::from_millis(800);
    let d = Directory::start(c).unwrap();
    let t = Instant::now();
    let e = d.pap("ad-alice", pw(&dc)).await.unwrap_err();
    assert!(
        matches!(e, DirectoryError::Unavailable { tried: 2, .. }),
        "{e:?}"
    );
    assert!(e.is_outage());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let t = Instant::now();
    let e = d.pap("ad-alice", pw(&dc)).await.unwrap_err();
    assert!(
        matches!(e, DirectoryError::AllDown { servers: 2, .. }),
        "{e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    // The password never shows in an error.
    assert!(!format!("{e} {e:?}").contains(&dc.get("PASSWORD")));
}

#[tokio::test]
async fn tls_is_verified_and_starttls_works() {
    let Some(dc) = dc() else { return };
    // The system roots do not know the test CA: the TLS handshake fails, nothing is sent.
    let mut c = config(&dc, vec![DC.into()]);
    c.ca_file = None;
    let d = Directory::start(c).unwrap();
    let e = d.pap("ad-alice", pw(&dc)).await.unwrap_err();
    assert!(matches!(e, DirectoryError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // StartTLS on the plain port, verified against the CA file.
    let mut c = config(&dc, vec!["ldap://127.0.0.1:389".into()]);
    c.transport = Transport::StartTls;
    let d = Directory::start(c).unwrap();
    let v = d.pap("ad-alice", pw(&dc)).await.unwrap();
    assert!(matches!(v, Verdict::Granted { .. }), "{v:?}");

    // Plain ldap:// is refused unless explicitly insecure.
    let c = config(&dc, vec!["ldap://127.0.0.1:389".into()]);
    assert!(matches!(
        Directory::start(c).unwrap_err(),
        DirectoryError::Config { .. }
    ));

    // A wrong service password is a configuration error, not a user's denial.
    let mut c = config(&dc, vec![DC.into()]);
    c.bind_password = Password::new("Not#The-Password1".into());
    let d = Directory::start(c).unwrap();
    let e = d.pap("ad-alice", pw(&dc)).await.unwrap_err();
    assert!(matches!(e, DirectoryError::ServiceBind { .. }), "{e:?}");
    assert!(!format!("{e} {e:?} {d:?}").contains("Not#The-Password1"));
    let c = config(&dc, vec![DC.into()]);
    assert!(!format!("{c:?}").contains(&dc.get("SVC_PASS")));
}
