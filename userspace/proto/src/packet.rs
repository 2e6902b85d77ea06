//! Owned packets and attributes, with the [`Encode`] / [`Decode`] codec.
//!
//! The owned form keeps attributes exactly as they were on the wire, in order, so
//! unknown attributes and unknown (or non-conforming) vendor attributes round-trip
//! untouched. It is meant for tests, tools and proxies; the server's hot path uses
//! [`RawPacket`] and [`crate::PacketBuilder`] and never allocates per attribute.

use core::fmt;

use crate::attr::{AttrType, Code};
use crate::codec::{Decode, Encode, Reader};
use crate::error::{DecodeError, EncodeError};
use crate::raw::{
    split_vsa, RawPacket, HEADER_LEN, MAX_ATTR_VALUE_LEN, MAX_PACKET_LEN, MAX_VSA_VALUE_LEN,
};

/// One attribute, owned.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    pub attr_type: AttrType,
    pub value: Vec<u8>,
}

impl Attribute {
    pub fn new(attr_type: AttrType, value: impl Into<Vec<u8>>) -> Self {
        Self {
            attr_type,
            value: value.into(),
        }
    }
}

impl fmt::Debug for Attribute {
    /// Safe to log: sensitive values print as `<hidden>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            crate::dict::display_attr(self.attr_type, &self.value)
        )
    }
}

impl Encode for Attribute {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.value.len();
        if len > MAX_ATTR_VALUE_LEN {
            return Err(EncodeError::ValueTooLong {
                attr_type: self.attr_type,
                len,
            });
        }
        out.push(self.attr_type.0);
        out.push((len + 2) as u8);
        out.extend_from_slice(&self.value);
        Ok(())
    }
}

impl<'a> Decode<'a> for Attribute {
    fn read(reader: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let offset = reader.offset();
        let Some(t) = reader.read_u8() else {
            return Err(DecodeError::AttrOverrun {
                offset,
                attr_type: AttrType(0),
            });
        };
        let attr_type = AttrType(t);
        let Some(len) = reader.read_u8() else {
            return Err(DecodeError::AttrOverrun { offset, attr_type });
        };
        let len = usize::from(len);
        if len < 2 {
            return Err(DecodeError::AttrTooShort { offset, attr_type });
        }
        let Some(value) = reader.read_bytes(len - 2) else {
            return Err(DecodeError::AttrOverrun { offset, attr_type });
        };
        Ok(Self::new(attr_type, value))
    }
}

/// A Vendor-Specific attribute holding exactly one sub-attribute in the RFC 2865
/// §5.26 recommended format. Encodes as a whole attribute of type 26.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VendorAttribute {
    pub vendor: u32,
    pub vendor_type: u8,
    pub value: Vec<u8>,
}

impl fmt::Debug for VendorAttribute {
    /// Safe to log: sensitive values print as `<hidden>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::dict::vendor_attr_def(self.vendor, self.vendor_type) {
            Some(d) => f.write_str(d.name)?,
            None => write!(f, "Vendor-{}-Attr-{}", self.vendor, self.vendor_type)?,
        }
        write!(
            f,
            " = {}",
            crate::dict::display_vendor_value(self.vendor, self.vendor_type, &self.value)
        )
    }
}

impl Encode for VendorAttribute {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.value.len();
        if len > MAX_VSA_VALUE_LEN {
            return Err(EncodeError::VendorValueTooLong {
                vendor: self.vendor,
                vendor_type: self.vendor_type,
                len,
            });
        }
        out.extend_from_slice(&[AttrType::VENDOR_SPECIFIC.0, (len + 8) as u8]);
        out.extend_from_slice(&self.vendor.to_be_bytes());
        out.extend_from_slice(&[self.vendor_type, (len + 2) as u8]);
        out.extend_from_slice(&self.value);
        Ok(())
    }
}

