//! Blast-RADIUS hardening: Message-Authenticator required, first in replies, Proxy-State rules,
//! unknown clients never answered.

use portcullis_tests::*;

#[test]
fn requests_without_message_authenticator_get_no_answer() {
    let s = Server::start(ServerOpts::default());
    let r = radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"alice\", User-Password = \"Alice#Pass1\"\n",
    );
    assert_eq!(
        r.code, None,
        "answered without Message-Authenticator: {}",
        r.output
    );
    assert!(
        s.stat("drop.missing_message_authenticator") >= 1,
        "{:?}",
        s.stats()
    );
    assert_eq!(s.stat("access_accept"), 0);
    // Discards are audited as NPS event 6274.
    assert!(s.log().contains("event_id=6274"), "{}", s.log());
}

#[test]
fn bad_message_authenticator_and_wrong_secret_are_dropped() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let mut pkt = pap_request(1, "alice", "Alice#Pass1", true, vec![]);
    pkt[25] ^= 0xff; // inside the Message-Authenticator value
    assert_eq!(c.exchange(&pkt), None);
    let r = radclient(
        None,
        s.auth,
        "auth",
        "not-the-secret",
        "User-Name = \"alice\", User-Password = \"Alice#Pass1\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(r.code, None, "{}", r.output);
    assert_eq!(
        s.stat("drop.bad_message_authenticator"),
        2,
        "{:?}",
        s.stats()
    );
}

#[test]
fn unknown_clients_are_dropped_and_counted_never_answered() {
    let s = Server::start(ServerOpts {
        clients: format!(
            "[[client]]\nname = \"other\"\naddress = \"127.0.0.2/32\"\nsecret = \"{SECRET}\"\n"
        ),
        ..Default::default()
    });
    let r = rad_pap(None, s.auth, "alice", "Alice#Pass1");
    assert_eq!(r.code, None, "{}", r.output);
    assert!(s.stat("drop.unknown_client") >= 1, "{:?}", s.stats());
    assert_eq!(s.stat("access_accept") + s.stat("access_reject"), 0);
}

#[test]
fn legacy_client_may_omit_message_authenticator_but_not_with_proxy_state() {
    let s = Server::start(ServerOpts {
        clients: format!(
            "[[client]]\nname = \"legacy\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nrequire_message_authenticator = false\n"
        ),
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    let pkt = pap_request(1, "alice", "Alice#Pass1", false, vec![]);
    let r = check_reply(
        &c.exchange(&pkt).expect("legacy request not answered"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT);
    let pkt = pap_request(
        2,
        "alice",
        "Alice#Pass1",
        false,
        vec![(attr::PROXY_STATE, b"ps".to_vec())],
    );
    assert_eq!(
        c.exchange(&pkt),
        None,
        "Proxy-State without Message-Authenticator was answered"
    );
    assert_eq!(
        s.stat("drop.proxy_state_without_message_authenticator"),
        1,
        "{:?}",
        s.stats()
    );
}

#[test]
fn proxy_state_is_echoed_in_order_in_every_reply() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let ps = vec![
        (attr::PROXY_STATE, b"first".to_vec()),
        (attr::PROXY_STATE, vec![0, 1, 2, 255]),
        (attr::PROXY_STATE, b"third".to_vec()),
    ];
    for (id, pw, code) in [
        (1u8, "Alice#Pass1", ACCESS_ACCEPT),
        (2, "bad", ACCESS_REJECT),
    ] {
        let pkt = pap_request(id, "alice", pw, true, ps.clone());
        let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
        assert_eq!(r.code, code);
        let got: Vec<Vec<u8>> = r
            .get_all(attr::PROXY_STATE)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let want: Vec<Vec<u8>> = ps.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(got, want);
    }
    let a = RawClient::new(s.acct);
    let mut attrs = vec![
        (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
        (attr::ACCT_SESSION_ID, b"ps-1".to_vec()),
    ];
    attrs.extend(ps.clone());
    let pkt = encode(ACCOUNTING_REQUEST, 3, [0; 16], &attrs, false, SECRET);
    let r = check_reply(
        &a.exchange(&pkt).expect("no accounting reply"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCOUNTING_RESPONSE);
    assert_eq!(r.get_all(attr::PROXY_STATE).len(), 3);
}
