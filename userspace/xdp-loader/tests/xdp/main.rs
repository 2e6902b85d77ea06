//! XDP pre-filter tests: verdicts and counters with BPF_PROG_TEST_RUN (`verdicts` for the
//! headers and client lookup, `authenticators` for the RADIUS checks), and an end-to-end attach
//! to `lo` in a fresh network namespace (`netns`). `radius` is the tests' own RADIUS encoder.
//!
//! They need the eBPF object embedded (`cargo xtask build`, or `PORTCULLIS_XDP_OBJECT`) and
//! root. Without either they fail, unless `PORTCULLIS_SKIP_XDP_TESTS=1` is set.

mod authenticators;
mod frames;
mod limits;
mod netns;
mod radius;
mod verdicts;

/// Whether the XDP tests should run; panics with the reason when they cannot and skipping was
/// not asked for.
pub fn xdp_tests_enabled() -> bool {
    if std::env::var_os("PORTCULLIS_SKIP_XDP_TESTS").is_some_and(|v| v == "1") {
        eprintln!("PORTCULLIS_SKIP_XDP_TESTS=1: XDP test skipped");
        return false;
    }
    assert!(
        portcullis_xdp_loader::program_embedded(),
        "the XDP object is not embedded: build it with `cargo xtask build` (or set \
         PORTCULLIS_XDP_OBJECT to the built object) before running these tests, or set \
         PORTCULLIS_SKIP_XDP_TESTS=1 to skip them"
    );
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the XDP tests load eBPF programs and need root; run them as root or set \
         PORTCULLIS_SKIP_XDP_TESTS=1 to skip them"
    );
    true
}
