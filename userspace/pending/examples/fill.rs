//! Fills one pending table with N MFA logins (default 1,000,000, at most 5,000,000) with a
//! realistic payload and 120 s timeouts, then lets them all time out on a simulated clock.
//!
//! Reports the process memory per pending login (VmRSS / VmHWM from /proc/self/status, before
//! and after) beside the table's own estimate, and the begin, retransmission-lookup and expiry
//! rates. A benchmark binary, not a test: nothing here asserts a timing.
//!
//! ```text
//! cargo run --release --example fill -p portcullis-pending -- 1000000
//! ```

use std::error::Error;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use portcullis_pending::{Limits, LoginKey, PendingTable, RequestKey};

const MAX_N: usize = 5_000_000;
const TIMEOUT: Duration = Duration::from_secs(120);
const CLIENTS: u32 = 500;

/// What the server keeps per waiting request to answer it: its identity again (the table has
/// it too, but a server may well keep its own copy) and the Proxy-State to echo.
#[allow(dead_code)]
struct Answer {
    from: SocketAddr,
    listener: u16,
    identifier: u8,
    authenticator: [u8; 16],
    proxy_state: Vec<u8>,
}

/// About 64 bytes of per-login MFA state: provider transaction, start time, policy.
#[allow(dead_code)]
struct MfaState {
    transaction: [u8; 32],
    started: Instant,
    policy: u32,
    session_timeout: u32,
    provider: u8,
    method: u8,
    attempt: u8,
    fail_mode: u8,
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.2} M/s", n as f64 / d.as_secs_f64() / 1e6)
}

/// splitmix64: reproducible authenticators without a dependency.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn request(i: usize) -> RequestKey {
    let i32 = i as u32;
    let ip = Ipv4Addr::from(0x0a00_0000 | (i32 % CLIENTS));
    let mut authenticator = [0u8; 16];
    authenticator[..8].copy_from_slice(&mix(i as u64).to_le_bytes());
    authenticator[8..].copy_from_slice(&mix(!(i as u64)).to_le_bytes());
    RequestKey {
        from: SocketAddr::from((ip, 1024 + (i32 / CLIENTS % 60_000) as u16)),
        listener: 0,
        identifier: (i32 / CLIENTS / 60_000) as u8,
        authenticator,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    if n == 0 || n > MAX_N {
        return Err(format!("N must be 1..={MAX_N}").into());
    }

    let mut table: PendingTable<MfaState, Answer> = PendingTable::new(Limits {
        max_entries: n,
        max_per_client: n,
        max_per_user: 4,
        max_waiters_per_entry: 8,
    });
    let rss0 = status_kib("VmRSS:").unwrap_or(0);
    let hwm0 = status_kib("VmHWM:").unwrap_or(0);

    // Arrivals spread evenly over one timeout, as in a steady state of N pending logins; the
    // simulated clock ticks with them and expire() is called once per simulated second.
    let t0 = Instant::now();
    let start = Instant::now();
    let mut last_second = 0;
    let mut early = 0;
    for i in 0..n {
        let offset = TIMEOUT.mul_f64(i as f64 / n as f64);
        let now = t0 + offset;
        if offset.as_secs() != last_second {
            last_second = offset.as_secs();
            early += table.expire(now).len();
        }
        let r = request(i);
        let login = LoginKey::new(i as u32 % CLIENTS, format!("u{i:07}@corp.example"));
        let answer = Answer {
            from: r.from,
            listener: r.listener,
            identifier: r.identifier,
            authenticator: r.authenticator,
            proxy_state: vec![i as u8, (i >> 8) as u8],
        };
        let state = MfaState {
            transaction: [i as u8; 32],
            started: now,
            policy: 1,
            session_timeout: 3600,
            provider: 1,
            method: 0,
            attempt: 1,
            fail_mode: 0,
        };
        table.begin(login, r, answer, state, now + TIMEOUT, now)?;
    }
    let insert = start.elapsed();
    let rss1 = status_kib("VmRSS:").unwrap_or(0);
    let hwm1 = status_kib("VmHWM:").unwrap_or(0);
    let estimate = table.approx_bytes_per_entry();

    // Every request retransmitted once: the lookup the hot path does.
    let start = Instant::now();
    let mut joined = 0;
    for i in 0..n {
        joined += usize::from(black_box(table.join_request(&request(i))).is_some());
    }
    let lookup = start.elapsed();

    // Let them all time out, one simulated second at a time.
    let start = Instant::now();
    let mut expired = 0;
    let mut out = Vec::new();
    for s in TIMEOUT.as_secs()..=2 * TIMEOUT.as_secs() + 1 {
        table.expire_into(t0 + Duration::from_secs(s), &mut out);
        expired += out.len();
        out.clear();
    }
    let expire = start.elapsed();

    let per = |kib: u64| kib as f64 * 1024.0 / n as f64;
    println!("pending logins:            {n} (120 s timeout, {CLIENTS} clients)");
    println!(
        "slot size:                 {} bytes (V = {} bytes, W = {} bytes)",
        PendingTable::<MfaState, Answer>::slot_bytes(),
        std::mem::size_of::<MfaState>(),
        std::mem::size_of::<Answer>()
    );
    println!("table estimate:            {estimate} bytes/login (without heap inside V and W)");
    println!(
        "VmRSS:                     {rss0} -> {rss1} KiB = {:.0} bytes/login",
        per(rss1.saturating_sub(rss0))
    );
    println!(
        "VmHWM:                     {hwm0} -> {hwm1} KiB = {:.0} bytes/login (peak, growth included)",
        per(hwm1.saturating_sub(hwm0))
    );
    println!(
        "begin:                     {:.3} s, {} (user-name formatting and payload allocation included)",
        insert.as_secs_f64(),
        rate(n, insert)
    );
    println!(
        "join_request (retransmit): {:.3} s, {}, {joined} found",
        lookup.as_secs_f64(),
        rate(n, lookup)
    );
    println!(
        "expire:                    {:.3} s, {}, {expired} expired ({early} early), {} left",
        expire.as_secs_f64(),
        rate(expired, expire),
        table.len()
    );
    if expired != n || early != 0 || joined != n || !table.is_empty() {
        return Err("table did not behave: see counts above".into());
    }
    Ok(())
}
