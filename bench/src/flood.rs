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
//! The flood is one thread that sends, with `sendmmsg` batches and as fast as it can,
//! alternately a batch of correctly signed Access-Requests from the unknown source and a batch
//! of Access-Requests from the known source signed with the wrong secret (bad
//! Message-Authenticator). It runs through the warm-up and the measured interval and stops at
//! the end of the measured interval, at its deadline or after --flood-max packets, whichever
//! comes first.
//!
//! # What makes the comparison fair, on a 2-core machine
//!
//! - The flood thread is pinned to --flood-cpu (by default the load generator's CPU, the only
//!   one not the server's) with the `SCHED_IDLE` policy: it takes every cycle the legitimate
//!   client leaves, so it sends at the highest rate the machine can while the client still
//!   keeps its schedule (its own lag is reported: `send lag`). With a closed loop the flood
//!   would instead slow the legitimate client down, and the client, not the server, would set
//!   the legitimate rate.
//! - Where the receive work lands (`--flood-rx`). By default the kernel receives a veth's or
//!   the loopback's datagrams on the *sending* CPU, so the flood's kernel cost, XDP included,
//!   would be paid by the flood thread's core and never by the server's. `server` (the
//!   default) models a one-core appliance whose NIC interrupts land on its only core: on the
//!   veth pair the receiving end's NAPI runs in a kernel thread of its own (threaded NAPI),
//!   pinned to the server's CPU with the real-time priority of the kernel's interrupt threads
//!   (a NIC's softirq preempts any task too), and RPS steers what arrives while no XDP program
//!   is attached (run c) to the same CPU; on `lo`, RPS moves all receive processing, generic
//!   XDP included, there. `sender` keeps the default: the link's receive work has a core of its
//!   own, as a NIC queue whose interrupt is on another core than the worker.
//! - Server CPU is reported as the server process's time (the worker; "worker CPU spent on the
//!   flood" = (b) or (c) minus (a)), the NAPI thread's time (veth, `server`), the softirq time
//!   of the server's CPU, and the XDP program's own run time from the kernel's BPF statistics
//!   (`BPF_ENABLE_STATS`), which separates what the program costs per packet from what the
//!   link costs: a veth hands XDP socket-built skbs and converts each one into an XDP frame
//!   (a copy), work a NIC driver does not do.
//!
//! # What it cannot show on 2 cores (measured, see the README)
//!
//! `SCHED_IDLE` bounds the flood thread, not the kernel work it causes: softirq processing (and
//! `ksoftirqd`, at normal priority) still competes with the load generator, which then falls
//! behind its schedule in the flood runs. That lag is counted in the latencies (the open loop
//! must), so the p99 of runs (b) and (c) is partly the client's; the achieved legitimate rate,
//! the loss and the drop counters are the server's. A third core for the flood would be needed
//! to measure the server's latency under flood.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use portcullis_proto::SharedSecret;
use serde::Serialize;

use crate::load::LoadConfig;
use crate::report::Report;
use crate::request::{Expect, Generator, Users};
use crate::runner::{self, Target};
use crate::server::{OwnServer, ServerOpts};
use crate::{parse_cpu_list, portcullis_bin, udp, Cli, Rate, Scenario};
use crate::{OWN_SECRET, TIMEOUT, WARMUP};

/// Longest measured interval of one flood run, seconds.
const MAX_DURATION: u64 = 60;
/// The secret the bad-Message-Authenticator packets are signed with.
const FORGED_SECRET: &str = "not-the-portcullis-bench-secret";
/// Datagrams per flood `sendmmsg`.
const FLOOD_BATCH: usize = 64;
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
    /// On the sending CPU (the kernel's default for both links).
    Sender,
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
}

