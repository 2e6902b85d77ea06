//! The eBPF side of `cargo xtask`: toolchain set-up and the build of the XDP object.
//!
//! The XDP program (`xdp-filter/ebpf`, package `portcullis-xdp`) is not part of the stable
//! workspace. It is built here with the `nightly` toolchain for `bpfel-unknown-none`, with
//! `-Z build-std=core`, and linked by `bpf-linker`. `bpf-linker` is built against the nightly
//! toolchain's own `libLLVM`, because the distribution's LLVM is usually older than the one
//! `bpf-linker` wants.
//!
//! What this module does not do: embed the object (the loader's `build.rs` picks it up from
//! `PORTCULLIS_XDP_OBJECT`, see [`OBJECT_ENV`]) or load it (that is `portcullis-xdp-loader`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Toolchain used for the eBPF build.
pub const NIGHTLY: &str = "nightly";
/// Target triple of the eBPF object.
pub const EBPF_TARGET: &str = "bpfel-unknown-none";
/// Package name of the eBPF crate (and name of the produced object).
pub const EBPF_PACKAGE: &str = "portcullis-xdp";
/// The environment variable the loader's `build.rs` reads to find the object to embed: set it
/// to the path [`build`] returns when building or testing the workspace.
#[allow(dead_code)] // Read by main.rs, not here.
pub const OBJECT_ENV: &str = "PORTCULLIS_XDP_OBJECT";
/// Rust flags for the eBPF build: BTF (needed for `bpf_loop` callbacks and useful for
/// verifier messages) comes from debug info.
pub const EBPF_RUSTFLAGS: &[&str] = &["-C", "debuginfo=2", "-C", "link-arg=--btf"];

/// Variables that `cargo run` (for xtask itself) or the user's shell may set and that must not
/// leak into the nested nightly build.
const LEAKY_ENV: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "RUSTUP_TOOLCHAIN",
];

/// Make sure the nightly toolchain, its `rust-src` component and `bpf-linker` are installed.
///
/// Idempotent: each step checks first and only acts when something is missing.
pub fn ensure_toolchain() -> Result<()> {
    let start = Instant::now();
    step("nightly toolchain", ensure_nightly)?;
    step("rust-src component", ensure_rust_src)?;
    step("bpf-linker", ensure_bpf_linker)?;
    println!(
        "[xtask] eBPF toolchain ready ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Build the eBPF object (release) and return its path.
///
/// Call [`ensure_toolchain`] first. The object lands in
/// `xdp-filter/ebpf/target/bpfel-unknown-none/release/portcullis-xdp`; pass that path to the
/// loader build in [`OBJECT_ENV`] so it gets embedded.
pub fn build(workspace_root: &Path) -> Result<PathBuf> {
    let crate_dir = workspace_root.join("xdp-filter").join("ebpf");
    if !crate_dir.join("Cargo.toml").is_file() {
        bail!("no eBPF crate at {}", crate_dir.display());
    }
    let target_dir = crate_dir.join("target");
    let sysroot = nightly_sysroot()?;
    let start = Instant::now();
    println!("[xtask] building the XDP program ({EBPF_PACKAGE}, {EBPF_TARGET}, release)");

    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{NIGHTLY}"))
        .args(["build", "--release", "--target", EBPF_TARGET])
        .args(["-Z", "build-std=core"]);
    // The crate's Cargo.lock is committed; only a fresh checkout without it may resolve anew.
    if crate_dir.join("Cargo.lock").is_file() {
        cmd.arg("--locked");
    }
    cmd.arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&crate_dir);
    scrub_env(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", EBPF_RUSTFLAGS.join("\x1f"))
        .env("LD_LIBRARY_PATH", ld_library_path(&sysroot.join("lib")));
    run(&mut cmd, "cargo +nightly build of the eBPF crate")?;

    let object = target_dir
        .join(EBPF_TARGET)
        .join("release")
        .join(EBPF_PACKAGE);
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} does not exist",
            object.display()
        );
    }
    println!(
        "[xtask] XDP object: {} ({:.1} s)",
        object.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(object)
}

fn step(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    f().with_context(|| format!("setting up {what}"))?;
    println!(
        "[xtask] {what}: ok ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running `rustup toolchain list` (is rustup installed?)")?;
    if !out.status.success() {
        bail!("`rustup toolchain list` failed: {}", lossy(&out.stderr));
    }
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("{NIGHTLY}-")) || l.trim() == NIGHTLY);
    if listed {
        println!("[xtask] nightly toolchain present");
        return Ok(());
    }
    println!(
        "[xtask] nightly toolchain missing: rustup toolchain install {NIGHTLY} --profile minimal"
    );
    let status = Command::new("rustup")
        .args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!(
            "could not install the nightly toolchain ({status}); the XDP program needs it. \
             Install it by hand with `rustup toolchain install nightly --profile minimal \
             --component rust-src` and run again"
        );
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let src = nightly_sysroot()?
        .join("lib")
        .join("rustlib")
        .join("src")
        .join("rust")
        .join("library");
    if src.join("core").is_dir() {
        println!("[xtask] rust-src present");
        return Ok(());
    }
    println!("[xtask] rust-src missing: rustup component add rust-src --toolchain {NIGHTLY}");
    run(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]),
        "rustup component add rust-src",
    )
}

