//! Network policies (`[[policy]]`) end to end with radclient: first match wins, reply
//! attributes on every Access-Accept (the OTP challenge path included), an explicit deny and
//! no match (NPS reason codes 65 and 48), the second factor chosen per policy, and a reload.

use portcullis_mfa::totp;
use portcullis_tests::*;

const DAVE_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn user(name: &'static str, password: &'static str) -> User {
    User {
        name,
        password,
        chap: false,
    }
}

const TOTP_PROVIDER: &str =
    "[[mfa.provider]]\nname = \"totp\"\ntype = \"totp\"\nstore = \"totp.toml\"\nkey_file = \"users.key\"\n";

const POLICIES: &str = r#"
[[policy]]
name = "no-wifi-for-contractors"
groups = ["contractors"]
nas_port_types = ["Wireless-802.11"]
access = "deny"

[[policy]]
name = "mfa-admins"
groups = ["admins"]
mfa = "totp"
reply_attributes = { "Session-Timeout" = 900, "Class" = "vpn-admin", "Filter-Id" = "admins" }

[[policy]]
name = "staff-vpn"
groups = ["staff", "contractors"]
reply_attributes = { "Session-Timeout" = 3600, "Class" = "vpn-staff" }
"#;

/// A server whose client has no `mfa`: alice (staff), erin (contractors), dave (admins,
/// enrolled for TOTP), frank (no group).
fn server(mfa_on_client: bool, policies: &str) -> Server {
    let mfa = if mfa_on_client {
        "mfa = \"totp\"\n"
    } else {
        ""
    };
    Server::start(ServerOpts {
        users: vec![
            user("alice", "Alice#Pass1"),
            user("erin", "Erin#Pass1"),
            user("dave", "Dave#Pass1"),
            user("frank", "Frank#Pass1"),
        ],
        user_groups: vec![
            ("alice", "staff"),
            ("erin", "contractors"),
            ("dave", "admins"),
        ],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\n{mfa}"
        ),
        totp: vec![("dave", DAVE_SEED)],
        mfa: format!("[mfa]\nrequire_user_match = true\n{TOTP_PROVIDER}\n{policies}"),
        ..Default::default()
    })
}

fn pap(s: &Server, user: &str, password: &str, extra: &str) -> RadReply {
    radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = \"{user}\", User-Password = \"{password}\", {extra}Message-Authenticator = 0x00\n"
        ),
    )
}

/// The value radclient printed for `attr` in the reply (after "Received").
fn reply_attr(r: &RadReply, attr: &str) -> Option<String> {
    let received = r.output.split("Received ").nth(1)?;
    received.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(" = ")?;
        (k == attr).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// radclient prints octet attributes (Class) as 0x-hex.
fn hex(s: &str) -> String {
    format!("0x{}", hex::encode(s))
}

/// The audit line of `user`'s decision with NPS event `event` (the last one).
fn audit_line(log: &str, user: &str, event: u32) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains(&format!("event_id={event}")) && l.contains(&format!("user={user} ")))
        .unwrap_or_else(|| panic!("no audit line {event} for {user} in:\n{log}"))
        .to_owned()
}

fn code(seed: &str) -> String {
    let seed = totp::base32_decode(seed).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp::code_at(&seed, now, &totp::TotpOptions::default()).to_string()
}

#[test]
fn grant_deny_and_no_match_with_reply_attributes_and_reason_codes() {
    let s = server(false, POLICIES);

    // (1) staff: granted by `staff-vpn`, its reply attributes in the Access-Accept.
    let r = pap(&s, "alice", "Alice#Pass1", "");
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        r.output,
        s.log()
    );
    assert_eq!(
        reply_attr(&r, "Session-Timeout").as_deref(),
        Some("3600"),
        "{}",
        r.output
    );
    assert_eq!(
        reply_attr(&r, "Class"),
        Some(hex("vpn-staff")),
        "{}",
        r.output
    );
    assert_eq!(reply_attr(&r, "Filter-Id"), None, "{}", r.output);

    // (2) a contractor on WiFi meets the deny policy first; on a VPN (Virtual) the next one.
    let r = pap(
        &s,
        "erin",
        "Erin#Pass1",
        "NAS-Port-Type = Wireless-802.11, ",
    );
    assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    let line = audit_line(&s.log(), "erin", 6273);
    assert!(line.contains("reason_code=65"), "{line}");
    assert!(line.contains("no-wifi-for-contractors"), "{line}");
    let r = pap(&s, "erin", "Erin#Pass1", "NAS-Port-Type = Virtual, ");
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    assert_eq!(reply_attr(&r, "Session-Timeout").as_deref(), Some("3600"));
    let line = audit_line(&s.log(), "erin", 6272);
    assert!(line.contains("staff-vpn"), "{line}");

    // (3) in no group: no policy matches, and with policies configured that is a deny (48).
    let r = pap(&s, "frank", "Frank#Pass1", "");
    assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    let line = audit_line(&s.log(), "frank", 6273);
    assert!(line.contains("reason_code=48"), "{line}");

    // A wrong password is still a bad password (16), whatever the policies.
    let r = pap(&s, "alice", "nope", "");
    assert_eq!(r.code.as_deref(), Some("Access-Reject"));
    assert!(audit_line(&s.log(), "alice", 6273).contains("reason_code=16"));
}

