//! `--scenario flood`: legitimate PAP load while a flood of forged packets hits the server,
//! with the XDP pre-filter on and off.
//!
//! Everything happens inside network namespaces the bench creates and deletes at the end, also
//! on errors (a guard; a SIGKILL leaves them behind, and the next run with the same pid removes
//! them). The bench enters the client's namespace with `setns(2)` before it opens any socket
//! and starts each server in its namespace with `ip netns exec`, so no packet leaves them.
//! `--flood-link` chooses the link:
//! - `veth` (default): namespaces `pc-bench-<pid>-s` and `-c` joined by a veth pair, addresses
//!   from the documentation range (RFC 5737): the server on `pcb-s` 192.0.2.1 with XDP in
//!   native (driver) mode, the load generator and the bad-Message-Authenticator flood from
//!   192.0.2.2 (the configured client), the unknown-source flood from 192.0.2.3.
//! - `lo`: one namespace `pc-bench-<pid>`, its loopback with a second address 127.1.0.1 as the
//!   unknown source, XDP in generic (skb) mode: the kernel has built an skb for every datagram
//!   before XDP sees it, a pessimistic bound.
//!
//! Runs, each with a fresh server (one shard, pinned to --server-cpu), whose only client is
//! the legitimate source /32 with Message-Authenticator required:
//! (s) with `--rate P%` (the default is 50 %): PAP alone, XDP on, closed loop, to measure the
//!     saturation rate the open-loop rate is a share of;
//! (a) PAP alone, XDP on (`required = true`);
//! (b) PAP and the flood, XDP on;
//! (c) PAP and the flood, XDP off.
//! (a) to (c) send PAP as an open loop at one fixed rate, latency measured from each
//! request's due time. "Within 10 % of the no-flood value" then means: the legitimate rate is
//! still served ((b) achieved / (a) achieved), without loss, and with p99 latency shown beside.
//!
//! The flood is one thread that sends, as fast as it can, alternately a batch of correctly
//! signed Access-Requests from the unknown source and a batch of Access-Requests from the
//! known source signed with the wrong secret (bad Message-Authenticator). It runs through the
//! warm-up and the measured interval and stops at the end of the measured interval, at its
//! deadline or after --flood-max packets, whichever comes first. `--flood-gen` chooses how it
//! sends:
//! - `xdp` (the default on the veth pair): NIC-like frames. The bench builds each forged
//!   packet once as a whole Ethernet frame (pcb-c's MAC to pcb-s's, IPv4 and UDP checksums
//!   computed) and hands it to the kernel with `BPF_PROG_TEST_RUN` in live-frames mode, a
//!   chunk of copies per call: a four-instruction XDP program of its own ([`crate::xdp_gen`])
//!   redirects every copy into pcb-c, whose `ndo_xdp_xmit` puts the frame straight into
//!   pcb-s's XDP ring, as a NIC's DMA puts received frames into its ring. No socket, no skb:
//!   pcb-s's NAPI then does what a NIC driver's does (run XDP on a frame; build an skb only
//!   for what XDP passes). Each call's copies count as sent; those pcb-s's ring could not take
//!   show in the link drops. Why: the veth receives a socket-built skb by converting (copying)
//!   it into an XDP frame first, about 850 ns a packet against about 300 ns for the XDP
//!   program itself (measured), work a NIC does not do; with sockets, the one-core model
//!   (`--flood-rx server`) would charge the server's core mostly with the veth's copy. With
//!   frames it charges the XDP program and the veth's frame handling only.
//!   A veth queues redirected frames only while its peer's receive queue has NAPI, which a
//!   veth turns on for an XDP program or for GRO: the bench turns GRO on on pcb-s for all
//!   runs, so that run (c), without XDP, receives the flood too, and every run has the same
//!   receive path (NAPI, GRO) for the legitimate load.
//! - `socket` (the only one on `lo`): two UDP sockets bound to the two sources, `sendmmsg`
//!   batches of 64; the kernel builds an skb for every datagram.
//!
//! # What makes the comparison fair, on a 2-core machine
//!
//! - The flood thread is pinned to --flood-cpu (by default the load generator's CPU, the only
//!   one not the server's) with the `SCHED_IDLE` policy: it takes every cycle the legitimate
//!   client leaves, so it sends at the highest rate the machine can while the client still
//!   keeps its schedule (its own lag is reported: `send lag`). With a closed loop the flood
//!   would instead slow the legitimate client down, and the client, not the server, would set
//!   the legitimate rate.
//! - Where the receive work lands (`--flood-rx`). `sender` (the default) leaves it where the
//!   kernel puts it, on the *sending* CPU: the flood's kernel cost, XDP included, is paid by
//!   the flood's core and not by the server's. This is the deployment the README recommends
//!   and the one the XDP issue's target is about ("keep floods off the workers"): the NIC's
//!   receive queues interrupt cores that run no worker shard, so XDP drops the flood there and
//!   the workers never see it. `server` models a one-core appliance whose NIC interrupts land
//!   on its only core: on the
//!   veth pair the receiving end's NAPI runs in a kernel thread of its own (threaded NAPI),
//!   pinned to the server's CPU with the real-time priority of the kernel's interrupt threads
//!   (a NIC's softirq preempts any task too). With `--flood-gen xdp` pcb-s has NAPI in every
//!   run (GRO), so its thread is pinned in all three; with `socket` it has NAPI only while an
//!   XDP program is attached, and RPS steers what arrives without one (run c) to the same
//!   CPU. On `lo`, RPS moves all receive processing, generic XDP included, there. It measures
//!   how much flood one core can take off its link and drop while still serving: a flood
//!   faster than that (the NIC-like frames of `--flood-gen xdp` arrive at several million per
//!   second) overflows the receive ring, where legitimate packets are lost with forged ones
//!   before any filter runs, whatever the filter costs.
//! - Server CPU is reported as the server process's time (the worker; "worker CPU spent on the
//!   flood" = (b) or (c) minus (a)), the NAPI thread's time (veth, `server`), the softirq time
//!   of the server's CPU, and the XDP program's own run time from the kernel's BPF statistics
//!   (`BPF_ENABLE_STATS`), which separates what the program costs per packet from what the
//!   link costs: with `--flood-gen socket` a veth hands XDP socket-built skbs and converts
//!   each one into an XDP frame (a copy), work a NIC driver does not do; with `xdp` the NAPI
//!   thread's time is the XDP program's plus the veth's frame handling.
//!
//! # What it cannot show on 2 cores (measured, see the README)
//!
//! `SCHED_IDLE` bounds the flood thread, not the kernel work it causes: softirq processing (and
//! `ksoftirqd`, at normal priority) still competes with the load generator, which then falls
//! behind its schedule in the flood runs. (With `--flood-gen xdp` and `--flood-rx server` the
//! flood's receive work is all on the server's CPU; the load generator then falls behind when
//! the server, starved of its core, answers so late that all its identifiers are in flight.)
//! That lag is counted in the latencies (the open loop
//! must), so the p99 of runs (b) and (c) is partly the client's; the achieved legitimate rate,
//! the loss and the drop counters are the server's. A third core for the flood would be needed
//! to measure the server's latency under flood.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use portcullis_proto::SharedSecret;
use serde::Serialize;

