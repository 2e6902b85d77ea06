//! Portcullis, the RADIUS appliance: configuration, the sharded UDP server, the request
//! pipeline (local users: PAP, CHAP, MS-CHAPv2), durable accounting, audit lines, counters and
//! the control socket, and the glue to the XDP pre-filter.
//!
//! The wire format lives in `portcullis-proto` (sans-IO), the authentication-method crypto and
//! the user store in `portcullis-auth`, the kernel side in `xdp-filter/` with its loader in
//! `portcullis-xdp-loader`. This crate is where they meet sockets, threads, files and signals.
//! See ARCHITECTURE.md for the map.

pub mod accounting;
pub mod accounting_record;
pub mod audit;
pub mod config;
pub mod control;
pub mod mfa;
pub mod net;
pub mod server;
pub mod stats;
pub mod users;
pub mod xdp;