#[test]
fn a_policy_requires_mfa_and_the_challenge_path_keeps_its_reply_attributes() {
    // (4) the client has no `mfa`, the policy asks for local TOTP: Access-Challenge.
    let s = server(false, POLICIES);
    let r = pap(&s, "dave", "Dave#Pass1", "");
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Challenge"),
        "{}\n{}",
        r.output,
        s.log()
    );
    // The policy's attributes belong on the final Access-Accept, not on the challenge.
    assert_eq!(reply_attr(&r, "Session-Timeout"), None, "{}", r.output);
    let state = reply_attr(&r, "State").expect("no State in the Access-Challenge");
    assert!(state.starts_with("0x") && state.len() == 34, "{state}");

    // (5) the right code: the final Access-Accept carries the policy's reply attributes.
    let r = radclient(
        None,
        s.auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = \"dave\", User-Password = \"{}\", State = {state}, Message-Authenticator = 0x00\n",
            code(DAVE_SEED)
        ),
    );
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        r.output,
        s.log()
    );
    assert_eq!(
        reply_attr(&r, "Session-Timeout").as_deref(),
        Some("900"),
        "{}",
        r.output
    );
    assert_eq!(
        reply_attr(&r, "Class"),
        Some(hex("vpn-admin")),
        "{}",
        r.output
    );
    assert_eq!(
        reply_attr(&r, "Filter-Id").as_deref(),
        Some("admins"),
        "{}",
        r.output
    );
    let line = audit_line(&s.log(), "dave", 6272);
    assert!(line.contains("mfa-admins"), "{line}");
    assert!(line.contains("MFA approved by totp"), "{line}");
}

#[test]
fn a_policy_skips_the_clients_mfa_and_unmatched_logins_keep_it() {
    // The client requires TOTP; staff are exempt by policy; anyone else matches no policy and,
    // with when_none_match = "grant", gets the client's second factor.
    let s = server(
        true,
        r#"
[[policy]]
name = "staff-no-mfa"
groups = ["staff"]
mfa = "none"
reply_attributes = { "Idle-Timeout" = 600 }

[policies]
when_none_match = "grant"
"#,
    );
    let r = pap(&s, "alice", "Alice#Pass1", "");
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        r.output,
        s.log()
    );
    assert_eq!(
        reply_attr(&r, "Idle-Timeout").as_deref(),
        Some("600"),
        "{}",
        r.output
    );
    let line = audit_line(&s.log(), "alice", 6272);
    assert!(line.contains("MFA skipped by policy"), "{line}");
    assert!(line.contains("staff-no-mfa"), "{line}");
    assert_eq!(s.stat("access_challenge"), 0);

    let r = pap(&s, "dave", "Dave#Pass1", "");
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Challenge"),
        "{}\n{}",
        r.output,
        s.log()
    );
}

#[test]
fn sighup_loads_new_policies() {
    let s = server(false, "");
    // No policies: everyone in, as before policies existed, with no policy attributes.
    let r = pap(&s, "frank", "Frank#Pass1", "");
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    assert_eq!(reply_attr(&r, "Session-Timeout"), None);

    let path = s.dir.path().join("portcullis.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(POLICIES);
    std::fs::write(&path, config).unwrap();
    s.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.log().contains("configuration reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = pap(&s, "frank", "Frank#Pass1", "");
    assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    let r = pap(&s, "alice", "Alice#Pass1", "");
    assert_eq!(
        reply_attr(&r, "Session-Timeout").as_deref(),
        Some("3600"),
        "{}",
        r.output
    );
}
