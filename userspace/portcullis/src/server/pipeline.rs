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
//! durable ([`Outcome::AfterDurable`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_proto::{verify_request, AttrType, Code, PacketBuilder, RawPacket, VerifiedRequest};

use super::clients::Client;
use super::dedup::{DedupCache, Key, Lookup};
use super::primary;
use super::reply::{self, Answer};
use super::{ListenerKind, Shared};
use crate::accounting::Durable;
use crate::audit::{self, Decision, Method, Reason};
use crate::stats::{Counter, ShardStats};

/// What the shard does with a datagram.
pub enum Outcome<'a> {
    /// Send these bytes back to the sender now.
    Reply(&'a [u8]),
    /// Nothing to send (counted already).
    Dropped,
    /// Send a reply once the accounting record is durable.
    AfterDurable(Deferred),
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
    client: String,
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
    reply: Vec<u8>,
    unknown_warned_at: Option<Instant>,
    unknown_since_warning: u64,
}

const UNKNOWN_CLIENT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Longest time a request may stay "in progress" in the duplicate cache without an answer
/// (an accounting record whose write failed is forgotten explicitly; this is the backstop).
const IN_PROGRESS_LIMIT: Duration = Duration::from_secs(30);

impl Pipeline {
    pub fn new(
        shared: Arc<ArcSwap<Shared>>,
        stats: Arc<ShardStats>,
        dedup_window: Duration,
        dedup_entries: usize,
    ) -> Self {
        Pipeline {
            current: shared.load_full(),
            source: shared,
            work: Work {
                stats,
                dedup: DedupCache::new(dedup_window, IN_PROGRESS_LIMIT, dedup_entries),
                reply: Vec::with_capacity(4096),
                unknown_warned_at: None,
                unknown_since_warning: 0,
            },
        }
    }

    /// Picks up a configuration reload; cheap when nothing changed. Called once per batch.
    pub fn refresh(&mut self) {
        let latest = self.source.load();
        if !Arc::ptr_eq(&latest, &self.current) {
            self.current = arc_swap::Guard::into_inner(latest);
        }
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
        let request = match verify_request(packet, &client.secret, &client.policy) {
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
            return self.accounting(shared, client, from, &request, key, authenticator);
        }
        match self.access(shared, client, from, &request) {
            Ok(()) => {
                self.dedup.answered(key, &authenticator, &self.reply, now);
                Outcome::Reply(&self.reply)
            }
            Err(()) => {
                self.dedup.forget(key, &authenticator);
                Outcome::Dropped
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

    /// Authenticates an Access-Request against the local users and builds the reply in
    /// `self.reply`. `Err` means the request is dropped instead (counted and audited).
    fn access(
        &mut self,
        shared: &Shared,
        client: &Client,
        from: SocketAddr,
        request: &VerifiedRequest<'_>,
    ) -> Result<(), ()> {
        let primary = primary::authenticate(&shared.users, client, request);
        let answer = match &primary.grant {
            Some(g) => Answer::Accept(g),
            None => Answer::Reject {
                ms_error: primary.ms_error,
                message: None,
            },
        };
        let (buf, built) =
            reply::to_request(std::mem::take(&mut self.reply), request, client, &answer);
        self.reply = buf;
        if let Err(e) = built {
            tracing::error!(error = %e, "cannot encode reply; request dropped");
            self.stats.drop_reason("encode_error");
            return Err(());
        }
        let granted = primary.grant.is_some();
        self.stats.inc(if granted {
            Counter::AccessAccept
        } else {
            Counter::AccessReject
        });
        audit::decision(
            if granted {
                Decision::Granted
            } else {
                Decision::Denied
            },
            &client.name,
            from,
            request.get(AttrType::USER_NAME),
            primary.method,
            primary.reason,
            "",
        );
        Ok(())
    }
}
