//! Per-packet cost of the XDP filter, measured by the kernel with `BPF_PROG_TEST_RUN` and
//! `repeat` (no interface, one CPU). Needs root and the embedded object:
//!
//! ```text
//! cargo run --release -p portcullis-xdp-loader --example xdp_cost [repeat]
//! ```

use std::net::{IpAddr, Ipv4Addr};

use portcullis_xdp_loader::test_run::XdpTestProgram;
use portcullis_xdp_loader::{XdpClient, XdpMode, XdpSettings};

#[path = "../tests/xdp/frames.rs"]
#[allow(dead_code)]
mod frames;
#[path = "../tests/xdp/radius.rs"]
#[allow(dead_code)]
mod radius;

use frames::udp4_payload;
use radius::*;

const AUTH: u16 = 1812;
const ACCT: u16 = 1813;
const ONE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const TWO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
const UNKNOWN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn main() {
    let repeat: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("repeat count"))
        .unwrap_or(100_000);
    let settings = XdpSettings {
        interface: String::new(),
        mode: XdpMode::Auto,
        global_rate_pps: 0,
        global_burst: 0,
        ports: vec![AUTH, ACCT],
        clients: vec![
            XdpClient::new((IpAddr::V4(ONE), 32), SECRET, true),
            XdpClient {
                network: (IpAddr::V4(TWO), 32),
                secrets: vec![SECRET.to_vec(), NEXT_SECRET.to_vec()],
                require_message_authenticator: true,
                name: "client".into(),
                rate_pps: 0,
                burst: 0,
            },
        ],
    };
    let program = XdpTestProgram::load(&settings).expect("load the XDP program");
    println!(
        "verifier processed {} instructions",
        program.verified_instructions().unwrap_or(0)
    );
    let request = |attrs_len: usize, secret: &[u8]| {
        let mut attrs = user_attrs();
        if attrs_len > attrs.len() {
            attrs.extend(filler(attrs_len - attrs.len()));
        }
        access_request(&attrs, secret)
    };
    let accounting = |attrs_len: usize| {
        let mut attrs = accounting_attrs();
        attrs.extend(filler(attrs_len - attrs.len()));
        accounting_request(1, &attrs, SECRET)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown client, dropped",
            udp4_payload(&[], UNKNOWN, AUTH, &request(0, SECRET)),
        ),
        (
            "Access-Request 64 B, MA good",
            udp4_payload(&[], ONE, AUTH, &request(26, SECRET)),
        ),
        (
            "Access-Request 64 B, MA bad (1 secret)",
            udp4_payload(&[], ONE, AUTH, &request(26, b"x")),
        ),
        (
            "Access-Request 64 B, MA bad (2 secrets)",
            udp4_payload(&[], TWO, AUTH, &request(26, b"x")),
        ),
        (
            "Access-Request 1 KiB, MA good",
            udp4_payload(&[], ONE, AUTH, &request(1024 - 38, SECRET)),
        ),
        (
            "Access-Request 4 KiB, MA good",
            udp4_payload(&[], ONE, AUTH, &request(4096 - 38, SECRET)),
        ),
        (
            "Accounting-Request 64 B, good",
            udp4_payload(&[], ONE, ACCT, &accounting(44)),
        ),
        (
            "Accounting-Request 1 KiB, good",
            udp4_payload(&[], ONE, ACCT, &accounting(1024 - 20)),
        ),
    ];
    for (name, frame) in cases {
        let (action, mean) = program
            .run_repeated(&frame, repeat)
            .expect("BPF_PROG_TEST_RUN");
        println!(
            "{name:<42} {action:<9} {:>8} ns/packet ({} B frame)",
            mean.as_nanos(),
            frame.len()
        );
    }
}
