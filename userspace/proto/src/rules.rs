//! Attribute rules: which attributes may appear how often in which packet, and which
//! value lengths each data type allows.
//!
//! Sources: RFC 2865 §5.44 (Access-* table), RFC 2866 §5.13 (Accounting table),
//! RFC 2868 §4, RFC 2869 §5.19 / RFC 3579 §3.3 (Message-Authenticator), RFC 5176 §3.6
//! (CoA / Disconnect), RFC 5997 §3 (Status-Server).
//!
//! What is enforced:
//! - every "0-1" entry of the tables for the code it belongs to ([`DecodeError::DuplicateAttribute`]);
//! - every "1" entry: Acct-Status-Type in Accounting-Request, Message-Authenticator in
//!   Status-Server ([`DecodeError::MissingAttribute`]);
//! - the "0" entries that matter for security: User-Password, CHAP-Password and
//!   CHAP-Challenge outside Access-Request, Tunnel-Password and ARAP-Password in
//!   Accounting-Request ([`DecodeError::MisplacedAttribute`]);
//! - User-Password together with CHAP-Password ([`DecodeError::PasswordAndChap`]);
//! - Message-Authenticator at most once in any packet and 16 octets long;
//! - value lengths: integer, ipaddr and date 4, ipv6addr 16, ifid 8, ipv6prefix 2..=18,
//!   tagged integer 4, User-Password a multiple of 16 in 16..=128, CHAP-Password 17,
//!   Tunnel-Password 3 + a multiple of 16; for Microsoft VSAs integer / ipaddr 4,
//!   MS-CHAP(2)-Response 50, MS-MPPE keys 2 + a multiple of 16.
//!
//! Deliberately not enforced, because deployed NASes violate them and the harm is nil:
//! the remaining "0" entries (e.g. Filter-Id in an Access-Request), "must contain
//! User-Password or CHAP-Password or State" (MS-CHAP and EAP requests carry neither),
//! "must contain NAS-IP-Address or NAS-Identifier", Acct-Session-Id being exactly one
//! (several NASes omit it from Accounting-On/Off), empty text/string values.

use crate::attr::{AttrType, Code, MICROSOFT};
use crate::dict::{self, DataType};
use crate::error::DecodeError;
use crate::raw::{RawPacket, TypeSet};

/// Quantity allowed by the RFC tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Zero,
    ZeroOrOne,
    ExactlyOne,
}

/// "0-1" attributes of the Access-Request column (RFC 2865 §5.44, RFC 2869, RFC 3162).
const ACCESS_REQUEST_ONCE: &[u8] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 19, 24, 30, 31, 32, 34, 35, 36, 60, 61, 62, 63, 55, 77, 80, 87,
    95, 96,
];
/// "0-1" attributes of the Access-Accept column (RFC 2865 §5.44, RFC 2869).
const ACCESS_ACCEPT_ONCE: &[u8] = &[
    1, 6, 7, 8, 9, 10, 12, 15, 16, 19, 20, 23, 24, 27, 28, 29, 34, 35, 36, 37, 39, 62, 63, 80, 85,
    96, 88, 100,
];
/// "0-1" attributes of the Access-Challenge column.
const ACCESS_CHALLENGE_ONCE: &[u8] = &[24, 27, 28, 80];
/// "0-1" attributes of the Accounting-Request column (RFC 2866 §5.13, RFC 2869).
const ACCOUNTING_REQUEST_ONCE: &[u8] = &[
    1, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 19, 20, 23, 27, 28, 29, 30, 31, 32, 34, 35, 36, 37, 38,
    39, 41, 42, 43, 44, 45, 46, 47, 48, 49, 52, 53, 55, 61, 62, 63, 80, 85, 87, 95, 96,
];
/// Attributes whose presence would leak or make no sense outside Access-Request.
const PASSWORDS: &[u8] = &[2, 3, 60];

const fn listed(list: &[u8], t: u8) -> bool {
    let mut i = 0;
    while i < list.len() {
        if list[i] == t {
            return true;
        }
        i += 1;
    }
    false
}

