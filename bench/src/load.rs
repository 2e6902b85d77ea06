//! The closed loop: a window of outstanding requests spread over several UDP sockets, driven by
//! one thread with non-blocking sockets, `poll`, `sendmmsg` and `recvmmsg`.
//!
//! Each socket has its own 256-identifier space. A request not answered within the timeout
//! counts as lost; its identifier stays out of use for a quarantine period, so that a late
//! reply is recognised as late instead of being taken for the answer to a newer request.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use portcullis_proto::{Code, SharedSecret};

use crate::request::{check_reply, Generator, Sent, Users};
use crate::udp::{self, RecvBatch};

/// Datagrams per `recvmmsg` / `sendmmsg`.
const BATCH: usize = 64;
/// How long an identifier of a lost request stays unused.
const QUARANTINE: Duration = Duration::from_secs(5);
/// How often outstanding requests are checked for the timeout.
const EXPIRY_SCAN: Duration = Duration::from_millis(50);

/// Moments the caller wants to act on (sampling CPU time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    MeasureStart,
    MeasureEnd,
}

pub struct LoadConfig {
    pub target: SocketAddr,
    pub window: usize,
    pub sockets: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
}

/// What a run measured. Throughput and latencies cover replies received in the measured
/// interval; `lost`, `late` and `wrong` cover the whole run (warm-up and drain included).
pub struct LoadResult {
    pub measured: Duration,
    pub sent: u64,
    pub ok: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub lost: u64,
    pub late: u64,
    pub wrong: u64,
    pub wrong_reasons: BTreeMap<&'static str, u64>,
    /// ICMP errors (e.g. port unreachable) reported on the sockets.
    pub socket_errors: u64,
    pub latency_us: Histogram<u64>,
}

enum Slot {
    Free,
    Pending { sent_at: Instant, sent: Sent },
    Expired { sent: Sent },
}

struct Sock {
    sock: UdpSocket,
    slots: Vec<Slot>,
    free: VecDeque<u8>,
    quarantine: VecDeque<(Instant, u8)>,
    outstanding: usize,
    share: usize,
    out: Vec<Vec<u8>>,
    out_ids: Vec<u8>,
    out_sent: Vec<Sent>,
}

