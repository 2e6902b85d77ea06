//! Pending second-factor logins across the server's life: a reload keeps them, shutdown answers
//! them, limits refuse with a reason; and the Entra protocol through the server (OTP, and a
//! push-only user whose OTP request the service turns into a push, which must be waited for,
//! not sent again).

use std::time::{Duration, Instant};

use portcullis_standins::duo::{DuoStandIn, PushBehaviour, UserScript, UserStatus};
use portcullis_standins::entra::{self, EntraStandin, EntraStandinConfig, EntraUser, Methods};
use portcullis_tests::*;

const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ2";
const SKEY: &str = "Qh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Eq";

fn duo_server(duo: &DuoStandIn, mfa_extra: &str) -> Server {
    Server::start(ServerOpts {
        users: vec![User { name: "frank", password: "Frank#Pass1", chap: false }],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"duo\"\n"
        ),
        mfa: format!(
            "[mfa]\nrequire_user_match = true\noverride_number_matching_with_otp = false\npush_timeout_seconds = 60\n{mfa_extra}\n\
             [[mfa.provider]]\nname = \"duo\"\ntype = \"duo\"\napi_url = \"{}\"\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\n",
            duo.url()
        ),
        ..Default::default()
    })
}

fn frank(push: PushBehaviour) -> UserScript {
    UserScript {
        status: UserStatus::Auth,
        has_push: true,
        passcodes: vec![],
        push,
    }
}

/// Waits (bounded) until the stand-in has sent `n` pushes to `user`.
fn await_pushes(duo: &DuoStandIn, user: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while duo.pushes_sent(user) < n {
        assert!(Instant::now() < deadline, "push {n} for {user} never sent");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reload_keeps_pending_logins() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user(
        "frank",
        frank(PushBehaviour::Approve {
            after: Duration::from_secs(3),
        }),
    );
    let s = duo_server(&duo, "");
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let pkt = pap_request(1, "frank", "Frank#Pass1", true, vec![]);
    c.send(&pkt);
    await_pushes(&duo, "frank", 1);
    s.signal(libc::SIGHUP);
    let r = check_reply(
        &c.recv()
            .unwrap_or_else(|| panic!("no answer:\n{}", s.log())),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert!(s.log().contains("configuration reloaded"), "{}", s.log());
}

#[test]
fn shutdown_answers_pending_logins_with_a_reject() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user("frank", frank(PushBehaviour::Never));
    let mut s = duo_server(&duo, "");
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let pkt = pap_request(1, "frank", "Frank#Pass1", true, vec![]);
    c.send(&pkt);
    await_pushes(&duo, "frank", 1);
    let st = s.terminate();
    assert!(st.success(), "{st}");
    let r = check_reply(
        &c.recv().expect("pending login dropped at shutdown"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(
        s.log().contains("pending MFA logins rejected at shutdown"),
        "{}",
        s.log()
    );
}

#[test]
fn over_the_per_user_limit_a_login_is_refused_with_its_reason() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    duo.set_user("frank", frank(PushBehaviour::Never));
    let s = duo_server(
        &duo,
        "max_pending_per_user = 1\njoin_pending_logins = false\n",
    );
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let first = pap_request(1, "frank", "Frank#Pass1", true, vec![]);
    c.send(&first);
    await_pushes(&duo, "frank", 1);
    let second = pap_request(2, "frank", "Frank#Pass1", true, vec![]);
    let r = check_reply(
        &c.exchange(&second).expect("no answer to the second login"),
        &second,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(s.log().contains("pending_user_limit"), "{}", s.log());
    assert_eq!(duo.pushes_sent("frank"), 1);
}

#[test]
fn entra_otp_and_a_push_only_user_through_the_server() {
    let mut cfg = EntraStandinConfig::new("11111111-2222-3333-4444-555555555555");
    cfg.client_secret = Some("entra-test-secret".into());
    let e = EntraStandin::start(cfg);
    let mut gina = EntraUser::new(Methods::OtpAndPush);
    gina.otp_codes = vec!["246810".into()];
    e.set_user("gina", gina);
    let mut hank = EntraUser::new(Methods::PushOnly);
    hank.push = entra::PushBehaviour::Approve {
        after: Duration::from_secs(2),
    };
    e.set_user("hank", hank);
    let s = Server::start(ServerOpts {
        users: vec![
            User { name: "gina", password: "Gina#Pass1", chap: false },
            User { name: "hank", password: "Hank#Pass1", chap: false },
        ],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"entra\"\n"
        ),
        mfa: format!(
            "[mfa]\nrequire_user_match = true\npush_timeout_seconds = 30\n\
             [[mfa.provider]]\nname = \"entra\"\ntype = \"entra\"\ntenant_id = \"11111111-2222-3333-4444-555555555555\"\n\
             client_secret = \"entra-test-secret\"\nlogin_url = \"{}\"\nservice_url = \"{}\"\n",
            e.login_url(),
            e.service_url()
        ),
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let pkt = pap_request(1, "gina", "Gina#Pass1", true, vec![]);
    let ch = check_reply(&c.exchange(&pkt).expect("no challenge"), &pkt, SECRET);
    assert_eq!(ch.code, ACCESS_CHALLENGE, "{}", s.log());
    let state = ch.get(attr::STATE).unwrap().to_vec();
    let pkt = pap_request(2, "gina", "246810", true, vec![(attr::STATE, state)]);
    let r = check_reply(
        &c.exchange(&pkt).expect("no answer to the code"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());

    // hank has only the app: asked for a code, the service pushes; we wait for that push.
    let pkt = pap_request(3, "hank", "Hank#Pass1", true, vec![]);
    let r = check_reply(&c.exchange(&pkt).expect("no answer for hank"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert_eq!(e.pushes_started("hank"), 1, "one push only");
    assert_eq!(e.token_requests(), 1, "the OAuth2 token is cached");
}

#[test]
fn the_alternate_login_id_attribute_is_the_mfa_identity() {
    let duo = DuoStandIn::start(IKEY, SKEY);
    // Duo knows this user only by their mail address.
    duo.set_user(
        "frank@example.com",
        frank(PushBehaviour::Approve {
            after: Duration::from_secs(1),
        }),
    );
    let s = Server::start(ServerOpts {
        users: vec![User { name: "frank", password: "Frank#Pass1", chap: false }],
        user_attrs: vec![("frank", "mail", "frank@example.com")],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"duo\"\n"
        ),
        mfa: format!(
            "[mfa]\nrequire_user_match = true\noverride_number_matching_with_otp = false\nlogin_id_attribute = \"mail\"\n\
             [[mfa.provider]]\nname = \"duo\"\ntype = \"duo\"\napi_url = \"{}\"\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\n",
            duo.url()
        ),
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let pkt = pap_request(1, "frank", "Frank#Pass1", true, vec![]);
    let r = check_reply(&c.exchange(&pkt).expect("no answer"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert_eq!(duo.pushes_sent("frank@example.com"), 1);
    assert_eq!(duo.pushes_sent("frank"), 0);
}