const fn once(list: &[u8], t: u8) -> Option<Quantity> {
    if listed(list, t) {
        Some(Quantity::ZeroOrOne)
    } else {
        None
    }
}

/// The rule of the tables for attribute `t` in a packet with code `code` (`None`: any number).
/// Evaluated at compile time into [`QUANTITIES`]; comparisons are on the raw octets because
/// `PartialEq` is not const.
const fn quantity(code: Code, t: AttrType) -> Option<Quantity> {
    use Quantity::*;
    let t8 = t.0;
    if t8 == AttrType::MESSAGE_AUTHENTICATOR.0 {
        return Some(if code.0 == Code::STATUS_SERVER.0 {
            ExactlyOne
        } else {
            ZeroOrOne
        });
    }
    match code {
        Code::ACCESS_REQUEST => once(ACCESS_REQUEST_ONCE, t8),
        Code::ACCESS_ACCEPT => {
            if listed(PASSWORDS, t8) {
                Some(Zero)
            } else {
                once(ACCESS_ACCEPT_ONCE, t8)
            }
        }
        Code::ACCESS_CHALLENGE => {
            if listed(PASSWORDS, t8) {
                Some(Zero)
            } else {
                once(ACCESS_CHALLENGE_ONCE, t8)
            }
        }
        Code::ACCOUNTING_REQUEST => {
            if t8 == AttrType::ACCT_STATUS_TYPE.0 {
                Some(ExactlyOne)
            } else if listed(PASSWORDS, t8)
                || t8 == AttrType::TUNNEL_PASSWORD.0
                || t8 == AttrType::ARAP_PASSWORD.0
            {
                Some(Zero)
            } else {
                once(ACCOUNTING_REQUEST_ONCE, t8)
            }
        }
        Code::DISCONNECT_REQUEST | Code::COA_REQUEST => {
            if t8 == AttrType::USER_PASSWORD.0 || t8 == AttrType::CHAP_PASSWORD.0 {
                Some(Zero)
            } else if t8 == AttrType::STATE.0 {
                Some(ZeroOrOne)
            } else {
                None
            }
        }
        // Status-Server and every other code, replies included.
        _ => {
            if listed(PASSWORDS, t8) {
                Some(Zero)
            } else {
                None
            }
        }
    }
}

/// [`quantity`] for every attribute type of one code.
const fn quantities(code: Code) -> [Option<Quantity>; 256] {
    let mut table = [None; 256];
    let mut t = 0;
    while t < 256 {
        table[t] = quantity(code, AttrType(t as u8));
        t += 1;
    }
    table
}

/// The rules per code, looked up once per attribute on every request instead of searching
/// the lists. Codes with the same rules share a table; [`quantities_for`] picks it.
static QUANTITIES: [[Option<Quantity>; 256]; 6] = [
    quantities(Code::ACCESS_REQUEST),
    quantities(Code::ACCESS_ACCEPT),
    quantities(Code::ACCESS_CHALLENGE),
    quantities(Code::ACCOUNTING_REQUEST),
    quantities(Code::STATUS_SERVER),
    quantities(Code::COA_REQUEST),
];
/// Every other code (Access-Reject, Accounting-Response, the CoA replies, unknown codes).
static OTHER_QUANTITIES: [Option<Quantity>; 256] = quantities(Code(0));

fn quantities_for(code: Code) -> &'static [Option<Quantity>; 256] {
    match code {
        Code::ACCESS_REQUEST => &QUANTITIES[0],
        Code::ACCESS_ACCEPT => &QUANTITIES[1],
        Code::ACCESS_CHALLENGE => &QUANTITIES[2],
        Code::ACCOUNTING_REQUEST => &QUANTITIES[3],
        Code::STATUS_SERVER => &QUANTITIES[4],
        Code::DISCONNECT_REQUEST | Code::COA_REQUEST => &QUANTITIES[5],
        _ => &OTHER_QUANTITIES,
    }
}

