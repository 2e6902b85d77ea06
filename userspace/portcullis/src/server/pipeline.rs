//! The request pipeline of one shard: from a datagram to a decision and a reply.
//!
//! Order of checks, each failing one counted by reason and dropped without an answer:
//!
//! 1. oversize datagram;
//! 2. unknown client (source address);
//! 3. strict decode;
//! 4. code allowed on this port;
//! 5. the RFC attribute tables and the authenticators (Message-Authenticator, Accounting
//!    Request Authenticator), both in `verify_request` — only a verified request goes further,
//!    so forged packets can neither be answered nor disturb the duplicate cache;
//! 6. RFC 5080 duplicate detection;
//! 7. the work: authentication against the local users, Status-Server, or accounting.
//!
//! Everything here is synchronous except accounting, whose reply waits until the record is
//! durable ([`Outcome::AfterDurable`]), and the second factor, whose provider calls run as
//! local tasks ([`Outcome::Later`]) that come back through [`Pipeline::later`] (see
//! `second_factor.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_auth::mschapv2::MsChapErrorCode;
use portcullis_proto::{verify_request, AttrType, Code, PacketBuilder, RawPacket, VerifiedRequest};

use super::clients::Client;
use super::dedup::{DedupCache, Key, Lookup};
use super::policy;
use super::primary;
use super::push_queue::{Job, PushQueue};
use super::reply::{self, Answer, ReplyTo};
use super::second_factor::{self as sf, Done, Effects, Final, Login, Waiter, WaiterInfo};
use super::{ListenerKind, Shared};
use crate::accounting::Durable;
use crate::audit::{self, Decision, Method, Reason};
use crate::mfa::{self, Plan};
use crate::stats::{Counter, ShardStats};

/// What the shard does with a datagram.
pub enum Outcome<'a> {
    /// Send these bytes back to the sender now.
    Reply(&'a [u8]),
    /// Nothing to send (counted already).
    Dropped,
    /// Send a reply once the accounting record is durable.
    AfterDurable(Deferred),
    /// Run this task (a second-factor provider call) and hand its result to
    /// [`Pipeline::later`].
    Later(sf::Task),
    /// The request joined a login already waiting for its second factor; it is answered with it.
    Waiting,
}

/// A reply held back until its accounting record is on disk.
pub struct Deferred {
    /// Resolves when the record is durable (or could not be written).
    pub durable: Durable,
    pub answer: DeferredAnswer,
}

/// Everything needed to answer a deferred request once its wait is over.
pub struct DeferredAnswer {
    to: SocketAddr,
    key: Key,
    authenticator: [u8; 16],
    reply: Vec<u8>,
    client: Arc<str>,
}

pub struct Pipeline {
    source: Arc<ArcSwap<Shared>>,
    /// This shard's reference to the current snapshot, refreshed once per receive batch: the
    /// per-datagram path borrows it and never touches a reference count other shards share.
    current: Arc<Shared>,
    work: Work,
}

/// The mutable per-shard state of the pipeline.
struct Work {
    stats: Arc<ShardStats>,
    dedup: DedupCache,
    /// Logins of this shard waiting for a push answer.
    pending: sf::Pending,
    /// When to send their pushes and poll the providers.
    queue: PushQueue,
    /// Provider calls to start (the shard spawns them after the current step).
    spawn: Vec<sf::Task>,
    /// Wakes the shard's timer early when a poll became due sooner than it planned.
    wake: Arc<tokio::sync::Notify>,
    planned_wake: Option<Instant>,
    reply: Vec<u8>,
    unknown_warned_at: Option<Instant>,
    unknown_since_warning: u64,
}

const UNKNOWN_CLIENT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Longest time a request may stay "in progress" in the duplicate cache without an answer,
/// beyond the longest second-factor wait (a request whose processing failed without an answer
/// is forgotten explicitly; this is the backstop).
const IN_PROGRESS_SLACK: Duration = Duration::from_secs(60);

impl Pipeline {
    pub fn new(
        shared: Arc<ArcSwap<Shared>>,
        stats: Arc<ShardStats>,
        dedup_window: Duration,
        dedup_entries: usize,
    ) -> Self {
        let current = shared.load_full();
        let m = &current.mfa.settings;
        let in_progress = m.push_timeout.max(m.challenge_timeout) + IN_PROGRESS_SLACK;
        let now = Instant::now();
        Pipeline {
            source: shared,
            work: Work {
                stats,
                dedup: DedupCache::new(dedup_window, in_progress, dedup_entries),
                pending: sf::Pending::new(pending_limits(m)),
                queue: PushQueue::new(
                    m.max_provider_calls_per_shard,
                    m.max_status_polls_per_second_per_shard,
                    now,
                ),
                spawn: Vec::new(),
                wake: Arc::new(tokio::sync::Notify::new()),
                planned_wake: None,
                reply: Vec::with_capacity(4096),
                unknown_warned_at: None,
                unknown_since_warning: 0,
            },
            current,
        }
    }