impl<'a> Decode<'a> for VendorAttribute {
    /// Reads one attribute; it must be a conforming Vendor-Specific attribute with one
    /// sub-attribute ([`DecodeError::MalformedVsa`] otherwise).
    fn read(reader: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let attr = Attribute::read(reader)?;
        if attr.attr_type != AttrType::VENDOR_SPECIFIC {
            return Err(DecodeError::MalformedVsa);
        }
        let (vendor, mut subs) = split_vsa(&attr.value).ok_or(DecodeError::MalformedVsa)?;
        let (vendor_type, value) = subs.next().ok_or(DecodeError::MalformedVsa)?;
        if subs.next().is_some() {
            return Err(DecodeError::MalformedVsa);
        }
        Ok(Self {
            vendor,
            vendor_type,
            value: value.to_vec(),
        })
    }
}

/// An owned packet.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

impl Packet {
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Self {
        Self {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Copy a decoded packet, attributes in wire order.
    pub fn from_raw(raw: &RawPacket<'_>) -> Self {
        Self {
            code: raw.code(),
            identifier: raw.identifier(),
            authenticator: *raw.authenticator(),
            attributes: raw
                .attributes()
                .map(|a| Attribute::new(a.attr_type, a.value))
                .collect(),
        }
    }

    /// Value of the first attribute of a type.
    pub fn get(&self, attr_type: AttrType) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.attr_type == attr_type)
            .map(|a| a.value.as_slice())
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self
                .attributes
                .iter()
                .map(|a| a.value.len() + 2)
                .sum::<usize>()
    }
}

impl fmt::Debug for Packet {
    /// Safe to log: sensitive values print as `<hidden>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code)
            .field("identifier", &self.identifier)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

impl Encode for Packet {
    /// Writes the packet as is: the Authenticator field is written verbatim (no
    /// authenticator is computed; use [`crate::PacketBuilder`] for that).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.encoded_len();
        if len > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong { len });
        }
        out.reserve(len);
        out.extend_from_slice(&[self.code.0, self.identifier]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            a.encode(out)?;
        }
        Ok(())
    }
}

impl<'a> Decode<'a> for Packet {
    /// Consumes the rest of the reader as one datagram: strict like
    /// [`RawPacket::decode`], and octets past Length are padding (RFC 2865 §3).
    fn read(reader: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let raw = RawPacket::decode(reader.rest())?;
        reader.read_rest();
        Ok(Self::from_raw(&raw))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::raw::tests::{unhex, RFC2865_7_1_REQUEST};
    use proptest::prelude::*;

    #[test]
    fn rfc_example_round_trips() {
        let buf = unhex(RFC2865_7_1_REQUEST);
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.to_bytes().unwrap(), buf);
        assert_eq!(p.get(AttrType::USER_NAME), Some(&b"nemo"[..]));
        let dbg = format!("{p:?}");
        assert!(dbg.contains("User-Password = <hidden>"), "{dbg}");
        // Padding is consumed, not trailing.
        let mut padded = buf.clone();
        padded.extend_from_slice(&[0; 5]);
        assert_eq!(Packet::decode(&padded).unwrap(), p);
    }

