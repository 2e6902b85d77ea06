//! Primary authentication against Active Directory (`[directory]`), for the users the local
//! store does not hold.
//!
//! Order: a user name the local store holds is authenticated locally (local users are
//! authoritative for their names); any other name goes to the directory when one is configured.
//! For MS-CHAPv2 the name is compared without its `DOMAIN\` prefix, as the local path does.
//!
//! The directory is asynchronous: [`route`] turns the request into a local task of the shard
//! (the request stays "in progress" in the duplicate cache, so retransmissions are dropped
//! while it runs); its result comes back through `Pipeline::later` as
//! [`Done::Directory`](super::second_factor::Done), where the pipeline answers, or continues
//! into the second factor exactly as after a local first factor.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_auth::mschapv2::{MsChap2Response, MsChapErrorCode, MsChapV2Success};
use portcullis_directory::{Denial, Directory, DirectoryError, Fault, MsChapV2, Password, Verdict};
use portcullis_proto::{crypto, ms, AttrType, VerifiedRequest, MICROSOFT};

use super::clients::Client;
use super::dedup::Key;
use super::primary::{self, Grant};
use super::reply::{self, Answer, ReplyTo};
use super::second_factor::{Done, Effects, Task, WaiterInfo, Waiterless};
use super::Shared;
use crate::audit::{self, Decision, Method, Reason};
use crate::config::OnUnavailable;
use crate::stats::{Counter, ShardStats};

/// The directory as the server uses it.
pub struct Backend {
    pub directory: Directory,
    pub on_unavailable: OnUnavailable,
}

/// A request waiting for the directory, with what its answer and the second factor need.
pub struct Pending {
    pub info: WaiterInfo,
    pub nas_ip: Option<IpAddr>,
    pub calling_station: Option<String>,
    /// NAS-Port-Type, for the network policies.
    pub nas_port_type: Option<u32>,
    /// MS-CHAPv2 response ident, when the method is MS-CHAPv2.
    pub ms_ident: Option<u8>,
}

/// The directory's answer for one request.
pub struct DirectoryDone {
    pub pending: Pending,
    pub result: Result<Verdict, DirectoryError>,
}

/// What the pipeline does with a directory answer.
pub enum Outcome {
    /// Credentials and authorization OK: answer (or go on to the second factor) with this.
    Accept {
        grant: Grant,
        /// The MFA identity.
        mfa_user: String,
        /// The account's groups (common names, nested ones included), for the policies.
        groups: Vec<String>,
        detail: String,
    },
    /// Answered with an Access-Reject (already in the effects).
    Rejected,
    /// Not answered (`on_unavailable = "discard"`): the NAS may retry or fail over.
    Discard { detail: String },
}

/// When the directory handles `request`, the task that asks it; `None` leaves the request to
/// the local path (a local user, no user name, a method the directory does not serve, or a
/// malformed request that the local path answers with its reason).
pub fn route(
    backend: &Arc<Backend>,
    shared: &Shared,
    client: &Arc<Client>,
    key: Key,
    request: &VerifiedRequest<'_>,
) -> Option<Task> {
    let method = primary::method_of(&request.packet());
    let name_bytes = request.get(AttrType::USER_NAME)?;
    let local_name = match method {
        Method::MsChapV2 => portcullis_auth::mschapv2::strip_domain(name_bytes),
        _ => name_bytes,
    };
    let name = std::str::from_utf8(name_bytes).ok()?;
    if std::str::from_utf8(local_name)
        .ok()
        .is_none_or(|n| shared.users.get(n).is_some())
    {
        return None;
    }
    let mut pending = Pending {
        info: WaiterInfo {
            reply_to: ReplyTo::new(request, key, client),
            method,
            ms_ident: None,
            user_name: name_bytes.into(),
        },
        nas_ip: nas_ip(request),
        calling_station: request
            .get(AttrType::CALLING_STATION_ID)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        nas_port_type: super::policy::nas_port_type(request),
        ms_ident: None,
    };
    let dir = &backend.directory;
    match method {
        Method::Pap => {
            let cipher = request.get(AttrType::USER_PASSWORD)?;
            let plain =
                crypto::unhide_user_password(cipher, &client.secret, request.authenticator())
                    .ok()?;
            // A password that is not UTF-8 cannot be what AD holds; let it fail as a bad one.
            let password = Password::new(String::from_utf8_lossy(&plain).into_owned());
            let fut = dir.pap(name, password);
            Some(Box::pin(async move {
                let result = fut.await;
                Done::Directory(Box::new(DirectoryDone { pending, result }))
            }))
        }
        Method::MsChapV2 => {
            let challenge = request.get_vsa(MICROSOFT, ms::CHAP_CHALLENGE)?;
            let challenge = <[u8; 16]>::try_from(challenge).ok()?;
            let resp =
                MsChap2Response::parse(request.get_vsa(MICROSOFT, ms::CHAP2_RESPONSE)?).ok()?;
            pending.ms_ident = Some(resp.ident);
            pending.info.ms_ident = Some(resp.ident);
            let fut = dir.mschapv2(
                name,
                MsChapV2 {
                    authenticator_challenge: challenge,
                    peer_challenge: resp.peer_challenge,
                    nt_response: resp.nt_response,
                },
            );
            Some(Box::pin(async move {
                let result = fut.await;
                Done::Directory(Box::new(DirectoryDone { pending, result }))
            }))
        }
        _ => None,
    }
}

