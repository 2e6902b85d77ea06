//! Picks up the XDP object built by `cargo xtask` so the library can embed it.
//!
//! Source, in order: `$PORTCULLIS_XDP_OBJECT` (set by xtask after building the object), then the
//! default output path of the nightly build. If neither exists an empty file is embedded, so a
//! stable `cargo build` / `cargo clippy` of the workspace works without nightly; the library then
//! reports `program_embedded() == false` and `XdpError::NotEmbedded`.

use std::env;
use std::fs;
use std::path::PathBuf;

const OBJECT_ENV: &str = "PORTCULLIS_XDP_OBJECT";

fn main() {
    println!("cargo:rerun-if-env-changed={OBJECT_ENV}");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("../../xdp-filter/ebpf");
    let default_object = ebpf_dir.join("target/bpfel-unknown-none/release/portcullis-xdp");

    let source = match env::var_os(OBJECT_ENV).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                panic!(
                    "{OBJECT_ENV}={} does not name a file; unset it or run `cargo xtask build`",
                    path.display()
                );
            }
            Some(path)
        }
        None => default_object.is_file().then_some(default_object),
    };

    let dest = out_dir.join("portcullis-xdp.o");
    match &source {
        Some(path) => {
            // Watch the object itself, so a rebuilt object gets embedded.
            println!("cargo:rerun-if-changed={}", path.display());
            fs::copy(path, &dest).unwrap_or_else(|e| {
                panic!("copying {} to {}: {e}", path.display(), dest.display())
            });
        }
        None => {
            // Watch the eBPF crate directory (it always exists): a missing file would make
            // cargo rerun this script, and rebuild everything above it, on every build.
            println!("cargo:rerun-if-changed={}", ebpf_dir.display());
            fs::write(&dest, []).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
        }
    }
}
