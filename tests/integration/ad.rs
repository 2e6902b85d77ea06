//! Active Directory end to end: the server with a `[directory]` section against a real Samba AD
//! DC on loopback (`tests/samba/setup.sh`, run by `cargo xtask test`, which sets
//! `PORTCULLIS_SAMBA_DIR`), driven by radclient and by the harness's own RADIUS encoder.
//! Under CI=true a missing DC fails; elsewhere the tests are skipped with a loud message.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_auth::mppe::MppeKeys;
use portcullis_auth::mschapv2::{generate_authenticator_response, generate_nt_response};
use portcullis_auth::nt::{nt_hash, nt_hash_hash};
use portcullis_tests::*;

const MICROSOFT: u32 = 311;
const MS_CHAP_ERROR: u8 = 2;
const MS_CHAP_CHALLENGE: u8 = 11;
const MS_MPPE_SEND_KEY: u8 = 16;
const MS_MPPE_RECV_KEY: u8 = 17;
const MS_CHAP2_RESPONSE: u8 = 25;
const MS_CHAP2_SUCCESS: u8 = 26;

struct Dc {
    env: HashMap<String, String>,
}

impl Dc {
    fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing in the DC's env file"))
    }
}

fn dc() -> Option<Dc> {
    let Some(dir) = std::env::var_os("PORTCULLIS_SAMBA_DIR").map(PathBuf::from) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PORTCULLIS_SAMBA_DIR is not set: run the tests through `cargo xtask test` (it provisions the Samba AD DC)");
        }
        eprintln!("\n*** SKIPPED: no Samba AD DC (run `cargo xtask test`, or tests/samba/setup.sh and set PORTCULLIS_SAMBA_DIR) ***\n");
        return None;
    };
    let text = std::fs::read_to_string(dir.join("env"))
        .unwrap_or_else(|e| panic!("{}/env: {e} (run tests/samba/setup.sh)", dir.display()));
    Some(Dc {
        env: text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    })
}

const REAL_DC: &str = "ldaps://127.0.0.1:636";

/// The `[directory]` table for `servers`, plus `extra` lines.
fn directory(dc: &Dc, servers: &[String], extra: &str) -> String {
    let list = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[xdp]\nmode = \"off\"\n\
         [directory]\nservers = [{list}]\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
         bind_password_file = \"{}\"\nca_file = \"{}\"\ndomain = \"{}\"\n\
         ntlm_auth = \"/usr/bin/ntlm_auth\"\nsmb_conf = \"{}\"\nntlm_helpers = 2\n\
         timeout_ms = 700\n{extra}\n",
        dc.get("BASE_DN"),
        dc.get("SVC_DN"),
        PathBuf::from(dc.get("CA_FILE"))
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("svc-radius.password")
            .display(),
        dc.get("CA_FILE"),
        dc.get("DOMAIN"),
        dc.get("SMB_CONF"),
    )
}

fn start(dc: &Dc, servers: &[String], extra: &str) -> Server {
    Server::start(ServerOpts {
        xdp: directory(dc, servers, extra),
        ..Default::default()
    })
}

/// The last audit line about `user`.
fn audit_for(s: &Server, user: &str) -> String {
    let log = s.log();
    log.lines()
        .rev()
        .find(|l| l.contains("event_id=") && l.contains(&format!("user={user} ")))
        .unwrap_or_else(|| panic!("no audit line for {user}:\n{log}"))
        .to_owned()
}

fn assert_reason(s: &Server, user: &str, code: u32) {
    let line = audit_for(s, user);
    assert!(
        line.contains(&format!("reason_code={code} ")),
        "{user}: want reason {code}: {line}"
    );
}

