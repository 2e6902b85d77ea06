//! Push approval end to end through the server, against the Duo stand-in (Duo Auth API v2,
//! signatures verified): one login while the NAS retransmits every second gets exactly one push
//! and one answer; deny and timeout get Access-Reject with their reason.

use std::time::Duration;

use portcullis_standins::duo::{DuoStandIn, PushBehaviour, UserScript, UserStatus};
use portcullis_tests::*;

const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";

fn frank() -> User {
    User {
        name: "frank",
        password: "Frank#Pass1",
        chap: false,
    }
}

fn server(duo: &DuoStandIn, push_timeout: u32) -> Server {
    Server::start(ServerOpts {
        users: vec![frank()],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"duo\"\n"
        ),
        mfa: format!(
            "[mfa]\nrequire_user_match = true\noverride_number_matching_with_otp = false\npush_timeout_seconds = {push_timeout}\n\
             [[mfa.provider]]\nname = \"duo\"\ntype = \"duo\"\napi_url = \"{}\"\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\n",
            duo.url()
        ),
        ..Default::default()
    })
}

fn script(push: PushBehaviour) -> UserScript {
    UserScript {
        status: UserStatus::Auth,
        has_push: true,
        passcodes: vec![],
        push,
    }
}

/// Sends the same Access-Request every second (as a NAS does) until an answer comes; bounded.
fn login_retransmitting(s: &Server, id: u8, tries: u32) -> (Reply, u32) {
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let pkt = pap_request(id, "frank", "Frank#Pass1", true, vec![]);
    for sent in 1..=tries {
        c.send(&pkt);
        if let Some(r) = c.recv() {
            return (check_reply(&r, &pkt, SECRET), sent);
        }
    }
    panic!("no answer after {tries} transmissions:\n{}", s.log());
}

#[test]
fn push_approved_after_a_delay_while_the_nas_retransmits_gives_one_push_and_one_accept() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user(
        "frank",
        script(PushBehaviour::Approve {
            after: Duration::from_secs(4),
        }),
    );
    let s = server(&duo, 30);
    let (r, sent) = login_retransmitting(&s, 1, 20);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert!(
        sent >= 3,
        "the NAS should have retransmitted while waiting (sent {sent})"
    );
    assert_eq!(
        duo.pushes_sent("frank"),
        1,
        "retransmissions must not send another push"
    );
    assert_eq!(s.stat("access_accept"), 1, "{:?}", s.stats());
    assert!(s.stat("duplicate_in_progress") >= 2, "{:?}", s.stats());
    assert!(s.log().contains("MFA approved by duo"), "{}", s.log());
}

#[test]
fn push_denied_is_rejected() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user(
        "frank",
        script(PushBehaviour::Deny {
            after: Duration::from_secs(1),
        }),
    );
    let s = server(&duo, 30);
    let (r, _) = login_retransmitting(&s, 1, 15);
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(s.log().contains("denied by the user"), "{}", s.log());
    assert_eq!(duo.pushes_sent("frank"), 1);
}

#[test]
fn unanswered_push_times_out_with_its_reason() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user("frank", script(PushBehaviour::Never));
    let s = server(&duo, 5);
    let (r, _) = login_retransmitting(&s, 1, 20);
    assert_eq!(r.code, ACCESS_REJECT);
    let log = s.log();
    assert!(
        log.contains("no answer") || log.contains("in time"),
        "{log}"
    );
    assert_eq!(duo.pushes_sent("frank"), 1);
}

#[test]
fn a_second_attempt_by_the_same_user_joins_the_pending_push() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user(
        "frank",
        script(PushBehaviour::Approve {
            after: Duration::from_secs(3),
        }),
    );
    let s = server(&duo, 30);
    let c = RawClient::new(s.auth);
    let first = pap_request(1, "frank", "Frank#Pass1", true, vec![]);
    let second = pap_request(2, "frank", "Frank#Pass1", true, vec![]);
    c.send(&first);
    std::thread::sleep(Duration::from_millis(300));
    c.send(&second);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = c
            .recv()
            .unwrap_or_else(|| panic!("missing answers:\n{}", s.log()));
        let req = if r[1] == 1 { &first } else { &second };
        got.push(check_reply(&r, req, SECRET).code);
    }
    assert_eq!(got, vec![ACCESS_ACCEPT, ACCESS_ACCEPT]);
    assert_eq!(
        duo.pushes_sent("frank"),
        1,
        "the second attempt must join, not push again"
    );
}
