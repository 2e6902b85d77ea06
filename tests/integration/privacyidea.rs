//! The second factor through the server against a real privacyIDEA server (installed from PyPI
//! and started by `tests/privacyidea/`, HTTPS with a private CA): an OTP challenge round trip,
//! a replayed code refused, and a push approved by an emulated privacyIDEA Authenticator app
//! while the NAS retransmits.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::*;

const REALM: &str = "portcullis";
/// RFC 6238's SHA1 test seed, hex.
const SEED_HEX: &str = "3132333435363738393031323334353637383930";

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("privacyidea")
}

struct Pi {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Pi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pi {
    fn start() -> Pi {
        let out = Command::new("bash")
            .arg(harness().join("setup.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/privacyidea/setup.sh");
        assert!(
            out.status.success(),
            "privacyIDEA setup failed ({}); see the log above",
            out.status
        );
        let dir = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("setup printed no directory")
                .trim(),
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = Command::new("bash")
            .arg(harness().join("run.sh"))
            .args([port.to_string().as_str(), "--tls"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start privacyIDEA");
        let pi = Pi {
            child,
            url: format!("https://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "privacyIDEA did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pi
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("conf/tls/ca.pem")
    }

    fn helper(&self, args: &[&str]) -> String {
        let out = Command::new(self.dir.join("venv/bin/python"))
            .arg(harness().join("helper.py"))
            .args(args)
            .output()
            .expect("run helper.py");
        assert!(
            out.status.success(),
            "helper.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn jwt(&self) -> String {
        self.helper(&[
            "admin-jwt",
            &self.url,
            "admin",
            "admin-test-pw",
            self.ca().to_str().unwrap(),
        ])
    }
}

fn totp_now() -> String {
    let seed = hex::decode(SEED_HEX).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    portcullis_mfa::totp::code_at(&seed, now, &Default::default()).to_string()
}

#[test]
fn otp_and_push_through_the_server_against_a_real_privacyidea() {
    if std::env::var_os("PORTCULLIS_SKIP_PRIVACYIDEA").is_some() {
        eprintln!("PORTCULLIS_SKIP_PRIVACYIDEA set: privacyIDEA test skipped deliberately");
        return;
    }
    let pi = Pi::start();
    let jwt = pi.jwt();
    let ca = pi.ca();
    pi.helper(&[
        "totp-enroll",
        &pi.url,
        &jwt,
        "pi-alice",
        REALM,
        SEED_HEX,
        ca.to_str().unwrap(),
    ]);
    let keys = pi.dir.join("phone-keys");
    let serial = pi.helper(&[
        "push-enroll",
        &pi.url,
        &jwt,
        "pi-push",
        REALM,
        keys.to_str().unwrap(),
        ca.to_str().unwrap(),
    ]);

    let s = Server::start(ServerOpts {
        users: vec![
            User { name: "pi-alice", password: "Alice#Pi1", chap: false },
            User { name: "pi-push", password: "Push#Pi1", chap: false },
        ],
        clients: format!(
            "[[client]]\nname = \"loopback\"\naddress = \"127.0.0.0/8\"\nsecret = \"{SECRET}\"\nmfa = \"pi\"\n"
        ),
        mfa: format!(
            "[mfa]\nrequire_user_match = true\npush_timeout_seconds = 40\n\
             [[mfa.provider]]\nname = \"pi\"\ntype = \"privacyidea\"\nurl = \"{}\"\nrealm = \"{REALM}\"\nca_file = \"{}\"\n",
            pi.url,
            ca.display()
        ),
        ..Default::default()
    });

    // OTP: the challenge comes from privacyIDEA (its transaction id stays on our side).
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let pkt = pap_request(1, "pi-alice", "Alice#Pi1", true, vec![]);
    let ch = check_reply(&c.exchange(&pkt).expect("no challenge"), &pkt, SECRET);
    assert_eq!(ch.code, ACCESS_CHALLENGE, "{}", s.log());
    let state = ch.get(attr::STATE).unwrap().to_vec();
    let code = totp_now();
    let pkt = pap_request(2, "pi-alice", &code, true, vec![(attr::STATE, state)]);
    let r = check_reply(
        &c.exchange(&pkt).expect("no answer to the code"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    // The same code in a new login: privacyIDEA refuses the replay.
    let pkt = pap_request(3, "pi-alice", "Alice#Pi1", true, vec![]);
    let ch = check_reply(&c.exchange(&pkt).expect("no challenge"), &pkt, SECRET);
    let state = ch.get(attr::STATE).unwrap().to_vec();
    let pkt = pap_request(4, "pi-alice", &code, true, vec![(attr::STATE, state)]);
    let r = check_reply(
        &c.exchange(&pkt).expect("no answer to the replay"),
        &pkt,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_REJECT, "{}", s.log());

    // Push (pi-push has only a push token: the OTP request falls back to a push). The phone
    // approves while the NAS retransmits every second.
    let phone = {
        let py = pi.dir.join("venv/bin/python");
        let helper = harness().join("helper.py");
        let (url, ca, keys, serial) = (pi.url.clone(), ca.clone(), keys.clone(), serial.clone());
        std::thread::spawn(move || {
            Command::new(py)
                .arg(helper)
                .args([
                    "push-answer",
                    &url,
                    &serial,
                    keys.to_str().unwrap(),
                    "approve",
                    ca.to_str().unwrap(),
                    "30",
                ])
                .output()
                .expect("run the phone")
        })
    };
    let c = RawClient::new(s.auth);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let pkt = pap_request(5, "pi-push", "Push#Pi1", true, vec![]);
    let mut answer = None;
    for _ in 0..40 {
        c.send(&pkt);
        if let Some(r) = c.recv() {
            answer = Some(check_reply(&r, &pkt, SECRET));
            break;
        }
    }
    let phone = phone.join().unwrap();
    assert!(
        phone.status.success(),
        "phone: {}",
        String::from_utf8_lossy(&phone.stderr)
    );
    let r = answer.unwrap_or_else(|| panic!("no answer to the push login:\n{}", s.log()));
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    assert!(s.stat("duplicate_in_progress") >= 1, "{:?}", s.stats());
    assert_eq!(
        s.log().matches("MFA approved by pi").count(),
        2,
        "{}",
        s.log()
    );
}
