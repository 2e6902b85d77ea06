//! The second factor end to end: local TOTP through Access-Challenge, replay, NPS-extension
//! settings (require_user_match, the NAS-IP allow-list), fail modes with the MFA service down,
//! and the protocol limit of MS-CHAPv2.

use portcullis_mfa::totp;
use portcullis_tests::*;

const DAVE_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn dave() -> User {
    User {
        name: "dave",
        password: "Dave#Pass1",
        chap: false,
    }
}

fn erin() -> User {
    User {
        name: "erin",
        password: "Erin#Pass1",
        chap: false,
    }
}

fn clients(provider: &str) -> String {
    format!("[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"{provider}\"\n")
}

const TOTP_PROVIDER: &str =
    "[[mfa.provider]]\nname = \"totp\"\ntype = \"totp\"\nstore = \"totp.toml\"\nkey_file = \"users.key\"\n";

fn totp_server(settings: &str) -> Server {
    Server::start(ServerOpts {
        users: vec![dave(), erin()],
        clients: clients("totp"),
        totp: vec![("dave", DAVE_SEED)],
        mfa: format!("[mfa]\n{settings}\n{TOTP_PROVIDER}"),
        ..Default::default()
    })
}

/// The current TOTP code of a base32 seed (SHA1, 6 digits, 30 s).
fn code(seed: &str) -> String {
    let seed = totp::base32_decode(seed).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp::code_at(&seed, now, &totp::TotpOptions::default()).to_string()
}

/// First round: password; returns the Access-Challenge.
fn first_round(c: &RawClient, id: u8, user: &str, password: &str, extra: Attrs) -> Reply {
    let pkt = pap_request(id, user, password, true, extra);
    check_reply(
        &c.exchange(&pkt).expect("no answer to the first round"),
        &pkt,
        SECRET,
    )
}

/// Second round: the code in User-Password, with the State of the challenge.
fn answer(c: &RawClient, id: u8, user: &str, code: &str, state: &[u8]) -> Reply {
    let pkt = pap_request(id, user, code, true, vec![(attr::STATE, state.to_vec())]);
    check_reply(
        &c.exchange(&pkt).expect("no answer to the code"),
        &pkt,
        SECRET,
    )
}

#[test]
fn otp_challenge_round_trip_then_replayed_and_wrong_codes_are_refused() {
    let s = totp_server("require_user_match = true\n");
    let c = RawClient::new(s.auth);
    let ch = first_round(&c, 1, "dave", "Dave#Pass1", vec![]);
    assert_eq!(ch.code, ACCESS_CHALLENGE, "{}", s.log());
    let state = ch
        .get(attr::STATE)
        .expect("no State in Access-Challenge")
        .to_vec();
    assert_eq!(state.len(), 16);
    let prompt =
        String::from_utf8(ch.get(attr::REPLY_MESSAGE).expect("no prompt").to_vec()).unwrap();
    assert!(prompt.contains("code"), "{prompt}");
    let good = code(DAVE_SEED);
    assert_eq!(
        answer(&c, 2, "dave", &good, &state).code,
        ACCESS_ACCEPT,
        "{}",
        s.log()
    );

    // The same State again: single use.
    assert_eq!(answer(&c, 3, "dave", &good, &state).code, ACCESS_REJECT);
    // A new login, the same (already used) code: replay refused.
    let ch = first_round(&c, 4, "dave", "Dave#Pass1", vec![]);
    let state = ch.get(attr::STATE).unwrap().to_vec();
    assert_eq!(answer(&c, 5, "dave", &good, &state).code, ACCESS_REJECT);
    // A wrong code.
    let ch = first_round(&c, 6, "dave", "Dave#Pass1", vec![]);
    let state = ch.get(attr::STATE).unwrap().to_vec();
    let wrong: String = good
        .chars()
        .map(|d| char::from(b'0' + (d as u8 - b'0' + 1) % 10))
        .collect();
    assert_eq!(answer(&c, 7, "dave", &wrong, &state).code, ACCESS_REJECT);
    // A wrong password never reaches the second factor.
    assert_eq!(
        first_round(&c, 8, "dave", "nope", vec![]).code,
        ACCESS_REJECT
    );

    let log = s.log();
    assert!(log.contains("MFA approved by totp"), "{log}");
    assert!(log.contains("code already used"), "{log}");
    assert!(log.contains("wrong code"), "{log}");
    assert!(log.contains("reason_code=21"), "{log}");
    assert_eq!(s.stat("access_challenge"), 3, "{:?}", s.stats());
    assert!(!log.contains(&good), "an OTP code reached the log");
}