fn nas_ip(request: &VerifiedRequest<'_>) -> Option<IpAddr> {
    request
        .get(AttrType::NAS_IP_ADDRESS)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(IpAddr::from)
        .or_else(|| {
            request
                .get(AttrType::NAS_IPV6_ADDRESS)
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .map(IpAddr::from)
        })
}

/// The NPS reason code and MS-CHAP error code of a denial.
pub fn denial_codes(d: Denial) -> (Reason, MsChapErrorCode) {
    match d {
        Denial::NoSuchUser => (Reason::NoSuchUser, MsChapErrorCode::AuthenticationFailure),
        Denial::AccountDisabled => (Reason::AccountDisabled, MsChapErrorCode::AccountDisabled),
        Denial::AccountLockedOut => (
            Reason::AccountLockedOut,
            MsChapErrorCode::AuthenticationFailure,
        ),
        Denial::AccountExpired => (
            Reason::AccountExpired,
            MsChapErrorCode::AuthenticationFailure,
        ),
        Denial::PasswordExpired | Denial::PasswordMustChange => {
            (Reason::PasswordMustChange, MsChapErrorCode::PasswordExpired)
        }
        Denial::InvalidLogonHours => (
            Reason::InvalidLogonHours,
            MsChapErrorCode::RestrictedLogonHours,
        ),
        Denial::AccountRestriction => (
            Reason::AccountRestriction,
            MsChapErrorCode::AuthenticationFailure,
        ),
        Denial::DialinDenied => (Reason::DialinDisabled, MsChapErrorCode::NoDialinPermission),
        // BadCredentials, and any denial added later.
        _ => (
            Reason::AuthenticationFailure,
            MsChapErrorCode::AuthenticationFailure,
        ),
    }
}

