//! The embedded default configuration, exactly as `cargo xtask run` serves it (run inside a
//! network namespace so it can take ports 1812/1813 and attach XDP to that namespace's lo).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::*;

#[test]
fn embedded_default_serves_the_demo_users_with_xdp_on_lo() {
    let ns = Netns::new("default");
    let cwd = tempfile::tempdir().unwrap();
    let log_path = cwd.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(portcullis_bin())
        .arg("serve")
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = cwd.path().join("data/portcullis.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let auth = "127.0.0.1:1812".parse().unwrap();
    let acct = "127.0.0.1:1813".parse().unwrap();
    let ns_name = Some(ns.name.as_str());
    let ok = rad_pap(ns_name, auth, "alice", "Alice#Pass1");
    assert_eq!(ok.code.as_deref(), Some("Access-Accept"), "{}", ok.output);
    // bob is enrolled for TOTP in the demo: his PAP login gets an Access-Challenge with a State,
    // and his code (seed JBSWY3DPEHPK3PXP) completes it.
    let c1 = radclient(
        ns_name,
        auth,
        "auth",
        "testing123",
        "User-Name = \"bob\", User-Password = \"Bob#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        c1.code.as_deref(),
        Some("Access-Challenge"),
        "{}",
        c1.output
    );
    let state = c1
        .output
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .expect("no State in the challenge")
        .to_owned();
    let seed = portcullis_mfa::totp::base32_decode("JBSWY3DPEHPK3PXP").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = portcullis_mfa::totp::code_at(&seed, now, &Default::default());
    let bob = radclient(ns_name, auth, "auth", "testing123", &format!(
        "User-Name = \"bob\", User-Password = \"{}\", State = {state}, Message-Authenticator = 0x00\n",
        &*code
    ));
    assert_eq!(bob.code.as_deref(), Some("Access-Accept"), "{}", bob.output);
    // CHAP cannot carry a one-time code: bob's CHAP login is refused, with that reason logged.
    let chap = radclient(
        ns_name,
        auth,
        "auth",
        "testing123",
        "User-Name = \"bob\", CHAP-Password = \"Bob#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        chap.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        chap.output
    );
    // alice (CHAP, not enrolled, require_user_match = false in the demo) gets in.
    let alice_chap = radclient(
        ns_name,
        auth,
        "auth",
        "testing123",
        "User-Name = \"alice\", CHAP-Password = \"Alice#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        alice_chap.code.as_deref(),
        Some("Access-Accept"),
        "{}",
        alice_chap.output
    );
    let bad = rad_pap(ns_name, auth, "alice", "Bob#Pass1");
    assert_eq!(bad.code.as_deref(), Some("Access-Reject"), "{}", bad.output);
    let no_ma = radclient(
        ns_name,
        auth,
        "auth",
        "testing123",
        "User-Name = \"alice\", User-Password = \"Alice#Pass1\"\n",
    );
    assert_eq!(no_ma.code, None, "{}", no_ma.output);
    let acct_r = radclient(
        ns_name,
        acct,
        "acct",
        "testing123",
        "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"default-1\"\n",
    );
    assert_eq!(
        acct_r.code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        acct_r.output
    );
    let files: Vec<_> = std::fs::read_dir(cwd.path().join("data/accounting"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert!(
        files
            .iter()
            .any(|f| std::fs::read_to_string(f).unwrap().contains("default-1")),
        "{files:?}"
    );

    // `portcullis stats` finds the default control socket and shows XDP attached in generic mode.
    let out = Command::new(portcullis_bin())
        .arg("stats")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("xdp.active 1"), "{text}");
    assert!(text.contains("access_accept 3"), "{text}");
    assert!(text.contains("access_challenge 1"), "{text}");

    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(
        st.success(),
        "{st}: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );
}
