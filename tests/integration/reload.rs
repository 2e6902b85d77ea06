//! SIGHUP reloads clients and users; an invalid configuration is refused and the old one kept.

use std::time::{Duration, Instant};

use portcullis_tests::*;

fn pap(s: &Server, user: &str, password: &str) -> Option<u8> {
    let c = RawClient::new(s.auth);
    let pkt = pap_request(1, user, password, true, vec![]);
    c.exchange(&pkt).map(|r| check_reply(&r, &pkt, SECRET).code)
}

/// Reload is asynchronous to the signal: poll (bounded) until the expected answer comes.
fn eventually(s: &Server, user: &str, password: &str, want: u8) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = pap(s, user, password);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?} after reload:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_picks_up_new_users_and_refuses_a_broken_config() {
    let s = Server::start(ServerOpts::default());
    assert_eq!(pap(&s, "dave", "Dave#Pass1"), Some(ACCESS_REJECT));
    let users = s.dir.path().join("users.toml");
    let key = s.dir.path().join("users.key");
    let (st, _, err) = portcullis(
        &[
            "users",
            "--file",
            users.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "add",
            "dave",
            "--password-stdin",
        ],
        Some("Dave#Pass1\n"),
    );
    assert!(st.success(), "{err}");
    s.signal(libc::SIGHUP);
    eventually(&s, "dave", "Dave#Pass1", ACCESS_ACCEPT);

    // Break the configuration: the reload is refused, the server keeps serving with the old one.
    let good = std::fs::read_to_string(&s.config_path).unwrap();
    std::fs::write(&s.config_path, format!("{good}\n[server]\nbogus = 1\n")).unwrap();
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pap(&s, "dave", "Dave#Pass1"), Some(ACCESS_ACCEPT));
    assert_eq!(pap(&s, "alice", "Alice#Pass1"), Some(ACCESS_ACCEPT));
}
