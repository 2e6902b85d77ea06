//! Encoding Access-Accept / Access-Reject / Access-Challenge replies, either straight from the
//! verified request (the usual path: nothing is copied) or later from an owned [`ReplyTo`]
//! (a request answered after a wait, e.g. for a second factor).

use std::sync::Arc;

use portcullis_auth::mschapv2::{format_error, MsChapErrorCode};
use portcullis_proto::{ms, AttrType, Code, PacketBuilder, VerifiedRequest, MICROSOFT};
use rand::RngCore;

use super::clients::Client;
use super::dedup::Key;
use super::primary::Grant;

/// What the reply says.
pub enum Answer<'a> {
    Accept(&'a Grant),
    Reject {
        ms_error: Option<(u8, MsChapErrorCode)>,
        message: Option<&'a str>,
    },
    Challenge {
        state: &'a [u8],
        prompt: &'a str,
    },
}

impl Answer<'_> {
    fn code(&self) -> Code {
        match self {
            Answer::Accept(_) => Code::ACCESS_ACCEPT,
            Answer::Reject { .. } => Code::ACCESS_REJECT,
            Answer::Challenge { .. } => Code::ACCESS_CHALLENGE,
        }
    }
}

/// Everything needed to answer a verified Access-Request after its datagram is gone.
#[derive(Clone)]
pub struct ReplyTo {
    /// Where the request came from (`key.from`) is where the reply goes.
    pub key: Key,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// Boxed slice, not `Vec`: 8 bytes less in every pending login.
    pub proxy_state: Box<[Box<[u8]>]>,
    pub client: Arc<Client>,
}

impl ReplyTo {
    pub fn new(request: &VerifiedRequest<'_>, key: Key, client: &Arc<Client>) -> Self {
        ReplyTo {
            key,
            identifier: request.identifier(),
            authenticator: *request.authenticator(),
            proxy_state: request
                .get_all(AttrType::PROXY_STATE)
                .map(Box::from)
                .collect(),
            client: client.clone(),
        }
    }
}

/// Encodes the reply to `request` into `buf` (recycled).
pub fn to_request(
    buf: Vec<u8>,
    request: &VerifiedRequest<'_>,
    client: &Client,
    answer: &Answer<'_>,
) -> (Vec<u8>, Result<(), portcullis_proto::Error>) {
    let mut b = PacketBuilder::reply_in(buf, answer.code(), request);
    let r = body(&mut b, client, request.authenticator(), answer)
        .and_then(|()| b.copy_proxy_state(request).map_err(Into::into));
    b.finish_reply(&client.secret, request.authenticator());
    (b.into_buffer(), r)
}

/// Encodes the reply to a request held as a [`ReplyTo`].
pub fn to_owned_request(
    buf: Vec<u8>,
    r: &ReplyTo,
    answer: &Answer<'_>,
) -> (Vec<u8>, Result<(), portcullis_proto::Error>) {
    let mut b = PacketBuilder::reply_for(buf, answer.code(), Code::ACCESS_REQUEST, r.identifier);
    let mut res = body(&mut b, &r.client, &r.authenticator, answer);
    for ps in &r.proxy_state {
        if res.is_ok() {
            res = b.push(AttrType::PROXY_STATE, ps).map_err(Into::into);
        }
    }
    b.finish_reply(&r.client.secret, &r.authenticator);
    (b.into_buffer(), res)
}

fn body(
    b: &mut PacketBuilder,
    client: &Client,
    request_authenticator: &[u8; 16],
    answer: &Answer<'_>,
) -> Result<(), portcullis_proto::Error> {
    match answer {
        Answer::Accept(grant) => {
            if let Some(ms) = &grant.ms_chap2 {
                let (ident, ok) = &**ms;
                b.push_vsa(MICROSOFT, ms::CHAP2_SUCCESS, &ok.success_attribute(*ident))?;
                let keys = ok.mppe_keys();
                let mut salts = [0u8; 4];
                rand::thread_rng().fill_bytes(&mut salts);
                // Salts must have the high bit set and differ between the two attributes.
                let s1 = [salts[0] | 0x80, salts[1]];
                let mut s2 = [salts[2] | 0x80, salts[3]];
                if s2 == s1 {
                    s2[1] ^= 1;
                }
                b.push_vsa_salt_encrypted(
                    MICROSOFT,
                    ms::MPPE_SEND_KEY,
                    keys.send_key(),
                    &client.secret,
                    request_authenticator,
                    s1,
                )?;
                b.push_vsa_salt_encrypted(
                    MICROSOFT,
                    ms::MPPE_RECV_KEY,
                    keys.recv_key(),
                    &client.secret,
                    request_authenticator,
                    s2,
                )?;
                // Encryption allowed (1), 40- or 128-bit RC4 (6): what RRAS-style NAS expect
                // (and what FreeRADIUS sends).
                b.push_vsa(MICROSOFT, ms::MPPE_ENCRYPTION_POLICY, &1u32.to_be_bytes())?;
                b.push_vsa(MICROSOFT, ms::MPPE_ENCRYPTION_TYPES, &6u32.to_be_bytes())?;
            }
            if let Some(policy) = &grant.policy {
                for a in policy.reply.iter() {
                    a.push_to(b)?;
                }
            }
        }
        Answer::Reject { ms_error, message } => {
            if let Some((ident, err)) = ms_error {
                let mut challenge = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut challenge);
                let value = format_error(*ident, *err, &challenge, err.default_message());
                b.push_vsa(MICROSOFT, ms::CHAP_ERROR, &value)?;
            }
            if let Some(m) = message {
                b.push_split(AttrType::REPLY_MESSAGE, m.as_bytes())?;
            }
        }
        Answer::Challenge { state, prompt } => {
            b.push(AttrType::STATE, state)?;
            b.push_split(AttrType::REPLY_MESSAGE, prompt.as_bytes())?;
        }
    }
    Ok(())
}