/// The attributes whose "exactly one" rule must be checked for presence.
fn required(code: Code) -> &'static [u8] {
    match code {
        Code::ACCOUNTING_REQUEST => &[40],
        Code::STATUS_SERVER => &[80],
        _ => &[],
    }
}

/// What value lengths an attribute type allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Any,
    Exactly(u8),
    /// ipv6prefix: 2..=18.
    Ipv6Prefix,
    /// A multiple of 16 in 16..=128.
    UserPassword,
    /// Tag, salt and a non-empty multiple of 16.
    TunnelPassword,
}

impl Length {
    /// The lengths a value of this data type may have (standard and vendor attributes).
    const fn of(data_type: DataType) -> Length {
        match data_type {
            // A tagged integer is one tag octet and three value octets: still 4.
            DataType::Integer | DataType::IpAddr | DataType::Date => Length::Exactly(4),
            DataType::Ipv6Addr => Length::Exactly(16),
            DataType::Ifid => Length::Exactly(8),
            DataType::Ipv6Prefix => Length::Ipv6Prefix,
            DataType::Text | DataType::Octets | DataType::Vsa => Length::Any,
        }
    }

    fn allows(self, len: usize) -> bool {
        match self {
            Length::Any => true,
            Length::Exactly(n) => len == usize::from(n),
            Length::Ipv6Prefix => (2..=18).contains(&len),
            Length::UserPassword => (16..=128).contains(&len) && len % 16 == 0,
            Length::TunnelPassword => len >= 19 && (len - 3) % 16 == 0,
        }
    }
}

const fn length_rule(t: AttrType) -> Length {
    match t {
        AttrType::USER_PASSWORD => Length::UserPassword,
        AttrType::CHAP_PASSWORD => Length::Exactly(17),
        AttrType::MESSAGE_AUTHENTICATOR => Length::Exactly(16),
        AttrType::TUNNEL_PASSWORD => Length::TunnelPassword,
        _ => match dict::const_data_type(t) {
            Some(data_type) => Length::of(data_type),
            None => Length::Any,
        },
    }
}

/// [`length_rule`] of every attribute type, computed at compile time.
static LENGTHS: [Length; 256] = {
    let mut table = [Length::Any; 256];
    let mut t = 0;
    while t < 256 {
        table[t] = length_rule(AttrType(t as u8));
        t += 1;
    }
    table
};

/// Check the length of a value against its attribute's data type.
fn check_length(t: AttrType, value: &[u8]) -> Result<(), DecodeError> {
    let len = value.len();
    if LENGTHS[usize::from(t.0)].allows(len) {
        Ok(())
    } else {
        Err(DecodeError::BadAttributeLength { attr_type: t, len })
    }
}

fn check_vendor_length(vendor: u32, vendor_type: u8, value: &[u8]) -> Result<(), DecodeError> {
    let len = value.len();
    let Some(def) = dict::vendor_attr_def(vendor, vendor_type) else {
        return Ok(());
    };
    let ok = if vendor == MICROSOFT {
        match vendor_type {
            crate::ms::CHAP_RESPONSE | crate::ms::CHAP2_RESPONSE => len == 50,
            crate::ms::MPPE_SEND_KEY | crate::ms::MPPE_RECV_KEY => len >= 18 && (len - 2) % 16 == 0,
            _ => Length::of(def.data_type).allows(len),
        }
    } else {
        Length::of(def.data_type).allows(len)
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::BadVendorAttributeLength {
            vendor,
            vendor_type,
            len,
        })
    }
}

