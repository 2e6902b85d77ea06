//! The XDP pre-filter end to end, inside a network namespace made by the test: a real client
//! (radclient) from a configured address is answered while datagrams from an unknown source
//! address are dropped in the kernel — the kernel counters rise and userspace never sees them.

use portcullis_tests::*;

#[test]
fn unknown_client_dropped_in_the_kernel_inside_a_netns() {
    let ns = Netns::new("xdp");
    // A second loopback address; datagrams sent to it leave from it, i.e. from an unknown client.
    ns.exec(&["ip", "addr", "add", "127.1.0.1/32", "dev", "lo"]);
    let port = free_port();
    let s = Server::start(ServerOpts {
        netns: Some(ns.name.clone()),
        xdp: "[xdp]\nmode = \"generic\"\ninterfaces = [\"lo\"]\nrequired = true\n".into(),
        clients: format!(
            "[[client]]\nname = \"known\"\naddress = \"127.0.0.1/32\"\nsecret = \"{SECRET}\"\n"
        ),
        auth_listen: vec![format!("127.0.0.1:{port}"), format!("127.1.0.1:{port}")],
        acct_listen: vec![format!("127.0.0.1:{}", port + 1)],
        ..Default::default()
    });
    assert_eq!(
        s.stats().get("xdp.active").map(String::as_str),
        Some("1"),
        "{:?}\n{}",
        s.stats(),
        s.log()
    );
    assert!(s.log().contains("generic"), "{}", s.log());

    let ok = rad_pap(Some(&ns.name), s.auth, "alice", "Alice#Pass1");
    assert_eq!(
        ok.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        ok.output,
        s.log()
    );

    let drops_before = s.stat("xdp.lo.drop_unknown_client_v4");
    let unknown: std::net::SocketAddr = format!("127.1.0.1:{port}").parse().unwrap();
    let r = rad_pap(Some(&ns.name), unknown, "alice", "Alice#Pass1");
    assert_eq!(r.code, None, "unknown client answered: {}", r.output);
    let dropped = s.stat("xdp.lo.drop_unknown_client_v4") - drops_before;
    assert!(
        dropped >= 1,
        "kernel drop counter did not move: {:?}",
        s.stats()
    );
    // Userspace never saw them: its unknown-client counter stayed at zero.
    assert_eq!(s.stat("drop.unknown_client"), 0, "{:?}", s.stats());
    assert!(s.stat("xdp.lo.pass_known_client") >= 1, "{:?}", s.stats());
}

#[test]
fn without_xdp_the_same_traffic_is_filtered_in_userspace() {
    let ns = Netns::new("noxdp");
    ns.exec(&["ip", "addr", "add", "127.1.0.1/32", "dev", "lo"]);
    let port = free_port();
    let s = Server::start(ServerOpts {
        netns: Some(ns.name.clone()),
        clients: format!(
            "[[client]]\nname = \"known\"\naddress = \"127.0.0.1/32\"\nsecret = \"{SECRET}\"\n"
        ),
        auth_listen: vec![format!("127.0.0.1:{port}"), format!("127.1.0.1:{port}")],
        acct_listen: vec![format!("127.0.0.1:{}", port + 1)],
        ..Default::default()
    });
    assert_eq!(s.stats().get("xdp.active").map(String::as_str), Some("0"));
    let unknown: std::net::SocketAddr = format!("127.1.0.1:{port}").parse().unwrap();
    let r = rad_pap(Some(&ns.name), unknown, "alice", "Alice#Pass1");
    assert_eq!(r.code, None, "{}", r.output);
    assert!(s.stat("drop.unknown_client") >= 1, "{:?}", s.stats());
}
