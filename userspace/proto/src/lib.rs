//! # portcullis-proto: the sans-IO RADIUS codec
//!
//! What it does:
//!
//! * **Code points** ([`Code`], [`AttrType`], [`MICROSOFT`], [`ms`]) as open newtypes
//!   with named constants.
//! * **Strict, zero-copy decoding** ([`RawPacket::decode`]) and the attribute rules of
//!   RFC 2865 §5.44 / RFC 2866 §5.13 and friends ([`RawPacket::check_attribute_rules`]).
//! * **Verification** ([`verify_request`]) that turns a [`RawPacket`] into a
//!   [`VerifiedRequest`] proof value: Message-Authenticator (with Blast-RADIUS
//!   hardening), Accounting-Request authenticator.
//! * **Crypto** ([`crypto`]): [`SharedSecret`] with precomputed hash states,
//!   User-Password hiding, salt encryption (Tunnel-Password, MS-MPPE keys),
//!   Response/Request/Message authenticators, constant-time comparisons.
//! * **Building** ([`PacketBuilder`]) replies and client requests into a reusable
//!   buffer, Message-Authenticator first in replies.
//! * **Dictionary** ([`dict`]): names, data types, named values, sensitivity; parsing
//!   configuration values to wire bytes, formatting values for logs with secrets hidden.
//! * An owned [`Packet`] with the [`Encode`] / [`Decode`] codec traits, for round trips.
//!
//! What it does not do: no sockets, no async runtime, no clock, no randomness (callers
//! pass Request Authenticators and salts in), no retransmission or duplicate
//! detection, no authentication methods (PAP/CHAP/MS-CHAP/EAP checks live in the auth
//! crate), no RADIUS/TLS, no RFC 6929 extended attributes (types 241-246 are kept as
//! opaque attributes).
//!
//! The hot path (decode, verify, build a reply) does not allocate beyond the reply
//! buffer the caller recycles.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod attr;
mod builder;
mod codec;
pub mod crypto;
pub mod dict;
mod error;
mod packet;
mod raw;
pub mod rules;
mod verify;

pub use attr::{ms, AttrType, Code, MICROSOFT};
pub use builder::PacketBuilder;
pub use codec::{Decode, Encode, Reader};
pub use crypto::{
    hide_user_password, salt_decrypt, salt_encrypt, unhide_user_password, PlainPassword,
    SharedSecret,
};
pub use error::{CryptoError, DecodeError, EncodeError, Error, Fault, ValueError, VerifyError};
pub use packet::{Attribute, Packet, VendorAttribute};
pub use raw::{
    split_vsa, Attributes, RawAttr, RawPacket, RawVsa, VsaSubAttrs, Vsas, HEADER_LEN,
    MAX_ATTR_VALUE_LEN, MAX_PACKET_LEN, MAX_VSA_VALUE_LEN,
};
pub use verify::{verify_request, VerifiedRequest, VerifyPolicy};
