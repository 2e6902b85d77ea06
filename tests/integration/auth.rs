//! PAP and CHAP with radclient, unknown users, IPv6, Status-Server.

use portcullis_tests::*;

#[test]
fn pap_and_chap_accept_with_the_right_password_and_reject_otherwise() {
    let s = Server::start(ServerOpts::default());
    let ok = rad_pap(None, s.auth, "alice", "Alice#Pass1");
    assert_eq!(
        ok.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        ok.output,
        s.log()
    );
    let bad = rad_pap(None, s.auth, "alice", "wrong");
    assert_eq!(bad.code.as_deref(), Some("Access-Reject"), "{}", bad.output);
    let nobody = rad_pap(None, s.auth, "mallory", "Alice#Pass1");
    assert_eq!(
        nobody.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        nobody.output
    );
    // radclient turns a cleartext CHAP-Password into a CHAP response (RFC 1994 over RFC 2865).
    let chap = radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"alice\", CHAP-Password = \"Alice#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        chap.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        chap.output,
        s.log()
    );
    let chap_bad = radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"alice\", CHAP-Password = \"nope\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        chap_bad.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        chap_bad.output
    );
    assert_eq!(s.stat("access_accept"), 2);
    assert_eq!(s.stat("access_reject"), 3);
    // One audit line per decision, with NPS event ids and reason codes, and never a password.
    let log = s.log();
    assert_eq!(log.matches("event_id=6272").count(), 2, "{log}");
    assert_eq!(log.matches("event_id=6273").count(), 3, "{log}");
    assert!(log.contains("reason_code=16"), "{log}");
    assert!(log.contains("reason_code=8"), "{log}");
    assert!(!log.contains("Alice#Pass1"), "password in log");
    assert!(!log.contains(SECRET), "secret in log");
}

#[test]
fn chap_without_reversible_password_is_rejected_with_reason_19() {
    let s = Server::start(ServerOpts {
        users: vec![User {
            name: "carol",
            password: "Carol#Pass1",
            chap: false,
        }],
        ..Default::default()
    });
    let pap = rad_pap(None, s.auth, "carol", "Carol#Pass1");
    assert_eq!(pap.code.as_deref(), Some("Access-Accept"), "{}", pap.output);
    let chap = radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"carol\", CHAP-Password = \"Carol#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        chap.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        chap.output
    );
    assert!(s.log().contains("reason_code=19"), "{}", s.log());
}

#[test]
fn ipv6_listener_and_client() {
    let port = free_port();
    let s = Server::start(ServerOpts {
        auth_listen: vec![format!("[::1]:{port}")],
        acct_listen: vec![format!("[::1]:{}", port + 1)],
        clients: format!(
            "[[client]]\nname = \"v6\"\naddress = \"::1/128\"\nsecret = \"{SECRET}\"\n"
        ),
        ..Default::default()
    });
    let ok = rad_pap(None, s.auth, "alice", "Alice#Pass1");
    assert_eq!(
        ok.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        ok.output,
        s.log()
    );
    let acct = radclient(
        None,
        s.acct,
        "acct",
        SECRET,
        "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"v6-1\"\n",
    );
    assert_eq!(
        acct.code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        acct.output
    );
}

#[test]
fn status_server_on_both_ports() {
    let s = Server::start(ServerOpts::default());
    let a = radclient(
        None,
        s.auth,
        "status",
        SECRET,
        "Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        a.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        a.output,
        s.log()
    );
    let b = radclient(
        None,
        s.acct,
        "status",
        SECRET,
        "Message-Authenticator = 0x00\n",
    );
    assert_eq!(
        b.code.as_deref(),
        Some("Accounting-Response"),
        "{}\n{}",
        b.output,
        s.log()
    );
    assert_eq!(s.stat("status_server"), 2);

    // RFC 5997: Status-Server without Message-Authenticator is discarded.
    let c = RawClient::new(s.auth);
    let pkt = encode(STATUS_SERVER, 9, authenticator(9), &vec![], false, SECRET);
    assert_eq!(c.exchange(&pkt), None);
    // And a raw one with it gets a checked reply.
    let auth = authenticator(10);
    let pkt = encode(STATUS_SERVER, 10, auth, &vec![], true, SECRET);
    let r = check_reply(
        &c.exchange(&pkt).expect("no reply to Status-Server"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT);
}
