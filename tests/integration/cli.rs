//! `check-config` and `users`: what an admin types.

use portcullis_tests::*;

#[test]
fn check_config_reports_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nauth_listen = [\"127.0.0.1:1812\"]\n\n[[client]]\naddress = \"10.0.0.999\"\nsecret = \"x\"\n").unwrap();
    let (st, out, err) = portcullis(&["check-config", bad.to_str().unwrap()], None);
    assert!(!st.success(), "bad config accepted: {out}");
    assert!(err.contains(&format!("{}:5:", bad.display())), "{err}");
    assert!(err.contains("10.0.0.999"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "data_dir = \"d\"\n[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"longer-secret-value\"\n").unwrap();
    let (st, out, err) = portcullis(&["check-config", good.to_str().unwrap()], None);
    assert!(st.success(), "{err}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn check_config_refuses_a_broken_users_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"a\"\npassword = \"{SSHA512}notbase64!!\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[users]\nfile = \"users.toml\"\n[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let (st, _, err) = portcullis(&["check-config", cfg.to_str().unwrap()], None);
    assert!(!st.success());
    assert!(err.contains("users.toml:3"), "{err}");
}

#[test]
fn users_file_holds_no_plain_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let (file, key) = make_users(dir.path(), &[ALICE]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("Alice#Pass1"), "{text}");
    assert!(text.contains("alice"));
    let (st, out, _) = portcullis(
        &[
            "users",
            "--file",
            file.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "list",
        ],
        None,
    );
    assert!(st.success());
    assert!(out.contains("alice"), "{out}");
    assert!(!out.contains("SSHA"), "list must not print hashes: {out}");
    // Adding the same user twice is refused.
    let (st, _, err) = portcullis(
        &[
            "users",
            "--file",
            file.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "add",
            "alice",
            "--password-stdin",
        ],
        Some("x\n"),
    );
    assert!(!st.success());
    assert!(err.contains("alice"), "{err}");
}
