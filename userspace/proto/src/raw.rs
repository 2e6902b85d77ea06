//! Zero-copy, strict view of a received datagram.

use core::fmt;

use crate::attr::{AttrType, Code};
use crate::error::DecodeError;

/// Octets in the RADIUS header (Code, Identifier, Length, Authenticator).
pub const HEADER_LEN: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value (255 minus the Type and Length octets).
pub const MAX_ATTR_VALUE_LEN: usize = 253;
/// Largest value of one vendor sub-attribute in the RFC 2865 §5.26 format.
pub const MAX_VSA_VALUE_LEN: usize = MAX_ATTR_VALUE_LEN - 6;

/// A structurally valid RADIUS packet borrowed from a receive buffer.
///
/// Created only by [`RawPacket::decode`], so holding one proves that the header Length
/// is in 20..=4096 and fits the datagram, and that the attributes tile the packet
/// exactly. It proves nothing about authenticity: see [`crate::verify_request`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    bytes: &'a [u8],
    authenticator: &'a [u8; 16],
    /// The attribute types present, noted by the walk `decode` makes anyway: a request is
    /// asked for many attributes it does not carry (State, EAP-Message, Proxy-State, ...),
    /// and each such question would otherwise be a walk over all of them.
    present: TypeSet,
    /// Offset of the first attribute of each [`INDEXED`] type (0: none), so that `get` finds
    /// those without a walk.
    first: [u16; INDEXED],
}

/// `decode` keeps the position of the first attribute of types 1 to `INDEXED`: User-Name,
/// User-Password, CHAP-Password and NAS-IP-Address. Every Access-Request is asked for them
/// (User-Name more than once), and they are often far from the front.
const INDEXED: usize = 4;

/// Slot of `t` in [`RawPacket::first`], when it is one of the indexed types.
fn indexed(t: AttrType) -> Option<usize> {
    let t = usize::from(t.0);
    (1..=INDEXED).contains(&t).then(|| t - 1)
}

/// A set of attribute types (one bit per type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TypeSet([u64; 4]);

impl TypeSet {
    pub(crate) fn insert(&mut self, t: AttrType) {
        self.0[usize::from(t.0 >> 6)] |= 1 << (t.0 & 63);
    }

    pub(crate) fn contains(&self, t: AttrType) -> bool {
        self.0[usize::from(t.0 >> 6)] & (1 << (t.0 & 63)) != 0
    }
}