/// Turns the directory's answer into an accept to continue with, a reject (encoded into `fx`)
/// or a discard.
pub fn decide(
    backend: &Backend,
    login_id_attribute: Option<&str>,
    done: DirectoryDone,
    fx: &mut Effects,
    stats: &ShardStats,
) -> (Pending, Outcome) {
    let DirectoryDone { pending, result } = done;
    let out = match result {
        Ok(Verdict::Granted { user, ms_chap2 }) => {
            let ms_chap2: Option<(u8, MsChapV2Success)> = match (pending.ms_ident, ms_chap2) {
                (Some(i), Some(ok)) => Some((i, ok)),
                (None, None) => None,
                _ => {
                    reject(
                        &pending.info,
                        Reason::InternalError,
                        MsChapErrorCode::AuthenticationFailure,
                        "directory: MS-CHAPv2 success without its keys",
                        fx,
                        stats,
                    );
                    return (pending, Outcome::Rejected);
                }
            };
            let mfa_user = login_id_attribute
                .and_then(|a| user.attribute(a))
                .unwrap_or(&user.sam_account_name)
                .to_owned();
            let groups: Vec<&str> = user.groups.iter().map(|g| g.cn.as_str()).collect();
            let mut detail = format!("directory: account {}", user.sam_account_name);
            if !groups.is_empty() {
                detail.push_str(", groups ");
                detail.push_str(&groups.join(","));
            }
            if detail.len() > 1024 {
                let mut end = 1024;
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                detail.truncate(end);
                detail.push_str("...");
            }
            Outcome::Accept {
                grant: Grant {
                    ms_chap2: ms_chap2.map(Box::new),
                    policy: None,
                },
                mfa_user,
                groups: user.groups.into_iter().map(|g| g.cn).collect(),
                detail,
            }
        }
        Ok(Verdict::Denied { denial, .. }) => {
            let (reason, ms) = denial_codes(denial);
            reject(
                &pending.info,
                reason,
                ms,
                &format!("directory: {}", denial.as_str()),
                fx,
                stats,
            );
            Outcome::Rejected
        }
        Err(e) => {
            let detail = format!("directory: {e}");
            match e.fault() {
                Fault::Backend if !matches!(e, DirectoryError::Ambiguous { .. }) => {
                    tracing::warn!(error = %e, "directory unavailable");
                    match backend.on_unavailable {
                        OnUnavailable::Reject => {
                            reject(
                                &pending.info,
                                Reason::DomainUnavailable,
                                MsChapErrorCode::AuthenticationFailure,
                                &detail,
                                fx,
                                stats,
                            );
                            Outcome::Rejected
                        }
                        OnUnavailable::Discard => Outcome::Discard { detail },
                    }
                }
                Fault::Peer => {
                    reject(
                        &pending.info,
                        Reason::NoSuchUser,
                        MsChapErrorCode::AuthenticationFailure,
                        &detail,
                        fx,
                        stats,
                    );
                    Outcome::Rejected
                }
                _ => {
                    let reason = match e {
                        DirectoryError::NtlmNotConfigured => Reason::UnsupportedAuthType,
                        DirectoryError::Ambiguous { .. } => Reason::NoSuchUser,
                        _ => Reason::InternalError,
                    };
                    tracing::error!(error = %e, "directory request failed");
                    reject(
                        &pending.info,
                        reason,
                        MsChapErrorCode::AuthenticationFailure,
                        &detail,
                        fx,
                        stats,
                    );
                    Outcome::Rejected
                }
            }
        }
    };
    (pending, out)
}

/// Encodes and audits an Access-Reject with `reason` (and an MS-CHAP-Error for MS-CHAPv2).
pub fn reject(
    w: &WaiterInfo,
    reason: Reason,
    ms: MsChapErrorCode,
    detail: &str,
    fx: &mut Effects,
    stats: &ShardStats,
) {
    reject_by_policy(w, reason, ms, None, detail, fx, stats);
}

/// [`reject`], naming the network policy that decided.
pub fn reject_by_policy(
    w: &WaiterInfo,
    reason: Reason,
    ms: MsChapErrorCode,
    policy: Option<&str>,
    detail: &str,
    fx: &mut Effects,
    stats: &ShardStats,
) {
    let answer = Answer::Reject {
        ms_error: w.ms_ident.map(|i| (i, ms)),
        message: None,
    };
    let (bytes, r) = reply::to_owned_request(Vec::new(), &w.reply_to, &answer);
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot encode reply after the directory; request dropped");
        stats.drop_reason("encode_error");
        return;
    }
    stats.inc(Counter::AccessReject);
    audit::decision_by_policy(
        Decision::Denied,
        &w.reply_to.client.name,
        w.reply_to.key.from,
        Some(&w.user_name),
        w.method,
        reason,
        policy,
        detail,
    );
    fx.replies.push((
        w.reply_to.key.from,
        bytes,
        Waiterless {
            key: w.reply_to.key,
            authenticator: w.reply_to.authenticator,
        },
    ));
}

/// Audits a request the directory could not answer, left unanswered by configuration.
pub fn discarded(w: &WaiterInfo, detail: &str, stats: &ShardStats) {
    stats.drop_reason("directory_unavailable");
    audit::decision(
        Decision::Discarded,
        &w.reply_to.client.name,
        w.reply_to.key.from,
        Some(&w.user_name),
        w.method,
        Reason::DomainUnavailable,
        detail,
    );
}
