//! Authentication-method crypto for Portcullis, and the local user store.
//!
//! # What this crate does
//!
//! * The password checks of the RADIUS authentication methods: PAP against stored hashes
//!   ([`hash`]), CHAP ([`chap`], RFC 1994), MS-CHAPv2 ([`mschapv2`], RFC 2759) with its RADIUS
//!   attribute values (RFC 2548), and the MPPE keys that an MS-CHAPv2 success hands to the NAS
//!   ([`mppe`], RFC 3079).
//! * NT hashes ([`nt`]) and reversible password encryption for CHAP ([`reversible`]).
//! * The local user store ([`store`]): loading the TOML users file into [`store::LocalUsers`]
//!   with file/line diagnostics, and the text-editing functions behind `portcullis users`.
//!
//! # What it does not do
//!
//! It is sans-IO: no sockets, no files, no clock, no async runtime, no global randomness. File
//! text, salts, nonces and random generators come from the caller. It does not decode or encode
//! RADIUS packets, decrypt User-Password, or salt-encrypt MS-MPPE keys (the codec crate does), and
//! it does not decide policy: a disabled user's password still verifies, and the caller checks
//! [`store::LocalUser::is_disabled`] first.
//!
//! # Which stored credential supports which method
//!
//! | method | `password` (PAP hash) | `nt_hash` | `chap` (reversible) |
//! | --- | --- | --- | --- |
//! | PAP | yes (used first) | yes (fallback) | yes (last resort) |
//! | CHAP | no | no | yes, the only way |
//! | MS-CHAPv2 | no | yes | yes, the NT hash is derived at load time |
//!
//! # Secrets
//!
//! No type here prints a password, hash, key or ciphertext through `Debug`, and no [`Error`]
//! carries one. Key material is wiped on drop where this crate owns it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod chap;
mod error;
pub mod hash;
pub mod mppe;
pub mod mschapv2;
pub mod nt;
pub mod reversible;
pub mod store;

pub use error::{validate_group_name, validate_user_name, Error, Fault, Result, MAX_NAME_LEN};
