//! `cargo xtask`: the one place that knows toolchains, system packages and how the pieces are
//! built, run and tested. Every step is idempotent and says what it does.
//!
//! Commands:
//! - `setup`       install what building and testing need (nightly rust-src, bpf-linker, Debian
//!   packages for the test peers, cargo-fuzz)
//! - `build`       build the eBPF object and the whole workspace (release)
//! - `run [ARGS]`  build, then run `portcullis serve` (embedded default configuration unless ARGS
//!   say otherwise)
//! - `test`        set up, build the eBPF object, run every test of the workspace
//! - `lint`        `cargo fmt --check` and `cargo clippy --all-targets -D warnings`
//! - `fuzz [--seconds N]`  smoke-run every fuzz target for N seconds (default 20)
//! - `bench [ARGS]`  build and run the load generator (see bench/)

mod ebpf;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Debian packages the tests need: `radclient` (freeradius-utils) is the real RADIUS client the
/// integration tests drive; `ip` (iproute2) makes the network namespaces.
const TEST_PACKAGES: &[&str] = &["freeradius-utils", "iproute2"];

/// The fuzz targets smoke-run by `cargo xtask fuzz` (crate dir relative to the workspace root, target).
const FUZZ_TARGETS: &[(&str, &str)] = &[("userspace/proto", "decode")];

