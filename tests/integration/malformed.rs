//! Malformed datagrams are counted and dropped, and the server keeps serving.

use portcullis_tests::*;

#[test]
fn malformed_packets_are_counted_and_dropped_while_serving_continues() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let good = pap_request(1, "alice", "Alice#Pass1", true, vec![]);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("truncated header", good[..10].to_vec()));
    let mut long_len = good.clone();
    long_len[2..4].copy_from_slice(&((good.len() + 10) as u16).to_be_bytes());
    cases.push(("length beyond datagram", long_len));
    let mut short_len = good.clone();
    short_len[2..4].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("length below 20", short_len));
    let mut attr_zero = good.clone();
    attr_zero[21] = 0; // first attribute's length
    cases.push(("attribute length 0", attr_zero));
    let mut overrun = good.clone();
    let last = overrun.len() - 5; // NAS-IP-Address is the last attribute (6 bytes)
    overrun[last] = 40;
    cases.push(("attribute overruns packet", overrun));
    let mut oversize = good.clone();
    oversize.resize(5000, 0);
    cases.push(("oversize datagram", oversize));
    let auth = authenticator(3);
    let dup_pw = encode(
        ACCESS_REQUEST,
        3,
        auth,
        &vec![
            (attr::USER_NAME, b"alice".to_vec()),
            (
                attr::USER_PASSWORD,
                hide_password(b"Alice#Pass1", SECRET, &auth),
            ),
            (
                attr::USER_PASSWORD,
                hide_password(b"Alice#Pass1", SECRET, &auth),
            ),
        ],
        true,
        SECRET,
    );
    cases.push(("duplicate User-Password", dup_pw));
    let both = encode(
        ACCESS_REQUEST,
        4,
        auth,
        &vec![
            (attr::USER_NAME, b"alice".to_vec()),
            (
                attr::USER_PASSWORD,
                hide_password(b"Alice#Pass1", SECRET, &auth),
            ),
            (attr::CHAP_PASSWORD, vec![1; 17]),
        ],
        true,
        SECRET,
    );
    cases.push(("User-Password and CHAP-Password", both));
    let bad_code = encode(
        99,
        5,
        auth,
        &vec![(attr::USER_NAME, b"alice".to_vec())],
        true,
        SECRET,
    );
    cases.push(("unknown code", bad_code));

    let before = s.stat("dropped");
    for (what, pkt) in &cases {
        assert_eq!(c.exchange(pkt), None, "{what}: answered");
    }
    assert_eq!(
        s.stat("dropped") - before,
        cases.len() as u64,
        "{:?}",
        s.stats()
    );
    let stats = s.stats();
    assert!(
        stats
            .keys()
            .any(|k| k.starts_with("drop.") && k != "drop.oversize"),
        "{stats:?}"
    );
    assert_eq!(s.stat("drop.oversize"), 1, "{stats:?}");

    // Still serving.
    let r = check_reply(
        &c.exchange(&good).expect("server stopped answering"),
        &good,
        SECRET,
    );
    assert_eq!(r.code, ACCESS_ACCEPT);
}

#[test]
fn random_garbage_never_stops_the_server() {
    let s = Server::start(ServerOpts::default());
    let c = RawClient::new(s.auth);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..500u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 300) as usize;
        let mut pkt: Vec<u8> = (0..len)
            .map(|j| (x.rotate_left(j as u32 % 64) & 0xff) as u8)
            .collect();
        if pkt.len() >= 4 && i % 2 == 0 {
            pkt[0] = 1; // make it look like an Access-Request
            pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        c.send(&pkt);
    }
    let good = pap_request(9, "alice", "Alice#Pass1", true, vec![]);
    // Drain anything (there should be nothing) until the good reply arrives.
    c.send(&good);
    let mut got = None;
    while let Some(r) = c.recv() {
        if r.len() >= 20 && r[1] == 9 {
            got = Some(r);
            break;
        }
    }
    let r = check_reply(&got.expect("no reply after garbage"), &good, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT);
    assert_eq!(s.stat("access_accept"), 1);
}
