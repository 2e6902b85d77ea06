//! One shard: a thread with a single-threaded tokio runtime (no work stealing) that owns one
//! SO_REUSEPORT socket per listener, its duplicate cache and its counters.
//!
//! The receive loop reads datagrams in batches (`recvmmsg`), runs each through the pipeline
//! synchronously, and sends the replies of the batch with one `sendmmsg` (replies to the same
//! NAS address with the same length coalesced into one UDP GSO message, see `net::SendBatch`). Accounting requests
//! wait, in submission order, for their records to become durable; the socket's loop answers
//! every one that is ready together, in the same `sendmmsg` as the next batch's replies or in
//! one of their own. Second-factor calls are local tasks that send their replies when done.
//! One bad datagram never stops the loop: it is counted and dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use super::pipeline::{Deferred, Outcome, Pipeline};
use super::{ListenerKind, Shared};
use crate::net::{RecvBatch, SendBatch};
use crate::stats::{Counter, ShardStats};

/// A listener socket handed to a shard.
pub struct ShardSocket {
    pub index: u16,
    pub kind: ListenerKind,
    pub socket: UdpSocket,
}

pub struct ShardParams {
    pub id: usize,
    pub sockets: Vec<ShardSocket>,
    pub shared: Arc<arc_swap::ArcSwap<Shared>>,
    pub stats: Arc<ShardStats>,
    pub cancel: CancellationToken,
    pub batch: usize,
    pub udp_gso: bool,
    pub dedup_window: std::time::Duration,
    pub dedup_entries: usize,
    pub shutdown_grace: std::time::Duration,
}

/// Runs the shard until `cancel` fires and its in-flight work is done (or the grace period
/// ends). Called on the shard's own thread.
pub fn run(p: ShardParams) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let pipeline = Rc::new(RefCell::new(Pipeline::new(
        p.shared.clone(),
        p.stats.clone(),
        p.dedup_window,
        p.dedup_entries,
    )));
    let result = local.block_on(&rt, async {
        let mut loops = Vec::new();
        let mut fds: Vec<(u16, ListenerKind, Rc<AsyncFd<UdpSocket>>)> = Vec::new();
        for s in p.sockets {
            // SAFETY: the UdpSocket owns its descriptor and the AsyncFd owns the socket, so the
            // descriptor stays open and the same for the AsyncFd's whole life.
            let fd = Rc::new(
                unsafe {
                    AsyncFd::register_with_interest(
                        s.socket,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                }
                .map_err(std::io::Error::from)?,
            );
            fds.push((s.index, s.kind, fd));
        }
        let sockets: Sockets = Rc::new(fds.iter().map(|(i, _, fd)| (*i, fd.clone())).collect());
        for (index, kind, fd) in fds {
            loops.push(tokio::task::spawn_local(socket_loop(
                fd,
                index,
                kind,
                pipeline.clone(),
                p.stats.clone(),
                p.cancel.clone(),
                p.batch,
                p.udp_gso,
                p.shutdown_grace,
                sockets.clone(),
            )));
        }
        // The shard's timer: pending second-factor logins whose deadline passed are answered,
        // and provider calls (pushes, status polls) start when due. It sleeps until the
        // pipeline's next wake (at most a second), or until the pipeline says work became due
        // sooner.
        let ticker = {
            let pipeline = pipeline.clone();
            let sockets = sockets.clone();
            let stats = p.stats.clone();
            let cancel = p.cancel.clone();
            let waker = pipeline.borrow().waker();
            tokio::task::spawn_local(async move {
                loop {
                    let now = Instant::now();
                    let at = pipeline
                        .borrow_mut()
                        .next_wake(now, now + std::time::Duration::from_secs(1));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = waker.notified() => {}
                    }
                    let fx = pipeline.borrow_mut().tick(Instant::now());
                    pipeline.borrow().publish_gauges();
                    for task in fx.tasks {
                        spawn_later(task, &pipeline, &sockets, &stats);
                    }
                    send_effects(&sockets, fx.replies, &stats).await;
                }
            })
        };
        for l in loops {
            let _ = l.await;
        }
        let _ = ticker.await;
        // Logins still waiting for a second factor are answered (reject), not dropped.
        let fx = pipeline.borrow_mut().drain(Instant::now());
        if !fx.replies.is_empty() {
            tracing::info!(
                shard = p.id,
                answered = fx.replies.len(),
                "pending MFA logins rejected at shutdown"
            );
        }
        send_effects(&sockets, fx.replies, &p.stats).await;
        Ok::<(), std::io::Error>(())
    });
    result
}

