//! RFC 5080 duplicate detection: retransmissions get the cached reply without reprocessing.

use portcullis_tests::*;

#[test]
fn retransmission_gets_the_identical_cached_reply_and_is_processed_once() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let pkt = pap_request(42, "alice", "Alice#Pass1", true, vec![]);
    let first = c.exchange(&pkt).expect("no reply");
    check_reply(&first, &pkt, SECRET);
    for _ in 0..3 {
        let again = c.exchange(&pkt).expect("no reply to retransmission");
        assert_eq!(again, first, "retransmission answered differently");
    }
    assert_eq!(s.stat("access_accept"), 1, "{:?}", s.stats());
    assert_eq!(s.stat("duplicate_resent"), 3, "{:?}", s.stats());
    // Only one audit line for the one decision.
    assert_eq!(s.log().matches("event_id=6272").count(), 1);
}

#[test]
fn same_identifier_with_new_authenticator_is_a_new_request() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let a = pap_request(7, "alice", "Alice#Pass1", true, vec![]);
    let b = pap_request(7, "alice", "wrong", true, vec![]);
    assert_ne!(a[4..20], b[4..20]);
    assert_eq!(
        check_reply(&c.exchange(&a).unwrap(), &a, SECRET).code,
        ACCESS_ACCEPT
    );
    assert_eq!(
        check_reply(&c.exchange(&b).unwrap(), &b, SECRET).code,
        ACCESS_REJECT
    );
    assert_eq!(s.stat("identifier_reused"), 1, "{:?}", s.stats());
}

#[test]
fn accounting_retransmission_is_recorded_once() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.acct);
    let attrs = vec![
        (attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec()),
        (attr::ACCT_SESSION_ID, b"dup-1".to_vec()),
        (attr::USER_NAME, b"alice".to_vec()),
    ];
    let pkt = encode(ACCOUNTING_REQUEST, 5, [0; 16], &attrs, false, SECRET);
    let first = c.exchange(&pkt).expect("no reply");
    let again = c.exchange(&pkt).expect("no reply to retransmission");
    assert_eq!(first, again);
    let recs: Vec<_> = s
        .accounting_lines()
        .into_iter()
        .filter(|l| l.contains("dup-1"))
        .collect();
    assert_eq!(recs.len(), 1, "{recs:?}");
}
