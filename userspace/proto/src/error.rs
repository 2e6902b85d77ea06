//! Errors of this crate.
//!
//! Each stage has its own `#[non_exhaustive]` enum with named fields
//! ([`DecodeError`], [`VerifyError`], [`EncodeError`], [`CryptoError`], [`ValueError`]),
//! and [`Error`] wraps them all for callers that want one type. Every enum has a
//! `reason()` slug (a `&'static str` usable as a metrics label) and a `fault()` telling
//! who is to blame. No error ever carries secret material or attribute values.

use crate::{AttrType, Code};

/// Who caused an error: what metrics and audit logs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The peer sent something malformed, unauthentic or out of policy.
    Peer,
    /// Our own caller asked for something impossible (configuration or code bug).
    Local,
}

/// A datagram or attribute that is not well-formed RADIUS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer than the 20 octets of a RADIUS header.
    #[error("datagram of {len} octets is shorter than the 20-octet header")]
    TooShort { len: usize },
    /// The header Length field is below 20.
    #[error("header Length {len} is below the 20-octet minimum")]
    BadLength { len: usize },
    /// The header Length field is above 4096.
    #[error("header Length {len} exceeds the 4096-octet maximum")]
    TooLong { len: usize },
    /// The header Length field claims more octets than were received.
    #[error("header Length {header} exceeds the {datagram} octets received")]
    LengthMismatch { header: usize, datagram: usize },
    /// An attribute Length below 2.
    #[error("attribute {attr_type} at offset {offset} has a Length below 2")]
    AttrTooShort { offset: usize, attr_type: AttrType },
    /// An attribute (or its 2-octet header) runs past the end of the packet.
    #[error("attribute {attr_type} at offset {offset} runs past the end of the packet")]
    AttrOverrun { offset: usize, attr_type: AttrType },
    /// Octets left after a complete item was decoded with [`crate::Decode::decode`].
    #[error("{len} trailing octets after the decoded item")]
    TrailingBytes { len: usize },
    /// A Vendor-Specific attribute that is not in the RFC 2865 §5.26 recommended format,
    /// where that format is required (strict [`crate::VendorAttribute`] decoding only).
    #[error("Vendor-Specific attribute is not in the RFC 2865 recommended format")]
    MalformedVsa,
    /// An attribute allowed at most once appears several times.
    #[error("attribute {attr_type} appears more than once in {code}")]
    DuplicateAttribute { attr_type: AttrType, code: Code },
    /// An attribute that must not appear in this packet code.
    #[error("attribute {attr_type} is not allowed in {code}")]
    MisplacedAttribute { attr_type: AttrType, code: Code },
    /// An attribute that must appear in this packet code is missing.
    #[error("attribute {attr_type} is required in {code}")]
    MissingAttribute { attr_type: AttrType, code: Code },
    /// An attribute whose value length does not fit its data type.
    #[error("attribute {attr_type} has a {len}-octet value, which its type does not allow")]
    BadAttributeLength { attr_type: AttrType, len: usize },
    /// A vendor attribute whose value length does not fit its data type.
    #[error("vendor {vendor} attribute {vendor_type} has a {len}-octet value, which its type does not allow")]
    BadVendorAttributeLength {
        vendor: u32,
        vendor_type: u8,
        len: usize,
    },
    /// An Access-Request with both User-Password and CHAP-Password (RFC 2865 §5.44 note 1).
    #[error("Access-Request carries both User-Password and CHAP-Password")]
    PasswordAndChap,
}

impl DecodeError {
    /// Short stable slug for metrics labels.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::BadLength { .. } => "bad_length",
            Self::TooLong { .. } => "too_long",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::AttrTooShort { .. } => "attr_too_short",
            Self::AttrOverrun { .. } => "attr_overrun",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::MalformedVsa => "malformed_vsa",
            Self::DuplicateAttribute { .. } => "duplicate_attribute",
            Self::MisplacedAttribute { .. } => "misplaced_attribute",
            Self::MissingAttribute { .. } => "missing_attribute",
            Self::BadAttributeLength { .. } => "bad_attribute_length",
            Self::BadVendorAttributeLength { .. } => "bad_vendor_attribute_length",
            Self::PasswordAndChap => "password_and_chap",
        }
    }

    /// Decoding errors are always the sender's fault.
    pub const fn fault(&self) -> Fault {
        Fault::Peer
    }
}