    /// Picks up a configuration reload; cheap when nothing changed. Called once per batch.
    pub fn refresh(&mut self) {
        let latest = self.source.load();
        if !Arc::ptr_eq(&latest, &self.current) {
            self.current = arc_swap::Guard::into_inner(latest);
            // Pending logins survive a reload; their limits follow it.
            let m = &self.current.mfa.settings;
            self.work.pending.set_limits(pending_limits(m));
            self.work.queue.set_limits(
                m.max_provider_calls_per_shard,
                m.max_status_polls_per_second_per_shard,
            );
        }
    }

    /// Provider calls to start now (after a batch of datagrams was handled).
    pub fn take_tasks(&mut self) -> Vec<sf::Task> {
        std::mem::take(&mut self.work.spawn)
    }

    /// When [`tick`](Self::tick) must run next: the earliest push deadline or due poll.
    /// The caller sleeps until then (or until [`waker`](Self::waker) fires) and says so.
    pub fn next_wake(&mut self, now: Instant, at_latest: Instant) -> Instant {
        let at = [
            self.work.pending.next_deadline(),
            self.work.queue.next_due(now),
        ]
        .into_iter()
        .flatten()
        .fold(at_latest, Instant::min);
        self.work.planned_wake = Some(at);
        at
    }

    /// Fires when work became due earlier than the last [`next_wake`](Self::next_wake).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.work.wake.clone()
    }

    /// Handles one datagram received on listener `index`.
    pub fn handle(
        &mut self,
        index: u16,
        kind: ListenerKind,
        from: SocketAddr,
        data: &[u8],
        oversize: bool,
        now: Instant,
    ) -> Outcome<'_> {
        self.work
            .handle(&self.current, index, kind, from, data, oversize, now)
    }

    /// Takes the result of a second-factor task: the replies to send (already recorded in the
    /// duplicate cache) and maybe a follow-up task.
    pub fn later(&mut self, done: Done, now: Instant) -> Effects {
        let mut fx = self.work.later(&self.current, done, now);
        self.work.pump(now);
        fx.tasks.append(&mut self.work.spawn);
        self.work.record(&mut fx, now);
        fx
    }

    /// At [`next_wake`](Self::next_wake): answers pending logins whose deadline passed and
    /// starts the provider calls that became due.
    pub fn tick(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        for c in self.work.pending.expire(now) {
            for w in c.waiters {
                sf::reject(
                    &w.payload.info,
                    "MFA: no answer to the push in time",
                    &mut fx,
                    &self.work.stats,
                );
            }
        }
        self.work.pump(now);
        fx.tasks.append(&mut self.work.spawn);
        self.work.record(&mut fx, now);
        fx
    }

    /// At shutdown: answers every pending login with a reject rather than dropping it.
    pub fn drain(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        for c in self.work.pending.drain_all() {
            for w in c.waiters {
                sf::reject(
                    &w.payload.info,
                    "server shutting down while waiting for MFA",
                    &mut fx,
                    &self.work.stats,
                );
            }
        }
        self.work.record(&mut fx, now);
        fx
    }

    pub fn pending_len(&self) -> usize {
        self.work.pending.len()
    }

    /// Publishes the pending-login and provider-call levels to the shard's stats.
    pub fn publish_gauges(&self) {
        use crate::stats::Gauge;
        let stats = &self.work.stats;
        stats.set_gauge(Gauge::PendingLogins, self.work.pending.len());
        stats.set_gauge(Gauge::ProviderCalls, self.work.queue.in_flight());
    }

    /// Finishes a deferred (accounting) request once its record is durable, or not.
    /// Returns the destination and bytes to send.
    pub fn complete(
        &mut self,
        d: DeferredAnswer,
        durable: bool,
        now: Instant,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        self.work.complete(d, durable, now)
    }
}