impl<'a> RawPacket<'a> {
    /// Strictly decode a datagram.
    ///
    /// Octets past the header Length field are padding (RFC 2865 §3) and are ignored:
    /// [`bytes`](Self::bytes) returns exactly Length octets. Never allocates.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((header, _)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::TooShort { len: buf.len() });
        };
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len < HEADER_LEN {
            return Err(DecodeError::BadLength { len });
        }
        if len > MAX_PACKET_LEN {
            return Err(DecodeError::TooLong { len });
        }
        let Some(bytes) = buf.get(..len) else {
            return Err(DecodeError::LengthMismatch {
                header: len,
                datagram: buf.len(),
            });
        };
        let Some((_, authenticator)) = header.split_last_chunk::<16>() else {
            return Err(DecodeError::TooShort { len: buf.len() });
        };
        let mut present = TypeSet::default();
        let mut first = [0u16; INDEXED];
        let mut pos = HEADER_LEN;
        while pos < len {
            let attr_type = AttrType(bytes[pos]);
            let Some(&alen) = bytes.get(pos + 1) else {
                return Err(DecodeError::AttrOverrun {
                    offset: pos,
                    attr_type,
                });
            };
            let alen = usize::from(alen);
            if alen < 2 {
                return Err(DecodeError::AttrTooShort {
                    offset: pos,
                    attr_type,
                });
            }
            if pos + alen > len {
                return Err(DecodeError::AttrOverrun {
                    offset: pos,
                    attr_type,
                });
            }
            if let Some(i) = indexed(attr_type) {
                if first[i] == 0 {
                    // pos < len <= MAX_PACKET_LEN fits in a u16.
                    first[i] = pos as u16;
                }
            }
            present.insert(attr_type);
            pos += alen;
        }
        Ok(Self {
            bytes,
            authenticator,
            present,
            first,
        })
    }

    /// Packet code.
    pub fn code(&self) -> Code {
        Code(self.bytes[0])
    }

    /// Packet identifier.
    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    /// Value of the header Length field, which is also `bytes().len()`.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a packet has at least its header. (Present for clippy's sake.)
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The Authenticator field.
    pub fn authenticator(&self) -> &'a [u8; 16] {
        self.authenticator
    }

    /// Exactly Length octets of the packet (padding excluded).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attribute area (everything after the header).
    pub fn attribute_bytes(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }

    /// All attributes in wire order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            pos: HEADER_LEN,
        }
    }

    /// Value of the first attribute of a type.
    pub fn get(&self, attr_type: AttrType) -> Option<&'a [u8]> {
        if !self.contains(attr_type) {
            return None;
        }
        if let Some(i) = indexed(attr_type) {
            return Attributes {
                bytes: self.bytes,
                pos: usize::from(self.first[i]),
            }
            .next()
            .map(|a| a.value);
        }
        self.attributes()
            .find(|a| a.attr_type == attr_type)
            .map(|a| a.value)
    }

    /// Values of all attributes of a type, in wire order.
    pub fn get_all(&self, attr_type: AttrType) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes_if_any(attr_type)
            .filter(move |a| a.attr_type == attr_type)
            .map(|a| a.value)
    }

    /// True if at least one attribute of this type is present. (No walk: `decode` noted
    /// the types.)
    pub fn contains(&self, attr_type: AttrType) -> bool {
        self.present.contains(attr_type)
    }

    /// Vendor sub-attributes of every conforming Vendor-Specific attribute, in wire
    /// order.
    ///
    /// Vendor-Specific attributes that do not follow the RFC 2865 §5.26 recommended
    /// format (see [`split_vsa`]) are not an error: they are skipped here, remain
    /// visible through [`attributes`](Self::attributes) and round-trip unchanged
    /// through [`crate::Packet`].
    pub fn vsas(&self) -> Vsas<'a> {
        Vsas {
            attrs: self.attributes_if_any(AttrType::VENDOR_SPECIFIC),
            current: None,
        }
    }

    /// All attributes, or none when no attribute of type `t` is present: an iterator that
    /// only looks for `t` need not walk the packet then.
    fn attributes_if_any(&self, t: AttrType) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            pos: if self.contains(t) {
                HEADER_LEN
            } else {
                self.bytes.len()
            },
        }
    }

    /// Value of the first vendor sub-attribute with this vendor id and type.
    pub fn get_vsa(&self, vendor: u32, vendor_type: u8) -> Option<&'a [u8]> {
        self.vsas()
            .find(|v| v.vendor == vendor && v.vendor_type == vendor_type)
            .map(|v| v.value)
    }

    /// Values of all vendor sub-attributes with this vendor id and type.
    pub fn get_all_vsa(&self, vendor: u32, vendor_type: u8) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.vsas()
            .filter(move |v| v.vendor == vendor && v.vendor_type == vendor_type)
            .map(|v| v.value)
    }
}

impl fmt::Debug for RawPacket<'_> {
    /// Safe to log: sensitive attributes print as `<hidden>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Attrs<'p>(RawPacket<'p>);
        impl fmt::Debug for Attrs<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .attributes()
                            .map(|a| crate::dict::display_attr(a.attr_type, a.value)),
                    )
                    .finish()
            }
        }
        f.debug_struct("RawPacket")
            .field("code", &self.code())
            .field("identifier", &self.identifier())
            .field("length", &self.len())
            .field("attributes", &Attrs(*self))
            .finish()
    }
}

/// One attribute seen in a [`RawPacket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// Attribute type.
    pub attr_type: AttrType,
    /// Attribute value (Length - 2 octets).
    pub value: &'a [u8],
    /// Offset of the attribute's Type octet from the start of the packet.
    pub offset: usize,
}

/// Iterator over the attributes of a [`RawPacket`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        // The walk was validated by `RawPacket::decode`; `get` keeps it panic-free anyway.
        let offset = self.pos;
        let attr_type = AttrType(*self.bytes.get(offset)?);
        let alen = usize::from(*self.bytes.get(offset + 1)?);
        let value = self.bytes.get(offset + 2..offset + alen.max(2))?;
        self.pos = offset + alen.max(2);
        Some(RawAttr {
            attr_type,
            value,
            offset,
        })
    }
}

/// One vendor sub-attribute of a conforming Vendor-Specific attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawVsa<'a> {
    /// SMI Private Enterprise Code.
    pub vendor: u32,
    /// Vendor-assigned attribute number.
    pub vendor_type: u8,
    /// Sub-attribute value.
    pub value: &'a [u8],
    /// Offset of the enclosing Vendor-Specific attribute in the packet.
    pub offset: usize,
}

/// Iterator returned by [`RawPacket::vsas`].
#[derive(Debug, Clone)]
pub struct Vsas<'a> {
    attrs: Attributes<'a>,
    current: Option<(u32, VsaSubAttrs<'a>, usize)>,
}

impl<'a> Iterator for Vsas<'a> {
    type Item = RawVsa<'a>;

