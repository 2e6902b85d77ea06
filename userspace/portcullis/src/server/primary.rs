//! Primary authentication of an Access-Request against the local user store: PAP, CHAP and
//! MS-CHAPv2. Pure: it reads the verified request and the store and says what was decided and
//! what an Access-Accept must carry; encoding the reply is `reply.rs`'s job.

use portcullis_auth::mschapv2::{MsChap2Response, MsChapErrorCode, MsChapV2Success};
use portcullis_auth::store::{ChapOutcome, LocalUsers};
use portcullis_proto::{crypto, ms, AttrType, Code, RawPacket, VerifiedRequest, MICROSOFT};

use std::sync::Arc;

use super::clients::Client;
use super::policy::Policy;
use crate::audit::{Method, Reason};

/// What an Access-Accept for this request must carry besides the generic parts.
pub struct Grant {
    /// MS-CHAPv2: the response ident and the success (authenticator response, MPPE keys).
    /// Boxed: most grants have none, and a pending login should not carry ~70 empty bytes.
    pub ms_chap2: Option<Box<(u8, MsChapV2Success)>>,
    /// The network policy that granted the login: its reply attributes go into every
    /// Access-Accept (immediate, after a push, after an OTP challenge), its name into the audit
    /// line. `None` with no policies configured. One pointer, shared by all its logins.
    pub policy: Option<Arc<Policy>>,
}

/// The outcome of primary authentication (borrowing the user name from the request).
pub struct Primary<'a> {
    pub method: Method,
    pub reason: Reason,
    /// `Some` when the credentials were right.
    pub grant: Option<Grant>,
    /// MS-CHAPv2 failures answer with an MS-CHAP-Error of this code.
    pub ms_error: Option<(u8, MsChapErrorCode)>,
    /// The user name as looked up in the store (domain stripped for MS-CHAPv2); see
    /// [`user`](Self::user).
    name: Option<&'a [u8]>,
}

impl<'a> Primary<'a> {
    /// The user name as looked up in the store, when valid UTF-8. (Checked here, when asked
    /// for, not on every request: only policies and the second factor need it as text.)
    pub fn user(&self) -> Option<&'a str> {
        self.name.and_then(|n| std::str::from_utf8(n).ok())
    }

    fn deny(method: Method, reason: Reason) -> Self {
        Primary {
            method,
            reason,
            grant: None,
            ms_error: None,
            name: None,
        }
    }
}

/// The authentication method a request asks for, from the attributes it carries.
pub fn method_of(p: &RawPacket<'_>) -> Method {
    match p.code() {
        Code::ACCOUNTING_REQUEST => return Method::Accounting,
        Code::STATUS_SERVER => return Method::StatusServer,
        _ => {}
    }
    if p.contains(AttrType::EAP_MESSAGE) {
        Method::Eap
    } else if p.contains(AttrType::USER_PASSWORD) {
        Method::Pap
    } else if p.contains(AttrType::CHAP_PASSWORD) {
        Method::Chap
    } else if p.get_vsa(MICROSOFT, ms::CHAP2_RESPONSE).is_some() {
        Method::MsChapV2
    } else {
        Method::None
    }
}

/// Authenticates `request` from `client` against `users`.
pub fn authenticate<'a>(
    users: &LocalUsers,
    client: &Client,
    request: &VerifiedRequest<'a>,
) -> Primary<'a> {
    let method = method_of(&request.packet());
    let Some(name_bytes) = request.get(AttrType::USER_NAME) else {
        return Primary::deny(method, Reason::NoSuchUser);
    };
    let lookup_name = match method {
        Method::MsChapV2 => portcullis_auth::mschapv2::strip_domain(name_bytes),
        _ => name_bytes,
    };
    let user = users.get_bytes(lookup_name);
    let mut out = Primary::deny(method, Reason::AuthenticationFailure);
    out.name = Some(lookup_name);
    let granted = |mut out: Primary<'a>, grant: Grant| {
        out.reason = Reason::Success;
        out.grant = Some(grant);
        out
    };
    match method {
        Method::Pap => {
            let Some(cipher) = request.get(AttrType::USER_PASSWORD) else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            // Borrowed where it lies, not moved out of the result: it is a 128-octet buffer.
            let unhidden =
                crypto::unhide_user_password(cipher, &client.secret, request.authenticator());
            let Ok(password) = &unhidden else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            match user {
                None => out.reason = Reason::NoSuchUser,
                Some(u) if u.is_disabled() => out.reason = Reason::AccountDisabled,
                Some(u) if u.verify_pap(password) => {
                    return granted(
                        out,
                        Grant {
                            ms_chap2: None,
                            policy: None,
                        },
                    )
                }
                Some(_) => {}
            }
        }
        Method::Chap => {
            let Some((&ident, response)) = request
                .get(AttrType::CHAP_PASSWORD)
                .and_then(|v| v.split_first())
            else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            let Ok(response) = <&[u8; 16]>::try_from(response) else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            let challenge = request
                .get(AttrType::CHAP_CHALLENGE)
                .unwrap_or(request.authenticator());
            match user {
                None => out.reason = Reason::NoSuchUser,
                Some(u) if u.is_disabled() => out.reason = Reason::AccountDisabled,
                Some(u) => match u.verify_chap(ident, response, challenge) {
                    ChapOutcome::Accept => {
                        return granted(
                            out,
                            Grant {
                                ms_chap2: None,
                                policy: None,
                            },
                        )
                    }
                    ChapOutcome::Reject => {}
                    ChapOutcome::NotAvailable => out.reason = Reason::NoReversiblyEncryptedPassword,
                },
            }
        }
        Method::MsChapV2 => {
            let (Some(challenge), Some(resp)) = (
                request.get_vsa(MICROSOFT, ms::CHAP_CHALLENGE),
                request.get_vsa(MICROSOFT, ms::CHAP2_RESPONSE),
            ) else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            let (Ok(challenge), Ok(resp)) = (
                <&[u8; 16]>::try_from(challenge),
                MsChap2Response::parse(resp),
            ) else {
                return Primary::deny(method, Reason::MalformedRequest);
            };
            let ident = resp.ident;
            out.ms_error = Some((ident, MsChapErrorCode::AuthenticationFailure));
            match user {
                None => out.reason = Reason::NoSuchUser,
                Some(u) if u.is_disabled() => {
                    out.reason = Reason::AccountDisabled;
                    out.ms_error = Some((ident, MsChapErrorCode::AccountDisabled));
                }
                Some(u) => {
                    if let Some(ok) = u.verify_mschapv2(
                        name_bytes,
                        challenge,
                        &resp.peer_challenge,
                        &resp.nt_response,
                    ) {
                        out.ms_error = None;
                        return granted(
                            out,
                            Grant {
                                ms_chap2: Some(Box::new((ident, ok))),
                                policy: None,
                            },
                        );
                    }
                }
            }
        }
        Method::Eap => return Primary::deny(method, Reason::EapTypeNotProcessed),
        _ => return Primary::deny(method, Reason::InvalidAuthType),
    }
    out
}