    #[test]
    fn unknown_attributes_and_vendors_round_trip() {
        let mut p = Packet::new(Code(200), 9, [3; 16]);
        p.attributes
            .push(Attribute::new(AttrType(250), vec![1, 2, 3]));
        p.attributes.push(Attribute::new(AttrType(0), vec![]));
        // Unknown vendor, two sub-attributes.
        p.attributes.push(Attribute::new(
            AttrType::VENDOR_SPECIFIC,
            vec![0, 0, 0x30, 0x39, 1, 3, 9, 2, 2],
        ));
        // Non-conforming VSA.
        p.attributes
            .push(Attribute::new(AttrType::VENDOR_SPECIFIC, vec![0xff, 1]));
        let bytes = p.to_bytes().unwrap();
        let q = Packet::decode(&bytes).unwrap();
        assert_eq!(p, q);
        assert_eq!(q.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn attribute_codec() {
        let a = Attribute::decode(&[1, 5, b'a', b'b', b'c']).unwrap();
        assert_eq!(a, Attribute::new(AttrType::USER_NAME, &b"abc"[..]));
        assert_eq!(a.to_bytes().unwrap(), [1, 5, b'a', b'b', b'c']);
        assert_eq!(
            Attribute::decode(&[1, 3, b'a', 0]),
            Err(DecodeError::TrailingBytes { len: 1 })
        );
        assert_eq!(
            Attribute::decode(&[1, 1]),
            Err(DecodeError::AttrTooShort {
                offset: 0,
                attr_type: AttrType(1)
            })
        );
        assert_eq!(
            Attribute::decode(&[1, 9, 0]),
            Err(DecodeError::AttrOverrun {
                offset: 0,
                attr_type: AttrType(1)
            })
        );
        assert!(matches!(
            Attribute::decode(&[1]),
            Err(DecodeError::AttrOverrun { .. })
        ));
        assert!(matches!(
            Attribute::decode(&[]),
            Err(DecodeError::AttrOverrun { .. })
        ));
        assert!(matches!(
            Attribute::new(AttrType(1), vec![0; 254]).to_bytes(),
            Err(EncodeError::ValueTooLong { .. })
        ));
    }

    #[test]
    fn vendor_attribute_codec() {
        let v = VendorAttribute {
            vendor: crate::MICROSOFT,
            vendor_type: crate::ms::CHAP_ERROR,
            value: b"E=691".to_vec(),
        };
        let bytes = v.to_bytes().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "1a0d0000013702074533363931".replace("4533363931", "453d363931")
        );
        assert_eq!(VendorAttribute::decode(&bytes).unwrap(), v);
        assert_eq!(format!("{v:?}"), "MS-CHAP-Error = \"E=691\"");
        // Two sub-attributes, wrong type, non-conforming: all MalformedVsa.
        assert_eq!(
            VendorAttribute::decode(&[26, 12, 0, 0, 0, 9, 1, 3, 0, 2, 3, 0]),
            Err(DecodeError::MalformedVsa)
        );
        assert_eq!(
            VendorAttribute::decode(&[1, 3, 0]),
            Err(DecodeError::MalformedVsa)
        );
        assert_eq!(
            VendorAttribute::decode(&[26, 4, 0xff, 1]),
            Err(DecodeError::MalformedVsa)
        );
        let mut two = bytes.clone();
        two.push(0);
        assert_eq!(
            VendorAttribute::decode(&two),
            Err(DecodeError::TrailingBytes { len: 1 })
        );
        let big = VendorAttribute {
            vendor: 1,
            vendor_type: 1,
            value: vec![0; 248],
        };
        assert!(matches!(
            big.to_bytes(),
            Err(EncodeError::VendorValueTooLong { .. })
        ));
    }

    #[test]
    fn too_long_packet_is_refused() {
        let mut p = Packet::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        for _ in 0..17 {
            p.attributes
                .push(Attribute::new(AttrType::CLASS, vec![0; 253]));
        }
        assert!(matches!(
            p.to_bytes(),
            Err(EncodeError::PacketTooLong { .. })
        ));
    }

    fn arb_attr() -> impl Strategy<Value = Attribute> {
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(t, v)| Attribute::new(AttrType(t), v))
    }

    proptest! {
        #[test]
        fn owned_round_trip(
            code in any::<u8>(),
            id in any::<u8>(),
            auth in any::<[u8; 16]>(),
            attrs in proptest::collection::vec(arb_attr(), 0..30),
        ) {
            let p = Packet { code: Code(code), identifier: id, authenticator: auth, attributes: attrs };
            let bytes = p.to_bytes().unwrap();
            let raw = RawPacket::decode(&bytes).unwrap();
            prop_assert_eq!(raw.attributes().count(), p.attributes.len());
            let q = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(&q, &p);
            prop_assert_eq!(q.to_bytes().unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(raw) = RawPacket::decode(&buf) {
                let _ = raw.check_attribute_rules();
                let _ = format!("{raw:?}");
                let owned = Packet::from_raw(&raw);
                prop_assert_eq!(owned.to_bytes().unwrap(), raw.bytes());
            }
        }
    }
}