fn ensure_bpf_linker() -> Result<()> {
    let lib_dir = nightly_sysroot()?.join("lib");
    if let Some(path) = working_bpf_linker(&lib_dir) {
        println!("[xtask] bpf-linker present: {}", path.display());
        return Ok(());
    }
    let (llvm_lib, major) = find_nightly_llvm(&lib_dir)?;
    println!(
        "[xtask] bpf-linker missing or broken: building it against the nightly LLVM {major} ({})",
        llvm_lib.display()
    );

    // llvm-sys wants `$LLVM_PREFIX/lib/libLLVM.so`; the toolchain ships the library under a
    // versioned name only. The prefix holds two symlinks to it: `libLLVM.so` for the build and
    // the versioned name for the run, since the built binary gets `$LLVM_PREFIX/lib` as its
    // RUNPATH. So the prefix must be persistent and private: it lives in CARGO_HOME, beside
    // the installed bpf-linker (never in a shared temp dir, where anyone could plant a library).
    let prefix = cargo_home().join("bpf-linker-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let versioned = llvm_lib
        .file_name()
        .context("libLLVM path without a file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), versioned] {
        let link = prefix_lib.join(name);
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&llvm_lib, &link)
            .with_context(|| format!("creating the symlink {}", link.display()))?;
    }

    let feature = format!("llvm-{major}");
    let mut installed = false;
    for locked in [true, false] {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker", "--force"]);
        if locked {
            cmd.arg("--locked");
        }
        cmd.args(["--no-default-features", "--features", &feature]);
        scrub_env(&mut cmd);
        cmd.env("LLVM_PREFIX", &prefix)
            .env("LD_LIBRARY_PATH", ld_library_path(&lib_dir));
        let what = format!(
            "cargo install bpf-linker --force{} --no-default-features --features {feature}",
            if locked { " --locked" } else { "" }
        );
        println!("[xtask] LLVM_PREFIX={} {what}", prefix.display());
        let start = Instant::now();
        match run(&mut cmd, &what) {
            Ok(()) => {
                println!(
                    "[xtask] bpf-linker built in {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                installed = true;
                break;
            }
            Err(e) if locked => println!("[xtask] {e:#}; retrying without --locked"),
            Err(e) => return Err(e),
        }
    }
    if !installed {
        bail!("cargo install bpf-linker failed");
    }

    match working_bpf_linker(&lib_dir) {
        Some(path) => {
            println!("[xtask] bpf-linker installed: {}", path.display());
            Ok(())
        }
        None => bail!(
            "bpf-linker was installed but `bpf-linker --version` still fails; \
             is ~/.cargo/bin on PATH?"
        ),
    }
}

/// The first `bpf-linker` (on PATH, then in `$CARGO_HOME/bin`) that runs with the nightly
/// `libLLVM` on the library path.
fn working_bpf_linker(llvm_lib_dir: &Path) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("bpf-linker")];
    candidates.push(cargo_home().join("bin").join("bpf-linker"));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .env("LD_LIBRARY_PATH", ld_library_path(llvm_lib_dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Find `libLLVM.so.<major>.<minor>-rust-<version>` in the nightly sysroot and its major version.
fn find_nightly_llvm(lib_dir: &Path) -> Result<(PathBuf, u32)> {
    let entries =
        fs::read_dir(lib_dir).with_context(|| format!("reading {}", lib_dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(major) = llvm_major_from_file_name(name) {
            return Ok((entry.path(), major));
        }
    }
    bail!(
        "no libLLVM.so.<version>-rust-* in {}; cannot build bpf-linker against the nightly LLVM",
        lib_dir.display()
    )
}

fn llvm_major_from_file_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libLLVM.so.")?;
    if !rest.contains("-rust-") {
        return None;
    }
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse().ok()
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .arg(format!("+{NIGHTLY}"))
        .args(["--print", "sysroot"])
        .output()
        .context("running `rustc +nightly --print sysroot`")?;
    if !out.status.success() {
        bail!(
            "`rustc +{NIGHTLY} --print sysroot` failed: {}",
            lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn cargo_home() -> PathBuf {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cargo")
}

/// `dir` followed by the current `LD_LIBRARY_PATH`, if any.
fn ld_library_path(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

fn scrub_env(cmd: &mut Command) {
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_is_read_from_the_file_name() {
        assert_eq!(
            llvm_major_from_file_name("libLLVM.so.22.1-rust-1.97.0-nightly"),
            Some(22)
        );
        assert_eq!(
            llvm_major_from_file_name("libLLVM-22-rust-1.97.0-nightly.so"),
            None
        );
        assert_eq!(llvm_major_from_file_name("libLLVM.so.22.1"), None);
        assert_eq!(llvm_major_from_file_name("librustc_driver-b5a9.so"), None);
    }
}
