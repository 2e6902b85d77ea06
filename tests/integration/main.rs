//! Black-box tests of the `portcullis` binary with real peers. One test binary made of modules.
//! Run them with `cargo xtask test` (it installs radclient, builds the XDP object, sets
//! PORTCULLIS_BIN). They need root for the network-namespace and XDP parts, as CI has.
#![allow(clippy::unwrap_used)]

mod accounting;
mod ad;
mod auth;
mod blast;
mod cli;
mod dedup;
mod default_config;
mod malformed;
mod mfa;
mod mfa_lifecycle;
mod mfa_push;
mod mschapv2;
mod policy;
mod privacyidea;
mod reload;
mod rotation;
mod xdp;
