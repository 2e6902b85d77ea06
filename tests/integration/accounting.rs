//! Accounting: acknowledged means durable, even across `kill -9`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_tests::*;

#[test]
fn radclient_accounting_request_is_acknowledged_and_logged() {
    let s = Server::start(ServerOpts::default());
    let r = radclient(
        None,
        s.acct,
        "acct",
        SECRET,
        "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"sess-0001\", \
         NAS-IP-Address = 127.0.0.1, Framed-IP-Address = 10.1.2.3, Acct-Input-Octets = 1234\n",
    );
    assert_eq!(
        r.code.as_deref(),
        Some("Accounting-Response"),
        "{}\n{}",
        r.output,
        s.log()
    );
    let lines = s.accounting_lines();
    let rec = lines
        .iter()
        .find(|l| l.contains("sess-0001"))
        .unwrap_or_else(|| panic!("record missing: {lines:?}"));
    for want in [
        "\"User-Name\":\"alice\"",
        "\"Acct-Status-Type\":\"Start\"",
        "\"Framed-IP-Address\":\"10.1.2.3\"",
        "\"Acct-Input-Octets\":1234",
        "\"client\":\"loopback\"",
    ] {
        assert!(rec.contains(want), "{want} not in {rec}");
    }
    assert_eq!(s.stat("accounting_response"), 1);
}

#[test]
fn accounting_with_a_bad_request_authenticator_is_dropped() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.acct);
    let attrs = vec![
        (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
        (attr::ACCT_SESSION_ID, b"forged".to_vec()),
    ];
    let mut pkt = encode(ACCOUNTING_REQUEST, 1, [0; 16], &attrs, false, SECRET);
    pkt[4] ^= 1;
    assert_eq!(c.exchange(&pkt), None);
    assert_eq!(
        s.stat("drop.bad_request_authenticator"),
        1,
        "{:?}",
        s.stats()
    );
    assert!(s.accounting_lines().iter().all(|l| !l.contains("forged")));
    // Access-Requests are not served on the accounting port.
    let pkt = pap_request(2, "alice", "Alice#Pass1", true, vec![]);
    assert_eq!(c.exchange(&pkt), None);
}

/// An Accounting-Request with the given identifier and session id.
fn acct_request(id: u8, sid: &str) -> Vec<u8> {
    let attrs = vec![
        (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
        (attr::ACCT_SESSION_ID, sid.as_bytes().to_vec()),
        (attr::USER_NAME, b"alice".to_vec()),
    ];
    encode(ACCOUNTING_REQUEST, id, [0; 16], &attrs, false, SECRET)
}

#[test]
fn a_record_that_cannot_be_written_is_not_acknowledged_and_its_retransmission_is() {
    let s = Server::start(ServerOpts::default());
    let dir = s.data_dir.join("accounting");
    // Nothing has been written yet, so no file is open: with the directory gone, the writer
    // cannot create the day's file.
    std::fs::remove_dir_all(&dir).unwrap();
    let c = RawClient::new(s.acct);
    let lost = acct_request(1, "unwritable-1");
    c.send(&lost);
    // Bounded wait for the writer to report the failure.
    for _ in 0..200 {
        if s.stat("drop.accounting_write_failed") > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(
        s.stat("drop.accounting_write_failed"),
        1,
        "{:?}\n{}",
        s.stats(),
        s.log()
    );
    std::fs::create_dir(&dir).unwrap();
    // A socket answers its accounting requests in the order they came: had the first been
    // acknowledged, its answer would arrive before the second's.
    let kept = acct_request(2, "written-2");
    let r = c.exchange(&kept).expect("no answer to the writable record");
    assert_eq!(check_reply(&r, &kept, SECRET).code, ACCOUNTING_RESPONSE);
    // The NAS retransmits the unacknowledged request; nothing of the failure was cached.
    let r = c.exchange(&lost).expect("no answer to the retransmission");
    assert_eq!(check_reply(&r, &lost, SECRET).code, ACCOUNTING_RESPONSE);
    let lines = s.accounting_lines();
    for sid in ["unwritable-1", "written-2"] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(sid)).count(),
            1,
            "{sid}: {lines:?}"
        );
    }
    assert_eq!(s.stat("accounting_response"), 2, "{:?}", s.stats());
}

#[test]
fn every_acknowledged_record_survives_kill_9() {
    let mut s = Server::start(ServerOpts::default());
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let acct = s.acct;
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let acked = acked.clone();
            let stop = stop.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                let c = RawClient::new(acct);
                // Bounded: at most 5000 requests per sender.
                for i in 0..5000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sid = format!("k9-{t}-{i}");
                    let attrs = vec![
                        (attr::ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
                        (attr::ACCT_SESSION_ID, sid.as_bytes().to_vec()),
                        (attr::USER_NAME, b"alice".to_vec()),
                    ];
                    let pkt = encode(
                        ACCOUNTING_REQUEST,
                        (i % 256) as u8,
                        [0; 16],
                        &attrs,
                        false,
                        SECRET,
                    );
                    match c.exchange(&pkt) {
                        Some(r) => {
                            let r = check_reply(&r, &pkt, SECRET);
                            assert_eq!(r.code, ACCOUNTING_RESPONSE);
                            acked.lock().unwrap().insert(sid);
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Kill while traffic is in flight (after a few hundred acknowledgements).
    while total.load(Ordering::Relaxed) < 300 && senders.iter().any(|h| !h.is_finished()) {
        std::thread::yield_now();
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for h in senders {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "only {} acknowledged", acked.len());
    let written: BTreeSet<String> = s
        .accounting_lines()
        .iter()
        .filter_map(|l| {
            let i = l.find("\"Acct-Session-Id\":\"")? + 19;
            Some(l[i..].split('"').next()?.to_owned())
        })
        .collect();
    let missing: Vec<_> = acked.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost after kill -9: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // The next start replays the journal (nothing was checkpointed after the first start):
    // the records are all in the files already, so none may appear twice.
    let lines_before = s.accounting_lines();
    s.restart();
    assert!(
        s.log().contains("accounting journal replayed"),
        "{}",
        s.log()
    );
    assert_eq!(s.accounting_lines(), lines_before);
    let mut seen = BTreeSet::new();
    for l in &lines_before {
        assert!(seen.insert(l.clone()), "a record written twice: {l}");
    }
}

#[test]
fn sigterm_answers_in_flight_work_and_exits_cleanly() {
    let mut s = Server::start(ServerOpts::default());
    let r = radclient(
        None,
        s.acct,
        "acct",
        SECRET,
        "User-Name = \"alice\", Acct-Status-Type = Stop, Acct-Session-Id = \"term-1\"\n",
    );
    assert_eq!(
        r.code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        r.output
    );
    let st = s.terminate();
    assert!(st.success(), "exit status {st}\n{}", s.log());
    assert!(s.log().contains("accounting flushed"), "{}", s.log());
    assert!(s.accounting_lines().iter().any(|l| l.contains("term-1")));
    // The control socket is removed on a clean exit.
    assert!(!s.control.exists());
}
