//! Run the XDP program on a given frame with `BPF_PROG_TEST_RUN`, without any interface.
//!
//! For tests and benchmarks of the filter logic: [`XdpTestProgram::load`] loads the program and
//! fills its maps exactly as [`XdpFilter::attach`](crate::XdpFilter::attach) does, but attaches
//! it nowhere; [`XdpTestProgram::run`] hands it one frame and returns its verdict.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use crate::{ClientCounters, Counters, Loaded, XdpClient, XdpError, XdpSettings};

/// The XDP verdict of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    /// `XDP_ABORTED`
    Aborted,
    /// `XDP_DROP`
    Drop,
    /// `XDP_PASS`
    Pass,
    /// `XDP_TX`
    Tx,
    /// `XDP_REDIRECT`
    Redirect,
    /// Any other return value.
    Other(u32),
}

impl XdpAction {
    /// Map a program return value to an action.
    pub fn from_retval(retval: u32) -> XdpAction {
        match retval {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Other(other),
        }
    }
}

impl fmt::Display for XdpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdpAction::Aborted => f.write_str("XDP_ABORTED"),
            XdpAction::Drop => f.write_str("XDP_DROP"),
            XdpAction::Pass => f.write_str("XDP_PASS"),
            XdpAction::Tx => f.write_str("XDP_TX"),
            XdpAction::Redirect => f.write_str("XDP_REDIRECT"),
            XdpAction::Other(n) => write!(f, "XDP action {n}"),
        }
    }
}

/// The filter program loaded with its maps filled, attached to no interface.
pub struct XdpTestProgram {
    loaded: Loaded,
}

impl fmt::Debug for XdpTestProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpTestProgram")
            .field("clients", &self.loaded.clients.len())
            .finish_non_exhaustive()
    }
}

impl XdpTestProgram {
    /// Load the program and fill its maps; `settings.interface` and `settings.mode` are ignored.
    pub fn load(settings: &XdpSettings) -> Result<XdpTestProgram, XdpError> {
        Ok(XdpTestProgram {
            loaded: Loaded::load(settings)?,
        })
    }

    /// Run the program once on `frame` (a whole Ethernet frame, at least 14 bytes).
    pub fn run(&self, frame: &[u8]) -> Result<XdpAction, XdpError> {
        self.run_repeated(frame, 1).map(|(action, _)| action)
    }

    /// Run the program `repeat` times on `frame` in the kernel; returns the verdict and the
    /// mean time per run as the kernel measured it. For benchmarks; counters move `repeat`
    /// times.
    pub fn run_repeated(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(XdpAction, Duration), XdpError> {
        let program = self.loaded.program()?;
        let fd = program.fd().map_err(|_| XdpError::BadObject {
            reason: "the program has no file descriptor".into(),
        })?;
        run_xdp_timed(fd.as_fd(), frame, repeat).map_err(|source| XdpError::TestRun { source })
    }

    /// Packet counts per reason, summed across CPUs.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        self.loaded.counters()
    }

    /// Each client's counters, as [`XdpFilter::client_counters`](crate::XdpFilter::client_counters).
    pub fn client_counters(&self) -> Result<Vec<(String, ClientCounters)>, XdpError> {
        self.loaded.client_counters()
    }

    /// Replace the clients, as [`XdpFilter::replace_clients`](crate::XdpFilter::replace_clients).
    pub fn replace_clients(&mut self, clients: &[XdpClient]) -> Result<(), XdpError> {
        self.loaded.replace_clients(clients)
    }

    /// Instructions the verifier processed when loading the program, if the kernel says.
    pub fn verified_instructions(&self) -> Option<u32> {
        self.loaded.verified_instructions()
    }
}

/// `BPF_PROG_TEST_RUN` command number (`enum bpf_cmd`).
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (linux/bpf.h), up to `batch_size`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Run the XDP program `prog_fd` on `frame` `repeat` times (at least once) with
/// `BPF_PROG_TEST_RUN` and return the verdict of the last run.
///
/// The kernel wants at least an Ethernet header (14 bytes) and at most about a page.
pub fn run_xdp(prog_fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<XdpAction> {
    run_xdp_timed(prog_fd, frame, repeat).map(|(action, _)| action)
}

/// As [`run_xdp`], also returning the mean duration of one run as the kernel measured it.
pub fn run_xdp_timed(
    prog_fd: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
) -> io::Result<(XdpAction, Duration)> {
    let data_size_in = u32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    // XDP may grow the frame at the tail (bpf_xdp_adjust_tail); leave room for its copy-out.
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog_fd.as_raw_fd())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad fd"))?,
        data_size_in,
        data_size_out: u32::try_from(out.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..TestRunAttr::default()
    };
    // SAFETY: the pointers in attr stay valid for the call (frame and out outlive it, out has
    // the length given in data_size_out).
    unsafe { test_run(&mut attr) }?;
    Ok((
        XdpAction::from_retval(attr.retval),
        Duration::from_nanos(u64::from(attr.duration)),
    ))
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES` (linux/bpf.h).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// The most frames a live-frames run handles between two flushes (`TEST_XDP_MAX_BATCH`).
pub const LIVE_FRAMES_MAX_BATCH: u32 = 256;

/// Runs the XDP program `prog_fd` on `repeat` copies of `frame` in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18): the kernel treats each copy as a frame just
/// received on the calling thread's network namespace's loopback and carries the verdicts out
/// (`XDP_TX`, `XDP_REDIRECT`), flushing every `batch_size` frames (0: the kernel's default,
/// 64; at most [`LIVE_FRAMES_MAX_BATCH`]). Nothing comes back: neither verdicts nor how many
/// frames a redirect target took. Fails with `EINTR` when a signal arrived (after some of the
/// copies went out).
pub fn run_xdp_live_frames(
    prog_fd: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    batch_size: u32,
) -> io::Result<()> {
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog_fd.as_raw_fd()).map_err(|_| invalid("bad fd"))?,
        data_size_in: u32::try_from(frame.len()).map_err(|_| invalid("frame too large"))?,
        data_in: frame.as_ptr() as u64,
        repeat: repeat.max(1),
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch_size.min(LIVE_FRAMES_MAX_BATCH),
        ..TestRunAttr::default()
    };
    // SAFETY: data_in points to data_size_in readable bytes that outlive the call; there are no
    // output buffers.
    unsafe { test_run(&mut attr) }
}

/// One `BPF_PROG_TEST_RUN` call.
///
/// # Safety
///
/// Every address in `attr` must point to a live buffer of the length given beside it (or be 0
/// with length 0): readable for inputs, writable for outputs.
unsafe fn test_run(attr: &mut TestRunAttr) -> io::Result<()> {
    // SAFETY: attr is a properly laid out prefix of `union bpf_attr` for this command and an
    // exclusively borrowed value of the size passed; the caller vouches for the buffers it
    // points to, and the kernel reads and writes only within the given sizes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