    fn next(&mut self) -> Option<RawVsa<'a>> {
        loop {
            if let Some((vendor, subs, offset)) = &mut self.current {
                if let Some((vendor_type, value)) = subs.next() {
                    return Some(RawVsa {
                        vendor: *vendor,
                        vendor_type,
                        value,
                        offset: *offset,
                    });
                }
                self.current = None;
            }
            let attr = self.attrs.next()?;
            if attr.attr_type == AttrType::VENDOR_SPECIFIC {
                if let Some((vendor, subs)) = split_vsa(attr.value) {
                    self.current = Some((vendor, subs, attr.offset));
                }
            }
        }
    }
}

/// Split a Vendor-Specific value in the RFC 2865 §5.26 recommended format.
///
/// Conforming means: at least 6 octets; a Vendor-Id whose high-order octet is 0; then
/// one or more `vendor-type, vendor-length, data` sub-attributes with vendor-length
/// >= 2 that tile the rest exactly. Returns `None` for anything else.
pub fn split_vsa(value: &[u8]) -> Option<(u32, VsaSubAttrs<'_>)> {
    let (id, rest) = value.split_first_chunk::<4>()?;
    if id[0] != 0 || rest.len() < 2 {
        return None;
    }
    let mut pos = 0;
    while pos < rest.len() {
        let vlen = usize::from(*rest.get(pos + 1)?);
        if vlen < 2 || pos + vlen > rest.len() {
            return None;
        }
        pos += vlen;
    }
    Some((u32::from_be_bytes(*id), VsaSubAttrs { rest, pos: 0 }))
}

