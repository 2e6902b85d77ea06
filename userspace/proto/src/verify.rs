//! Request verification: the step that turns untrusted bytes into a request the server
//! may act on.

use core::ops::Deref;

use crate::attr::{AttrType, Code};
use crate::crypto::{self, SharedSecret};
use crate::error::VerifyError;
use crate::raw::RawPacket;

/// What [`verify_request`] demands beyond the RFCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyPolicy {
    /// Require a Message-Authenticator in every Access-Request (Blast-RADIUS hardening,
    /// CVE-2024-3596). Default `true`. When `false`, a missing one is tolerated for
    /// plain PAP/CHAP requests, but a present one must still verify, and requests
    /// with Proxy-State or EAP-Message must still carry one.
    pub require_message_authenticator: bool,
}

impl VerifyPolicy {
    /// The policy with `require_message_authenticator` set as given.
    pub const fn with_message_authenticator_required(mut self, required: bool) -> Self {
        self.require_message_authenticator = required;
        self
    }
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            require_message_authenticator: true,
        }
    }
}

/// A request whose structure, attribute rules and authenticators were verified with
/// the client's shared secret. Only [`verify_request`] creates one.
///
/// Dereferences to the [`RawPacket`] for the read accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedRequest<'a> {
    packet: RawPacket<'a>,
    has_message_authenticator: bool,
}

impl<'a> VerifiedRequest<'a> {
    /// The underlying packet.
    pub fn packet(&self) -> RawPacket<'a> {
        self.packet
    }

    /// Whether the request carried a (valid) Message-Authenticator.
    pub fn has_message_authenticator(&self) -> bool {
        self.has_message_authenticator
    }

    /// The Request Authenticator, which replies are computed over.
    pub fn request_authenticator(&self) -> &'a [u8; 16] {
        self.packet.authenticator()
    }
}

impl<'a> Deref for VerifiedRequest<'a> {
    type Target = RawPacket<'a>;

    fn deref(&self) -> &RawPacket<'a> {
        &self.packet
    }
}