/// A request that is well-formed but must not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The packet breaks the structural or attribute rules.
    #[error("malformed request: {source}")]
    Malformed {
        #[source]
        source: DecodeError,
    },
    /// A code this server does not accept as a request.
    #[error("{code} is not a request this server handles")]
    UnsupportedCode { code: Code },
    /// Message-Authenticator is required (by RFC or by policy) but absent.
    #[error("{code} without the required Message-Authenticator")]
    MissingMessageAuthenticator { code: Code },
    /// Message-Authenticator present but wrong (or not 16 octets).
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    /// The Accounting-Request Request Authenticator does not verify.
    #[error("Request Authenticator does not verify")]
    BadRequestAuthenticator,
    /// Access-Request with Proxy-State but no Message-Authenticator (Blast-RADIUS, CVE-2024-3596).
    #[error("Access-Request with Proxy-State but without Message-Authenticator")]
    ProxyStateWithoutMessageAuthenticator,
    /// Request with EAP-Message but no Message-Authenticator (RFC 3579 §3.3).
    #[error("EAP-Message without Message-Authenticator")]
    EapWithoutMessageAuthenticator,
}

impl VerifyError {
    /// Short stable slug for metrics labels (a malformed packet reports its decode reason).
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { source } => source.reason(),
            Self::UnsupportedCode { .. } => "unsupported_code",
            Self::MissingMessageAuthenticator { .. } => "missing_message_authenticator",
            Self::BadMessageAuthenticator => "bad_message_authenticator",
            Self::BadRequestAuthenticator => "bad_request_authenticator",
            Self::ProxyStateWithoutMessageAuthenticator => {
                "proxy_state_without_message_authenticator"
            }
            Self::EapWithoutMessageAuthenticator => "eap_without_message_authenticator",
        }
    }

    /// Verification errors are always the sender's fault (or a secret mismatch).
    pub const fn fault(&self) -> Fault {
        Fault::Peer
    }
}

impl From<DecodeError> for VerifyError {
    fn from(source: DecodeError) -> Self {
        Self::Malformed { source }
    }
}

/// Failure to encode a packet or attribute: always a local error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An attribute value longer than 253 octets.
    #[error("attribute {attr_type} value of {len} octets exceeds 253")]
    ValueTooLong { attr_type: AttrType, len: usize },
    /// A vendor attribute value longer than 247 octets.
    #[error("vendor {vendor} attribute {vendor_type} value of {len} octets exceeds 247")]
    VendorValueTooLong {
        vendor: u32,
        vendor_type: u8,
        len: usize,
    },
    /// The packet would exceed 4096 octets.
    #[error("packet of {len} octets would exceed 4096")]
    PacketTooLong { len: usize },
    /// An RFC 2868 tag above 0x1F.
    #[error("tunnel tag {tag} is above 0x1F")]
    BadTag { tag: u8 },
    /// A tagged integer above 2^24 - 1.
    #[error("tagged integer {value} does not fit in 24 bits")]
    TaggedIntegerTooLarge { value: u32 },
    /// Message-Authenticator is placed by the builder, never pushed by hand.
    #[error("attribute {attr_type} is managed by the builder")]
    ReservedAttribute { attr_type: AttrType },
    /// Hiding or salt-encrypting a value failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl EncodeError {
    /// Short stable slug for metrics labels.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::ValueTooLong { .. } => "value_too_long",
            Self::VendorValueTooLong { .. } => "vendor_value_too_long",
            Self::PacketTooLong { .. } => "packet_too_long",
            Self::BadTag { .. } => "bad_tag",
            Self::TaggedIntegerTooLarge { .. } => "tagged_integer_too_large",
            Self::ReservedAttribute { .. } => "reserved_attribute",
            Self::Crypto(c) => c.reason(),
        }
    }

    /// Encoding errors are ours.
    pub const fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Failure in secret handling, password hiding or salt encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A shared secret must not be empty (RFC 2865 §3).
    #[error("shared secret is empty")]
    EmptySecret,
    /// A User-Password longer than 128 octets (RFC 2865 §5.2).
    #[error("password of {len} octets exceeds 128")]
    PasswordTooLong { len: usize },
    /// A hidden User-Password that is not a multiple of 16 between 16 and 128 octets.
    #[error("hidden password of {len} octets is not a multiple of 16 in 16..=128")]
    BadCipherLength { len: usize },
    /// A salt whose most significant bit is clear (RFC 2868 §3.5, RFC 2548 §2.4.2).
    #[error("salt high bit is not set")]
    SaltHighBitClear,
    /// Salt-encryption plaintext too long for one attribute.
    #[error("plaintext of {len} octets exceeds {max}")]
    PlaintextTooLong { len: usize, max: usize },
    /// A salt-encrypted value that is not salt + a non-empty multiple of 16 octets.
    #[error("salt-encrypted value of {len} octets is malformed")]
    BadSaltedLength { len: usize },
    /// The decrypted length octet claims more data than there is (wrong secret, usually).
    #[error("decrypted length {len} exceeds the available data")]
    BadEmbeddedLength { len: usize },
    /// A Tunnel-Password value too short to hold its tag.
    #[error("tagged value is missing its tag")]
    MissingTag,
}

