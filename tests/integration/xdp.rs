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

/// Two namespaces joined by a veth pair: the server's side has the XDP program in native (driver)
/// mode. A real client (radclient) from the configured address gets its answers; a forged request
/// (wrong secret) from that address and a datagram from an unknown address in the client's
/// namespace die in the kernel — its counters move and userspace never sees them.
#[test]
fn veth_pair_native_mode_real_client_answered_forgeries_dropped_in_the_kernel() {
    let srv = Netns::new("vsrv");
    let cli = Netns::new("vcli");
    // Addresses of the test's own hosts, which exist only inside these two namespaces.
    srv.exec(&[
        "ip", "link", "add", "vs0", "type", "veth", "peer", "name", "vc0", "netns", &cli.name,
    ]);
    srv.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "vs0"]);
    srv.exec(&["ip", "link", "set", "vs0", "up"]);
    cli.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "vc0"]);
    cli.exec(&["ip", "addr", "add", "192.0.2.3/24", "dev", "vc0"]);
    cli.exec(&["ip", "link", "set", "vc0", "up"]);
    let port = free_port();
    let s = Server::start(ServerOpts {
        netns: Some(srv.name.clone()),
        xdp: "[xdp]\nmode = \"native\"\ninterfaces = [\"vs0\"]\nrequired = true\n".into(),
        clients: format!(
            "[[client]]\nname = \"nas\"\naddress = \"192.0.2.2/32\"\nsecret = \"{SECRET}\"\n"
        ),
        auth_listen: vec![format!("192.0.2.1:{port}")],
        acct_listen: vec![format!("192.0.2.1:{}", port + 1)],
        ..Default::default()
    });
    assert!(s.log().contains("native (driver)"), "{}", s.log());
    let server: std::net::SocketAddr = format!("192.0.2.1:{port}").parse().unwrap();

    let ok = rad_pap(Some(&cli.name), server, "alice", "Alice#Pass1");
    assert_eq!(
        ok.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        ok.output,
        s.log()
    );

    // Forged: right address, wrong secret (bad Message-Authenticator).
    let forged = radclient(
        Some(&cli.name),
        server,
        "auth",
        "not-the-secret",
        "User-Name = \"alice\", User-Password = \"x\", Message-Authenticator = 0x00\n",
    );
    assert_eq!(forged.code, None, "{}", forged.output);

    // Unknown source: a datagram from 192.0.2.3, sent with Python's socket module in the client
    // namespace (radclient cannot choose its source address).
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('192.0.2.3', 0)); \
         [s.sendto(bytes([1, i]) + bytes(18), ('192.0.2.1', {port})) for i in range(5)]"
    );
    cli.exec(&["python3", "-c", &send]);

    // The kernel counted them; let the counters settle (bounded) before reading.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.stat("xdp.vs0.drop_unknown_client_v4") < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        s.stat("xdp.vs0.drop_unknown_client_v4"),
        5,
        "{:?}",
        s.stats()
    );
    assert!(s.stat("xdp.vs0.drop_bad_ma") >= 1, "{:?}", s.stats());
    assert!(s.stat("xdp.vs0.pass_ma_verified") >= 1, "{:?}", s.stats());
    // Per client too: the forgery is charged to the client it claimed to be.
    assert!(
        s.stat("xdp.vs0.client.nas.drop_bad_ma") >= 1,
        "{:?}",
        s.stats()
    );
    assert!(s.stat("xdp.vs0.client.nas.passed") >= 1, "{:?}", s.stats());
    // Userspace saw neither.
    assert_eq!(s.stat("drop.unknown_client"), 0, "{:?}", s.stats());
    assert_eq!(
        s.stat("drop.bad_message_authenticator"),
        0,
        "{:?}",
        s.stats()
    );
    drop(s);
    // Detached on shutdown: the interface is clean (the namespaces are deleted by their guards).
}