#[test]
fn a_state_answers_only_for_its_user() {
    let s = totp_server("require_user_match = false\n");
    let c = RawClient::new(s.auth);
    let ch = first_round(&c, 1, "dave", "Dave#Pass1", vec![]);
    let state = ch.get(attr::STATE).unwrap().to_vec();
    // erin tries to finish dave's challenge with dave's code.
    assert_eq!(
        answer(&c, 2, "erin", &code(DAVE_SEED), &state).code,
        ACCESS_REJECT
    );
    assert!(
        s.log().contains("State issued to another client or user"),
        "{}",
        s.log()
    );
}

#[test]
fn require_user_match_rejects_or_admits_unenrolled_users() {
    let strict = totp_server("require_user_match = true\n");
    let c = RawClient::new(strict.auth);
    assert_eq!(
        first_round(&c, 1, "erin", "Erin#Pass1", vec![]).code,
        ACCESS_REJECT
    );
    assert!(
        strict
            .log()
            .contains("not enrolled and mfa.require_user_match = true"),
        "{}",
        strict.log()
    );

    let lenient = totp_server("require_user_match = false\n");
    let c = RawClient::new(lenient.auth);
    assert_eq!(
        first_round(&c, 1, "erin", "Erin#Pass1", vec![]).code,
        ACCESS_ACCEPT
    );
    assert!(
        lenient.log().contains("MFA skipped: user not enrolled"),
        "{}",
        lenient.log()
    );
}

#[test]
fn nas_ip_allow_list_skips_the_second_factor_by_attribute() {
    let s = totp_server("require_user_match = true\nskip_nas_ip = [\"192.0.2.50\"]\n");
    let c = RawClient::new(s.auth);
    // pap_request sends NAS-IP-Address 127.0.0.1: not allow-listed, so a challenge.
    assert_eq!(
        first_round(&c, 1, "dave", "Dave#Pass1", vec![]).code,
        ACCESS_CHALLENGE
    );
    // The same login from a NAS that says it is 192.0.2.50: straight in.
    let a = authenticator(50);
    let pkt = encode(
        ACCESS_REQUEST,
        2,
        a,
        &vec![
            (attr::USER_NAME, b"dave".to_vec()),
            (
                attr::USER_PASSWORD,
                hide_password(b"Dave#Pass1", SECRET, &a),
            ),
            (attr::NAS_IP_ADDRESS, vec![192, 0, 2, 50]),
        ],
        true,
        SECRET,
    );
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert!(
        s.log().contains("NAS-IP-Address in mfa.skip_nas_ip"),
        "{}",
        s.log()
    );
}

#[test]
fn mfa_service_down_follows_the_fail_mode() {
    // A privacyIDEA provider pointed at a loopback port where nothing listens.
    let dead = free_port();
    for (mode, want) in [("secure", ACCESS_REJECT), ("safe", ACCESS_ACCEPT)] {
        let s = Server::start(ServerOpts {
            users: vec![dave()],
            clients: clients("pi"),
            mfa: format!(
                "[mfa]\nrequire_user_match = true\n[[mfa.provider]]\nname = \"pi\"\ntype = \"privacyidea\"\n\
                 url = \"http://127.0.0.1:{dead}\"\nfail_mode = \"{mode}\"\nretries = 0\ntimeout_seconds = 2\n"
            ),
            ..Default::default()
        });
        let c = RawClient::new(s.auth);
        assert_eq!(
            first_round(&c, 1, "dave", "Dave#Pass1", vec![]).code,
            want,
            "fail mode {mode}:\n{}",
            s.log()
        );
        assert!(
            s.log().contains(&format!("fail mode {mode}")),
            "{}",
            s.log()
        );
    }
}

#[test]
fn ms_chapv2_cannot_carry_a_code_and_a_totp_only_user_is_refused_with_that_reason() {
    let s = totp_server("require_user_match = true\n");
    // An MS-CHAPv2 request for dave built from the RFC 2759 algorithm with his password.
    let auth_challenge = [7u8; 16];
    let peer_challenge = [9u8; 16];
    let nt = portcullis_auth::nt::nt_hash("Dave#Pass1");
    let nt_response = portcullis_auth::mschapv2::generate_nt_response(
        &auth_challenge,
        &peer_challenge,
        b"dave",
        &nt,
    );
    let mut resp = vec![1u8, 0];
    resp.extend(peer_challenge);
    resp.extend([0u8; 8]);
    resp.extend(nt_response);
    let a = authenticator(77);
    let pkt = encode(
        ACCESS_REQUEST,
        1,
        a,
        &vec![
            (attr::USER_NAME, b"dave".to_vec()),
            (attr::VENDOR_SPECIFIC, vsa(311, 11, &auth_challenge)),
            (attr::VENDOR_SPECIFIC, vsa(311, 25, &resp)),
        ],
        true,
        SECRET,
    );
    let c = RawClient::new(s.auth);
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_REJECT, "{}", s.log());
    assert!(
        r.vsa(311, 2).is_some(),
        "no MS-CHAP-Error on the MFA reject"
    );
    assert!(
        s.log().contains("cannot carry a one-time code"),
        "{}",
        s.log()
    );
}
