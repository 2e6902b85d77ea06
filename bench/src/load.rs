//! The load loop, driven by one thread with non-blocking sockets, `ppoll`, `sendmmsg` and
//! `recvmmsg`, in one of two modes:
//!
//! - closed loop: a window of outstanding requests spread over several UDP sockets; a new
//!   request goes out when an answer comes back, so the client slows down with the server and
//!   the throughput is the server's saturation rate;
//! - open loop (`rate`): request *k* is due at `start + k / rate`, whatever the server does.
//!   Latency is measured from the due time, not from the moment the request actually left, so a
//!   stalled server (or a client that fell behind) shows in the latencies instead of being hidden
//!   by sending less (coordinated omission). Every identifier of every socket may be in use;
//!   when all are, due requests wait in a backlog and their latency keeps growing. Without
//!   `spin` the loop works in ticks of 200 µs (sleep, then send everything due and read
//!   everything that came), so a latency includes up to one tick of the client's own batching
//!   (a sleep costs tens of µs of CPU in this VM: sleeping until each due time would make the
//!   client, not the server, the bottleneck); with `spin` it never sleeps and sends each
//!   request at its due time.
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
use serde::Serialize;

use crate::progress::Progress;
use crate::request::{check_reply, Generator, Sent, Users};
use crate::udp::{self, RecvBatch};

/// Datagrams per `recvmmsg` / `sendmmsg`.
const BATCH: usize = 64;
/// How long an identifier of a lost request stays unused.
const QUARANTINE: Duration = Duration::from_secs(5);
/// How often outstanding requests are checked for the timeout.
const EXPIRY_SCAN: Duration = Duration::from_millis(50);
/// Open loop (without `spin`): how long the loop sleeps between rounds of sending what fell
/// due and reading what came in.
const OPEN_TICK: Duration = Duration::from_micros(200);
/// Width of one bin of the latency-over-time record.
pub const BIN: Duration = Duration::from_millis(250);
/// Highest latency the histograms hold, µs (longer ones are recorded as this).
const HIST_MAX_US: u64 = 60_000_000;

/// Moments the caller wants to act on (sampling CPU time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    MeasureStart,
    MeasureEnd,
}

pub struct LoadConfig {
    pub target: SocketAddr,
    /// Closed loop: requests outstanding. Open loop: ignored (every identifier may be used).
    pub window: usize,
    pub sockets: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// Open loop at this many requests per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// Shown in front of the progress bar.
    pub label: String,
    /// Never sleep: poll the sockets without a timeout. On loopback, a reply to a sleeping
    /// client costs the *server* a wake-up of the client's thread (the sender's CPU runs the
    /// receiver's network stack and wakes it); a spinning client takes that loopback artefact
    /// out of the server's measured cost. The client's core is busy 100 % either way.
    pub spin: bool,
}

impl LoadConfig {
    /// Requests that may be outstanding at once.
    pub fn max_outstanding(&self) -> usize {
        match self.rate {
            None => self.window,
            Some(_) => self.sockets * 256,
        }
    }
}

/// One bin of the latency-over-time record (requests by due time).
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    /// Start of the bin, seconds since the start of the run (warm-up included).
    pub t_s: f64,
    /// Correct replies to requests due in the bin, per second.
    pub replies_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Requests due in the bin that were never answered in time.
    pub lost: u64,
}

/// What a run measured. Throughput and latencies cover the requests due (closed loop: sent)
/// in the measured interval; `lost`, `late` and `wrong` cover the whole run (warm-up and drain
/// included).
pub struct LoadResult {
    pub measured: Duration,
    /// Open loop: the rate asked for.
    pub rate: Option<f64>,
    pub sent: u64,
    pub ok: u64,
    /// Correct replies in the whole run (warm-up and drain included).
    pub ok_total: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub lost: u64,
    /// Of `lost`, the requests due in the measured interval.
    pub lost_measured: u64,
    pub late: u64,
    pub wrong: u64,
    pub wrong_reasons: BTreeMap<&'static str, u64>,
    /// ICMP errors (e.g. port unreachable) reported on the sockets.
    pub socket_errors: u64,
    /// Open loop: requests due before the end that never went out (every identifier busy).
    pub unsent: u64,
    /// Open loop: the most requests that were due but waiting for an identifier at once.
    pub backlog_max: u64,
    /// Latency of the correct replies to requests of the measured interval, µs; open loop: from
    /// the due time.
    pub latency_us: Histogram<u64>,
    /// Open loop: how late requests actually went out after their due time, µs (the load
    /// generator's own lag; large values mean the client, not the server, fell behind).
    pub send_lag_us: Histogram<u64>,
    pub timeline: Vec<Bin>,
}