use crate::ethtool::Ethtool;
use crate::load::LoadConfig;
use crate::report::Report;
use crate::request::{Expect, Generator, Users};
use crate::runner::{self, Target};
use crate::server::{OwnServer, ServerOpts};
use crate::xdp_gen::{self, Mac, Redirect};
use crate::{parse_cpu_list, portcullis_bin, udp, Cli, Rate, Scenario};
use crate::{OWN_SECRET, TIMEOUT, WARMUP};
use portcullis_xdp_loader::test_run::LIVE_FRAMES_MAX_BATCH;

/// Longest measured interval of one flood run, seconds.
const MAX_DURATION: u64 = 60;
/// The secret the bad-Message-Authenticator packets are signed with.
const FORGED_SECRET: &str = "not-the-portcullis-bench-secret";
/// Datagrams per flood `sendmmsg`, and distinct packets of each kind.
const FLOOD_BATCH: usize = 64;
/// `--flood-gen xdp`: frames per `BPF_PROG_TEST_RUN` call, all copies of one packet; the
/// kinds alternate from call to call. Large, because every call with `repeat` > 1 adds the
/// program to the kernel's XDP dispatcher and removes it at the end, and each change waits
/// for an RCU grace period (`bpf_dispatcher_update`): two sleeps of about 10 ms a call,
/// measured here, during which nothing is sent (with 2^14 frames a call the thread slept 85 %
/// of the time). A million frames are 0.2 to 0.3 s of sending: the sleeps then take under
/// 10 % of it, and the thread sees a stop or its deadline within that time.
const FRAMES_PER_CALL: u32 = 1 << 20;
/// `--flood-gen xdp`: frames the kernel runs the program on, and redirects, between two
/// flushes to the veth: the default `BPF_PROG_TEST_RUN` batch, a NAPI poll's budget
/// (`NAPI_POLL_WEIGHT`), the batch a NIC driver's XDP redirects come in.
const FRAMES_PER_BATCH: u32 = 64;
const _: () = assert!(FRAMES_PER_BATCH <= LIVE_FRAMES_MAX_BATCH);
/// `--flood-gen xdp`: the UDP source port of the forged frames (the first of the dynamic
/// range; nothing listens there, and the server answers none of them).
const FLOOD_SOURCE_PORT: u16 = 49152;
/// The XDP counters read from the control socket at the end of each run
/// (`xdp.<interface>.<name>`).
const XDP_COUNTERS: [&str; 3] = ["drop_unknown_client_v4", "drop_bad_ma", "pass_ma_verified"];
/// The userspace counters read at the end of each run.
const USERSPACE_COUNTERS: [&str; 2] = ["drop.unknown_client", "drop.bad_message_authenticator"];
/// The throughput ratio (flood, XDP on) / (no flood) the XDP issue asks for.
const TARGET_RATIO: f64 = 0.9;
/// Before each run, the longest wait for the pinned CPUs to be free of other work.
const QUIET_WAIT: Duration = Duration::from_secs(120);
/// The open-loop rate without `--rate`: this share of the saturation rate.
const DEFAULT_SHARE: f64 = 0.5;

/// Where the kernel's receive processing of the traffic runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RxCpu {
    /// On the server's CPU, XDP included, as on a one-core appliance: on the veth pair its
    /// NAPI thread pinned there (and RPS for what arrives while no XDP program is attached),
    /// on `lo` RPS.
    Server,
    /// On the sending CPU (the kernel's default for both links), as when the NIC's receive
    /// queues interrupt cores that run no worker shard.
    Sender,
}

/// How the flood is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodGen {
    /// Whole Ethernet frames that an XDP program of the bench redirects into the client's end
    /// of the veth pair (`BPF_PROG_TEST_RUN` live frames), as a NIC hands frames to XDP:
    /// no socket, no skb (veth only).
    Xdp,
    /// UDP sockets and `sendmmsg`: the kernel builds an skb for every datagram.
    Socket,
}

impl FloodGen {
    /// `--flood-gen` as given, or the link's default; refuses `xdp` on `lo`.
    fn choose(asked: Option<Self>, link: FloodLink) -> Result<Self> {
        match (asked, link) {
            (Some(FloodGen::Xdp), FloodLink::Lo) => bail!(
                "--flood-gen xdp needs --flood-link veth: it redirects frames into the client's \
                 end of the veth pair, and the loopback takes no redirected frames \
                 (use --flood-gen socket on lo)"
            ),
            (Some(g), _) => Ok(g),
            (None, FloodLink::Veth) => Ok(FloodGen::Xdp),
            (None, FloodLink::Lo) => Ok(FloodGen::Socket),
        }
    }
}

/// The link between the load generator (and the flood) and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodLink {
    /// A veth pair between two namespaces, XDP in native (driver) mode on the server's end.
    Veth,
    /// The loopback of one namespace, XDP in generic (skb) mode.
    Lo,
}

/// The client's end of the veth pair.
const CLIENT_IFACE: &str = "pcb-c";

/// The namespaces and addresses of one flood scenario.
struct Topology {
    /// Where the load generator and the flood run (the bench enters it).
    client: Netns,
    /// Where the server runs; `None`: in `client` (loopback).
    server: Option<Netns>,
    /// The server's interface, with the XDP program.
    iface: &'static str,
    /// `[xdp] mode` for the server.
    xdp_mode: &'static str,
    server_ip: Ipv4Addr,
    /// The configured client's address (the legitimate load and the bad-MA flood).
    legit_source: Ipv4Addr,
    /// An address the server does not know, in the client's namespace.
    unknown_source: Ipv4Addr,
    /// Ethtool sockets in the client's and the server's namespace (veth only).
    ethtool: Option<(Ethtool, Ethtool)>,
}

impl Topology {
    /// Datagrams (and frames) the link itself dropped so far, each once; 0 on `lo` (it has no
    /// ring). On the veth pair:
    /// - what the client's end could not queue to the server's end (its ring full, a NIC's
    ///   "rx missed"): a socket's skb counts in the client's `tx_dropped` (`veth_xmit`); a
    ///   frame of the XDP generator counts in the server end's receive-queue statistic
    ///   `peer_tq_xdp_xmit_err` (`veth_xdp_xmit`), which the kernel adds to *both* the
    ///   client's `tx_dropped` and the server's `rx_dropped` (`veth_get_stats64`) and shows
    ///   alone as the client's `ethtool -S` `tx_queue_<n>_xdp_xmit_errors`;
    /// - the server end's own drops, its `rx_dropped`.
    ///
    /// So: client `tx_dropped` + server `rx_dropped` − the client's `xdp_xmit_errors`.
    fn link_drops(&self) -> u64 {
        match (&self.server, &self.ethtool) {
            (Some(server), Some((client_ctl, _))) => {
                let counted_twice: u64 = client_ctl
                    .stats(CLIENT_IFACE)
                    .unwrap_or_default()
                    .iter()
                    .filter(|(name, _)| {
                        name.starts_with("tx_queue_") && name.ends_with("_xdp_xmit_errors")
                    })
                    .map(|(_, v)| v)
                    .sum();
                (self.client.link_stat(CLIENT_IFACE, "tx_dropped")
                    + server.link_stat(self.iface, "rx_dropped"))
                .saturating_sub(counted_twice)
            }
            _ => 0,
        }
    }

