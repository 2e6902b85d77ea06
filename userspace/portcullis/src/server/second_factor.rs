//! The second factor inside a shard: what happens between "first factor OK" and the final
//! answer, as a small state machine driven by the shard's local tasks.
//!
//! - OTP: the provider is asked to begin; its challenge becomes an Access-Challenge with a
//!   fresh State (shared [`ChallengeTable`](crate::mfa::challenge::ChallengeTable)); the next
//!   Access-Request carrying that State has the code in User-Password and is checked by the
//!   provider; the Access-Accept then carries everything the first round's would have.
//! - Push: the login goes into this shard's pending table *before* the provider is called, so
//!   a retransmission (RFC 5080, dropped by the duplicate cache as in progress) or a new attempt
//!   by the same user on the same NAS (joined as another waiter) never sends a second push.
//!   The shard's [`PushQueue`](super::push_queue::PushQueue) then says when to send the push
//!   and when to ask the provider again ([`begin_push`] and [`poll_push`] are the short tasks
//!   that do it); between two polls a login is only its table entry. When the provider answers,
//!   every waiter gets its own reply; when the deadline passes first, the timer wheel answers
//!   them with Access-Reject.
//!
//! Provider failures follow the provider's fail mode: `secure` rejects, `safe` accepts on the
//! first factor with an audit line saying so.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use portcullis_auth::mschapv2::MsChapErrorCode;
use portcullis_mfa::{Begin, DenyReason, Factor, MfaError, MfaRequest, PushStatus, Verdict};
use portcullis_pending::{EntryId, LoginKey, RequestKey};

use super::primary::Grant;
use super::reply::{self, Answer, ReplyTo};
use crate::audit::{self, Decision, Method, Reason};
use crate::config::FailMode;
use crate::mfa::{ChallengeState, Provider};

/// A provider call running as a local task; its result goes back to [`finish`].
pub type Task = Pin<Box<dyn Future<Output = Done>>>;

/// Who to answer, and how to audit it.
#[derive(Clone)]
pub struct WaiterInfo {
    pub reply_to: ReplyTo,
    pub method: Method,
    /// The MS-CHAPv2 response ident, for an MS-CHAP-Error on reject.
    pub ms_ident: Option<u8>,
    /// The user name as sent, for the audit line.
    pub user_name: Box<[u8]>,
}

/// One request waiting for the second factor.
pub struct Waiter {
    pub info: WaiterInfo,
    /// What its Access-Accept must carry.
    pub grant: Grant,
}

/// What a pending push login remembers.
pub struct PushLogin {
    pub provider: Arc<Provider>,
    pub request: MfaRequest,
    /// The provider's handle on the push once it was sent.
    pub state: Option<portcullis_mfa::ProviderState>,
}

pub type Pending = portcullis_pending::PendingTable<PushLogin, Waiter>;

/// A login that passed its first factor and now needs the second.
pub struct Login {
    pub waiter: Waiter,
    pub provider: Arc<Provider>,
    pub request: MfaRequest,
    pub client_index: u32,
    pub user: String,
}

pub enum Done {
    /// `begin` for an OTP challenge came back.
    OtpBegun {
        login: Box<Login>,
        result: Result<Begin, MfaError>,
    },
    /// The code the user typed was checked.
    OtpChecked {
        waiter: Box<Waiter>,
        provider: Arc<Provider>,
        result: Result<Verdict, MfaError>,
    },
    /// `begin(Push)` for a pending entry came back.
    PushBegun {
        id: EntryId,
        result: Result<Begin, MfaError>,
    },
    /// One status poll for a pending entry came back.
    Polled {
        id: EntryId,
        result: Result<PushStatus, MfaError>,
    },
    /// The directory answered a first factor (see `directory.rs`).
    Directory(Box<super::directory::DirectoryDone>),
}

/// Replies to send, and tasks to start, produced by a step of the machine.
#[derive(Default)]
pub struct Effects {
    pub replies: Vec<(SocketAddr, Vec<u8>, Waiterless)>,
    pub tasks: Vec<Task>,
}