enum Slot {
    Free,
    Pending {
        sent_at: Instant,
        due: Instant,
        sent: Sent,
    },
    Expired {
        sent: Sent,
    },
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
    out_due: Vec<Instant>,
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
            out_due: Vec::with_capacity(BATCH),
        })
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// How many more requests this socket may have outstanding now.
    fn room(&self) -> usize {
        self.share
            .saturating_sub(self.outstanding)
            .min(self.free.len())
            .min(BATCH)
    }
}

/// The open-loop schedule: request `k` is due at `start + k / rate`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// How many requests are due at `now` (request 0 is due at the start).
    fn due_by(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_secs_f64() * self.rate) as u64 + 1
    }
}

/// The measured interval, by due time.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

struct BinAcc {
    hist: Histogram<u32>,
    replies: u64,
    lost: u64,
}

struct Counters {
    sent: u64,
    ok: u64,
    accepts: u64,
    rejects: u64,
    lost: u64,
    lost_measured: u64,
    late: u64,
    wrong: u64,
    wrong_reasons: BTreeMap<&'static str, u64>,
    socket_errors: u64,
    completions: u64,
    ok_total: u64,
    hist: Histogram<u64>,
    bins: Vec<BinAcc>,
    run_start: Instant,
}

impl Counters {
    fn wrong(&mut self, reason: &'static str) {
        self.wrong += 1;
        *self.wrong_reasons.entry(reason).or_default() += 1;
    }

    fn bin(&mut self, due: Instant) -> Option<&mut BinAcc> {
        let i =
            (due.saturating_duration_since(self.run_start).as_nanos() / BIN.as_nanos()) as usize;
        // Bounded: the run is bounded in time (at most a few hundred bins).
        while self.bins.len() <= i {
            let hist = Histogram::<u32>::new_with_bounds(1, HIST_MAX_US, 2).ok()?;
            self.bins.push(BinAcc {
                hist,
                replies: 0,
                lost: 0,
            });
        }
        self.bins.get_mut(i)
    }