/// The shard's sockets by listener index (replies after a wait go out where the request came in).
type Sockets = Rc<Vec<(u16, Rc<AsyncFd<UdpSocket>>)>>;

async fn send_effects(
    fds: &Sockets,
    replies: Vec<(SocketAddr, Vec<u8>, super::second_factor::Waiterless)>,
    stats: &ShardStats,
) {
    for (to, bytes, w) in replies {
        match fds.iter().find(|(i, _)| *i == w.key.listener) {
            Some((_, fd)) => send_one(fd, to, &bytes, stats).await,
            None => stats.inc(Counter::SendErrors),
        }
    }
}

/// Runs a second-factor task as a local task of the shard.
fn spawn_later(
    task: super::second_factor::Task,
    pipeline: &Rc<RefCell<Pipeline>>,
    fds: &Sockets,
    stats: &Arc<ShardStats>,
) {
    tokio::task::spawn_local(run_later(
        task,
        pipeline.clone(),
        fds.clone(),
        stats.clone(),
    ));
}

/// Runs a second-factor task, hands its result to the pipeline, starts the calls that
/// follow and sends the replies they produce.
async fn run_later(
    task: super::second_factor::Task,
    pipeline: Rc<RefCell<Pipeline>>,
    fds: Sockets,
    stats: Arc<ShardStats>,
) {
    let done = task.await;
    let fx = pipeline.borrow_mut().later(done, Instant::now());
    for next in fx.tasks {
        spawn_later(next, &pipeline, &fds, &stats);
    }
    send_effects(&fds, fx.replies, &stats).await;
}

/// The accounting requests of one socket waiting for their records to become durable, oldest
/// first. The writer finishes records in the order they were submitted, so the oldest is the
/// first to finish and everything finished is a prefix of the queue.
#[derive(Default)]
struct Acks {
    queue: VecDeque<Deferred>,
}