fn main() {
    if let Err(e) = real_main() {
        eprintln!("[xtask] error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let cmd = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "help".to_owned());
    let rest: Vec<OsString> = args.collect();
    let root = workspace_root();
    match cmd.as_str() {
        "setup" => setup_all(),
        "build" => build(&root, true).map(|_| ()),
        "run" => run(&root, rest),
        "test" => test(&root, rest),
        "lint" => lint(&root),
        "fuzz" => fuzz(&root, &rest),
        "bench" => bench(&root, rest),
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{HELP}"),
    }
}

const HELP: &str = "usage: cargo xtask <setup|build|run|test|lint|fuzz|bench> [ARGS]
  setup              install toolchains, bpf-linker, Debian test packages, cargo-fuzz (idempotent)
  build              build the XDP object and the workspace in release mode
  run [ARGS]         build, then `portcullis serve ARGS` (embedded default config by default)
  test [FILTER]      set up, build, run all tests (FILTER is passed to cargo test)
  lint               cargo fmt --check, cargo clippy --all-targets -- -D warnings
  fuzz [--seconds N] smoke-run each fuzz target for N seconds (default 20)
  bench [ARGS]       run the load generator (bench/) against a Portcullis it starts
                     (`cargo xtask bench --help` lists its options; `--compare freeradius`
                     installs Debian's freeradius when missing)";

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Keep a toolchain override of the outer invocation from leaking into nested builds.
    c.env_remove("RUSTUP_TOOLCHAIN");
    c
}

pub(crate) fn step(msg: &str) {
    println!("[xtask] {msg}");
}

pub(crate) fn run_checked(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs the Debian packages that are missing; does nothing when all are present.
fn ensure_debian_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        step(&format!("Debian packages present: {}", pkgs.join(", ")));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages missing: {} — run `sudo apt-get install {}` or run xtask as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    let t = Instant::now();
    step(&format!(
        "installing Debian packages: {}",
        missing.join(", ")
    ));
    run_checked(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    step(&format!("Debian packages installed in {:.0?}", t.elapsed()));
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let ok = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        step("cargo-fuzz present");
        return Ok(());
    }
    let t = Instant::now();
    step("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    run_checked(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    step(&format!("cargo-fuzz installed in {:.0?}", t.elapsed()));
    Ok(())
}

fn setup_all() -> Result<()> {
    ebpf::ensure_toolchain()?;
    ensure_debian_packages(TEST_PACKAGES)?;
    ensure_cargo_fuzz()?;
    step("setup complete");
    Ok(())
}

/// Builds the XDP object and returns its path; the loader crate embeds it at compile time.
fn build_ebpf(root: &Path) -> Result<PathBuf> {
    ebpf::ensure_toolchain()?;
    let t = Instant::now();
    step("building the XDP program (nightly, bpfel-unknown-none)");
    let obj = ebpf::build(root)?;
    step(&format!(
        "XDP object ready in {:.0?}: {}",
        t.elapsed(),
        obj.display()
    ));
    Ok(obj)
}

fn build(root: &Path, release: bool) -> Result<PathBuf> {
    let obj = build_ebpf(root)?;
    step("building the workspace");
    let mut c = cargo();
    c.current_dir(root)
        .args(["build", "--workspace", "--locked", "--bins"])
        .env("PORTCULLIS_XDP_OBJECT", &obj);
    if release {
        c.arg("--release");
    }
    run_checked(&mut c)?;
    Ok(obj)
}

fn run(root: &Path, args: Vec<OsString>) -> Result<()> {
    build(root, true)?;
    let bin = root.join("target/release/portcullis");
    let mut c = Command::new(&bin);
    c.current_dir(root);
    if args.is_empty() {
        c.arg("serve");
    } else {
        c.args(&args);
    }
    step(&format!("starting {} (Ctrl-C stops it)", bin.display()));
    use std::os::unix::process::CommandExt;
    let err = c.exec();
    Err(err).with_context(|| format!("could not exec {}", bin.display()))
}

/// Installs and configures the real privacyIDEA server the MFA tests use (a Python venv from
/// PyPI, reused when present; a fresh database every run).
fn ensure_privacyidea(root: &Path) -> Result<()> {
    let t = Instant::now();
    step("preparing privacyIDEA for the MFA tests (tests/privacyidea/setup.sh: venv + pip install privacyidea)");
    run_checked(
        Command::new("bash")
            .arg(root.join("tests/privacyidea/setup.sh"))
            .stdout(std::process::Stdio::null()),
    )?;
    step(&format!("privacyIDEA ready in {:.0?}", t.elapsed()));
    Ok(())
}

/// Provisions (once) and starts the Samba AD DC of the directory tests; returns its directory
/// (what the tests get as PORTCULLIS_SAMBA_DIR).
fn ensure_samba(root: &Path) -> Result<PathBuf> {
    let t = Instant::now();
    step("preparing the Samba AD DC for the directory tests (tests/samba/setup.sh: packages, provisioning, samba on 127.0.0.1)");
    let dir = PathBuf::from(
        std::env::var_os("PORTCULLIS_SAMBA_DIR")
            .unwrap_or_else(|| "/var/tmp/portcullis-samba".into()),
    );
    run_checked(
        Command::new("bash")
            .arg(root.join("tests/samba/setup.sh"))
            .arg(&dir)
            .stdout(std::process::Stdio::null()),
    )?;
    step(&format!(
        "Samba AD DC ready in {:.0?} ({})",
        t.elapsed(),
        dir.display()
    ));
    Ok(dir)
}

fn test(root: &Path, filter: Vec<OsString>) -> Result<()> {
    ensure_debian_packages(TEST_PACKAGES)?;
    ensure_privacyidea(root)?;
    let samba = ensure_samba(root)?;
    let obj = build_ebpf(root)?;
    step("building the workspace and its tests");
    run_checked(
        cargo()
            .current_dir(root)
            .args(["build", "--workspace", "--locked", "--bins"])
            .env("PORTCULLIS_XDP_OBJECT", &obj),
    )?;
    step("running the tests");
    let bin = root.join("target/debug/portcullis");
    let mut c = cargo();
    c.current_dir(root)
        // `battery`: the shared provider behaviour battery runs against every provider.
        .args([
            "test",
            "--workspace",
            "--locked",
            "--features",
            "portcullis-mfa/battery",
        ])
        .env("PORTCULLIS_XDP_OBJECT", &obj)
        .env("PORTCULLIS_BIN", &bin)
        .env("PORTCULLIS_SAMBA_DIR", &samba);
    if !filter.is_empty() {
        c.arg("--").args(&filter);
    }
    run_checked(&mut c)?;
    step("all tests passed");
    Ok(())
}

fn lint(root: &Path) -> Result<()> {
    step("cargo fmt --all --check");
    run_checked(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    step("cargo clippy --workspace --all-targets --locked -- -D warnings");
    run_checked(cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(())
}

fn fuzz(root: &Path, args: &[OsString]) -> Result<()> {
    let mut seconds: u32 = 20;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--seconds") => {
                seconds = it
                    .next()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .context("--seconds takes a whole number")?;
            }
            other => bail!("unknown fuzz argument {other:?}"),
        }
    }
    ebpf::ensure_toolchain()?; // the nightly toolchain cargo-fuzz needs
    ensure_cargo_fuzz()?;
    for (dir, target) in FUZZ_TARGETS {
        let crate_dir = root.join(dir);
        let seeds = crate_dir.join("fuzz/seeds").join(target);
        let corpus = crate_dir.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        step(&format!("fuzzing {dir} target `{target}` for {seconds} s"));
        // cargo-fuzz needs nightly; go through rustup (the CARGO of this process is stable's).
        let mut c = Command::new("rustup");
        c.current_dir(&crate_dir)
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO");
        run_checked(&mut c)?;
    }
    step("fuzz smoke run found nothing");
    Ok(())
}

fn bench(root: &Path, args: Vec<OsString>) -> Result<()> {
    let wants = |flag: &str| {
        args.iter().filter_map(|a| a.to_str()).any(|a| {
            a == flag
                || a.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    };
    if wants("--help") || wants("-h") {
        // Help needs no build of the server, only of the bench.
        run_checked(cargo().current_dir(root).args([
            "run",
            "--quiet",
            "--release",
            "--locked",
            "-p",
            "portcullis-bench",
            "--",
            "--help",
        ]))?;
        return Ok(());
    }
    if wants("--compare") {
        // `--compare freeradius` starts Debian's FreeRADIUS 3 with a configuration of its own.
        ensure_debian_packages(&["freeradius"])?;
    }
    build(root, true)?;
    // Where cargo put the binaries: CARGO_TARGET_DIR when set (relative to the workspace).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    let mut c = Command::new(target.join("release/portcullis-bench"));
    c.current_dir(root)
        .env("PORTCULLIS_BIN", target.join("release/portcullis"))
        .args(&args);
    run_checked(&mut c)
}