impl Work {
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        shared: &Shared,
        index: u16,
        kind: ListenerKind,
        from: SocketAddr,
        data: &[u8],
        oversize: bool,
        now: Instant,
    ) -> Outcome<'_> {
        if oversize {
            self.stats.drop_reason("oversize");
            return Outcome::Dropped;
        }
        let Some(client) = shared.clients.lookup(from.ip()) else {
            self.stats.drop_reason("unknown_client");
            self.warn_unknown_client(from, now);
            return Outcome::Dropped;
        };
        // The attribute tables are enforced by verify_request below, once.
        let packet = match RawPacket::decode(data) {
            Ok(p) => p,
            Err(e) => {
                self.stats.drop_reason(e.reason());
                tracing::debug!(%from, client = %client.name, error = %e, "malformed packet dropped");
                return Outcome::Dropped;
            }
        };
        let code = packet.code();
        let allowed = match kind {
            ListenerKind::Auth => code == Code::ACCESS_REQUEST || code == Code::STATUS_SERVER,
            ListenerKind::Accounting => {
                code == Code::ACCOUNTING_REQUEST || code == Code::STATUS_SERVER
            }
        };
        if !allowed {
            self.stats.drop_reason("wrong_port_or_code");
            tracing::debug!(%from, client = %client.name, code = %code, "packet code not served on this port; dropped");
            return Outcome::Dropped;
        }
        // During a secret change-over a request may verify with the next secret; from then on
        // it is handled as the rotated client (same index and settings, that secret).
        let verified = match verify_request(packet, &client.secret, &client.policy) {
            Err(
                e @ (portcullis_proto::VerifyError::BadMessageAuthenticator
                | portcullis_proto::VerifyError::BadRequestAuthenticator),
            ) => match &client.rotated {
                Some(next) => verify_request(packet, &next.secret, &next.policy)
                    .map(|r| (r, next))
                    .map_err(|_| e),
                None => Err(e),
            },
            other => other.map(|r| (r, client)),
        };
        let (request, client) = match verified {
            Ok(r) => r,
            Err(e) => {
                self.stats.drop_reason(e.reason());
                audit::decision(
                    Decision::Discarded,
                    &client.name,
                    from,
                    packet.get(AttrType::USER_NAME),
                    primary::method_of(&packet),
                    Reason::MalformedRequest,
                    e.reason(),
                );
                return Outcome::Dropped;
            }
        };

        // Status-Server is answered directly and never cached (RFC 5997 §3).
        if code == Code::STATUS_SERVER {
            self.stats.inc(Counter::StatusServer);
            let reply_code = match kind {
                ListenerKind::Auth => Code::ACCESS_ACCEPT,
                ListenerKind::Accounting => Code::ACCOUNTING_RESPONSE,
            };
            let mut b = self.start_reply(reply_code, &request);
            let r = b.copy_proxy_state(&request);
            b.finish_reply(&client.secret, request.authenticator());
            self.reply = b.into_buffer();
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot encode Status-Server reply");
                self.stats.drop_reason(e.reason());
                return Outcome::Dropped;
            }
            return Outcome::Reply(&self.reply);
        }

        let key = Key {
            from,
            listener: index,
            identifier: request.identifier(),
        };
        let authenticator = *request.authenticator();
        // A retransmission of a login waiting for its push: the pending table knows it (such
        // logins keep no entry in the duplicate cache until answered, which halves what a
        // pending login costs).
        if code != Code::ACCOUNTING_REQUEST && !self.pending.is_empty() {
            let rk = portcullis_pending::RequestKey {
                from,
                listener: index,
                identifier: key.identifier,
                authenticator,
            };
            if self.pending.join_request(&rk).is_some() {
                self.stats.inc(Counter::DuplicateInProgress);
                return Outcome::Dropped;
            }
        }
        match self.dedup.check(key, &authenticator, now) {
            Lookup::New { replaced } => {
                if replaced {
                    self.stats.inc(Counter::IdentifierReused);
                }
            }
            Lookup::InProgress => {
                self.stats.inc(Counter::DuplicateInProgress);
                return Outcome::Dropped;
            }
            Lookup::Cached(bytes) => {
                self.stats.inc(Counter::DuplicateResent);
                // Borrow dance: the cached bytes live in `self.dedup`.
                self.reply.clear();
                self.reply.extend_from_slice(bytes);
                return Outcome::Reply(&self.reply);
            }
        }

        if code == Code::ACCOUNTING_REQUEST {
            self.dedup.deferred(key, &authenticator, now);
            return self.accounting(shared, client, from, &request, key, authenticator);
        }
        match self.access(shared, client, key, &request, now) {
            Access::Replied => {
                self.dedup.answered(key, &authenticator, &self.reply, now);
                Outcome::Reply(&self.reply)
            }
            Access::Dropped => {
                self.dedup.forget(key, &authenticator);
                Outcome::Dropped
            }
            // The request stays "in progress" in the duplicate cache until its answer.
            Access::Later(task) => {
                self.dedup.deferred(key, &authenticator, now);
                Outcome::Later(task)
            }
            // Parked in the pending table, which recognises its retransmissions (above); the
            // answer is recorded in the duplicate cache when it goes out.
            Access::Waiting => {
                self.dedup.forget(key, &authenticator);
                Outcome::Waiting
            }
        }
    }

    /// A reply builder on the recycled reply buffer, Message-Authenticator first.
    fn start_reply(&mut self, code: Code, request: &VerifiedRequest<'_>) -> PacketBuilder {
        PacketBuilder::reply_in(std::mem::take(&mut self.reply), code, request)
    }

    /// A NAS pointed at us from an address we do not know is the most common set-up mistake;
    /// say so, but at most once per [`UNKNOWN_CLIENT_WARNING_INTERVAL`] per shard, so a flood
    /// cannot flood the log.
    fn warn_unknown_client(&mut self, from: SocketAddr, now: Instant) {
        self.unknown_since_warning += 1;
        let due = self
            .unknown_warned_at
            .is_none_or(|t| now.duration_since(t) >= UNKNOWN_CLIENT_WARNING_INTERVAL);
        if due {
            tracing::warn!(
                %from,
                dropped_since_last_warning = self.unknown_since_warning,
                "datagrams from an address that is no configured [[client]] are dropped (add the NAS as a client if it is yours)"
            );
            self.unknown_warned_at = Some(now);
            self.unknown_since_warning = 0;
        }
    }

    fn complete(
        &mut self,
        d: DeferredAnswer,
        durable: bool,
        now: Instant,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        if durable {
            self.stats.inc(Counter::AccountingResponse);
            self.dedup.answered(d.key, &d.authenticator, &d.reply, now);
            Some((d.to, d.reply))
        } else {
            // Not acknowledged: the NAS keeps the record and retransmits; let that be processed.
            self.dedup.forget(d.key, &d.authenticator);
            self.stats.drop_reason("accounting_write_failed");
            audit::decision(
                Decision::Discarded,
                &d.client,
                d.to,
                None,
                Method::Accounting,
                Reason::InternalError,
                "accounting record could not be written",
            );
            None
        }
    }

    fn accounting(
        &mut self,
        shared: &Shared,
        client: &Client,
        from: SocketAddr,
        request: &VerifiedRequest<'_>,
        key: Key,
        authenticator: [u8; 16],
    ) -> Outcome<'_> {
        let at = time::OffsetDateTime::now_utc();
        let line = crate::accounting_record::to_json_line(request, &client.name, from, at);
        let mut b = PacketBuilder::reply(Code::ACCOUNTING_RESPONSE, request);
        if let Err(e) = b.copy_proxy_state(request) {
            tracing::error!(error = %e, "cannot encode Accounting-Response");
            self.stats.drop_reason(e.reason());
            self.dedup.forget(key, &authenticator);
            return Outcome::Dropped;
        }
        b.finish_reply(&client.secret, request.authenticator());
        let reply = b.into_buffer();
        let durable = shared.accounting.submit(line, at);
        Outcome::AfterDurable(Deferred {
            durable,
            answer: DeferredAnswer {
                to: from,
                key,
                authenticator,
                reply,
                client: client.name.clone(),
            },
        })
    }

    /// Encodes an answer to `request` in `self.reply` and writes its audit line.
    #[allow(clippy::too_many_arguments)]
    fn reply_now(
        &mut self,
        client: &Client,
        from: SocketAddr,
        request: &VerifiedRequest<'_>,
        answer: &Answer<'_>,
        method: Method,
        reason: Reason,
        detail: &str,
    ) -> Access {
        self.reply_now_by_policy(client, from, request, answer, method, reason, None, detail)
    }

    /// [`reply_now`](Self::reply_now), naming the network policy that decided.
    #[allow(clippy::too_many_arguments)]
    fn reply_now_by_policy(
        &mut self,
        client: &Client,
        from: SocketAddr,
        request: &VerifiedRequest<'_>,
        answer: &Answer<'_>,
        method: Method,
        reason: Reason,
        policy: Option<&str>,
        detail: &str,
    ) -> Access {
        let (buf, built) =
            reply::to_request(std::mem::take(&mut self.reply), request, client, answer);
        self.reply = buf;
        if let Err(e) = built {
            tracing::error!(error = %e, "cannot encode reply; request dropped");
            self.stats.drop_reason("encode_error");
            return Access::Dropped;
        }
        let granted = matches!(answer, Answer::Accept(_));
        self.stats.inc(if granted {
            Counter::AccessAccept
        } else {
            Counter::AccessReject
        });
        audit::decision_by_policy(
            if granted {
                Decision::Granted
            } else {
                Decision::Denied
            },
            &client.name,
            from,
            request.get(AttrType::USER_NAME),
            method,
            reason,
            policy,
            detail,
        );
        Access::Replied
    }

    /// An Access-Request: an answer to one of our OTP challenges, or a first factor against
    /// the local users followed, on clients that require it, by the second factor.
    fn access(
        &mut self,
        shared: &Shared,
        client: &Arc<Client>,
        key: Key,
        request: &VerifiedRequest<'_>,
        now: Instant,
    ) -> Access {
        if let Some(state) = request.get(AttrType::STATE) {
            if shared.mfa.challenges.contains(state) {
                return self.otp_answer(shared, client, key, request, state, now);
            }
        }
        // Users the local store does not hold go to the directory, when there is one.
        if let Some(backend) = &shared.directory {
            if let Some(task) = super::directory::route(backend, shared, client, key, request) {
                return Access::Later(task);
            }
        }
        let mut primary = primary::authenticate(&shared.users, client, request);
        let Some(mut grant) = primary.grant.take() else {
            let answer = Answer::Reject {
                ms_error: primary.ms_error,
                message: None,
            };
            return self.reply_now(
                client,
                key.from,
                request,
                &answer,
                primary.method,
                primary.reason,
                "",
            );
        };
        let nas_ip = request
            .get(AttrType::NAS_IP_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(std::net::IpAddr::from)
            .or_else(|| {
                request
                    .get(AttrType::NAS_IPV6_ADDRESS)
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
                    .map(std::net::IpAddr::from)
            });
        // Network policies: after the first factor (the groups are known), before the second.
        // (No user lookup when there are no policies to evaluate.)
        let groups = if shared.policies.is_open() {
            &[][..]
        } else {
            primary
                .user()
                .and_then(|u| shared.users.get(u))
                .map_or(&[][..], |u| u.groups())
        };
        let facts = policy::Facts::new(
            client.index,
            groups.iter().map(String::as_str),
            policy::nas_port_type(request),
            nas_ip,
        );
        let (provider, factor) =
            match second_step(shared, client, &facts, &mut grant, primary.method, nas_ip) {
                Step::Reject { reason, policy } => {
                    let answer = Answer::Reject {
                        ms_error: grant
                            .ms_chap2
                            .as_ref()
                            .map(|m| (m.0, MsChapErrorCode::NoDialinPermission)),
                        message: None,
                    };
                    return self.reply_now_by_policy(
                        client,
                        key.from,
                        request,
                        &answer,
                        primary.method,
                        reason,
                        policy.as_deref().map(|p| &*p.name),
                        "",
                    );
                }
                Step::Accept { detail } => {
                    return self.reply_now_by_policy(
                        client,
                        key.from,
                        request,
                        &Answer::Accept(&grant),
                        primary.method,
                        Reason::Success,
                        grant.policy.as_deref().map(|p| &*p.name),
                        detail,
                    );
                }
                Step::Ask { provider, factor } => (provider, factor),
            };
        let settings = &shared.mfa.settings;
        let user = primary.user().unwrap_or_default().to_owned();
        // The MFA identity: the alternate login-id attribute when configured and present.
        let mfa_user = settings
            .login_id_attribute
            .as_deref()
            .and_then(|a| shared.users.get(&user).and_then(|u| u.attribute(a)))
            .map_or_else(|| user.clone(), str::to_owned);
        let login = Login {
            waiter: Waiter {
                info: WaiterInfo {
                    reply_to: ReplyTo::new(request, key, client),
                    method: primary.method,
                    ms_ident: grant.ms_chap2.as_ref().map(|m| m.0),
                    user_name: request.get(AttrType::USER_NAME).unwrap_or_default().into(),
                },
                grant,
            },
            request: portcullis_mfa::MfaRequest {
                user: mfa_user,
                nas_ip,
                client: client.name.clone(),
                calling_station: request
                    .get(AttrType::CALLING_STATION_ID)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                context_id: context_id(),
            },
            provider,
            client_index: client.index,
            user,
        };
        let mut fx = Effects::default();
        self.start_second_factor(settings, login, factor, &mut fx, now);
        if let Some(task) = fx.tasks.pop() {
            return Access::Later(task);
        }
        match fx.replies.pop() {
            Some((_, bytes, _)) => {
                self.reply = bytes;
                Access::Replied
            }
            None => Access::Waiting,
        }
    }

    /// Sends an OTP challenge (as a task in `fx`) or starts or joins a push for `login`; a
    /// refused push (a limit) is answered with a reject in `fx`.
    fn start_second_factor(
        &mut self,
        settings: &crate::config::MfaConfig,
        login: Login,
        factor: portcullis_mfa::Factor,
        fx: &mut Effects,
        now: Instant,
    ) {
        match factor {
            portcullis_mfa::Factor::Otp => fx.tasks.push(sf::begin_otp(Box::new(login))),
            portcullis_mfa::Factor::Push => match self.push(settings, login, now) {
                PushStart::Started | PushStart::Joined => {}
                PushStart::Refused(more) => fx.replies.extend(more.replies),
            },
        }
    }

    /// Starts (or joins) a push; a refusal (a limit) is answered with a reject in the effects.
    fn push(
        &mut self,
        settings: &crate::config::MfaConfig,
        login: Login,
        now: Instant,
    ) -> PushStart {
        match sf::start_push(
            &mut self.pending,
            login,
            settings.join_pending_logins,
            settings.push_timeout,
            now,
        ) {
            Ok(Some(id)) => {
                self.queue.begin(id);
                self.pump(now);
                PushStart::Started
            }
            Ok(None) => PushStart::Joined,
            Err(refused) => {
                let (info, why) = *refused;
                let mut fx = Effects::default();
                sf::reject(&info, why, &mut fx, &self.stats);
                PushStart::Refused(fx)
            }
        }
    }

    /// An Access-Request carrying the State of one of our OTP challenges: the code is its
    /// User-Password.
    fn otp_answer(
        &mut self,
        shared: &Shared,
        client: &Arc<Client>,
        key: Key,
        request: &VerifiedRequest<'_>,
        state: &[u8],
        now: Instant,
    ) -> Access {
        let user_name = request.get(AttrType::USER_NAME).unwrap_or_default();
        let user = String::from_utf8_lossy(user_name).into_owned();
        let reject = |this: &mut Self, detail: &str| {
            this.reply_now(
                client,
                key.from,
                request,
                &Answer::Reject {
                    ms_error: None,
                    message: None,
                },
                Method::Pap,
                Reason::MfaRejected,
                detail,
            )
        };
        let cs = match shared.mfa.challenges.take(state, client.index, &user, now) {
            Ok(cs) => cs,
            Err(r) => return reject(self, r.as_str()),
        };
        let code = match request.get(AttrType::USER_PASSWORD).map(|c| {
            portcullis_proto::crypto::unhide_user_password(
                c,
                &client.secret,
                request.authenticator(),
            )
        }) {
            Some(Ok(p)) => String::from_utf8_lossy(&p).trim().to_owned(),
            _ => {
                return reject(
                    self,
                    "answer to an MFA challenge without a code in User-Password",
                )
            }
        };
        let info = WaiterInfo {
            reply_to: ReplyTo::new(request, key, client),
            method: Method::Pap,
            ms_ident: None,
            user_name: user_name.into(),
        };
        // The grant travelled with the challenge; the waiter gets it back for the final answer.
        Access::Later(sf::check_otp(info, cs, code))
    }

    /// Records every reply of `fx` in the duplicate cache (retransmissions get them again).
    fn record(&mut self, fx: &mut Effects, now: Instant) {
        for (_, bytes, w) in &fx.replies {
            self.dedup.answered(w.key, &w.authenticator, bytes, now);
        }
    }

    /// One step of the second-factor state machine (see `second_factor.rs`).
    fn later(&mut self, shared: &Shared, done: Done, now: Instant) -> Effects {
        let mut fx = Effects::default();
        let settings = &shared.mfa.settings;
        match done {
            Done::Directory(d) => self.directory_done(shared, *d, now, &mut fx),
            Done::OtpBegun { login, result } => {
                let provider = login.provider.clone();
                match result {
                    Ok(portcullis_mfa::Begin::Challenge { prompt, state }) => {
                        let id = mfa::challenge::new_state();
                        let Login {
                            waiter,
                            request,
                            client_index,
                            user,
                            ..
                        } = *login;
                        let info = waiter.info;
                        let cs = mfa::ChallengeState {
                            provider,
                            state,
                            request,
                            grant: waiter.grant,
                        };
                        if shared.mfa.challenges.insert(
                            id,
                            client_index,
                            &user,
                            now + settings.challenge_timeout,
                            cs,
                            now,
                        ) {
                            let (bytes, r) = reply::to_owned_request(
                                Vec::new(),
                                &info.reply_to,
                                &Answer::Challenge {
                                    state: &id,
                                    prompt: &prompt,
                                },
                            );
                            match r {
                                Ok(()) => {
                                    self.stats.inc(Counter::AccessChallenge);
                                    tracing::info!(
                                        target: "audit",
                                        client = %info.reply_to.client.name,
                                        user = %audit::SafeName(&info.user_name),
                                        "MFA challenge sent (Access-Challenge)"
                                    );
                                    fx.replies.push((
                                        info.reply_to.key.from,
                                        bytes,
                                        sf::Waiterless {
                                            key: info.reply_to.key,
                                            authenticator: info.reply_to.authenticator,
                                        },
                                    ));
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot encode Access-Challenge");
                                    self.stats.drop_reason("encode_error");
                                }
                            }
                        } else {
                            sf::reject(
                                &info,
                                "too many outstanding MFA challenges",
                                &mut fx,
                                &self.stats,
                            );
                        }
                    }
                    Ok(portcullis_mfa::Begin::FactorUnavailable) => {
                        // No code-capable method: fall back to a push.
                        match self.push(settings, *login, now) {
                            PushStart::Started | PushStart::Joined => {}
                            PushStart::Refused(more) => fx.replies.extend(more.replies),
                        }
                    }
                    Ok(portcullis_mfa::Begin::PushSent { state }) => {
                        // The provider pushed instead of asking for a code: wait for that push.
                        let interval = provider.inner.poll_interval();
                        match sf::adopt_push(
                            &mut self.pending,
                            *login,
                            state,
                            settings.push_timeout,
                            now,
                        ) {
                            Ok(Some(id)) => self.poll_after(id, interval, now),
                            Ok(None) => {}
                            Err(refused) => {
                                let (info, why) = *refused;
                                sf::reject(&info, why, &mut fx, &self.stats);
                            }
                        }
                    }
                    Ok(other) => self.final_for(
                        settings,
                        &login.waiter.info,
                        Some(&login.waiter.grant),
                        &provider,
                        Ok(other),
                        &mut fx,
                    ),
                    Err(e) => self.final_for(
                        settings,
                        &login.waiter.info,
                        Some(&login.waiter.grant),
                        &provider,
                        Err(e),
                        &mut fx,
                    ),
                }
            }
            Done::OtpChecked {
                waiter,
                provider,
                result,
            } => {
                let r = result.map(portcullis_mfa::Begin::Decided);
                self.final_for(
                    settings,
                    &waiter.info,
                    Some(&waiter.grant),
                    &provider,
                    r,
                    &mut fx,
                );
            }
            Done::PushBegun { id, result } => {
                self.queue.finished(Job::Begin(id));
                match result {
                    Ok(portcullis_mfa::Begin::PushSent { state }) => {
                        // None: the entry expired while the push was being sent.
                        self.stats.inc(Counter::MfaPushes);
                        if let Some(v) = self.pending.value_mut(id) {
                            let interval = v.provider.inner.poll_interval();
                            v.state = Some(state);
                            self.poll_after(id, interval, now);
                        }
                    }
                    other => self.resolve(settings, id, other, &mut fx),
                }
            }
            Done::Polled { id, result } => {
                self.queue.finished(Job::Poll(id));
                self.stats.inc(Counter::MfaPolls);
                match result {
                    Ok(portcullis_mfa::PushStatus::Waiting) => {
                        if let Some(v) = self.pending.value(id) {
                            let interval = v.provider.inner.poll_interval();
                            self.poll_after(id, interval, now);
                        }
                    }
                    Ok(portcullis_mfa::PushStatus::Answered(v)) => {
                        self.resolve(settings, id, Ok(portcullis_mfa::Begin::Decided(v)), &mut fx)
                    }
                    Err(e) => self.resolve(settings, id, Err(e), &mut fx),
                }
            }
        }
        fx
    }

    /// Answers every waiter of pending entry `id` with what the provider said. Nothing when
    /// the entry is gone (expired and answered by `tick`, or drained): a late answer.
    fn resolve(
        &mut self,
        settings: &crate::config::MfaConfig,
        id: portcullis_pending::EntryId,
        result: Result<portcullis_mfa::Begin, portcullis_mfa::MfaError>,
        fx: &mut Effects,
    ) {
        if let Some(c) = self.pending.complete(id) {
            let provider = c.value.provider;
            for w in c.waiters {
                self.final_for(
                    settings,
                    &w.payload.info,
                    Some(&w.payload.grant),
                    &provider,
                    result.clone(),
                    fx,
                );
            }
        }
    }

    /// The next poll of pending entry `id`; wakes the shard's timer if that is sooner than
    /// it planned.
    fn poll_after(&mut self, id: portcullis_pending::EntryId, interval: Duration, now: Instant) {
        self.queue.poll_after(id, interval, now);
        if self.planned_wake.is_none_or(|p| now + interval < p) {
            self.planned_wake = Some(now + interval);
            self.wake.notify_one();
        }
    }

    /// Starts the provider calls the queue lets through now.
    fn pump(&mut self, now: Instant) {
        let pending = &self.pending;
        while let Some(job) = self.queue.take(now, |id| pending.contains(id)) {
            let (id, poll) = match job {
                Job::Begin(id) => (id, false),
                Job::Poll(id) => (id, true),
            };
            let (Some(v), Some(deadline)) = (pending.value(id), pending.deadline(id)) else {
                self.queue.finished(job);
                continue;
            };
            let task = match (&v.state, poll) {
                (Some(state), true) => sf::poll_push(
                    id,
                    v.provider.clone(),
                    v.request.clone(),
                    state.clone(),
                    deadline,
                ),
                (None, false) => {
                    sf::begin_push(id, v.provider.clone(), v.request.clone(), deadline)
                }
                // A poll for a push not sent, or a second begin: cannot happen; never push twice.
                _ => {
                    self.queue.finished(job);
                    continue;
                }
            };
            self.spawn.push(task);
        }
    }

    /// The final answer for a waiter, given what the provider said.
    fn final_for(
        &mut self,
        settings: &crate::config::MfaConfig,
        info: &WaiterInfo,
        grant: Option<&primary::Grant>,
        provider: &mfa::Provider,
        result: Result<portcullis_mfa::Begin, portcullis_mfa::MfaError>,
        fx: &mut Effects,
    ) {
        use portcullis_mfa::{Begin, Verdict};
        let accept = |detail: &str, fx: &mut Effects, stats: &ShardStats| {
            sf::answer(info, grant, Final::Accept { detail }, fx, stats)
        };
        let reject = |detail: &str, fx: &mut Effects, stats: &ShardStats| {
            sf::reject(info, detail, fx, stats)
        };
        match result {
            Ok(Begin::Decided(Verdict::Allow)) => {
                accept(&format!("MFA approved by {}", provider.name), fx, &self.stats)
            }
            Ok(Begin::Decided(Verdict::Deny(why))) => {
                reject(&sf::deny_detail(provider, &why), fx, &self.stats)
            }
            Ok(Begin::NotEnrolled) if settings.require_user_match => reject(
                "MFA: user not enrolled and mfa.require_user_match = true",
                fx,
                &self.stats,
            ),
            Ok(Begin::NotEnrolled) => accept(
                "MFA skipped: user not enrolled (mfa.require_user_match = false)",
                fx,
                &self.stats,
            ),
            Ok(Begin::FactorUnavailable) => reject(
                match info.method {
                    Method::MsChapV2 | Method::Chap => "MFA: CHAP and MS-CHAPv2 cannot carry a one-time code and the user has no push method",
                    _ => "MFA: the user has no usable second-factor method",
                },
                fx,
                &self.stats,
            ),
            Ok(Begin::Challenge { .. }) | Ok(Begin::PushSent { .. }) => reject(
                "MFA: the provider answered with an unexpected step",
                fx,
                &self.stats,
            ),
            Err(e) => {
                let (ok, detail) = sf::on_failure(provider, &e);
                tracing::warn!(provider = %provider.name, error = %e, "MFA provider failed");
                if ok {
                    accept(&detail, fx, &self.stats)
                } else {
                    reject(&detail, fx, &self.stats)
                }
            }
        }
    }
}