#[test]
fn pap_against_the_dc_with_reasons_groups_and_local_users_first() {
    let Some(dc) = dc() else { return };
    let s = start(&dc, &[REAL_DC.into()], "");
    let pw = dc.get("PASSWORD");
    let r = rad_pap(None, s.auth, "ad-alice", pw);
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        r.output,
        s.log()
    );
    // Nested membership shows in the audit line: vpn-users directly, staff through it.
    let line = audit_for(&s, "ad-alice");
    assert!(line.contains("reason_code=0 "), "{line}");
    assert!(line.contains("groups staff,vpn-users"), "{line}");
    // Other name forms reach the same account.
    for name in ["SAMDOM\\\\ad-alice", "ad-alice@samdom.test"] {
        let r = rad_pap(None, s.auth, name, pw);
        assert_eq!(
            r.code.as_deref(),
            Some("Access-Accept"),
            "{name}: {}",
            r.output
        );
    }
    // Denials, each with its NPS reason code.
    let cases: &[(&str, &str, u32)] = &[
        ("ad-bob", "Wrong#Pass1", 16),
        ("no-such-ad-user", pw, 8),
        ("ad-disabled", pw, 34),
        ("ad-expired", pw, 35),
        ("ad-mustchange", pw, 33),
        ("ad-nodialin", pw, 65),
    ];
    for (user, p, code) in cases {
        let r = rad_pap(None, s.auth, user, p);
        assert_eq!(
            r.code.as_deref(),
            Some("Access-Reject"),
            "{user}: {}",
            r.output
        );
        assert_reason(&s, user, *code);
    }
    // msNPAllowDialin = TRUE is allowed.
    let r = rad_pap(None, s.auth, "ad-dialin", pw);
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    // The local user store stays authoritative for the names it holds.
    let r = rad_pap(None, s.auth, "alice", "Alice#Pass1");
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    assert!(!audit_for(&s, "alice").contains("directory"));
    // No password ever reaches the log.
    let log = s.log();
    assert!(
        !log.contains(pw) && !log.contains(dc.get("SVC_PASS")),
        "secret in the log"
    );
}

#[test]
fn ignore_dialin_lets_msnpallowdialin_false_in() {
    let Some(dc) = dc() else { return };
    let s = start(&dc, &[REAL_DC.into()], "ignore_dialin = true");
    let r = rad_pap(None, s.auth, "ad-nodialin", dc.get("PASSWORD"));
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
}

fn mschap_request(id: u8, user: &str, password: &str) -> (Vec<u8>, [u8; 16], [u8; 16], [u8; 24]) {
    let auth = authenticator(u64::from(id) + 7000);
    let challenge: [u8; 16] = authenticator(u64::from(id) + 9000);
    let peer: [u8; 16] = authenticator(u64::from(id) + 11000);
    let bare = user.rsplit('\\').next().unwrap();
    let nt = generate_nt_response(&challenge, &peer, bare.as_bytes(), &nt_hash(password));
    let mut resp = vec![id, 0];
    resp.extend(peer);
    resp.extend([0u8; 8]);
    resp.extend(nt);
    let pkt = encode(
        ACCESS_REQUEST,
        id,
        auth,
        &vec![
            (attr::USER_NAME, user.as_bytes().to_vec()),
            (
                attr::VENDOR_SPECIFIC,
                vsa(MICROSOFT, MS_CHAP_CHALLENGE, &challenge),
            ),
            (
                attr::VENDOR_SPECIFIC,
                vsa(MICROSOFT, MS_CHAP2_RESPONSE, &resp),
            ),
        ],
        true,
        SECRET,
    );
    (pkt, challenge, peer, nt)
}