    /// Turns GRO on on the server's end of the veth pair: a veth receives through NAPI (and
    /// so takes redirected frames from its peer) only while an XDP program is attached or GRO
    /// is on (`veth_set_features`). The `ethtool -K <iface> gro on` of the ethtool tool, which
    /// need not be installed.
    fn server_gro_on(&self) -> Result<()> {
        let Some((_, server_ctl)) = &self.ethtool else {
            bail!("GRO: not a veth pair");
        };
        server_ctl
            .set_gro(self.iface, true)
            .with_context(|| format!("cannot turn GRO on on {} (ETHTOOL_SGRO)", self.iface))?;
        if !server_ctl.gro(self.iface).unwrap_or(false) {
            bail!("GRO on {} is still off after ETHTOOL_SGRO", self.iface);
        }
        Ok(())
    }

    /// The MAC addresses of (the server's end, the client's end) of the veth pair.
    fn macs(&self) -> Result<(Mac, Mac)> {
        let server = self.server.as_ref().context("MACs: not a veth pair")?;
        let read = |ns: &Netns, iface: &str| -> Result<Mac> {
            let path = format!("/sys/class/net/{iface}/address");
            xdp_gen::parse_mac(&ns.read_sys(&path)?)
                .with_context(|| format!("{path} in {}", ns.name))
        };
        Ok((read(server, self.iface)?, read(&self.client, CLIENT_IFACE)?))
    }

    /// One namespace; traffic over its `lo`, with a second loopback address as the unknown
    /// source.
    fn loopback() -> Result<Self> {
        let client = Netns::create("")?;
        client.exec(&["ip", "addr", "add", "127.1.0.1/32", "dev", "lo"])?;
        Ok(Self {
            client,
            server: None,
            iface: "lo",
            xdp_mode: "generic",
            server_ip: Ipv4Addr::LOCALHOST,
            legit_source: Ipv4Addr::LOCALHOST,
            unknown_source: Ipv4Addr::new(127, 1, 0, 1),
            ethtool: None,
        })
    }

    /// Two namespaces joined by a veth pair, documentation addresses (RFC 5737) that exist
    /// only inside them.
    fn veth() -> Result<Self> {
        let server = Netns::create("-s")?;
        let client = Netns::create("-c")?;
        server.exec(&[
            "ip",
            "link",
            "add",
            "pcb-s",
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_IFACE,
            "netns",
            &client.name,
        ])?;
        server.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "pcb-s"])?;
        server.exec(&["ip", "link", "set", "pcb-s", "up"])?;
        client.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", CLIENT_IFACE])?;
        client.exec(&["ip", "addr", "add", "192.0.2.3/24", "dev", CLIENT_IFACE])?;
        client.exec(&["ip", "link", "set", CLIENT_IFACE, "up"])?;
        let ethtool = (client.ethtool()?, server.ethtool()?);
        Ok(Self {
            client,
            server: Some(server),
            iface: "pcb-s",
            xdp_mode: "native",
            server_ip: Ipv4Addr::new(192, 0, 2, 1),
            legit_source: Ipv4Addr::new(192, 0, 2, 2),
            unknown_source: Ipv4Addr::new(192, 0, 2, 3),
            ethtool: Some(ethtool),
        })
    }

    fn server_ns(&self) -> &Netns {
        self.server.as_ref().unwrap_or(&self.client)
    }
}

/// A network namespace of our own, deleted when dropped.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !st.success() {
        bail!("ip {} failed ({st})", args.join(" "));
    }
    Ok(())
}

impl Netns {
    /// `pc-bench-<pid><suffix>`, with its `lo` up.
    fn create(suffix: &str) -> Result<Self> {
        let name = format!("pc-bench-{}{suffix}", std::process::id());
        // A leftover of a killed run with the same pid, if any.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Steers the receive processing of the namespace's `iface` to `cpus` (RPS). `ip netns
    /// exec` mounts the namespace's own sysfs, so this touches only our interface.
    fn steer_rx(&self, iface: &str, cpus: &[usize]) -> Result<()> {
        let mask: u128 = cpus
            .iter()
            .filter(|&&c| c < 128)
            .fold(0, |m, &c| m | (1u128 << c));
        let cmd = format!("echo {mask:x} > /sys/class/net/{iface}/queues/rx-0/rps_cpus");
        self.exec(&["sh", "-c", &cmd])
    }

    /// Moves `iface`'s NAPI polling (XDP in native mode, then the receive stack) into a kernel
    /// thread of its own and pins that thread to `cpus`: the receive work of the link then
    /// competes with the server on the server's CPU, like the RX-queue interrupt of a NIC on a
    /// one-core appliance. A veth has NAPI only while an XDP program is attached or GRO is on,
    /// so this is called after each server has attached its own (or with GRO on, in every
    /// run). Returns the threads' pids.
    fn pin_napi_thread(&self, iface: &str, cpus: &[usize]) -> Result<Vec<u32>> {
        let cmd = format!("echo 1 > /sys/class/net/{iface}/threaded");
        self.exec(&["sh", "-c", &cmd])
            .with_context(|| format!("cannot turn on threaded NAPI on {iface}"))?;
        let pids = napi_threads(iface);
        if pids.is_empty() {
            bail!("no NAPI thread of {iface} after turning threaded NAPI on");
        }
        for &pid in &pids {
            udp::pin_thread(pid, cpus)
                .with_context(|| format!("cannot pin the NAPI thread {pid} of {iface}"))?;
            set_scheduler(pid, libc::SCHED_FIFO, IRQ_THREAD_PRIORITY).with_context(|| {
                format!("cannot give the NAPI thread {pid} of {iface} SCHED_FIFO")
            })?;
        }
        Ok(pids)
    }

    /// A counter of `iface` in the namespace (`/sys/class/net/<iface>/statistics/<name>`),
    /// 0 if it cannot be read.
    fn link_stat(&self, iface: &str, name: &str) -> u64 {
        self.read_sys(&format!("/sys/class/net/{iface}/statistics/{name}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A file of the namespace's own sysfs (which `ip netns exec` mounts; the bench's `/sys`
    /// shows the interfaces of the namespace it started in).
    fn read_sys(&self, path: &str) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "cat", path])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("cannot run ip netns exec {} cat {path}", self.name))?;
        if !out.status.success() {
            bail!("cannot read {path} in {} ({})", self.name, out.status);
        }
        String::from_utf8(out.stdout).with_context(|| format!("{path}: not text"))
    }