    fn lost_one(&mut self, due: Instant, window: &Window) {
        self.lost += 1;
        if window.contains(due) {
            self.lost_measured += 1;
        }
        if let Some(b) = self.bin(due) {
            b.lost += 1;
        }
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
    if cfg.sockets == 0 || cfg.sockets > 256 {
        bail!("between 1 and 256 sockets");
    }
    if cfg.rate.is_none() && (cfg.window == 0 || cfg.window > cfg.sockets * 256) {
        bail!("the window must be between 1 and 256 per socket");
    }
    if let Some(rate) = cfg.rate {
        if !(rate.is_finite() && rate >= 1.0) {
            bail!("the open-loop rate must be at least 1 request/s");
        }
    }
    // Timer wake-ups within a microsecond: the open loop sleeps between due times.
    let _ = udp::set_timer_slack(1_000);
    let mut socks = Vec::with_capacity(cfg.sockets);
    for i in 0..cfg.sockets {
        let share = match cfg.rate {
            None => cfg.window / cfg.sockets + usize::from(i < cfg.window % cfg.sockets),
            Some(_) => 256,
        };
        socks.push(Sock::new(cfg.target, share)?);
    }
    let fds: Vec<RawFd> = socks.iter().map(Sock::fd).collect();
    let mut readable = vec![false; socks.len()];
    let mut rx = RecvBatch::new(BATCH);

    let start = Instant::now();
    let window = Window {
        start: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };
    let mut c = Counters {
        sent: 0,
        ok: 0,
        accepts: 0,
        rejects: 0,
        lost: 0,
        lost_measured: 0,
        late: 0,
        wrong: 0,
        wrong_reasons: BTreeMap::new(),
        socket_errors: 0,
        completions: 0,
        ok_total: 0,
        hist: Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
            .context("cannot create the latency histogram")?,
        bins: Vec::new(),
        run_start: start,
    };
    let mut send_lag = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
        .context("cannot create the send-lag histogram")?;
    let schedule = cfg.rate.map(|rate| Schedule { start, rate });
    // Open loop: requests handed out so far (request k has due time schedule.due(k)).
    let mut next_seq = 0u64;
    let mut backlog_max = 0u64;
    let mut rr = 0usize;

    // Everything sent before the end of the measured interval is answered or lost by then.
    let hard_end = window.end + cfg.timeout + Duration::from_millis(100);
    let mut measuring = false;
    let mut measured_at = (window.start, window.end);
    let mut next_scan = start + EXPIRY_SCAN;
    let mut progress = Progress::new(&cfg.label, cfg.warmup + cfg.duration);

    loop {
        let now = Instant::now();
        if !measuring && now >= window.start && now < window.end {
            measuring = true;
            measured_at.0 = now;
            mark(Mark::MeasureStart);
        }
        if measuring && now >= window.end {
            measuring = false;
            measured_at.1 = now;
            mark(Mark::MeasureEnd);
        }
        let sending = now < window.end;
        let outstanding: usize = socks.iter().map(|s| s.outstanding).sum();
        if (!sending && outstanding == 0) || now >= hard_end {
            break;
        }
        if crate::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
            progress.finish();
            bail!("interrupted");
        }
        let phase = if now < window.start {
            "warm-up"
        } else if sending {
            "measuring"
        } else {
            "draining"
        };
        progress.update(now, phase, c.completions, c.lost, c.wrong);
        if now >= next_scan {
            expire(&mut socks, now, cfg.timeout, &window, &mut c);
            next_scan = now + EXPIRY_SCAN;
        }

        // When to look again if nothing arrives.
        let mut wake = if sending {
            window.end.min(next_scan)
        } else {
            hard_end.min(next_scan)
        };
        if sending {
            match schedule {
                None => {
                    for s in &mut socks {
                        let room = s.room();
                        fill(s, generator, &mut c, room, None, &window)?;
                    }
                }
                Some(sch) => {
                    let due_by = sch.due_by(now.min(window.end));
                    // Nothing is due at or after the end of the measured interval.
                    let due_by = due_by.min(sch.due_by(window.end - Duration::from_nanos(1)));
                    let mut backlog = due_by.saturating_sub(next_seq);
                    backlog_max = backlog_max.max(backlog);
                    let mut idle = 0;
                    while backlog > 0 && idle < socks.len() {
                        let k = rr % socks.len();
                        let s = &mut socks[k];
                        rr = rr.wrapping_add(1);
                        let want = s.room().min(backlog as usize);
                        if want == 0 {
                            idle += 1;
                            continue;
                        }
                        idle = 0;
                        let n = fill(s, generator, &mut c, want, Some((sch, next_seq)), &window)?;
                        for k in 0..n {
                            let due = sch.due(next_seq + k as u64);
                            let lag = now.saturating_duration_since(due).as_micros();
                            send_lag
                                .saturating_record(u64::try_from(lag).unwrap_or(u64::MAX).max(1));
                        }
                        next_seq += n as u64;
                        backlog -= n as u64;
                        if n < want {
                            break; // socket buffer full: try again after the next poll
                        }
                    }
                    if backlog == 0 {
                        wake = wake.min(sch.due(next_seq));
                    }
                }
            }
        }

        let timeout = if cfg.spin {
            Duration::ZERO
        } else if schedule.is_some() && sending {
            // Open loop: sleep a tick without watching the sockets, then send what fell due
            // and read what came in, in batches. Waking for every due time and every reply
            // costs the client more than the server's whole request at these rates (and the
            // client then falls behind). A reply is read up to a tick late, which the measured
            // latency includes; `spin` avoids that.
            std::thread::sleep(OPEN_TICK);
            Duration::ZERO
        } else {
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(10))
        };
        if udp::poll_readable(&fds, timeout, &mut readable).context("poll failed")? == 0 {
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
                for d in rx.datagrams() {
                    on_reply(s, d, at, &window, secret, users, &mut c);
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
    progress.finish();
    // Whatever is still outstanding after the drain is lost.
    for s in &mut socks {
        for slot in &s.slots {
            if let Slot::Pending { due, .. } = slot {
                let due = *due;
                c.lost_one(due, &window);
            }
        }
    }
    if measuring {
        measured_at.1 = Instant::now();
        mark(Mark::MeasureEnd);
    }
    let unsent = match schedule {
        Some(sch) => sch
            .due_by(window.end - Duration::from_nanos(1))
            .saturating_sub(next_seq),
        None => 0,
    };
    let bin_secs = BIN.as_secs_f64();
    let timeline = c
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| Bin {
            t_s: i as f64 * bin_secs,
            replies_per_s: b.replies as f64 / bin_secs,
            p50_us: b.hist.value_at_quantile(0.50),
            p99_us: b.hist.value_at_quantile(0.99),
            max_us: b.hist.max(),
            lost: b.lost,
        })
        .collect();
    Ok(LoadResult {
        measured: measured_at.1.saturating_duration_since(measured_at.0),
        rate: cfg.rate,
        sent: c.sent,
        ok: c.ok,
        ok_total: c.ok_total,
        accepts: c.accepts,
        rejects: c.rejects,
        lost: c.lost,
        lost_measured: c.lost_measured,
        late: c.late,
        wrong: c.wrong,
        wrong_reasons: c.wrong_reasons,
        socket_errors: c.socket_errors,
        unsent,
        backlog_max,
        latency_us: c.hist,
        send_lag_us: send_lag,
        timeline,
    })
}

/// Sends up to `want` new requests on `s` (at most its room); returns how many went out.
/// Closed loop (`open` is `None`): due time = send time. Open loop: request `k` of the
/// schedule is due at `schedule.due(k)`, starting at the given `k`.
fn fill(
    s: &mut Sock,
    generator: &mut Generator<'_>,
    c: &mut Counters,
    want: usize,
    open: Option<(Schedule, u64)>,
    window: &Window,
) -> Result<usize> {
    let room = want.min(s.room());
    if room == 0 {
        return Ok(0);
    }
    s.out_ids.clear();
    s.out_sent.clear();
    s.out_due.clear();
    for k in 0..room {
        let Some(id) = s.free.pop_front() else { break };
        let sent = generator.build(id, &mut s.out[k])?;
        s.out_ids.push(id);
        s.out_sent.push(sent);
    }
    let built = s.out_ids.len();
    let sent_at = Instant::now();
    for k in 0..built {
        s.out_due.push(match open {
            None => sent_at,
            Some((sch, first)) => sch.due(first + k as u64),
        });
    }
    let n = match udp::send_batch(s.fd(), &s.out[..built]) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            c.socket_errors += 1;
            0
        }
        Err(e) => return Err(e).context("sendmmsg failed"),
    };
    for ((&id, sent), &due) in s.out_ids.iter().zip(&s.out_sent).zip(&s.out_due).take(n) {
        s.slots[usize::from(id)] = Slot::Pending {
            sent_at,
            due,
            sent: *sent,
        };
        if window.contains(due) {
            c.sent += 1;
        }
    }
    // Not sent (socket buffer full): the identifiers go back to the front, in order.
    for &id in s.out_ids[n..].iter().rev() {
        s.free.push_front(id);
    }
    s.outstanding += n;
    Ok(n)
}