/// Verify a request received from a client that shares `secret`.
///
/// * Access-Request: Message-Authenticator present and valid. If
///   `policy.require_message_authenticator` is false a missing one is allowed, except
///   with Proxy-State (always refused: Blast-RADIUS) or EAP-Message (RFC 3579 §3.3).
///   (The Request Authenticator of an Access-Request is a nonce and cannot be checked.)
/// * Status-Server: Message-Authenticator required and valid (RFC 5997 §3).
/// * Accounting-Request: Request Authenticator valid (RFC 2866 §3); a
///   Message-Authenticator, if present, valid too (computed over a zero Authenticator
///   field, see [`crate::crypto`]).
/// * Any other code: [`VerifyError::UnsupportedCode`].
///
/// The attribute rules ([`RawPacket::check_attribute_rules`]) are enforced first.
/// Allocation-free.
pub fn verify_request<'a>(
    packet: RawPacket<'a>,
    secret: &SharedSecret,
    policy: &VerifyPolicy,
) -> Result<VerifiedRequest<'a>, VerifyError> {
    let code = packet.code();
    if !matches!(
        code,
        Code::ACCESS_REQUEST | Code::STATUS_SERVER | Code::ACCOUNTING_REQUEST
    ) {
        return Err(VerifyError::UnsupportedCode { code });
    }

    let has_ma = packet.contains(AttrType::MESSAGE_AUTHENTICATOR);
    let has_proxy_state = packet.contains(AttrType::PROXY_STATE);
    let has_eap = packet.contains(AttrType::EAP_MESSAGE);
    if !has_ma {
        match code {
            Code::STATUS_SERVER => return Err(VerifyError::MissingMessageAuthenticator { code }),
            Code::ACCESS_REQUEST if has_proxy_state => {
                return Err(VerifyError::ProxyStateWithoutMessageAuthenticator)
            }
            Code::ACCESS_REQUEST | Code::ACCOUNTING_REQUEST if has_eap => {
                return Err(VerifyError::EapWithoutMessageAuthenticator)
            }
            Code::ACCESS_REQUEST if policy.require_message_authenticator => {
                return Err(VerifyError::MissingMessageAuthenticator { code })
            }
            _ => {}
        }
    }

    packet.check_attribute_rules()?;

    if has_ma {
        let field = crypto::ma_authenticator_field(code, packet.authenticator());
        if crypto::verify_message_authenticator(&packet, &field, secret) != Some(true) {
            return Err(VerifyError::BadMessageAuthenticator);
        }
    }
    if code == Code::ACCOUNTING_REQUEST
        && !crypto::verify_accounting_request_authenticator(&packet, secret)
    {
        return Err(VerifyError::BadRequestAuthenticator);
    }

    Ok(VerifiedRequest {
        packet,
        has_message_authenticator: has_ma,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::builder::PacketBuilder;
    use crate::crypto::tests::{secret, RFC5997_STATUS_SERVER};
    use crate::error::DecodeError;
    use crate::raw::tests::{unhex, RFC2865_7_1_REQUEST};

    fn lenient() -> VerifyPolicy {
        VerifyPolicy::default().with_message_authenticator_required(false)
    }

    fn verify(buf: &[u8], policy: &VerifyPolicy) -> Result<bool, VerifyError> {
        let p = RawPacket::decode(buf).unwrap();
        verify_request(p, &secret(), policy).map(|v| v.has_message_authenticator())
    }

    fn access_request(ma: bool, extra: &[(AttrType, &[u8])]) -> Vec<u8> {
        let mut b = PacketBuilder::new(Code::ACCESS_REQUEST, 3);
        if ma {
            b.add_message_authenticator().unwrap();
        }
        b.push(AttrType::USER_NAME, b"bob").unwrap();
        for (t, v) in extra {
            b.push(*t, v).unwrap();
        }
        b.finish_access_request(&secret(), [0x11; 16]).to_vec()
    }

    #[test]
    fn rfc2865_request_needs_lenient_policy() {
        let buf = unhex(RFC2865_7_1_REQUEST);
        assert_eq!(
            verify(&buf, &VerifyPolicy::default()),
            Err(VerifyError::MissingMessageAuthenticator {
                code: Code::ACCESS_REQUEST
            })
        );
        assert_eq!(verify(&buf, &lenient()), Ok(false));
    }

    #[test]
    fn rfc5997_status_server_verifies() {
        let buf = unhex(RFC5997_STATUS_SERVER);
        let p = RawPacket::decode(&buf).unwrap();
        let v = verify_request(p, &secret(), &VerifyPolicy::default()).unwrap();
        assert!(v.has_message_authenticator());
        assert_eq!(v.identifier(), 218);
        assert_eq!(v.request_authenticator(), p.authenticator());
        assert_eq!(v.packet(), p);
        let other = SharedSecret::new(b"nope").unwrap();
        assert_eq!(
            verify_request(p, &other, &VerifyPolicy::default()),
            Err(VerifyError::BadMessageAuthenticator)
        );
    }

    #[test]
    fn status_server_without_ma() {
        let mut b = PacketBuilder::new(Code::STATUS_SERVER, 1);
        b.push(AttrType::NAS_IDENTIFIER, b"x").unwrap();
        let buf = b.finish_access_request(&secret(), [1; 16]).to_vec();
        assert_eq!(
            verify(&buf, &lenient()),
            Err(VerifyError::MissingMessageAuthenticator {
                code: Code::STATUS_SERVER
            })
        );
    }

    #[test]
    fn access_request_policies() {
        assert_eq!(
            verify(&access_request(true, &[]), &VerifyPolicy::default()),
            Ok(true)
        );
        assert_eq!(verify(&access_request(true, &[]), &lenient()), Ok(true));
        assert_eq!(verify(&access_request(false, &[]), &lenient()), Ok(false));
        // Blast-RADIUS: Proxy-State without MA is refused whatever the policy.
        let ps = access_request(false, &[(AttrType::PROXY_STATE, b"p")]);
        assert_eq!(
            verify(&ps, &lenient()),
            Err(VerifyError::ProxyStateWithoutMessageAuthenticator)
        );
        let eap = access_request(false, &[(AttrType::EAP_MESSAGE, &[2, 1, 0, 4])]);
        assert_eq!(
            verify(&eap, &lenient()),
            Err(VerifyError::EapWithoutMessageAuthenticator)
        );
        // With MA both are fine.
        let ok = access_request(
            true,
            &[
                (AttrType::PROXY_STATE, b"p"),
                (AttrType::EAP_MESSAGE, &[2, 1, 0, 4]),
            ],
        );
        assert_eq!(verify(&ok, &VerifyPolicy::default()), Ok(true));
    }

    #[test]
    fn tampering_is_detected() {
        let mut buf = access_request(true, &[]);
        let last = buf.len() - 1;
        buf[last] ^= 0x20; // flip a bit in User-Name
        assert_eq!(
            verify(&buf, &VerifyPolicy::default()),
            Err(VerifyError::BadMessageAuthenticator)
        );
        // A present-but-wrong MA is refused even under the lenient policy.
        assert_eq!(
            verify(&buf, &lenient()),
            Err(VerifyError::BadMessageAuthenticator)
        );
        // Authenticator field tampering breaks the MA too.
        let mut buf = access_request(true, &[]);
        buf[4] ^= 1;
        assert_eq!(
            verify(&buf, &lenient()),
            Err(VerifyError::BadMessageAuthenticator)
        );
    }

    #[test]
    fn accounting() {
        for with_ma in [false, true] {
            let mut b = PacketBuilder::new(Code::ACCOUNTING_REQUEST, 9);
            if with_ma {
                b.add_message_authenticator().unwrap();
            }
            b.push_u32(AttrType::ACCT_STATUS_TYPE, 1).unwrap();
            b.push(AttrType::ACCT_SESSION_ID, b"abc").unwrap();
            let buf = b.finish_accounting_request(&secret()).to_vec();
            assert_eq!(verify(&buf, &VerifyPolicy::default()), Ok(with_ma));
            // The Message-Authenticator is computed over a zero Authenticator field, so
            // tampering with that field is caught by the Request Authenticator.
            let mut bad = buf.clone();
            bad[4] ^= 1;
            assert_eq!(
                verify(&bad, &VerifyPolicy::default()),
                Err(VerifyError::BadRequestAuthenticator)
            );
            // Tampering with an attribute is caught by the Message-Authenticator first.
            let mut bad = buf.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let expected = if with_ma {
                VerifyError::BadMessageAuthenticator
            } else {
                VerifyError::BadRequestAuthenticator
            };
            assert_eq!(verify(&bad, &VerifyPolicy::default()), Err(expected));
        }
    }

    #[test]
    fn unsupported_and_malformed() {
        let mut b = PacketBuilder::new(Code::COA_REQUEST, 1);
        let buf = b.finish_accounting_request(&secret()).to_vec();
        assert_eq!(
            verify(&buf, &VerifyPolicy::default()),
            Err(VerifyError::UnsupportedCode {
                code: Code::COA_REQUEST
            })
        );
        let mut b = PacketBuilder::new(Code::ACCOUNTING_REQUEST, 1);
        b.push(AttrType::ACCT_SESSION_ID, b"x").unwrap();
        let buf = b.finish_accounting_request(&secret()).to_vec();
        let err = verify(&buf, &VerifyPolicy::default()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::Malformed {
                source: DecodeError::MissingAttribute {
                    attr_type: AttrType::ACCT_STATUS_TYPE,
                    code: Code::ACCOUNTING_REQUEST
                }
            }
        );
        assert_eq!(err.reason(), "missing_attribute");
    }
}
