//! Per-client counters and token-bucket rate limits with BPF_PROG_TEST_RUN.
//!
//! The buckets are per CPU. One `BPF_PROG_TEST_RUN` call with a repeat count runs every
//! repetition on the same CPU, so the tests send each burst in one call and compare with the
//! per-CPU share of the configured limit (`per_cpu_limit`); and each test keeps its thread on
//! one CPU ([`stay_on_one_cpu`]), so that successive calls meet the same buckets (a thread
//! the scheduler moved between two calls found the other CPU's full bucket). Refill is not tested here with
//! sleeps; the bucket arithmetic has unit tests in `portcullis-xdp-common`.

use std::net::{IpAddr, Ipv4Addr};

use portcullis_xdp_loader::test_run::{XdpAction, XdpTestProgram};
use portcullis_xdp_loader::{
    per_cpu_limit, ClientCounters, Counters, Reason, XdpClient, XdpMode, XdpSettings,
};

use crate::frames::*;
use crate::radius::*;
use crate::verdicts::load;
use crate::xdp_tests_enabled;

const AUTH: u16 = 1812;
const ACCT: u16 = 1813;
const STRICT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const LENIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const LIMITED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
const UNKNOWN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// Configured limit of [`LIMITED`]: 1 packet per second, burst 4 per CPU.
const LIMITED_RATE: u32 = 1;

/// Pins the calling thread to the first CPU it may run on, for the rest of the test.
fn stay_on_one_cpu() {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid empty set; the libc calls read or write only
    // the sets passed, within `size`.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &allowed))
            .expect("no CPU allowed");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
    }
}

fn named(addr: Ipv4Addr, name: &str, require_ma: bool, rate_pps: u32, burst: u32) -> XdpClient {
    let mut client = XdpClient::new((IpAddr::V4(addr), 32), SECRET, require_ma);
    client.name = name.into();
    client.rate_pps = rate_pps;
    client.burst = burst;
    client
}

fn settings(global_rate_pps: u32, global_burst: u32) -> XdpSettings {
    let cpus = portcullis_xdp_loader::possible_cpus();
    XdpSettings {
        interface: String::new(),
        mode: XdpMode::Auto,
        ports: vec![AUTH, ACCT],
        clients: vec![
            named(STRICT, "strict nas", true, 0, 0),
            named(LENIENT, "lenient", false, 0, 0),
            named(LIMITED, "limited", true, LIMITED_RATE, 4 * cpus),
        ],
        global_rate_pps,
        global_burst,
    }
}

fn frame(src: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    udp4_payload(&[], src, port, payload)
}

fn good(src: Ipv4Addr) -> Vec<u8> {
    frame(src, AUTH, &access_request(&user_attrs(), SECRET))
}

fn snapshot(program: &XdpTestProgram) -> (Counters, Vec<(String, ClientCounters)>) {
    (
        program.counters().expect("counters"),
        program.client_counters().expect("client counters"),
    )
}

fn client<'a>(list: &'a [(String, ClientCounters)], name: &str) -> &'a ClientCounters {
    &list
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no client {name} in {list:?}"))
        .1
}

/// Run `frame` `repeat` times in one call; check the last verdict and that, of all clients,
/// only `name`'s counters moved, by `expected`.
fn run_and_check(
    program: &XdpTestProgram,
    frame: &[u8],
    repeat: u32,
    action: XdpAction,
    name: Option<&str>,
    expected: ClientCounters,
) -> Delta {
    let (before, clients_before) = snapshot(program);
    let (got, _) = program
        .run_repeated(frame, repeat)
        .expect("BPF_PROG_TEST_RUN");
    let (after, clients_after) = snapshot(program);
    assert_eq!(got, action);
    assert_eq!(clients_before.len(), clients_after.len());
    for ((n, b), (_, a)) in clients_before.iter().zip(&clients_after) {
        let mut delta = ClientCounters::default();
        for (k, ((_, x), (_, y))) in a.iter().iter().zip(b.iter().iter()).enumerate() {
            let d = x - y;
            match k {
                0 => delta.passed = d,
                1 => delta.drop_malformed = d,
                2 => delta.drop_bad_ma = d,
                3 => delta.drop_missing_ma = d,
                4 => delta.drop_bad_acct_auth = d,
                _ => delta.drop_rate_limited = d,
            }
        }
        let want = if Some(n.as_str()) == name {
            expected
        } else {
            ClientCounters::default()
        };
        assert_eq!(delta, want, "client {n}");
    }
    Delta { before, after }
}

/// How much each reason counter moved.
struct Delta {
    before: Counters,
    after: Counters,
}

impl Delta {
    fn get(&self, reason: Reason) -> u64 {
        self.after.get(reason) - self.before.get(reason)
    }
}