/// Dedup bookkeeping for a reply sent after a wait.
pub struct Waiterless {
    pub key: super::dedup::Key,
    pub authenticator: [u8; 16],
}

/// The final answer for one waiter.
pub enum Final<'a> {
    Accept { detail: &'a str },
    Reject { reason: Reason, detail: &'a str },
}

/// Encodes and audits the final answer to `w`. An accept needs the grant.
pub fn answer(
    w: &WaiterInfo,
    grant: Option<&Grant>,
    f: Final<'_>,
    out: &mut Effects,
    stats: &crate::stats::ShardStats,
) {
    let (ans, decision, reason, detail) = match (f, grant) {
        (Final::Accept { detail }, Some(g)) => (
            Answer::Accept(g),
            Decision::Granted,
            Reason::Success,
            detail,
        ),
        (Final::Accept { .. }, None) => (
            Answer::Reject {
                ms_error: None,
                message: None,
            },
            Decision::Denied,
            Reason::InternalError,
            "accept without its first-factor result",
        ),
        (Final::Reject { reason, detail }, _) => (
            Answer::Reject {
                ms_error: w
                    .ms_ident
                    .map(|i| (i, MsChapErrorCode::AuthenticationFailure)),
                message: None,
            },
            Decision::Denied,
            reason,
            detail,
        ),
    };
    let (bytes, r) = reply::to_owned_request(Vec::new(), &w.reply_to, &ans);
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot encode reply after MFA; request dropped");
        stats.drop_reason("encode_error");
        return;
    }
    stats.inc(if decision == Decision::Granted {
        crate::stats::Counter::AccessAccept
    } else {
        crate::stats::Counter::AccessReject
    });
    audit::decision_by_policy(
        decision,
        &w.reply_to.client.name,
        w.reply_to.key.from,
        Some(&w.user_name),
        w.method,
        reason,
        grant.and_then(|g| g.policy.as_deref()).map(|p| &*p.name),
        detail,
    );
    out.replies.push((
        w.reply_to.key.from,
        bytes,
        Waiterless {
            key: w.reply_to.key,
            authenticator: w.reply_to.authenticator,
        },
    ));
}

/// Answers `w` with an Access-Reject because of the second factor (NPS reason 21).
pub fn reject(w: &WaiterInfo, detail: &str, out: &mut Effects, stats: &crate::stats::ShardStats) {
    answer(
        w,
        None,
        Final::Reject {
            reason: Reason::MfaRejected,
            detail,
        },
        out,
        stats,
    );
}

/// What a provider failure means for the login, by the provider's fail mode.
pub fn on_failure(provider: &Provider, e: &MfaError) -> (bool, String) {
    match provider.fail_mode {
        FailMode::Secure => (false, format!("MFA unavailable, fail mode secure: {e}")),
        FailMode::Safe => (
            true,
            format!("MFA unavailable, fail mode safe: accepted on the first factor: {e}"),
        ),
    }
}

pub fn deny_detail(provider: &Provider, why: &DenyReason) -> String {
    format!("MFA denied by {}: {why}", provider.name)
}

/// The task that starts an OTP challenge.
pub fn begin_otp(login: Box<Login>) -> Task {
    Box::pin(async move {
        let result = login
            .provider
            .inner
            .begin(&login.request, Factor::Otp)
            .await;
        Done::OtpBegun { login, result }
    })
}

/// The task that checks a typed code; the first round's grant comes back with the waiter.
pub fn check_otp(info: WaiterInfo, cs: ChallengeState, code: String) -> Task {
    let ChallengeState {
        provider,
        state,
        request,
        grant,
    } = cs;
    Box::pin(async move {
        let result = provider.inner.verify_otp(&request, &state, &code).await;
        Done::OtpChecked {
            waiter: Box::new(Waiter { info, grant }),
            provider,
            result,
        }
    })
}