impl CryptoError {
    /// Short stable slug for metrics labels.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::EmptySecret => "empty_secret",
            Self::PasswordTooLong { .. } => "password_too_long",
            Self::BadCipherLength { .. } => "bad_cipher_length",
            Self::SaltHighBitClear => "salt_high_bit_clear",
            Self::PlaintextTooLong { .. } => "plaintext_too_long",
            Self::BadSaltedLength { .. } => "bad_salted_length",
            Self::BadEmbeddedLength { .. } => "bad_embedded_length",
            Self::MissingTag => "missing_tag",
        }
    }

    /// Decrypting something a peer sent is the peer's fault; the rest is ours.
    pub const fn fault(&self) -> Fault {
        match self {
            Self::BadCipherLength { .. }
            | Self::BadSaltedLength { .. }
            | Self::BadEmbeddedLength { .. }
            | Self::MissingTag => Fault::Peer,
            _ => Fault::Local,
        }
    }
}

/// A configuration value that cannot be turned into wire bytes.
///
/// Never echoes the offending value (it might be a secret); only the attribute name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// No attribute of that name in the dictionary.
    #[error("unknown attribute {name:?}")]
    UnknownAttribute { name: String },
    /// The value does not parse as the attribute's data type.
    #[error("invalid value for {attribute}: expected {expected}")]
    InvalidValue {
        attribute: String,
        expected: &'static str,
    },
    /// The value is too long for one attribute.
    #[error("value for {attribute} is {len} octets, too long for one attribute")]
    TooLong { attribute: String, len: usize },
    /// A tag on an untagged attribute, or a tag above 0x1F.
    #[error("bad tag for {attribute}")]
    BadTag { attribute: String },
    /// The attribute is encrypted on the wire and must be produced by the crypto helpers.
    #[error("{attribute} is encrypted on the wire and cannot be set from a plain value")]
    Encrypted { attribute: String },
}

impl ValueError {
    /// Short stable slug for metrics labels.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::UnknownAttribute { .. } => "unknown_attribute",
            Self::InvalidValue { .. } => "invalid_value",
            Self::TooLong { .. } => "value_too_long",
            Self::BadTag { .. } => "bad_tag",
            Self::Encrypted { .. } => "encrypted_attribute",
        }
    }

    /// Configuration values are ours.
    pub const fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Any error of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl Error {
    /// Short stable slug for metrics labels.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.reason(),
            Self::Verify(e) => e.reason(),
            Self::Encode(e) => e.reason(),
            Self::Crypto(e) => e.reason(),
            Self::Value(e) => e.reason(),
        }
    }

    /// Who is to blame.
    pub const fn fault(&self) -> Fault {
        match self {
            Self::Decode(e) => e.fault(),
            Self::Verify(e) => e.fault(),
            Self::Encode(e) => e.fault(),
            Self::Crypto(e) => e.fault(),
            Self::Value(e) => e.fault(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_faults() {
        let e = DecodeError::TooShort { len: 3 };
        assert_eq!(e.reason(), "too_short");
        assert_eq!(e.fault(), Fault::Peer);
        let v: VerifyError = e.clone().into();
        assert_eq!(v.reason(), "too_short");
        let all: Error = v.into();
        assert_eq!(all.reason(), "too_short");
        let enc = EncodeError::PacketTooLong { len: 5000 };
        assert_eq!(Error::from(enc).fault(), Fault::Local);
        assert_eq!(CryptoError::BadCipherLength { len: 3 }.fault(), Fault::Peer);
        assert!(e.to_string().contains("shorter"));
    }
}