impl RawPacket<'_> {
    /// Enforce the attribute rules of the RFC tables (see the [module docs](crate::rules)
    /// for exactly which). Never allocates; one pass over the attributes.
    pub fn check_attribute_rules(&self) -> Result<(), DecodeError> {
        let code = self.code();
        let quantities = quantities_for(code);
        // The types with a "0-1" or "1" rule met so far: a second one is a duplicate.
        let mut seen = TypeSet::default();
        for attr in self.attributes() {
            let t = attr.attr_type;
            match quantities[usize::from(t.0)] {
                Some(Quantity::Zero) => {
                    return Err(DecodeError::MisplacedAttribute { attr_type: t, code })
                }
                Some(Quantity::ZeroOrOne | Quantity::ExactlyOne) => {
                    if seen.contains(t) {
                        return Err(DecodeError::DuplicateAttribute { attr_type: t, code });
                    }
                    seen.insert(t);
                }
                None => {}
            }
            check_length(t, attr.value)?;
            if t == AttrType::VENDOR_SPECIFIC {
                if let Some((vendor, subs)) = crate::raw::split_vsa(attr.value) {
                    for (vendor_type, value) in subs {
                        check_vendor_length(vendor, vendor_type, value)?;
                    }
                }
            }
        }
        for &t in required(code) {
            if !self.contains(AttrType(t)) {
                return Err(DecodeError::MissingAttribute {
                    attr_type: AttrType(t),
                    code,
                });
            }
        }
        if code == Code::ACCESS_REQUEST
            && self.contains(AttrType::USER_PASSWORD)
            && self.contains(AttrType::CHAP_PASSWORD)
        {
            return Err(DecodeError::PasswordAndChap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Build a packet from (type, value) pairs.
    fn pkt(code: Code, attrs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = vec![code.0, 1, 0, 0];
        v.extend_from_slice(&[0; 16]);
        for (t, val) in attrs {
            v.push(*t);
            v.push(val.len() as u8 + 2);
            v.extend_from_slice(val);
        }
        let len = v.len() as u16;
        v[2..4].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn check(code: Code, attrs: &[(u8, &[u8])]) -> Result<(), DecodeError> {
        let buf = pkt(code, attrs);
        RawPacket::decode(&buf).unwrap().check_attribute_rules()
    }

    const PW: &[u8] = &[0x55; 16];
    const MA: &[u8] = &[0; 16];

    /// The rules as they read before they became tables: the tables must agree with them for
    /// every code, type and length.
    fn plain_quantity(code: Code, t: AttrType) -> Option<Quantity> {
        use Quantity::*;
        let t8 = t.0;
        if t == AttrType::MESSAGE_AUTHENTICATOR {
            return Some(if code == Code::STATUS_SERVER {
                ExactlyOne
            } else {
                ZeroOrOne
            });
        }
        match code {
            Code::ACCESS_REQUEST => ACCESS_REQUEST_ONCE.contains(&t8).then_some(ZeroOrOne),
            Code::ACCESS_ACCEPT if PASSWORDS.contains(&t8) => Some(Zero),
            Code::ACCESS_ACCEPT => ACCESS_ACCEPT_ONCE.contains(&t8).then_some(ZeroOrOne),
            Code::ACCESS_CHALLENGE if PASSWORDS.contains(&t8) => Some(Zero),
            Code::ACCESS_CHALLENGE => ACCESS_CHALLENGE_ONCE.contains(&t8).then_some(ZeroOrOne),
            Code::ACCOUNTING_REQUEST if t == AttrType::ACCT_STATUS_TYPE => Some(ExactlyOne),
            Code::ACCOUNTING_REQUEST
                if PASSWORDS.contains(&t8)
                    || t == AttrType::TUNNEL_PASSWORD
                    || t == AttrType::ARAP_PASSWORD =>
            {
                Some(Zero)
            }
            Code::ACCOUNTING_REQUEST => ACCOUNTING_REQUEST_ONCE.contains(&t8).then_some(ZeroOrOne),
            Code::DISCONNECT_REQUEST | Code::COA_REQUEST
                if t == AttrType::USER_PASSWORD || t == AttrType::CHAP_PASSWORD =>
            {
                Some(Zero)
            }
            Code::DISCONNECT_REQUEST | Code::COA_REQUEST => {
                (t == AttrType::STATE).then_some(ZeroOrOne)
            }
            _ => PASSWORDS.contains(&t8).then_some(Zero),
        }
    }

    fn plain_length_ok(t: AttrType, len: usize) -> bool {
        match t {
            AttrType::USER_PASSWORD => (16..=128).contains(&len) && len % 16 == 0,
            AttrType::CHAP_PASSWORD => len == 17,
            AttrType::MESSAGE_AUTHENTICATOR => len == 16,
            AttrType::TUNNEL_PASSWORD => len >= 19 && (len - 3) % 16 == 0,
            _ => dict::attr_def(t).is_none_or(|d| match d.data_type {
                DataType::Integer | DataType::IpAddr | DataType::Date => len == 4,
                DataType::Ipv6Addr => len == 16,
                DataType::Ifid => len == 8,
                DataType::Ipv6Prefix => (2..=18).contains(&len),
                DataType::Text | DataType::Octets | DataType::Vsa => true,
            }),
        }
    }

    #[test]
    fn tables_agree_with_the_plain_rules() {
        for c in 0..=255u8 {
            for t in 0..=255u8 {
                assert_eq!(
                    quantities_for(Code(c))[usize::from(t)],
                    plain_quantity(Code(c), AttrType(t)),
                    "code {c} type {t}"
                );
            }
        }
        let value = [0u8; 253];
        for t in 0..=255u8 {
            for len in 0..=253 {
                assert_eq!(
                    check_length(AttrType(t), &value[..len]).is_ok(),
                    plain_length_ok(AttrType(t), len),
                    "type {t} length {len}"
                );
            }
        }
    }

    #[test]
    fn rfc_examples_pass() {
        let buf = crate::raw::tests::unhex(crate::raw::tests::RFC2865_7_1_REQUEST);
        RawPacket::decode(&buf)
            .unwrap()
            .check_attribute_rules()
            .unwrap();
    }

    #[test]
    fn duplicates() {
        assert_eq!(
            check(Code::ACCESS_REQUEST, &[(1, b"a"), (1, b"b")]),
            Err(DecodeError::DuplicateAttribute {
                attr_type: AttrType::USER_NAME,
                code: Code::ACCESS_REQUEST
            })
        );
        for t in [2u8, 3, 4, 24, 80] {
            let v: &[u8] = match t {
                2 => PW,
                3 => &[0; 17],
                4 => &[1, 2, 3, 4],
                80 => MA,
                _ => b"s",
            };
            assert!(matches!(
                check(Code::ACCESS_REQUEST, &[(t, v), (t, v)]),
                Err(DecodeError::DuplicateAttribute { .. })
            ));
        }
        // Message-Authenticator at most once in any packet.
        assert!(matches!(
            check(Code::ACCESS_ACCEPT, &[(80, MA), (80, MA)]),
            Err(DecodeError::DuplicateAttribute { .. })
        ));
        // Proxy-State, Class, Reply-Message, VSAs may repeat.
        check(
            Code::ACCESS_REQUEST,
            &[
                (33, b"x"),
                (33, b"y"),
                (26, b"\0\0\0\x09\x01\x03z"),
                (26, b"\0\0\0\x09\x01\x03z"),
            ],
        )
        .unwrap();
        check(
            Code::ACCESS_ACCEPT,
            &[(25, b"c"), (25, b"d"), (18, b"m"), (18, b"n")],
        )
        .unwrap();
    }

    #[test]
    fn misplaced() {
        assert_eq!(
            check(Code::ACCOUNTING_REQUEST, &[(40, &[0, 0, 0, 1]), (2, PW)]),
            Err(DecodeError::MisplacedAttribute {
                attr_type: AttrType::USER_PASSWORD,
                code: Code::ACCOUNTING_REQUEST
            })
        );
        for t in [3u8, 60] {
            let v: &[u8] = if t == 3 { &[0; 17] } else { &[1; 16] };
            assert!(matches!(
                check(Code::ACCOUNTING_REQUEST, &[(40, &[0, 0, 0, 1]), (t, v)]),
                Err(DecodeError::MisplacedAttribute { .. })
            ));
        }
        for code in [
            Code::ACCESS_ACCEPT,
            Code::ACCESS_REJECT,
            Code::ACCESS_CHALLENGE,
        ] {
            assert_eq!(
                check(code, &[(2, PW)]),
                Err(DecodeError::MisplacedAttribute {
                    attr_type: AttrType::USER_PASSWORD,
                    code
                })
            );
        }
        assert!(matches!(
            check(Code::COA_REQUEST, &[(2, PW)]),
            Err(DecodeError::MisplacedAttribute { .. })
        ));
    }

    #[test]
    fn missing() {
        assert_eq!(
            check(Code::ACCOUNTING_REQUEST, &[(44, b"sess")]),
            Err(DecodeError::MissingAttribute {
                attr_type: AttrType::ACCT_STATUS_TYPE,
                code: Code::ACCOUNTING_REQUEST
            })
        );
        assert_eq!(
            check(Code::STATUS_SERVER, &[(32, b"nas")]),
            Err(DecodeError::MissingAttribute {
                attr_type: AttrType::MESSAGE_AUTHENTICATOR,
                code: Code::STATUS_SERVER
            })
        );
        check(Code::STATUS_SERVER, &[(80, MA)]).unwrap();
    }

    #[test]
    fn password_and_chap() {
        assert_eq!(
            check(Code::ACCESS_REQUEST, &[(2, PW), (3, &[0; 17])]),
            Err(DecodeError::PasswordAndChap)
        );
    }

    #[test]
    fn lengths() {
        let bad = |t: u8, v: &[u8]| {
            assert_eq!(
                check(Code::ACCESS_REQUEST, &[(t, v)]),
                Err(DecodeError::BadAttributeLength {
                    attr_type: AttrType(t),
                    len: v.len()
                }),
                "type {t} len {}",
                v.len()
            );
        };
        bad(2, &[0; 15]);
        bad(2, &[0; 17]);
        bad(2, &[0; 144]);
        bad(2, &[]);
        bad(3, &[0; 16]);
        bad(80, &[0; 15]);
        bad(4, &[1, 2, 3]);
        bad(5, &[0; 5]);
        bad(55, &[0; 3]);
        bad(95, &[0; 4]);
        bad(96, &[0; 4]);
        bad(97, &[0; 1]);
        bad(97, &[0; 19]);
        bad(64, &[0; 3]);
        bad(69, &[0; 18]);
        for n in (16..=128).step_by(16) {
            check(Code::ACCESS_REQUEST, &[(2, &vec![0; n])]).unwrap();
        }
        check(
            Code::ACCESS_REQUEST,
            &[(97, &[0, 64, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0])],
        )
        .unwrap();
        // Unknown attributes have no length rule.
        check(Code::ACCESS_REQUEST, &[(250, &[])]).unwrap();
    }

    #[test]
    fn vendor_lengths() {
        let vsa = |t: u8, v: &[u8]| {
            let mut out = vec![0, 0, 1, 0x37, t, v.len() as u8 + 2];
            out.extend_from_slice(v);
            out
        };
        assert_eq!(
            check(Code::ACCESS_ACCEPT, &[(26, &vsa(7, &[0, 0, 1]))]),
            Err(DecodeError::BadVendorAttributeLength {
                vendor: 311,
                vendor_type: 7,
                len: 3
            })
        );
        assert!(check(Code::ACCESS_ACCEPT, &[(26, &vsa(16, &[0x80; 17]))]).is_err());
        check(Code::ACCESS_ACCEPT, &[(26, &vsa(16, &[0x80; 34]))]).unwrap();
        assert!(check(Code::ACCESS_REQUEST, &[(26, &vsa(25, &[0; 49]))]).is_err());
        check(Code::ACCESS_REQUEST, &[(26, &vsa(25, &[0; 50]))]).unwrap();
        // Unknown vendors and non-conforming VSAs are not checked.
        check(Code::ACCESS_REQUEST, &[(26, &[0, 0, 0, 9, 7, 3, 0])]).unwrap();
        check(Code::ACCESS_REQUEST, &[(26, &[0xff, 1])]).unwrap();
    }
}