enum PushStart {
    Started,
    Joined,
    Refused(Effects),
}

/// Result of handling an Access-Request.
enum Access {
    /// The reply is in `Work::reply` (audited).
    Replied,
    Dropped,
    Later(sf::Task),
    Waiting,
}

/// A random correlation id for one login (logged, and sent where a protocol has a field).
fn context_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn pending_limits(m: &crate::config::MfaConfig) -> portcullis_pending::Limits {
    portcullis_pending::Limits {
        max_entries: m.max_pending_per_shard,
        max_per_client: m.max_pending_per_client,
        max_per_user: m.max_pending_per_user,
        ..Default::default()
    }
}

impl Work {
    /// The directory answered a request [`route`](super::directory::route)d to it: a reject,
    /// a discard (`on_unavailable = "discard"`), or an accept that continues exactly as after a
    /// local first factor (the second factor on clients with `mfa`).
    fn directory_done(
        &mut self,
        shared: &Shared,
        done: super::directory::DirectoryDone,
        now: Instant,
        fx: &mut Effects,
    ) {
        use super::directory::{self as dir, Outcome as DirOutcome};
        let Some(backend) = shared.directory.as_ref() else {
            // Only requests routed to a directory come back from one; it cannot vanish (a
            // reload carries it over).
            sf::reject(&done.pending.info, "directory gone", fx, &self.stats);
            return;
        };
        let settings = &shared.mfa.settings;
        let (p, out) = dir::decide(
            backend,
            settings.login_id_attribute.as_deref(),
            done,
            fx,
            &self.stats,
        );
        let (mut grant, mfa_user, groups, detail) = match out {
            DirOutcome::Rejected => return,
            DirOutcome::Discard { detail } => {
                dir::discarded(&p.info, &detail, &self.stats);
                // A retransmission is processed afresh.
                self.dedup
                    .forget(p.info.reply_to.key, &p.info.reply_to.authenticator);
                return;
            }
            DirOutcome::Accept {
                grant,
                mfa_user,
                groups,
                detail,
            } => (grant, mfa_user, groups, detail),
        };
        let client = p.info.reply_to.client.clone();
        // Network policies, with the groups the directory resolved (nested ones included).
        let facts = policy::Facts::new(
            client.index,
            groups.iter().map(String::as_str),
            p.nas_port_type,
            p.nas_ip,
        );
        let (provider, factor) =
            match second_step(shared, &client, &facts, &mut grant, p.info.method, p.nas_ip) {
                Step::Reject { reason, policy } => {
                    dir::reject_by_policy(
                        &p.info,
                        reason,
                        MsChapErrorCode::NoDialinPermission,
                        policy.as_deref().map(|p| &*p.name),
                        &detail,
                        fx,
                        &self.stats,
                    );
                    return;
                }
                Step::Accept { detail: more } => {
                    let detail = if more.is_empty() {
                        detail
                    } else {
                        format!("{detail}; {more}")
                    };
                    sf::answer(
                        &p.info,
                        Some(&grant),
                        Final::Accept { detail: &detail },
                        fx,
                        &self.stats,
                    );
                    return;
                }
                Step::Ask { provider, factor } => (provider, factor),
            };
        tracing::info!(
            target: "audit",
            client = %client.name,
            user = %audit::SafeName(&p.info.user_name),
            detail = %detail,
            "first factor accepted by the directory; second factor next"
        );
        // The login is the user name as sent, like a local one: an OTP answer's User-Name must
        // match it, and a push joins the pending login of the same name on the same NAS.
        let user = String::from_utf8_lossy(&p.info.user_name).into_owned();
        let login = Login {
            waiter: Waiter {
                info: p.info,
                grant,
            },
            request: portcullis_mfa::MfaRequest {
                user: mfa_user,
                nas_ip: p.nas_ip,
                client: client.name.clone(),
                calling_station: p.calling_station,
                context_id: context_id(),
            },
            provider,
            client_index: client.index,
            user,
        };
        self.start_second_factor(settings, login, factor, fx, now);
    }
}