impl Sock {
    fn new(target: SocketAddr, share: usize) -> Result<Self> {
        let sock = udp::connected_socket(target)
            .with_context(|| format!("cannot open a UDP socket to {target}"))?;
        Ok(Self {
            sock,
            slots: (0..256).map(|_| Slot::Free).collect(),
            free: (0..=255u8).collect(),
            quarantine: VecDeque::new(),
            outstanding: 0,
            share,
            out: (0..BATCH).map(|_| Vec::with_capacity(256)).collect(),
            out_ids: Vec::with_capacity(BATCH),
            out_sent: Vec::with_capacity(BATCH),
        })
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

struct Counters {
    sent: u64,
    ok: u64,
    accepts: u64,
    rejects: u64,
    lost: u64,
    late: u64,
    wrong: u64,
    wrong_reasons: BTreeMap<&'static str, u64>,
    socket_errors: u64,
    completions: u64,
}

impl Counters {
    fn wrong(&mut self, reason: &'static str) {
        self.wrong += 1;
        *self.wrong_reasons.entry(reason).or_default() += 1;
    }
}

/// Runs the loop: warm-up, measured interval, then a drain of what is still outstanding
/// (bounded by the timeout). `mark` is called at the start and end of the measured interval.
pub fn run(
    cfg: &LoadConfig,
    generator: &mut Generator<'_>,
    secret: &SharedSecret,
    users: &Users,
    mut mark: impl FnMut(Mark),
) -> Result<LoadResult> {
    if cfg.window == 0 || cfg.sockets == 0 || cfg.window > cfg.sockets * 256 {
        bail!("the window must be between 1 and 256 per socket");
    }
    let mut socks = Vec::with_capacity(cfg.sockets);
    for i in 0..cfg.sockets {
        let share = cfg.window / cfg.sockets + usize::from(i < cfg.window % cfg.sockets);
        socks.push(Sock::new(cfg.target, share)?);
    }
    let fds: Vec<RawFd> = socks.iter().map(Sock::fd).collect();
    let mut readable = vec![false; socks.len()];
    let mut rx = RecvBatch::new(BATCH);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)
        .context("cannot create the latency histogram")?;
    let mut c = Counters {
        sent: 0,
        ok: 0,
        accepts: 0,
        rejects: 0,
        lost: 0,
        late: 0,
        wrong: 0,
        wrong_reasons: BTreeMap::new(),
        socket_errors: 0,
        completions: 0,
    };

    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let measure_end = measure_start + cfg.duration;
    // Everything sent before measure_end is answered or lost by then.
    let hard_end = measure_end + cfg.timeout + Duration::from_millis(100);
    let mut measuring = false;
    let mut measured_at = (measure_start, measure_end);
    let mut next_scan = start + EXPIRY_SCAN;
    let mut next_progress = start + Duration::from_secs(1);
    let mut progress_completions = 0u64;

    loop {
        let now = Instant::now();
        if !measuring && now >= measure_start && now < measure_end {
            measuring = true;
            measured_at.0 = now;
            mark(Mark::MeasureStart);
        }
        if measuring && now >= measure_end {
            measuring = false;
            measured_at.1 = now;
            mark(Mark::MeasureEnd);
        }
        let sending = now < measure_end;
        let outstanding: usize = socks.iter().map(|s| s.outstanding).sum();
        if (!sending && outstanding == 0) || now >= hard_end {
            break;
        }
        if now >= next_progress {
            // The phase of the second just past, by its middle.
            let middle = now - Duration::from_millis(500);
            let phase = if middle < measure_start {
                "warm-up"
            } else if middle < measure_end {
                "measuring"
            } else {
                "draining"
            };
            eprintln!(
                "[bench] {:>4.0}s {:>9} req/s  ({phase}; lost {}, wrong {})",
                (now - start).as_secs_f64(),
                c.completions - progress_completions,
                c.lost,
                c.wrong,
            );
            progress_completions = c.completions;
            next_progress += Duration::from_secs(1);
        }
        if now >= next_scan {
            expire(&mut socks, now, cfg.timeout, &mut c);
            next_scan = now + EXPIRY_SCAN;
        }

        if sending {
            for s in &mut socks {
                fill(s, generator, &mut c, measuring)?;
            }
        }

        let wait = if sending {
            measure_end.min(next_scan).min(next_progress)
        } else {
            hard_end.min(next_scan).min(next_progress)
        };
        let timeout_ms = wait
            .saturating_duration_since(Instant::now())
            .as_millis()
            .clamp(0, 10) as i32;
        if udp::poll_readable(&fds, timeout_ms, &mut readable).context("poll failed")? == 0 {
            continue;
        }
        for (s, &r) in socks.iter_mut().zip(&readable) {
            if !r {
                continue;
            }
            loop {
                let n = match udp::recv_batch(s.fd(), &mut rx) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                        c.socket_errors += 1;
                        break;
                    }
                    Err(e) => return Err(e).context("recvmmsg failed"),
                };
                let at = Instant::now();
                let in_window = at >= measured_at.0 && at < measure_end;
                for d in rx.datagrams() {
                    on_reply(s, d, at, in_window, secret, users, &mut hist, &mut c);
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
    // Whatever is still outstanding after the drain is lost.
    for s in &mut socks {
        c.lost += s.outstanding as u64;
    }
    if measuring {
        measured_at.1 = Instant::now();
        mark(Mark::MeasureEnd);
    }
    Ok(LoadResult {
        measured: measured_at.1.saturating_duration_since(measured_at.0),
        sent: c.sent,
        ok: c.ok,
        accepts: c.accepts,
        rejects: c.rejects,
        lost: c.lost,
        late: c.late,
        wrong: c.wrong,
        wrong_reasons: c.wrong_reasons,
        socket_errors: c.socket_errors,
        latency_us: hist,
    })
}

/// Sends new requests on `s` until its share of the window is outstanding.
fn fill(
    s: &mut Sock,
    generator: &mut Generator<'_>,
    c: &mut Counters,
    measuring: bool,
) -> Result<()> {
    let room = s
        .share
        .saturating_sub(s.outstanding)
        .min(s.free.len())
        .min(BATCH);
    if room == 0 {
        return Ok(());
    }
    s.out_ids.clear();
    s.out_sent.clear();
    for k in 0..room {
        let Some(id) = s.free.pop_front() else { break };
        let sent = generator.build(id, &mut s.out[k])?;
        s.out_ids.push(id);
        s.out_sent.push(sent);
    }
    let built = s.out_ids.len();
    let sent_at = Instant::now();
    let n = match udp::send_batch(s.fd(), &s.out[..built]) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            c.socket_errors += 1;
            0
        }
        Err(e) => return Err(e).context("sendmmsg failed"),
    };
    for (&id, sent) in s.out_ids.iter().zip(&s.out_sent).take(n) {
        s.slots[usize::from(id)] = Slot::Pending {
            sent_at,
            sent: *sent,
        };
    }
    // Not sent (socket buffer full): the identifiers go back to the front, in order.
    for &id in s.out_ids[n..].iter().rev() {
        s.free.push_front(id);
    }
    s.outstanding += n;
    if measuring {
        c.sent += n as u64;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn on_reply(
    s: &mut Sock,
    datagram: &[u8],
    at: Instant,
    in_window: bool,
    secret: &SharedSecret,
    users: &Users,
    hist: &mut Histogram<u64>,
    c: &mut Counters,
) {
    let Some(&id) = datagram.get(1) else {
        c.wrong("reply shorter than a header");
        return;
    };
    let slot = &mut s.slots[usize::from(id)];
    match slot {
        Slot::Free => c.wrong("reply to no outstanding request (duplicate or unsolicited)"),
        Slot::Expired { sent } => match check_reply(datagram, sent, secret, users) {
            Ok(_) => c.late += 1,
            Err(reason) => c.wrong(reason),
        },
        Slot::Pending { sent_at, sent } => {
            let result = check_reply(datagram, sent, secret, users);
            let latency = at.saturating_duration_since(*sent_at);
            *slot = Slot::Free;
            s.free.push_back(id);
            s.outstanding -= 1;
            c.completions += 1;
            match result {
                Ok(code) => {
                    if in_window {
                        c.ok += 1;
                        match code {
                            Code::ACCESS_ACCEPT => c.accepts += 1,
                            Code::ACCESS_REJECT => c.rejects += 1,
                            _ => {}
                        }
                        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        hist.saturating_record(us.max(1));
                    }
                }
                Err(reason) => c.wrong(reason),
            }
        }
    }
}

/// Moves requests older than `timeout` to lost, and returns quarantined identifiers.
fn expire(socks: &mut [Sock], now: Instant, timeout: Duration, c: &mut Counters) {
    for s in socks {
        while let Some(&(until, id)) = s.quarantine.front() {
            if until > now {
                break;
            }
            s.quarantine.pop_front();
            s.slots[usize::from(id)] = Slot::Free;
            s.free.push_back(id);
        }
        if s.outstanding == 0 {
            continue;
        }
        for (id, slot) in s.slots.iter_mut().enumerate() {
            if let Slot::Pending { sent_at, sent } = slot {
                if now.saturating_duration_since(*sent_at) >= timeout {
                    *slot = Slot::Expired { sent: *sent };
                    s.outstanding -= 1;
                    c.lost += 1;
                    s.quarantine.push_back((now + QUARANTINE, id as u8));
                }
            }
        }
    }
}