impl Topology {
    /// Datagrams the link itself dropped so far: on a veth pair, those the sending end could
    /// not queue to the receiving end (its ring full, the NIC's "rx missed") plus the
    /// receiving end's own drops; on `lo`, 0 (it has no ring).
    fn link_drops(&self) -> u64 {
        match &self.server {
            Some(server) => {
                self.client.link_stat(CLIENT_IFACE, "tx_dropped")
                    + server.link_stat(self.iface, "rx_dropped")
            }
            None => 0,
        }
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
        Ok(Self {
            client,
            server: Some(server),
            iface: "pcb-s",
            xdp_mode: "native",
            server_ip: Ipv4Addr::new(192, 0, 2, 1),
            legit_source: Ipv4Addr::new(192, 0, 2, 2),
            unknown_source: Ipv4Addr::new(192, 0, 2, 3),
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
    /// one-core appliance. A veth has NAPI only while an XDP program is attached, so this is
    /// called after each server has attached its own. Returns the threads' pids.
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
        Command::new("ip")
            .args(["netns", "exec", &self.name, "cat"])
            .arg(format!("/sys/class/net/{iface}/statistics/{name}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn exec(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread (and the threads and processes it starts later) into the
    /// namespace.
    fn enter(&self) -> Result<()> {
        let path = Path::new("/run/netns").join(&self.name);
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

/// The flood loop (runs on its own thread).
#[allow(clippy::too_many_arguments)]
fn flood(
    unknown: &UdpSocket,
    forged: &UdpSocket,
    unknown_pkts: &[Vec<u8>],
    forged_pkts: &[Vec<u8>],
    stop: &AtomicBool,
    deadline: Instant,
    max: u64,
    counts: &FloodCounts,
) -> Result<()> {
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
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct FloodRun {
    pub name: &'static str,
    pub xdp: bool,
    pub flood: bool,
    /// The legitimate PAP load.
    pub pap: Report,
    /// Flood packets per second over the load run (warm-up and measured interval), and the
    /// packets that rate makes in the measured interval.
    pub flood_sent: u64,
    pub flood_pps: f64,
    /// Flood packets sent in the whole run (warm-up included), by kind.
    pub flood_unknown_source_total: u64,
    pub flood_bad_ma_total: u64,
    /// `sendmmsg` calls of the flood that failed with ECONNREFUSED or ENOBUFS.
    pub flood_send_errors: u64,
    /// The server's counters at the end of the run (0 when absent).
    pub counters: BTreeMap<String, u64>,
    /// Datagrams the kernel dropped on the way in during the run: /proc/net/softnet_stat
    /// `dropped` (per-CPU backlog full, RPS) and /proc/net/snmp `Udp: RcvbufErrors` (socket
    /// receive queue full) of the namespace.
    pub kernel_backlog_drops: u64,
    /// Datagrams the veth pair dropped during the run because the receiving end's ring was
    /// full (a NIC's "rx missed"), legitimate ones included; 0 on `lo`.
    pub link_drops: u64,
    pub udp_rcvbuf_errors: u64,
    /// CPU time of the link's NAPI thread (XDP and kernel receive, pinned to the server's CPU)
    /// over the load run (warm-up included), percent of one CPU; only with threaded NAPI
    /// (veth, `--flood-rx server`, XDP on).
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
        // The `enable_stats` member of `union bpf_attr`: one u32, the rest zero.
        let mut attr = [0u8; 8];
        attr[..4].copy_from_slice(&BPF_STATS_RUN_TIME.to_ne_bytes());
        // SAFETY: bpf(2) reads `attr.len()` bytes from a live buffer of that size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                attr.len() as libc::c_uint,
            )
        };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).context("BPF_ENABLE_STATS returned no descriptor")?;
        // SAFETY: the kernel just returned `fd`, a descriptor we own and nothing else uses.
        Ok(Self {
            _fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        })
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
    let napi = if spec.xdp && topo.server.is_some() && cli.flood_rx == RxCpu::Server {
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
        let unknown = flood_socket(topo.unknown_source, target)?;
        let forged = flood_socket(topo.legit_source, target)?;
        let unknown_pkts = ctx.unknown_pkts.to_vec();
        let forged_pkts = ctx.forged_pkts.to_vec();
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        let cpus = ctx.flood_cpus.to_vec();
        let deadline = Instant::now() + WARMUP + cfg.duration + Duration::from_secs(1);
        let max = cli.flood_max;
        Some(
            thread::Builder::new()
                .name("flood".into())
                .spawn(move || -> Result<()> {
                    udp::pin_current_thread(&cpus).context("cannot pin the flood thread")?;
                    set_scheduler(0, libc::SCHED_IDLE, 0)
                        .context("cannot give the flood thread SCHED_IDLE")?;
                    flood(
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
    let flood_start = counts.total();
    let t0 = Instant::now();
    let result = runner::measure(&cfg, Scenario::Pap, ctx.secret, ctx.users, &t);
    let flood_end = counts.total();
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
    if let Some(h) = flooder {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("the flood thread panicked"),
        }
    }
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
    // The flood runs from before the warm-up to the end of the measured interval; its rate
    // over the whole load run is its rate in the measured interval to within the warm-up's
    // start-up.
    let pps = if ran.as_secs_f64() > 0.0 {
        flood_end.saturating_sub(flood_start) as f64 / ran.as_secs_f64()
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
    if cli.flood_rx == RxCpu::Server {
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
         {}, flood thread on CPU {}{} (SCHED_IDLE), receive processing {}",
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
        match (cli.flood_rx, cli.flood_link) {
            (RxCpu::Server, FloodLink::Lo) => "on the server's CPU (RPS), XDP included",
            (RxCpu::Server, FloodLink::Veth) =>
                "on the server's CPU (XDP on: threaded NAPI pinned there, XDP included; \
                 XDP off: RPS)",
            (RxCpu::Sender, _) => "on the sending CPU",
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
         thread on CPU {}{}; cli CPU includes it. XDP {} on {}; kernel receive processing on \
         the {} CPU. srv CPU is the server process; xdp/us = the \
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