    /// An ethtool socket in the namespace, opened by a short-lived thread that enters it (a
    /// socket stays in the namespace it was opened in).
    fn ethtool(&self) -> Result<Ethtool> {
        thread::scope(|s| {
            s.spawn(|| -> Result<Ethtool> {
                self.enter()?;
                Ethtool::new().context("cannot open an ethtool socket")
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the thread opening an ethtool socket panicked")))
        })
        .with_context(|| format!("in {}", self.name))
    }

    /// `/run/netns/<name>`, the namespace's file.
    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn exec(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread (and the threads and processes it starts later) into the
    /// namespace.
    fn enter(&self) -> Result<()> {
        let path = self.path();
        let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: setns(2) on an open namespace file descriptor; it only changes the calling
        // thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns into {} failed: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .status()
        {
            Ok(st) if st.success() => eprintln!("[bench] network namespace {} deleted", self.name),
            _ => eprintln!(
                "[bench] warning: could not delete network namespace {} (ip netns del {0})",
                self.name
            ),
        }
    }
}

/// Whether the calling thread is in the network namespace of file `ns` (`/run/netns/<name>`):
/// its `/proc/thread-self/ns/net` is the same namespace (device and inode).
fn current_thread_in(ns: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let want = std::fs::metadata(ns).with_context(|| format!("cannot stat {}", ns.display()))?;
    let current = std::fs::metadata("/proc/thread-self/ns/net")
        .context("cannot stat /proc/thread-self/ns/net")?;
    Ok((want.dev(), want.ino()) == (current.dev(), current.ino()))
}

/// Flood packets sent so far, shared with the flood thread.
#[derive(Default)]
struct FloodCounts {
    unknown: AtomicU64,
    bad_ma: AtomicU64,
    errors: AtomicU64,
}

impl FloodCounts {
    fn total(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed) + self.bad_ma.load(Ordering::Relaxed)
    }
}

/// `count` Access-Requests with distinct identifiers, signed with `secret`.
fn build_packets(secret: &SharedSecret, users: &Users, count: usize) -> Result<Vec<Vec<u8>>> {
    let mut g = Generator::new(Scenario::Pap, secret, users, Expect::Accept);
    (0..count)
        .map(|i| {
            let mut buf = Vec::with_capacity(128);
            g.build(i as u8, &mut buf)?;
            Ok(buf)
        })
        .collect()
}

fn flood_socket(source: Ipv4Addr, target: SocketAddr) -> Result<UdpSocket> {
    let s = UdpSocket::bind((source, 0))
        .with_context(|| format!("cannot bind a flood socket to {source}"))?;
    s.connect(target)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The real-time priority the kernel gives threaded interrupt handlers (`MAX_RT_PRIO / 2`).
const IRQ_THREAD_PRIORITY: i32 = 50;

/// Sets the scheduling policy of thread `tid` (0: the calling thread).
///
/// The flood thread gets `SCHED_IDLE`: it runs only when nothing else on its CPU wants to.
/// The veth's NAPI thread gets `SCHED_FIFO` at the priority of the kernel's threaded interrupt
/// handlers: a NIC's receive work runs in the softirq its interrupt raises, which preempts
/// whatever task the CPU runs; a NAPI thread at the default `SCHED_OTHER` would instead take
/// turns with the server by time slice, and the veth's 256-entry ring, about 250 µs of a
/// full-rate flood, overflows during every slice the server gets, dropping legitimate
/// datagrams with the forged ones at a rate no NIC interrupt would.
fn set_scheduler(tid: u32, policy: libc::c_int, priority: i32) -> Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    let tid = libc::pid_t::try_from(tid).context("thread id out of range")?;
    // SAFETY: `param` is a live sched_param; `tid` is 0 or names a thread that exists, or
    // the call fails.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } != 0 {
        bail!("{}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The flood loop of `--flood-gen socket` (runs on its own thread). Returns how long it sent.
#[allow(clippy::too_many_arguments)]
fn flood_sockets(
    unknown: &UdpSocket,
    forged: &UdpSocket,
    unknown_pkts: &[Vec<u8>],
    forged_pkts: &[Vec<u8>],
    stop: &AtomicBool,
    deadline: Instant,
    max: u64,
    counts: &FloodCounts,
) -> Result<Duration> {
    let start = Instant::now();
    let mut total = 0u64;
    let mut turn = false;
    while !stop.load(Ordering::Relaxed) && total < max && Instant::now() < deadline {
        turn = !turn;
        let take = (max - total).min(FLOOD_BATCH as u64) as usize;
        let (sock, pkts, counter) = if turn {
            (unknown, unknown_pkts, &counts.unknown)
        } else {
            (forged, forged_pkts, &counts.bad_ma)
        };
        match udp::send_batch(sock.as_raw_fd(), &pkts[..take]) {
            Ok(n) => {
                total += n as u64;
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED) | Some(libc::ENOBUFS)
                ) =>
            {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(e).context("flood sendmmsg failed"),
        }
    }
    Ok(start.elapsed())
}

/// The forged frames of `--flood-gen xdp`, one per packet of each kind.
struct FloodFrames {
    unknown: Vec<Vec<u8>>,
    forged: Vec<Vec<u8>>,
}

/// The flood thread of `--flood-gen xdp`. Checks that it runs in the client's namespace
/// (given by name and `/run/netns` file): the program's interface index is looked up there,
/// and the kernel runs live frames as if that namespace's loopback had received them. Then it
/// loads the redirect program for the client's end of the veth pair and sends the two kinds
/// of frames by turns, [`FRAMES_PER_CALL`] copies of one packet a call, until stopped, its
/// deadline or `max` frames. Returns how long it sent.
fn flood_frames(
    (client, client_path): &(String, PathBuf),
    frames: &FloodFrames,
    stop: &AtomicBool,
    deadline: Instant,
    max: u64,
    counts: &FloodCounts,
) -> Result<Duration> {
    if !current_thread_in(client_path)? {
        bail!(
            "the flood thread is not in {client}: the redirect would look up {CLIENT_IFACE} in \
             another namespace"
        );
    }
    let name = std::ffi::CString::new(CLIENT_IFACE).context("interface name")?;
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!(
            "no {CLIENT_IFACE} in the flood thread's namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    let prog = Redirect::load(ifindex)?;
    if let Some(f) = frames.unknown.first() {
        prog.check(f)?;
    }
    let start = Instant::now();
    let mut total = 0u64;
    let mut turn = false;
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) && total < max && Instant::now() < deadline {
        turn = !turn;
        let take = (max - total).min(u64::from(FRAMES_PER_CALL)) as u32;
        let (kind, counter) = if turn {
            (&frames.unknown, &counts.unknown)
        } else {
            (&frames.forged, &counts.bad_ma)
        };
        let Some(frame) = kind.get(next % kind.len().max(1)) else {
            bail!("no flood frames");
        };
        if !turn {
            next += 1;
        }
        match prog.send(frame, take, FRAMES_PER_BATCH) {
            Ok(()) => {
                total += u64::from(take);
                counter.fetch_add(u64::from(take), Ordering::Relaxed);
            }
            // A signal (the bench's SIGINT): some of the copies went out, the stop follows.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(e).context("BPF_PROG_TEST_RUN (live frames) of the flood failed"),
        }
    }
    Ok(start.elapsed())
}

#[derive(Debug, Serialize)]
pub struct FloodRun {
    pub name: &'static str,
    pub xdp: bool,
    pub flood: bool,
    /// The legitimate PAP load.
    pub pap: Report,
    /// Flood packets per second over the flood's run (from before the warm-up to the end of
    /// the measured interval), and the packets that rate makes in the measured interval.
    pub flood_sent: u64,
    pub flood_pps: f64,
    /// Flood packets sent in the whole run (warm-up included), by kind. `--flood-gen xdp`:
    /// frames handed to the kernel; those the veth could not queue are in `link_drops`.
    pub flood_unknown_source_total: u64,
    pub flood_bad_ma_total: u64,
    /// Calls of the flood that failed without stopping it: `sendmmsg` with ECONNREFUSED or
    /// ENOBUFS (`socket`), `BPF_PROG_TEST_RUN` interrupted by a signal (`xdp`).
    pub flood_send_errors: u64,
    /// The server's counters at the end of the run (0 when absent).
    pub counters: BTreeMap<String, u64>,
    /// Datagrams the kernel dropped on the way in during the run: /proc/net/softnet_stat
    /// `dropped` (per-CPU backlog full, RPS) and /proc/net/snmp `Udp: RcvbufErrors` (socket
    /// receive queue full) of the namespace.
    pub kernel_backlog_drops: u64,
    /// Datagrams and frames the veth pair dropped during the run, mostly because the
    /// receiving end's ring was full (a NIC's "rx missed"), legitimate ones included, each
    /// counted once (see `Topology::link_drops`); 0 on `lo`.
    pub link_drops: u64,
    pub udp_rcvbuf_errors: u64,
    /// CPU time of the link's NAPI thread (XDP and kernel receive, pinned to the server's CPU)
    /// over the load run (warm-up included), percent of one CPU; only with threaded NAPI
    /// (veth, `--flood-rx server`, and XDP on or `--flood-gen xdp`).
    pub napi_cpu_percent: Option<f64>,
    /// What the XDP program itself cost over the load run, from the kernel's BPF run-time
    /// statistics (`run_time_ns`, `run_cnt`): the share of the receive work a NIC driver would
    /// also pay, without the veth's or the skb's own per-packet work.
    pub xdp_program: Option<XdpCost>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct XdpCost {
    /// Packets the program ran on.
    pub runs: u64,
    pub ns_per_packet: f64,
    /// Its run time, percent of one CPU.
    pub cpu_percent: f64,
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub duration_s: u64,
    pub server_cpu: String,
    pub client_cpu: String,
    pub flood_cpu: String,
    /// The flood thread shares a CPU with the load generator (it runs with SCHED_IDLE).
    pub flood_shares_client_cpu: bool,
    /// The link the traffic crossed, and the XDP mode on the server's end of it.
    pub link: FloodLink,
    pub xdp_mode: &'static str,
    /// Where the kernel's receive processing ran (RPS to the server's CPU or not).
    pub rx_cpu: RxCpu,
    /// How the flood was sent: XDP frames redirected into the veth, or sockets.
    pub flood_gen: FloodGen,
    /// The saturation rate measured first (closed loop, no flood, XDP on), when `--rate` was a
    /// share of it.
    pub saturation_per_s: Option<f64>,
    /// The legitimate open-loop rate of runs (a) to (c).
    pub legit_rate_per_s: f64,
    pub runs: Vec<FloodRun>,
    /// Legitimate throughput (b) / (a): flood with XDP on vs no flood.
    pub ratio_flood_xdp_on: f64,
    /// Legitimate throughput (c) / (a): flood with XDP off vs no flood.
    pub ratio_flood_xdp_off: f64,
    pub target_ratio: f64,
    /// Server process CPU (% of a core) spent on the flood: (b) − (a) and (c) − (a).
    pub worker_cpu_on_flood_xdp_on: Option<f64>,
    pub worker_cpu_on_flood_xdp_off: Option<f64>,
}

struct RunSpec {
    name: &'static str,
    xdp: bool,
    flood: bool,
    /// Open loop at this rate; `None`: closed loop (the saturation run).
    rate: Option<f64>,
}

struct Ctx<'a> {
    cli: &'a Cli,
    bin: &'a Path,
    topo: &'a Topology,
    users: &'a Users,
    secret: &'a SharedSecret,
    unknown_pkts: &'a [Vec<u8>],
    forged_pkts: &'a [Vec<u8>],
    gen: FloodGen,
    /// `--flood-gen xdp`: the MACs of (the server's end, the client's end) of the veth pair.
    macs: Option<(Mac, Mac)>,
    client_cpus: &'a [usize],
    server_cpus: &'a [usize],
    flood_cpus: &'a [usize],
}

/// The kernel threads named `napi/<iface>-<id>` (threaded NAPI). Interface names are per
/// namespace, but the bench's names (`pcb-s`) are its own.
fn napi_threads(iface: &str) -> Vec<u32> {
    let prefix = format!("napi/{iface}-");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&prefix))
        })
        .collect()
}