/// What comes after a successful first factor.
enum Step {
    /// A deny policy matched, or none did where one must.
    Reject {
        reason: Reason,
        policy: Option<Arc<policy::Policy>>,
    },
    /// Access-Accept now; `detail` says why without a second factor ("" when none was asked).
    Accept { detail: &'static str },
    /// Ask this provider for this factor.
    Ask {
        provider: Arc<mfa::Provider>,
        factor: portcullis_mfa::Factor,
    },
}

/// The step after the first factor, the same for local and directory users: the network
/// policies (the grant takes the matching one, for its reply attributes), then the second
/// factor the policy or the client asks for, unless the NPS extension's settings skip it.
fn second_step<'g, G>(
    shared: &Shared,
    client: &Client,
    facts: &policy::Facts<G>,
    grant: &mut primary::Grant,
    method: Method,
    nas_ip: Option<std::net::IpAddr>,
) -> Step
where
    G: Iterator<Item = &'g str> + Clone,
{
    let (provider, skipped) = match shared.policies.next(client, facts) {
        policy::Next::Reject { reason, policy } => return Step::Reject { reason, policy },
        policy::Next::Go {
            policy,
            provider,
            skipped,
        } => {
            grant.policy = policy;
            (provider, skipped)
        }
    };
    let Some(provider) = provider else {
        return Step::Accept {
            detail: if skipped { "MFA skipped by policy" } else { "" },
        };
    };
    match mfa::plan(&shared.mfa.settings, method, nas_ip) {
        Plan::SkipNasAllowList => Step::Accept {
            detail: "MFA skipped: NAS-IP-Address in mfa.skip_nas_ip",
        },
        Plan::Ask(factor) => Step::Ask { provider, factor },
    }
}