#[test]
fn the_right_clients_counters_move() {
    if !xdp_tests_enabled() {
        return;
    }
    stay_on_one_cpu();
    let program = load(&settings(0, 0));
    let names: Vec<String> = program
        .client_counters()
        .expect("client counters")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["strict nas", "lenient", "limited"]);
    let one = |f: fn(&mut ClientCounters)| {
        let mut c = ClientCounters::default();
        f(&mut c);
        c
    };
    let mut tampered = access_request(&user_attrs(), SECRET);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let cases: Vec<(Vec<u8>, XdpAction, Option<&str>, ClientCounters)> = vec![
        (
            good(STRICT),
            XdpAction::Pass,
            Some("strict nas"),
            one(|c| c.passed = 1),
        ),
        (
            frame(STRICT, AUTH, &tampered),
            XdpAction::Drop,
            Some("strict nas"),
            one(|c| c.drop_bad_ma = 1),
        ),
        (
            frame(STRICT, AUTH, &unsigned(1, 7, &user_attrs())),
            XdpAction::Drop,
            Some("strict nas"),
            one(|c| c.drop_missing_ma = 1),
        ),
        (
            frame(LENIENT, AUTH, &unsigned(1, 7, &user_attrs())),
            XdpAction::Pass,
            Some("lenient"),
            one(|c| c.passed = 1),
        ),
        (
            frame(LENIENT, AUTH, &[1, 2, 0, 10]),
            XdpAction::Drop,
            Some("lenient"),
            one(|c| c.drop_malformed = 1),
        ),
        (
            frame(
                LENIENT,
                ACCT,
                &accounting_request(3, &accounting_attrs(), b"wrong"),
            ),
            XdpAction::Drop,
            Some("lenient"),
            one(|c| c.drop_bad_acct_auth = 1),
        ),
        (
            good(UNKNOWN),
            XdpAction::Drop,
            None,
            ClientCounters::default(),
        ),
    ];
    for (frame, action, name, expected) in cases {
        run_and_check(&program, &frame, 1, action, name, expected);
    }
}

#[test]
fn a_client_over_its_burst_is_dropped_and_others_are_not() {
    if !xdp_tests_enabled() {
        return;
    }
    stay_on_one_cpu();
    let program = load(&settings(0, 0));
    let burst = per_cpu_limit(LIMITED_RATE, 4 * portcullis_xdp_loader::possible_cpus()).burst;
    assert_eq!(burst, 4);
    // The burst passes, the next one is dropped before any RADIUS check.
    let delta = run_and_check(
        &program,
        &good(LIMITED),
        burst + 1,
        XdpAction::Drop,
        Some("limited"),
        ClientCounters {
            passed: u64::from(burst),
            drop_rate_limited: 1,
            ..ClientCounters::default()
        },
    );
    assert_eq!(delta.get(Reason::DropRateLimited), 1);
    assert_eq!(delta.get(Reason::PassMaVerified), u64::from(burst));
    // Still empty (1 pps refills nothing within a run): forged packets are dropped by the
    // limit, without HMAC work.
    let mut forged = access_request(&user_attrs(), b"not the secret");
    forged[1] ^= 0x55;
    let delta = run_and_check(
        &program,
        &frame(LIMITED, AUTH, &forged),
        5,
        XdpAction::Drop,
        Some("limited"),
        ClientCounters {
            drop_rate_limited: 5,
            ..ClientCounters::default()
        },
    );
    assert_eq!(delta.get(Reason::DropRateLimited), 5);
    assert_eq!(delta.get(Reason::DropBadMa), 0);
    // Unlimited clients are unaffected, however many packets they send.
    run_and_check(
        &program,
        &good(STRICT),
        200,
        XdpAction::Pass,
        Some("strict nas"),
        ClientCounters {
            passed: 200,
            ..ClientCounters::default()
        },
    );
}

#[test]
fn the_global_limit_covers_all_clients() {
    if !xdp_tests_enabled() {
        return;
    }
    stay_on_one_cpu();
    let cpus = portcullis_xdp_loader::possible_cpus();
    let program = load(&settings(1, 3 * cpus));
    let burst = per_cpu_limit(1, 3 * cpus).burst;
    assert_eq!(burst, 3);
    // An unlimited client still hits the global bucket.
    let delta = run_and_check(
        &program,
        &good(STRICT),
        burst + 2,
        XdpAction::Drop,
        Some("strict nas"),
        ClientCounters {
            passed: u64::from(burst),
            drop_rate_limited: 2,
            ..ClientCounters::default()
        },
    );
    assert_eq!(delta.get(Reason::DropRateLimited), 2);
    // Unknown sources are dropped as such, before the global bucket.
    let delta = run_and_check(
        &program,
        &good(UNKNOWN),
        3,
        XdpAction::Drop,
        None,
        ClientCounters::default(),
    );
    assert_eq!(delta.get(Reason::DropUnknownClientV4), 3);
    assert_eq!(delta.get(Reason::DropRateLimited), 0);
}

#[test]
fn unlimited_everywhere_passes_everything() {
    if !xdp_tests_enabled() {
        return;
    }
    stay_on_one_cpu();
    let program = load(&settings(0, 0));
    run_and_check(
        &program,
        &good(LENIENT),
        1000,
        XdpAction::Pass,
        Some("lenient"),
        ClientCounters {
            passed: 1000,
            ..ClientCounters::default()
        },
    );
}

#[test]
fn reload_restarts_client_counters_under_new_names() {
    if !xdp_tests_enabled() {
        return;
    }
    stay_on_one_cpu();
    let mut program = load(&settings(0, 0));
    program.run(&good(STRICT)).expect("run");
    let before = program.client_counters().expect("client counters");
    assert_eq!(client(&before, "strict nas").passed, 1);
    program
        .replace_clients(&[named(STRICT, "renamed", true, 0, 0)])
        .expect("replace clients");
    let after = program.client_counters().expect("client counters");
    assert_eq!(after.len(), 1);
    assert_eq!(client(&after, "renamed"), &ClientCounters::default());
    program.run(&good(STRICT)).expect("run");
    let after = program.client_counters().expect("client counters");
    assert_eq!(client(&after, "renamed").passed, 1);
}