/// Keeps the kernel's run-time statistics of BPF programs on while it lives (`BPF_ENABLE_STATS`
/// hands out a file descriptor; closing it, also when the bench dies, turns them off again).
struct BpfStats {
    /// Held, never read: its lifetime is the statistics'.
    _fd: std::os::fd::OwnedFd,
}

impl BpfStats {
    fn enable() -> Result<Self> {
        /// `BPF_ENABLE_STATS` and `BPF_STATS_RUN_TIME` (include/uapi/linux/bpf.h).
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        /// The `enable_stats` member of `union bpf_attr`, padded to the union's alignment.
        #[repr(C)]
        struct EnableStatsAttr {
            stats_type: u32,
            _pad: u32,
        }
        let mut attr = EnableStatsAttr {
            stats_type: BPF_STATS_RUN_TIME,
            _pad: 0,
        };
        // SAFETY: `EnableStatsAttr` is the layout of the BPF_ENABLE_STATS member; it holds no
        // addresses.
        let fd =
            unsafe { xdp_gen::bpf_fd(BPF_ENABLE_STATS, &mut attr) }.context("BPF_ENABLE_STATS")?;
        Ok(Self { _fd: fd })
    }
}

/// (run time in ns, runs) of the BPF programs process `pid` holds, from their fdinfo; zero
/// while the statistics are off.
fn bpf_run_stats(pid: u32) -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let mut total = (0, 0);
    for e in dir.flatten() {
        if std::fs::read_link(e.path()).map_or(true, |l| l.as_os_str() != "anon_inode:bpf-prog") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        total.0 += field("run_time_ns:");
        total.1 += field("run_cnt:");
    }
    total
}

/// Sum of the `dropped` column (the second) of /proc/net/softnet_stat, all CPUs.
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