/// The task that sends the push of pending entry `id` (cut off at the login's deadline,
/// when the entry is answered by the timer wheel anyway).
pub fn begin_push(
    id: EntryId,
    provider: Arc<Provider>,
    request: MfaRequest,
    deadline: Instant,
) -> Task {
    Box::pin(async move {
        let call = provider.inner.begin(&request, Factor::Push);
        let result = match tokio::time::timeout_at(deadline.into(), call).await {
            Ok(r) => r,
            Err(_) => Err(MfaError::Timeout {
                provider: provider.name.clone(),
                after: std::time::Duration::ZERO,
            }),
        };
        Done::PushBegun { id, result }
    })
}

/// The task that asks once whether the push of pending entry `id` was answered.
pub fn poll_push(
    id: EntryId,
    provider: Arc<Provider>,
    request: MfaRequest,
    state: portcullis_mfa::ProviderState,
    deadline: Instant,
) -> Task {
    Box::pin(async move {
        let call = provider.inner.poll_push(&request, &state);
        // Past the deadline the entry is gone (answered by the wheel): nothing to learn.
        let result = tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or(Ok(PushStatus::Waiting));
        Done::Polled { id, result }
    })
}

/// Puts a login whose push is already on its way into the pending table and returns its
/// entry (to be polled, never pushed again). On refusal (a limit) the caller answers with the
/// returned reason.
pub fn adopt_push(
    pending: &mut Pending,
    login: Login,
    state: portcullis_mfa::ProviderState,
    timeout: std::time::Duration,
    now: Instant,
) -> Result<Option<EntryId>, Box<(WaiterInfo, &'static str)>> {
    enter(pending, login, Some(state), false, timeout, now)
}

/// Puts a login into the pending table (or joins the pending one of the same user on the same
/// NAS). `Some(entry)`: a new entry whose push must be sent; `None`: joined. On refusal (a
/// limit) the caller answers the request with the returned reason.
pub fn start_push(
    pending: &mut Pending,
    login: Login,
    join: bool,
    timeout: std::time::Duration,
    now: Instant,
) -> Result<Option<EntryId>, Box<(WaiterInfo, &'static str)>> {
    enter(pending, login, None, join, timeout, now)
}

/// The pending-table entry of a push login: join one of the same login when allowed, else
/// make one (holding the provider's handle if the push is already out).
fn enter(
    pending: &mut Pending,
    login: Login,
    sent: Option<portcullis_mfa::ProviderState>,
    join: bool,
    timeout: std::time::Duration,
    now: Instant,
) -> Result<Option<EntryId>, Box<(WaiterInfo, &'static str)>> {
    let Login {
        waiter,
        provider,
        request,
        client_index,
        user,
    } = login;
    let key = waiter.info.reply_to.key;
    let rk = RequestKey {
        from: key.from,
        listener: key.listener,
        identifier: key.identifier,
        authenticator: waiter.info.reply_to.authenticator,
    };
    let lk = LoginKey::new(client_index, user);
    let info = waiter.info.clone();
    if join && pending.pending_login(&lk).is_some() {
        return match pending.join_login(&lk, rk, waiter) {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Err(Box::new((info, "pending_vanished"))),
            Err(r) => Err(Box::new((info, r.reason()))),
        };
    }
    let value = PushLogin {
        provider,
        request,
        state: sent,
    };
    match pending.begin(lk, rk, waiter, value, now + timeout, now) {
        Ok(id) => Ok(Some(id)),
        Err(r) => Err(Box::new((info, r.reason()))),
    }
}

#[cfg(test)]
mod tests {
    /// A million pending push logins must fit in well under a GiB (see the `mfa` bench
    /// scenario): the per-entry slot of the pending table is where it is decided. A field
    /// added to a waiter or to the login grows it for every pending login. (120: the grant's
    /// network-policy pointer, 8 bytes, shared by all the logins of that policy.)
    #[test]
    fn a_pending_login_slot_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<super::Waiter>() <= 120,
            "Waiter {}",
            size_of::<super::Waiter>()
        );
        assert!(
            size_of::<super::PushLogin>() <= 144,
            "PushLogin {}",
            size_of::<super::PushLogin>()
        );
        assert!(
            super::Pending::slot_bytes() <= 392,
            "pending slot {}",
            super::Pending::slot_bytes()
        );
    }
}
