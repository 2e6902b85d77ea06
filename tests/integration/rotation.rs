//! Shared-secret change-over without a gap: during `secret_next`, requests signed with either
//! secret are answered, each reply signed with the secret its request used — by the workers and by
//! the XDP program (run in a namespace with XDP attached, so a secret the kernel did not get would
//! be dropped there).

use portcullis_tests::*;

const NEXT: &str = "next-secret-2026";

#[test]
fn both_secrets_work_during_a_change_over_in_kernel_and_userspace() {
    let ns = Netns::new("rotate");
    let port = free_port();
    let s = Server::start(ServerOpts {
        netns: Some(ns.name.clone()),
        xdp: "[xdp]\nmode = \"generic\"\ninterfaces = [\"lo\"]\nrequired = true\n".into(),
        clients: format!(
            "[[client]]\nname = \"nas\"\naddress = \"127.0.0.1/32\"\nsecret = \"{SECRET}\"\nsecret_next = \"{NEXT}\"\n"
        ),
        auth_listen: vec![format!("127.0.0.1:{port}")],
        acct_listen: vec![format!("127.0.0.1:{}", port + 1)],
        ..Default::default()
    });
    let pap = |secret: &str| {
        radclient(Some(&ns.name), s.auth, "auth", secret,
            "User-Name = \"alice\", User-Password = \"Alice#Pass1\", Message-Authenticator = 0x00\n")
    };
    // radclient accepts a reply only if it verifies with the secret it used.
    let old = pap(SECRET);
    assert_eq!(
        old.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        old.output,
        s.log()
    );
    let new = pap(NEXT);
    assert_eq!(
        new.code.as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        new.output,
        s.log()
    );
    let wrong = pap("neither-of-them");
    assert_eq!(wrong.code, None, "{}", wrong.output);
    let acct = radclient(
        Some(&ns.name),
        s.acct,
        "acct",
        NEXT,
        "User-Name = \"alice\", Acct-Status-Type = Start, Acct-Session-Id = \"rot-1\"\n",
    );
    assert_eq!(
        acct.code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        acct.output
    );
    // The forged one died in the kernel; both good ones passed its check.
    assert!(s.stat("xdp.lo.drop_bad_ma") >= 1, "{:?}", s.stats());
    assert!(s.stat("xdp.lo.pass_ma_verified") >= 2, "{:?}", s.stats());
    assert!(!s.log().contains(NEXT), "a secret reached the log");
}