#[test]
fn mschapv2_against_the_dc_with_success_and_mppe_keys() {
    let Some(dc) = dc() else { return };
    let s = start(&dc, &[REAL_DC.into()], "");
    let pw = dc.get("PASSWORD");
    let c = RawClient::new(s.auth);
    for (id, user) in [(1u8, "ad-alice"), (2, "SAMDOM\\ad-alice")] {
        let (pkt, challenge, peer, nt) = mschap_request(id, user, pw);
        let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
        assert_eq!(r.code, ACCESS_ACCEPT, "{user}: {}", s.log());
        // Expected values computed independently from the known password.
        let success = r
            .vsa(MICROSOFT, MS_CHAP2_SUCCESS)
            .expect("no MS-CHAP2-Success");
        assert_eq!(success[0], id);
        let want =
            generate_authenticator_response(&nt_hash(pw), &nt, &peer, &challenge, b"ad-alice");
        assert_eq!(&success[1..], &want[..]);
        let req_auth: [u8; 16] = pkt[4..20].try_into().unwrap();
        let keys = MppeKeys::derive(&nt_hash_hash(&nt_hash(pw)), &nt);
        let send = salt_decrypt(
            r.vsa(MICROSOFT, MS_MPPE_SEND_KEY).expect("no Send-Key"),
            SECRET,
            &req_auth,
        );
        let recv = salt_decrypt(
            r.vsa(MICROSOFT, MS_MPPE_RECV_KEY).expect("no Recv-Key"),
            SECRET,
            &req_auth,
        );
        assert_eq!(send, keys.send_key().to_vec());
        assert_eq!(recv, keys.recv_key().to_vec());
    }
    // Rejects carry the MS-CHAP error code of the reason.
    let cases: &[(u8, &str, &str, &str, u32)] = &[
        (3, "ad-bob", "Wrong#Pass1", "E=691 ", 16),
        (4, "ad-disabled", pw, "E=647 ", 34),
        (5, "ad-mustchange", pw, "E=648 ", 33),
        (6, "ad-nodialin", pw, "E=649 ", 65),
    ];
    for (id, user, p, e, code) in cases {
        let (pkt, ..) = mschap_request(*id, user, p);
        let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
        assert_eq!(r.code, ACCESS_REJECT, "{user}");
        let err = r.vsa(MICROSOFT, MS_CHAP_ERROR).expect("no MS-CHAP-Error");
        assert_eq!(err[0], *id);
        let text = std::str::from_utf8(&err[1..]).unwrap();
        assert!(text.starts_with(e), "{user}: {text}");
        assert!(r.vsa(MICROSOFT, MS_MPPE_SEND_KEY).is_none());
        assert_reason(&s, user, *code);
    }
}

/// A port that accepts TCP connections and never answers: a hung DC.
fn blackhole() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldaps://127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, url)
}

/// A port nothing listens on.
fn closed() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("ldaps://127.0.0.1:{port}")
}

#[test]
fn failover_when_the_first_dcs_are_down() {
    let Some(dc) = dc() else { return };
    let (_hole, hole) = blackhole();
    let s = start(&dc, &[closed(), hole, REAL_DC.into()], "");
    let pw = dc.get("PASSWORD");
    // PAP and MS-CHAPv2 both get through to the third DC (the first request waits for the
    // black hole's timeout, 700 ms, hence the longer receive timeout).
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let pkt = pap_request(8, "ad-alice", pw, true, Vec::new());
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    let (pkt, ..) = mschap_request(9, "ad-bob", pw);
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert!(
        s.log().contains("domain controller marked down"),
        "{}",
        s.log()
    );
}

#[test]
fn all_dcs_down_rejects_with_reason_5_in_bounded_time() {
    let Some(dc) = dc() else { return };
    let (_hole, hole) = blackhole();
    let s = start(&dc, &[closed(), hole], "");
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    let pkt = pap_request(8, "ad-alice", dc.get("PASSWORD"), true, Vec::new());
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_REJECT, "{}", s.log());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_reason(&s, "ad-alice", 5);
    // Local users are not affected by the outage.
    let r = rad_pap(None, s.auth, "alice", "Alice#Pass1");
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
}

#[test]
fn all_dcs_down_with_discard_leaves_the_request_unanswered() {
    let Some(dc) = dc() else { return };
    let s = start(&dc, &[closed()], "on_unavailable = \"discard\"");
    let pkt = pap_request(7, "ad-alice", dc.get("PASSWORD"), true, Vec::new());
    let c = RawClient::new(s.auth);
    c.send(&pkt);
    assert!(c.recv().is_none(), "a discarded request got an answer");
    let line = audit_for(&s, "ad-alice");
    assert!(
        line.contains("event_id=6274") && line.contains("reason_code=5 "),
        "{line}"
    );
}