/// Sub-attributes of one conforming Vendor-Specific value: `(vendor_type, value)`.
#[derive(Debug, Clone)]
pub struct VsaSubAttrs<'a> {
    rest: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for VsaSubAttrs<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let t = *self.rest.get(self.pos)?;
        let vlen = usize::from(*self.rest.get(self.pos + 1)?).max(2);
        let value = self.rest.get(self.pos + 2..self.pos + vlen)?;
        self.pos += vlen;
        Some((t, value))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 2865 §7.1 Access-Request ("nemo", secret "xyzzy5461", password "arctangent").
    pub(crate) const RFC2865_7_1_REQUEST: &str = "01000038 0f403f9473978057bd83d5cb98f4227a \
        01066e656d6f 02120dbe708d93d413ce3196e43f782a0aee 0406c0a80110 050600000003";

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn header(code: u8, len: u16) -> Vec<u8> {
        let mut v = vec![code, 7];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0xAA; 16]);
        v
    }

    #[test]
    fn decodes_rfc2865_example() {
        let buf = unhex(RFC2865_7_1_REQUEST);
        let p = RawPacket::decode(&buf).unwrap();
        assert_eq!(p.code(), Code::ACCESS_REQUEST);
        assert_eq!(p.identifier(), 0);
        assert_eq!(p.len(), 56);
        assert_eq!(p.authenticator()[0], 0x0f);
        assert_eq!(p.get(AttrType::USER_NAME), Some(&b"nemo"[..]));
        assert_eq!(
            p.get(AttrType::NAS_IP_ADDRESS),
            Some(&[192, 168, 1, 16][..])
        );
        assert_eq!(p.get(AttrType::NAS_PORT), Some(&[0, 0, 0, 3][..]));
        let offsets: Vec<usize> = p.attributes().map(|a| a.offset).collect();
        assert_eq!(offsets, vec![20, 26, 44, 50]);
        assert!(!p.contains(AttrType::STATE));
        assert_eq!(p.get(AttrType::STATE), None);
        assert_eq!(p.get_all(AttrType::STATE).count(), 0);
        assert!(p.contains(AttrType::NAS_PORT));
        // The set of present types and the positions kept agree with a walk, for every type.
        for t in 0..=255 {
            let t = AttrType(t);
            assert_eq!(p.contains(t), p.attributes().any(|a| a.attr_type == t));
            let walked = p.attributes().find(|a| a.attr_type == t).map(|a| a.value);
            assert_eq!(p.get(t), walked, "{t:?}");
        }
        assert!(!p.is_empty());
    }

    #[test]
    fn get_finds_the_first_of_repeated_attributes() {
        let mut p = header(1, 0);
        p.extend_from_slice(&[5, 6, 0, 0, 0, 1, 1, 3, b'a', 4, 6, 1, 2, 3, 4, 1, 3, b'b']);
        p.extend_from_slice(&[4, 6, 5, 6, 7, 8]);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let raw = RawPacket::decode(&p).unwrap();
        assert_eq!(raw.get(AttrType::USER_NAME), Some(&b"a"[..]));
        assert_eq!(raw.get(AttrType::NAS_IP_ADDRESS), Some(&[1, 2, 3, 4][..]));
        assert_eq!(raw.get(AttrType::USER_PASSWORD), None);
        assert_eq!(raw.get_all(AttrType::USER_NAME).count(), 2);
    }

    #[test]
    fn padding_is_ignored() {
        let mut buf = unhex(RFC2865_7_1_REQUEST);
        buf.extend_from_slice(&[0xFF; 9]);
        let p = RawPacket::decode(&buf).unwrap();
        assert_eq!(p.bytes().len(), 56);
        assert_eq!(p.attributes().count(), 4);
    }

    #[test]
    fn every_structural_error() {
        assert_eq!(
            RawPacket::decode(&[1; 19]),
            Err(DecodeError::TooShort { len: 19 })
        );
        assert_eq!(
            RawPacket::decode(&header(1, 19)),
            Err(DecodeError::BadLength { len: 19 })
        );
        let mut big = header(1, 4097);
        big.resize(5000, 0);
        assert_eq!(
            RawPacket::decode(&big),
            Err(DecodeError::TooLong { len: 4097 })
        );
        assert_eq!(
            RawPacket::decode(&header(1, 30)),
            Err(DecodeError::LengthMismatch {
                header: 30,
                datagram: 20
            })
        );
        // Attribute length 1.
        let mut p = header(1, 23);
        p.extend_from_slice(&[1, 1, 0]);
        assert_eq!(
            RawPacket::decode(&p),
            Err(DecodeError::AttrTooShort {
                offset: 20,
                attr_type: AttrType(1)
            })
        );
        // Attribute running past Length (even if the datagram has more octets).
        let mut p = header(1, 24);
        p.extend_from_slice(&[1, 6, b'a', b'b', b'c', b'd']);
        assert_eq!(
            RawPacket::decode(&p),
            Err(DecodeError::AttrOverrun {
                offset: 20,
                attr_type: AttrType(1)
            })
        );
        // A lone Type octet at the end.
        let mut p = header(1, 25);
        p.extend_from_slice(&[1, 4, b'a', b'b', 18]);
        assert_eq!(
            RawPacket::decode(&p),
            Err(DecodeError::AttrOverrun {
                offset: 24,
                attr_type: AttrType(18)
            })
        );
        // Minimal and maximal valid packets.
        assert!(RawPacket::decode(&header(1, 20)).is_ok());
        let mut max = header(1, 4096);
        while max.len() < 4096 {
            let n = (4096 - max.len()).min(255);
            if n < 2 {
                break;
            }
            max.push(26);
            max.push(n as u8);
            max.resize(max.len() + n - 2, 0x41);
        }
        assert_eq!(max.len(), 4096);
        assert!(RawPacket::decode(&max).is_ok());
    }

    #[test]
    fn vsa_iteration_and_opaque_vsas() {
        let mut p = header(2, 0);
        // Conforming MS VSA with two sub-attributes.
        p.extend_from_slice(&[26, 15, 0, 0, 1, 0x37, 7, 6, 0, 0, 0, 1, 8, 3, 0xEE]);
        // Non-conforming: high octet of vendor id set.
        p.extend_from_slice(&[26, 8, 1, 0, 0, 9, 1, 2]);
        // Non-conforming: too short.
        p.extend_from_slice(&[26, 5, 0, 0, 9]);
        // Non-conforming: sub-attribute overruns.
        p.extend_from_slice(&[26, 9, 0, 0, 0, 9, 1, 9, 0]);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let raw = RawPacket::decode(&p).unwrap();
        let v: Vec<_> = raw.vsas().collect();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].vendor, v[0].vendor_type), (311, 7));
        assert_eq!(v[0].value, &[0, 0, 0, 1]);
        assert_eq!(v[1].value, &[0xEE]);
        assert_eq!(v[1].offset, 20);
        assert_eq!(raw.get_vsa(311, 8), Some(&[0xEE][..]));
        assert_eq!(raw.get_all_vsa(311, 7).count(), 1);
        assert_eq!(raw.get_all(AttrType::VENDOR_SPECIFIC).count(), 4);
    }

    #[test]
    fn debug_hides_password() {
        let buf = unhex(RFC2865_7_1_REQUEST);
        let p = RawPacket::decode(&buf).unwrap();
        let s = format!("{p:?}");
        assert!(
            s.contains("User-Name = \\\"nemo\\\"") || s.contains("User-Name = \"nemo\""),
            "{s}"
        );
        assert!(s.contains("User-Password = <hidden>"), "{s}");
        assert!(s.contains("NAS-IP-Address = 192.168.1.16"), "{s}");
    }
}