/// `Udp: RcvbufErrors` of /proc/net/snmp in the network namespace of process `pid`.
fn udp_rcvbuf_errors(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn one_run(ctx: &Ctx<'_>, spec: &RunSpec) -> Result<FloodRun> {
    let cli = ctx.cli;
    let topo = ctx.topo;
    let xdp = if spec.xdp {
        format!(
            "[xdp]\nmode = \"{}\"\ninterfaces = [\"{}\"]\nrequired = true\n",
            topo.xdp_mode, topo.iface
        )
    } else {
        "[xdp]\nmode = \"off\"\n".to_owned()
    };
    eprintln!(
        "[bench] run {}: XDP {}, flood {}, PAP {}",
        spec.name,
        if spec.xdp {
            format!("on ({}, {})", topo.xdp_mode, topo.iface)
        } else {
            "off".to_owned()
        },
        if spec.flood { "on" } else { "off" },
        match spec.rate {
            Some(r) => format!("open loop at {r:.0}/s"),
            None => format!("closed loop, window {}", cli.window),
        }
    );
    let server = OwnServer::start_with(
        ctx.bin,
        &cli.server_cpu,
        ctx.server_cpus.len(),
        cli.users,
        OWN_SECRET,
        &ServerOpts {
            netns: Some(topo.server_ns().name.clone()),
            client_address: format!("{}/32", topo.legit_source),
            xdp,
            listen_ip: Some(topo.server_ip.into()),
            ..ServerOpts::default()
        },
    )?;
    let active = server.stats()?.get("xdp.active").cloned();
    let want = if spec.xdp { "1" } else { "0" };
    if active.as_deref() != Some(want) {
        bail!("the server reports xdp.active {active:?}, expected {want}");
    }
    // With GRO on (`--flood-gen xdp`) the veth has NAPI also without an XDP program.
    let has_napi = spec.xdp || ctx.gen == FloodGen::Xdp;
    let napi = if has_napi && topo.server.is_some() && cli.flood_rx == RxCpu::Server {
        topo.server_ns()
            .pin_napi_thread(topo.iface, ctx.server_cpus)?
    } else {
        Vec::new()
    };
    let target = server.auth;
    let cfg = LoadConfig {
        target,
        window: cli.window as usize,
        sockets: cli.sockets as usize,
        warmup: WARMUP,
        duration: Duration::from_secs(cli.duration),
        timeout: TIMEOUT,
        rate: spec.rate,
        label: format!("run {}", spec.name),
        // The flood thread (SCHED_IDLE) only runs while the load generator sleeps.
        spin: false,
    };

    let mut watched: Vec<usize> = ctx.client_cpus.to_vec();
    watched.extend(ctx.server_cpus);
    watched.extend(ctx.flood_cpus);
    watched.sort_unstable();
    watched.dedup();
    // Before the flood starts: other processes on a shared machine disturb the run.
    runner::wait_quiet(&watched, QUIET_WAIT);
    crate::check_interrupted()?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let flooder = if spec.flood {
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        let cpus = ctx.flood_cpus.to_vec();
        let deadline = Instant::now() + WARMUP + cfg.duration + Duration::from_secs(1);
        let max = cli.flood_max;
        let send: Box<dyn FnOnce() -> Result<Duration> + Send> = match ctx.gen {
            FloodGen::Socket => {
                let unknown = flood_socket(topo.unknown_source, target)?;
                let forged = flood_socket(topo.legit_source, target)?;
                let (unknown_pkts, forged_pkts) =
                    (ctx.unknown_pkts.to_vec(), ctx.forged_pkts.to_vec());
                Box::new(move || {
                    flood_sockets(
                        &unknown,
                        &forged,
                        &unknown_pkts,
                        &forged_pkts,
                        &stop,
                        deadline,
                        max,
                        &counts,
                    )
                })
            }
            FloodGen::Xdp => {
                let (server_mac, client_mac) = ctx.macs.context("no MACs for the XDP flood")?;
                let to = SocketAddrV4::new(topo.server_ip, target.port());
                let frames_from = |source: Ipv4Addr, pkts: &[Vec<u8>]| -> Result<Vec<Vec<u8>>> {
                    let from = SocketAddrV4::new(source, FLOOD_SOURCE_PORT);
                    pkts.iter()
                        .map(|p| xdp_gen::udp_frame(server_mac, client_mac, from, to, p))
                        .collect()
                };
                let frames = FloodFrames {
                    unknown: frames_from(topo.unknown_source, ctx.unknown_pkts)?,
                    forged: frames_from(topo.legit_source, ctx.forged_pkts)?,
                };
                let client = (topo.client.name.clone(), topo.client.path());
                Box::new(move || flood_frames(&client, &frames, &stop, deadline, max, &counts))
            }
        };
        Some(
            thread::Builder::new()
                .name("flood".into())
                .spawn(move || -> Result<Duration> {
                    udp::pin_current_thread(&cpus).context("cannot pin the flood thread")?;
                    set_scheduler(0, libc::SCHED_IDLE, 0)
                        .context("cannot give the flood thread SCHED_IDLE")?;
                    send()
                })
                .context("cannot start the flood thread")?,
        )
    } else {
        None
    };

    let t = Target {
        server: "portcullis",
        pid: Some(server.pid()),
        ma_anywhere: false,
        status_expect: Expect::Accept,
        server_cpus: ctx.server_cpus,
        watched: &watched,
        helper_threads: &napi,
    };
    let (backlog0, rcvbuf0) = (softnet_dropped(), udp_rcvbuf_errors(server.pid()));
    let link0 = topo.link_drops();
    let napi0 = crate::procfs::threads_cpu_seconds(&napi);
    let bpf0 = bpf_run_stats(server.pid());
    let t0 = Instant::now();
    let result = runner::measure(&cfg, Scenario::Pap, ctx.secret, ctx.users, &t);
    let ran = t0.elapsed();
    let napi_cpu_percent = (!napi.is_empty() && ran.as_secs_f64() > 0.0)
        .then(|| (crate::procfs::threads_cpu_seconds(&napi) - napi0) / ran.as_secs_f64() * 100.0);
    let bpf1 = bpf_run_stats(server.pid());
    let (xdp_ns, xdp_runs) = (bpf1.0.saturating_sub(bpf0.0), bpf1.1.saturating_sub(bpf0.1));
    let xdp_program = (spec.xdp && xdp_runs > 0 && ran.as_secs_f64() > 0.0).then(|| XdpCost {
        runs: xdp_runs,
        ns_per_packet: xdp_ns as f64 / xdp_runs as f64,
        cpu_percent: xdp_ns as f64 / 1e9 / ran.as_secs_f64() * 100.0,
    });
    stop.store(true, Ordering::Relaxed);
    let flooded = match flooder {
        Some(h) => match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("the flood thread panicked"),
        },
        None => Duration::ZERO,
    };
    let pap = result?;
    // Let the last flood packets reach the counters.
    thread::sleep(Duration::from_millis(200));
    let (backlog1, rcvbuf1) = (softnet_dropped(), udp_rcvbuf_errors(server.pid()));
    let link_drops = topo.link_drops().saturating_sub(link0);
    let stats = server.stats()?;
    // Stored under `xdp.<name>` whatever the interface, so runs and links compare.
    let counters: BTreeMap<String, u64> = XDP_COUNTERS
        .iter()
        .map(|k| (format!("xdp.{}.{k}", topo.iface), format!("xdp.{k}")))
        .chain(
            USERSPACE_COUNTERS
                .iter()
                .map(|&k| (k.to_owned(), k.to_owned())),
        )
        .map(|(read, key)| {
            let v = stats.get(&read).and_then(|v| v.parse().ok()).unwrap_or(0);
            (key, v)
        })
        .collect();
    let log = server.stop().context("stopping the server")?.log;
    if !log.trim().is_empty() {
        eprintln!("[bench] the server logged (level warn):");
        for l in log.lines().take(10) {
            eprintln!("  {l}");
        }
    }
    // The flood runs from before the warm-up to (one send call past) the end of the measured
    // interval: its rate over its own run is its rate in the measured interval. (Counting
    // only over the load run would be off by up to a whole call of the XDP generator, a
    // million frames.)
    let pps = if flooded.as_secs_f64() > 0.0 {
        counts.total() as f64 / flooded.as_secs_f64()
    } else {
        0.0
    };
    Ok(FloodRun {
        name: spec.name,
        xdp: spec.xdp,
        flood: spec.flood,
        flood_sent: (pps * pap.duration_s) as u64,
        flood_pps: pps,
        pap,
        flood_unknown_source_total: counts.unknown.load(Ordering::Relaxed),
        flood_bad_ma_total: counts.bad_ma.load(Ordering::Relaxed),
        flood_send_errors: counts.errors.load(Ordering::Relaxed),
        counters,
        kernel_backlog_drops: backlog1.saturating_sub(backlog0),
        link_drops,
        udp_rcvbuf_errors: rcvbuf1.saturating_sub(rcvbuf0),
        napi_cpu_percent,
        xdp_program,
    })
}