impl Acks {
    fn push(&mut self, d: Deferred) {
        self.queue.push_back(d);
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits until the oldest request's write is finished; true if its record is durable.
    /// Never resolves while the queue is empty.
    async fn oldest(&mut self) -> bool {
        match self.queue.front_mut() {
            Some(d) => matches!((&mut d.durable).await, Ok(Ok(()))),
            None => std::future::pending().await,
        }
    }

    /// Answers, into `tx`, the oldest request if `oldest` says how its write ended, then every
    /// request after it whose write has ended too. A record that could not be written (or whose
    /// writer is gone) is not acknowledged: the pipeline counts it and the NAS retransmits.
    fn answer_ready(
        &mut self,
        mut oldest: Option<bool>,
        pipeline: &mut Pipeline,
        tx: &mut SendBatch,
        now: Instant,
    ) {
        while let Some(front) = self.queue.front_mut() {
            let durable = match oldest.take() {
                Some(durable) => durable,
                None => match front.durable.try_recv() {
                    Ok(r) => r.is_ok(),
                    Err(TryRecvError::Closed) => false,
                    Err(TryRecvError::Empty) => return,
                },
            };
            let Some(d) = self.queue.pop_front() else {
                return;
            };
            if let Some((to, bytes)) = pipeline.complete(d.answer, durable, now) {
                tx.push(to, &bytes);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn socket_loop(
    fd: Rc<AsyncFd<UdpSocket>>,
    index: u16,
    kind: ListenerKind,
    pipeline: Rc<RefCell<Pipeline>>,
    stats: Arc<ShardStats>,
    cancel: CancellationToken,
    batch: usize,
    udp_gso: bool,
    shutdown_grace: std::time::Duration,
    fds: Sockets,
) {
    let mut rx = RecvBatch::new(batch);
    let mut tx = SendBatch::new(udp_gso);
    let mut acks = Acks::default();
    loop {
        let mut guard = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                finish_acks(&mut acks, &fd, &pipeline, &mut tx, &stats, shutdown_grace).await;
                return;
            }
            durable = acks.oldest() => {
                acks.answer_ready(Some(durable), &mut pipeline.borrow_mut(), &mut tx, Instant::now());
                flush(&fd, &mut tx, &stats).await;
                continue;
            }
            g = fd.readable() => match g {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "socket poll failed; listener stops");
                    return;
                }
            },
        };
        // Drain the socket: read batches until it would block.
        loop {
            match rx.recv(fd.get_ref().as_raw_fd()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ICMP-induced errors on some kernels: count, keep serving.
                    tracing::debug!(error = %e, "recvmmsg error");
                    stats.drop_reason("recv_error");
                    break;
                }
            }
            let now = Instant::now();
            {
                let mut pl = pipeline.borrow_mut();
                pl.refresh();
                for d in rx.iter() {
                    stats.inc(Counter::Received);
                    match pl.handle(index, kind, d.from, d.data, d.oversize, now) {
                        Outcome::Reply(bytes) => tx.push(d.from, bytes),
                        Outcome::Dropped | Outcome::Waiting => {}
                        Outcome::Later(task) => spawn_later(task, &pipeline, &fds, &stats),
                        Outcome::AfterDurable(deferred) => acks.push(deferred),
                    }
                }
                for task in pl.take_tasks() {
                    spawn_later(task, &pipeline, &fds, &stats);
                }
                // Acknowledgements whose records became durable meanwhile go out with this
                // batch's replies.
                acks.answer_ready(None, &mut pl, &mut tx, now);
            }
            flush(&fd, &mut tx, &stats).await;
        }
    }
}

/// At shutdown, after receiving stopped: waits (at most `grace`) for the accounting records
/// still being written and sends their acknowledgements.
async fn finish_acks(
    acks: &mut Acks,
    fd: &AsyncFd<UdpSocket>,
    pipeline: &RefCell<Pipeline>,
    tx: &mut SendBatch,
    stats: &ShardStats,
    grace: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + grace;
    while !acks.is_empty() {
        match tokio::time::timeout_at(deadline, acks.oldest()).await {
            Ok(durable) => {
                acks.answer_ready(
                    Some(durable),
                    &mut pipeline.borrow_mut(),
                    tx,
                    Instant::now(),
                );
                flush(fd, tx, stats).await;
            }
            Err(_) => {
                tracing::warn!(
                    unfinished = acks.len(),
                    "shutdown grace period over with accounting records still being written"
                );
                return;
            }
        }
    }
}

/// Sends the batch; waits for the socket to drain if the kernel send buffer is full.
async fn flush(fd: &AsyncFd<UdpSocket>, tx: &mut SendBatch, stats: &ShardStats) {
    let mut stalls = 0;
    while !tx.is_empty() {
        match tx.send(fd.get_ref().as_raw_fd()) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stalls += 1;
                if stalls > 100 {
                    for _ in 0..tx.len() {
                        stats.inc(Counter::SendErrors);
                    }
                    tx.clear();
                    return;
                }
                if let Ok(mut g) = fd.writable().await {
                    g.clear_ready();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "sendmmsg error");
                stats.inc(Counter::SendErrors);
                // Drop the first datagram (the one the kernel refused) and go on with the rest.
                tx.drop_first();
            }
        }
    }
}

async fn send_one(fd: &AsyncFd<UdpSocket>, to: SocketAddr, bytes: &[u8], stats: &ShardStats) {
    let r = fd
        .async_io(Interest::WRITABLE, |s| s.send_to(bytes, to))
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "send_to error");
        stats.inc(Counter::SendErrors);
    }
}