fn on_reply(
    s: &mut Sock,
    datagram: &[u8],
    at: Instant,
    window: &Window,
    secret: &SharedSecret,
    users: &Users,
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
        Slot::Pending { due, sent, .. } => {
            let result = check_reply(datagram, sent, secret, users);
            let due = *due;
            *slot = Slot::Free;
            s.free.push_back(id);
            s.outstanding -= 1;
            c.completions += 1;
            match result {
                Ok(code) => {
                    c.ok_total += 1;
                    let us = u64::try_from(at.saturating_duration_since(due).as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    if let Some(b) = c.bin(due) {
                        b.replies += 1;
                        b.hist.saturating_record(us);
                    }
                    if window.contains(due) {
                        c.ok += 1;
                        match code {
                            Code::ACCESS_ACCEPT => c.accepts += 1,
                            Code::ACCESS_REJECT => c.rejects += 1,
                            _ => {}
                        }
                        c.hist.saturating_record(us);
                    }
                }
                Err(reason) => c.wrong(reason),
            }
        }
    }
}

/// Moves requests older than `timeout` (since they went out) to lost, and returns
/// quarantined identifiers.
fn expire(socks: &mut [Sock], now: Instant, timeout: Duration, window: &Window, c: &mut Counters) {
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
            if let Slot::Pending { sent_at, due, sent } = slot {
                if now.saturating_duration_since(*sent_at) >= timeout {
                    let due = *due;
                    *slot = Slot::Expired { sent: *sent };
                    s.outstanding -= 1;
                    c.lost_one(due, window);
                    s.quarantine.push_back((now + QUARANTINE, id as u8));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::request::Expect;
    use crate::Scenario;
    use portcullis_proto::{verify_request, PacketBuilder, RawPacket, VerifyPolicy};

    /// A Status-Server responder on a thread: answers every request with Access-Accept until
    /// `stop` is set.
    fn responder(
        secret: &'static [u8],
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> (SocketAddr, std::thread::JoinHandle<u64>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let secret = SharedSecret::new(secret).unwrap();
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let raw = RawPacket::decode(&buf[..n]).unwrap();
                let req = verify_request(raw, &secret, &VerifyPolicy::default()).unwrap();
                let reply = PacketBuilder::reply(Code::ACCESS_ACCEPT, &req)
                    .finish_reply(&secret, req.authenticator())
                    .to_vec();
                sock.send_to(&reply, from).unwrap();
                answered += 1;
            }
            answered
        });
        (addr, h)
    }

    #[test]
    fn open_loop_keeps_its_schedule_and_checks_every_reply() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (addr, h) = responder(b"load-test-secret", stop.clone());
        let secret = SharedSecret::new(b"load-test-secret").unwrap();
        let users = Users::new(1);
        let mut g = Generator::new(Scenario::Status, &secret, &users, Expect::Accept);
        let cfg = LoadConfig {
            target: addr,
            window: 1,
            sockets: 2,
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            rate: Some(2000.0),
            label: "test".to_owned(),
            spin: false,
        };
        let mut marks = Vec::new();
        let r = run(&cfg, &mut g, &secret, &users, |m| marks.push(m)).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered = h.join().unwrap();
        assert_eq!(marks, [Mark::MeasureStart, Mark::MeasureEnd]);
        // 2000/s for 0.7 s: 1400 requests, 1000 of them due in the measured interval.
        assert!((1399..=1401).contains(&answered), "{answered}");
        assert!((999..=1001).contains(&r.sent), "{}", r.sent);
        assert_eq!(r.ok, r.sent);
        assert_eq!(r.ok_total, answered);
        assert_eq!((r.lost, r.wrong, r.late, r.unsent), (0, 0, 0, 0));
        assert_eq!(r.latency_us.len(), r.ok);
        // 250 ms bins over 0.7 s, each with its share of the schedule.
        assert_eq!(r.timeline.len(), 3);
        assert_eq!(r.timeline[0].replies_per_s, 2000.0);
    }

    #[test]
    fn closed_loop_counts_a_silent_server_as_lost() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let secret = SharedSecret::new(b"load-test-secret").unwrap();
        let users = Users::new(1);
        let mut g = Generator::new(Scenario::Status, &secret, &users, Expect::Accept);
        let cfg = LoadConfig {
            target: silent.local_addr().unwrap(),
            window: 4,
            sockets: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            rate: None,
            label: "test".to_owned(),
            spin: true,
        };
        let r = run(&cfg, &mut g, &secret, &users, |_| {}).unwrap();
        assert_eq!((r.ok, r.lost, r.wrong), (0, 4, 0));
        assert_eq!(r.lost_measured, 4);
    }

    #[test]
    fn schedule_is_exact_and_counts_due_requests() {
        let start = Instant::now();
        let sch = Schedule {
            start,
            rate: 1000.0,
        };
        assert_eq!(sch.due(0), start);
        assert_eq!(sch.due(1000), start + Duration::from_secs(1));
        assert_eq!(sch.due_by(start), 1);
        assert_eq!(sch.due_by(start + Duration::from_micros(999)), 1);
        assert_eq!(sch.due_by(start + Duration::from_millis(1)), 2);
        assert_eq!(sch.due_by(start + Duration::from_secs(2)), 2001);
    }
}