#[test]
fn a_retransmission_during_the_lookup_is_dropped_as_in_progress() {
    let Some(dc) = dc() else { return };
    // The black hole in front makes the first lookup take the 700 ms timeout.
    let (_hole, hole) = blackhole();
    let s = start(&dc, &[hole, REAL_DC.into()], "");
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let pkt = pap_request(11, "ad-alice", dc.get("PASSWORD"), true, Vec::new());
    c.send(&pkt);
    c.send(&pkt);
    let r = check_reply(&c.recv().expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    c.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(c.recv().is_none(), "the retransmission got a second answer");
    assert_eq!(s.stat("duplicate_in_progress"), 1);
    assert_eq!(s.stat("access_accept"), 1);
    // After the answer, a retransmission gets the cached reply.
    let again = c.exchange(&pkt).expect("no cached reply");
    assert_eq!(again, r.raw);
}

#[test]
fn the_second_factor_follows_with_the_directory_mail_as_mfa_identity() {
    let Some(dc) = dc() else { return };
    const SEED: &str = "JBSWY3DPEHPK3PXP";
    // The TOTP enrollment is under ad-alice's mail attribute, read from the directory.
    let s = Server::start(ServerOpts {
        xdp: directory(&dc, &[REAL_DC.into()], ""),
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"totp\"\n"
        ),
        totp: vec![("alice.mail@samdom.test", SEED)],
        mfa: "[mfa]\nrequire_user_match = true\nlogin_id_attribute = \"mail\"\n\
              [[mfa.provider]]\nname = \"totp\"\ntype = \"totp\"\nstore = \"totp.toml\"\nkey_file = \"users.key\"\n"
            .into(),
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    let pkt = pap_request(1, "ad-alice", dc.get("PASSWORD"), true, Vec::new());
    let ch = check_reply(&c.exchange(&pkt).expect("no challenge"), &pkt, SECRET);
    assert_eq!(ch.code, ACCESS_CHALLENGE, "{}", s.log());
    let state = ch.get(attr::STATE).expect("no State").to_vec();
    let seed = portcullis_mfa::totp::base32_decode(SEED).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = portcullis_mfa::totp::code_at(&seed, now, &Default::default()).to_string();
    let pkt = pap_request(2, "ad-alice", &code, true, vec![(attr::STATE, state)]);
    let r = check_reply(
        &c.exchange(&pkt).expect("no answer to the code"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    // ad-bob has no mail: his MFA identity is his account name, which is not enrolled.
    let pkt = pap_request(3, "ad-bob", dc.get("PASSWORD"), true, Vec::new());
    let r = check_reply(&c.exchange(&pkt).expect("no answer"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_REJECT, "{}", s.log());
    assert_reason(&s, "ad-bob", 21);
    // A wrong directory password never reaches the second factor.
    let pkt = pap_request(4, "ad-alice", "Wrong#Pass1", true, Vec::new());
    let r = check_reply(&c.exchange(&pkt).expect("no answer"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_REJECT);
    assert_reason(&s, "ad-alice", 16);
}

#[test]
fn network_policies_match_the_directory_groups_nested_ones_included() {
    let Some(dc) = dc() else { return };
    // `staff` reaches ad-alice only through vpn-users; names compare case-insensitively.
    let s = start(
        &dc,
        &[REAL_DC.into()],
        "[[policy]]\nname = \"ad-staff\"\ngroups = [\"STAFF\"]\n\
         reply_attributes = { \"Session-Timeout\" = 1800, \"Class\" = \"ad-staff\" }\n",
    );
    let pw = dc.get("PASSWORD");
    let r = rad_pap(None, s.auth, "ad-alice", pw);
    assert_eq!(
        r.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        r.output,
        s.log()
    );
    let received = r.output.split("Received ").nth(1).unwrap_or_default();
    assert!(received.contains("Session-Timeout = 1800"), "{}", r.output);
    assert!(
        received.contains(&format!("Class = 0x{}", hex::encode("ad-staff"))),
        "{}",
        r.output
    );
    let line = audit_for(&s, "ad-alice");
    assert!(line.contains("ad-staff"), "{line}");
    // ad-bob is in no group: no policy matches, NPS reason 48.
    let r = rad_pap(None, s.auth, "ad-bob", pw);
    assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    assert_reason(&s, "ad-bob", 48);
}