fn table(runs: &[FloodRun]) -> String {
    let header = [
        "run",
        "XDP",
        "flood",
        "load",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "lost",
        "wrong",
        "flood pps",
        "srv CPU %",
        "srv softirq %",
        "napi CPU %",
        "XDP prog CPU %",
        "XDP ns/pkt",
        "cli CPU %",
        "xdp unk",
        "xdp bad MA",
        "us unk",
        "us bad MA",
        "link drop",
        "backlog drop",
        "rcvbuf err",
    ];
    let c = |r: &FloodRun, k: &str| r.counters.get(k).copied().unwrap_or(0).to_string();
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.name.to_owned(),
                if r.xdp { "on" } else { "off" }.to_owned(),
                if r.flood { "yes" } else { "no" }.to_owned(),
                r.pap.mode_text(),
                format!("{:.0}", r.pap.requests_per_s),
                r.pap.latency_us.p50.to_string(),
                r.pap.latency_us.p99.to_string(),
                r.pap.latency_us.p99_9.to_string(),
                r.pap.lost.to_string(),
                r.pap.wrong.to_string(),
                format!("{:.0}", r.flood_pps),
                opt(r.pap.server_cpu_percent),
                opt(r.pap.server_cpus_softirq_percent),
                opt(r.napi_cpu_percent),
                opt(r.xdp_program.map(|x| x.cpu_percent)),
                r.xdp_program
                    .map_or_else(|| "-".to_owned(), |x| format!("{:.0}", x.ns_per_packet)),
                opt(r.pap.client_cpu_percent),
                c(r, "xdp.drop_unknown_client_v4"),
                c(r, "xdp.drop_bad_ma"),
                c(r, "drop.unknown_client"),
                c(r, "drop.bad_message_authenticator"),
                r.link_drops.to_string(),
                r.kernel_backlog_drops.to_string(),
                r.udp_rcvbuf_errors.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&header.map(str::to_owned));
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// Runs the runs; `Ok(false)` when one found wrong replies, or none at all where the XDP filter
/// was on or no flood ran (without XDP a flood may leave no correct reply: that is its result).
pub fn run(cli: &Cli) -> Result<bool> {
    if cli.server.is_some() {
        bail!("--scenario flood starts its own servers: --server is not supported");
    }
    if cli.duration > MAX_DURATION {
        bail!("--scenario flood: --duration is at most {MAX_DURATION} s");
    }
    if cli.window > cli.sockets * 256 {
        bail!("--window {} needs more --sockets", cli.window);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("--scenario flood needs root (network namespace, XDP)");
    }
    let gen = FloodGen::choose(cli.flood_gen, cli.flood_link)?;
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    let server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
    let flood_cpu = cli
        .flood_cpu
        .clone()
        .unwrap_or_else(|| cli.client_cpu.clone());
    let flood_cpus = parse_cpu_list(&flood_cpu).context("--flood-cpu")?;
    let shares = flood_cpus.iter().any(|c| client_cpus.contains(c));
    let bin = portcullis_bin()?;
    let users = Users::new(cli.users);
    let secret = SharedSecret::new(OWN_SECRET.as_bytes()).context("the shared secret")?;
    let forged_secret = SharedSecret::new(FORGED_SECRET.as_bytes()).context("the forged secret")?;
    let unknown_pkts = build_packets(&secret, &users, FLOOD_BATCH)?;
    let forged_pkts = build_packets(&forged_secret, &users, FLOOD_BATCH)?;

    let topo = match cli.flood_link {
        FloodLink::Veth => Topology::veth()?,
        FloodLink::Lo => Topology::loopback()?,
    };
    let macs = match gen {
        FloodGen::Xdp => {
            topo.server_gro_on()?;
            Some(topo.macs()?)
        }
        FloodGen::Socket => None,
    };
    // With GRO on, everything arrives through the NAPI thread, pinned in every run instead.
    if cli.flood_rx == RxCpu::Server && gen == FloodGen::Socket {
        topo.server_ns()
            .steer_rx(topo.iface, &server_cpus)
            .with_context(|| {
                format!(
                    "cannot steer {}'s receive processing (RPS) to the server CPU",
                    topo.iface
                )
            })?;
    }
    topo.client.enter()?;
    // Costs the kernel a clock read per program run, in every run alike (a, b and c compare).
    let _bpf_stats = match BpfStats::enable() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("[bench] note: no XDP program run times ({e:#})");
            None
        }
    };
    eprintln!(
        "[bench] flood scenario over {} ({}), XDP {} on {}: server on CPU {}, PAP load on CPU \
         {}, flood thread on CPU {}{} (SCHED_IDLE) sending {}, receive processing {}",
        match cli.flood_link {
            FloodLink::Veth => "a veth pair between two network namespaces",
            FloodLink::Lo => "the loopback of a network namespace",
        },
        match &topo.server {
            Some(s) => format!("{} and {}", s.name, topo.client.name),
            None => topo.client.name.clone(),
        },
        topo.xdp_mode,
        topo.iface,
        cli.server_cpu,
        cli.client_cpu,
        flood_cpu,
        if shares {
            " (shared with the PAP load generator)"
        } else {
            ""
        },
        match gen {
            FloodGen::Xdp => "XDP frames redirected into pcb-c (BPF_PROG_TEST_RUN live frames)",
            FloodGen::Socket => "with UDP sockets (sendmmsg)",
        },
        match (cli.flood_rx, cli.flood_link, gen) {
            (RxCpu::Server, FloodLink::Lo, _) => "on the server's CPU (RPS), XDP included",
            (RxCpu::Server, FloodLink::Veth, FloodGen::Xdp) =>
                "on the server's CPU (GRO on pcb-s, so NAPI in every run: its thread pinned \
                 there, XDP included)",
            (RxCpu::Server, FloodLink::Veth, FloodGen::Socket) =>
                "on the server's CPU (XDP on: threaded NAPI pinned there, XDP included; \
                 XDP off: RPS)",
            (RxCpu::Sender, _, _) => "on the sending CPU",
        }
    );
    udp::pin_current_thread(&client_cpus)
        .with_context(|| format!("cannot pin the load generator to CPU {}", cli.client_cpu))?;
    let ctx = Ctx {
        cli,
        bin: &bin,
        topo: &topo,
        users: &users,
        secret: &secret,
        unknown_pkts: &unknown_pkts,
        forged_pkts: &forged_pkts,
        gen,
        macs,
        client_cpus: &client_cpus,
        server_cpus: &server_cpus,
        flood_cpus: &flood_cpus,
    };
    let mut runs = Vec::with_capacity(4);
    let (saturation, rate) = match cli.rate.unwrap_or(Rate::OfSaturation(DEFAULT_SHARE)) {
        Rate::PerSecond(r) => (None, r),
        Rate::OfSaturation(share) => {
            let sat = one_run(
                &ctx,
                &RunSpec {
                    name: "s",
                    xdp: true,
                    flood: false,
                    rate: None,
                },
            )?;
            let s = sat.pap.requests_per_s;
            let rate = (s * share).round().max(1.0);
            eprintln!(
                "[bench] saturation {s:.0} req/s; legitimate open-loop rate {:.0} % of it: \
                 {rate:.0} req/s",
                share * 100.0
            );
            runs.push(sat);
            (Some(s), rate)
        }
    };
    let first = runs.len();
    for (name, xdp, flood) in [("a", true, false), ("b", true, true), ("c", false, true)] {
        runs.push(one_run(
            &ctx,
            &RunSpec {
                name,
                xdp,
                flood,
                rate: Some(rate),
            },
        )?);
    }
    let (a, b, c) = (&runs[first], &runs[first + 1], &runs[first + 2]);
    let base = a.pap.requests_per_s;
    let ratio = |r: &FloodRun| {
        if base > 0.0 {
            r.pap.requests_per_s / base
        } else {
            0.0
        }
    };
    let worker = |r: &FloodRun| match (r.pap.server_cpu_percent, a.pap.server_cpu_percent) {
        (Some(x), Some(y)) => Some(x - y),
        _ => None,
    };
    let report = FloodReport {
        duration_s: cli.duration,
        server_cpu: cli.server_cpu.clone(),
        client_cpu: cli.client_cpu.clone(),
        flood_cpu,
        flood_shares_client_cpu: shares,
        link: cli.flood_link,
        xdp_mode: topo.xdp_mode,
        rx_cpu: cli.flood_rx,
        flood_gen: gen,
        saturation_per_s: saturation,
        legit_rate_per_s: rate,
        ratio_flood_xdp_on: ratio(b),
        ratio_flood_xdp_off: ratio(c),
        target_ratio: TARGET_RATIO,
        worker_cpu_on_flood_xdp_on: worker(b),
        worker_cpu_on_flood_xdp_off: worker(c),
        runs,
    };
    let (a, b, c) = (
        &report.runs[first],
        &report.runs[first + 1],
        &report.runs[first + 2],
    );
    println!("{}", table(&report.runs));
    let lat = |r: &FloodRun| format!("p99 {} µs, lost {}", r.pap.latency_us.p99, r.pap.lost);
    let met = report.ratio_flood_xdp_on >= TARGET_RATIO && b.pap.lost == 0;
    println!(
        "legitimate PAP at {rate:.0}/s: no flood {:.0}/s ({}); flood + XDP on {:.0}/s ({}), \
         ratio {:.3} (target >= {TARGET_RATIO} without loss: {}); flood + XDP off {:.0}/s ({}), \
         ratio {:.3}",
        a.pap.requests_per_s,
        lat(a),
        b.pap.requests_per_s,
        lat(b),
        report.ratio_flood_xdp_on,
        if met { "met" } else { "NOT met" },
        c.pap.requests_per_s,
        lat(c),
        report.ratio_flood_xdp_off,
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:+.1}"));
    println!(
        "worker (server process) CPU spent on the flood: {} % of a core with XDP on, {} % with \
         XDP off; the server CPU's softirq time (kernel receive, XDP): {} % / {} % / {} % in \
         (a) / (b) / (c)",
        opt(report.worker_cpu_on_flood_xdp_on),
        opt(report.worker_cpu_on_flood_xdp_off),
        a.pap
            .server_cpus_softirq_percent
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
        b.pap
            .server_cpus_softirq_percent
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
        c.pap
            .server_cpus_softirq_percent
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
    );
    println!(
        "{}(a) PAP alone, XDP on; (b) PAP + flood, XDP on; (c) PAP + flood, XDP off. Flood: \
         half unknown source {}, half bad Message-Authenticator from {}, one SCHED_IDLE \
         thread on CPU {}{} sending {}; cli CPU includes it. XDP {} on {}; kernel receive \
         processing on the {} CPU. srv CPU is the server process; xdp/us = the \
         server's kernel (XDP) and userspace drop counters; napi CPU = the veth's NAPI \
         thread (XDP, kernel receive) on the server's CPU; link drop / backlog drop / rcvbuf \
         err = datagrams the kernel dropped at the link (veth ring full, a NIC's rx missed), \
         before any socket (softnet backlog full) or at the socket (receive queue full), \
         legitimate ones included.",
        if saturation.is_some() {
            "(s) PAP alone, XDP on, closed loop: the saturation rate; "
        } else {
            ""
        },
        topo.unknown_source,
        topo.legit_source,
        report.flood_cpu,
        if shares {
            ", shared with the PAP generator"
        } else {
            ""
        },
        match report.flood_gen {
            FloodGen::Xdp =>
                "XDP frames redirected into the veth (--flood-gen xdp; flood pps = \
                              frames handed to the kernel)",
            FloodGen::Socket => "with sockets (--flood-gen socket)",
        },
        topo.xdp_mode,
        topo.iface,
        match report.rx_cpu {
            RxCpu::Server => "server's",
            RxCpu::Sender => "sending",
        }
    );
    for r in &report.runs {
        if let Some(other) = r
            .pap
            .other_cpu_percent
            .filter(|&o| o > crate::OTHER_CPU_WARNING && !r.flood)
        {
            eprintln!(
                "[bench] warning: run {}: the pinned CPUs were {other:.0} % of a core busy with \
                 other work than the server and the bench: the numbers are disturbed",
                r.name
            );
        }
        if let Some(lag) = r.pap.send_lag_p99_us.filter(|&l| l > 200) {
            eprintln!(
                "[bench] note: run {}: the load generator sent p99 {lag} µs behind its schedule \
                 (counted in the latencies)",
                r.name
            );
        }
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the results")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("[bench] results written to {}", path.display());
    }
    if let Some(path) = &cli.plot {
        let series: Vec<crate::plot::Series<'_>> = report
            .runs
            .iter()
            .map(|r| crate::plot::Series {
                label: format!(
                    "({}) {}, XDP {}",
                    r.name,
                    if r.flood { "flood" } else { "no flood" },
                    if r.xdp { "on" } else { "off" }
                ),
                report: &r.pap,
            })
            .collect();
        crate::plot::write(
            path,
            &format!("flood: legitimate PAP at {rate:.0}/s"),
            &series,
        )?;
        eprintln!("[bench] plot written to {}", path.display());
    }
    let mut ok = true;
    for r in &report.runs {
        if r.pap.wrong > 0 {
            eprintln!(
                "[bench] FAILED: run {}: {} wrong replies: {:?}",
                r.name, r.pap.wrong, r.pap.wrong_reasons
            );
            ok = false;
        }
        if r.pap.ok == 0 {
            if r.flood && !r.xdp {
                // Without the pre-filter a flood may well starve every legitimate request:
                // that is the result this run exists to show, not a failure of the bench.
                eprintln!(
                    "[bench] note: run {}: the flood without XDP left no correct reply",
                    r.name
                );
            } else {
                eprintln!("[bench] FAILED: run {}: no correct reply", r.name);
                ok = false;
            }
        }
    }
    Ok(ok)
}
