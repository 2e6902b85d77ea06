//! `--scenario mfa`: a million push logins pending at once, and what they cost.
//!
//! 1. Starts a Duo Auth API stand-in in this process (`portcullis-standins`, signatures
//!    checked as Duo documents) where every user is enrolled with a push device that nobody
//!    answers, and a Portcullis pinned to `--server-cpu` with two clients: `bench`
//!    (127.0.0.1, no MFA) and `mfa-nas` (127.0.0.2, Duo push required), `--mfa-logins` users
//!    and `push_timeout_seconds = 120`.
//! 2. Baseline: `--duration` s of closed-loop PAP from the `bench` client (no MFA), with the
//!    pending table empty.
//! 3. Fill: one Access-Request per user from 127.0.0.2 at `--mfa-fill-rate` per second, each
//!    from its own (source port, identifier), so every one is a separate login; the server
//!    sends one push per login to the stand-in and parks the login in its pending table.
//!    The fill must end within the 120 s timeout, so at least `logins / 120` per second.
//! 4. Full: the server's memory (heap in use from its allocator, and RSS) against the
//!    baseline, per pending login; then the same PAP run again while the table is full.
//! 5. Expiry: waits for the 120 s timeouts and checks that every login got its
//!    Access-Reject (Response Authenticator and Message-Authenticator verified).
//!
//! Exit status non-zero when a login was answered before its timeout, when a PAP reply was
//! wrong, or when fewer logins than asked were pending at once.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use portcullis_auth::hash::{HashScheme, PasswordHash};
use portcullis_auth::store;
use portcullis_proto::crypto::{
    reply_ma_authenticator_field, verify_message_authenticator, verify_response_authenticator,
};
use portcullis_proto::{AttrType, Code, PacketBuilder, RawPacket, SharedSecret};
use portcullis_standins::duo::{DuoStandIn, UserScript};
use rand::RngCore;

use crate::load::{self, LoadConfig, LoadResult};
use crate::request::{password, user_name, Expect, Generator, Users};
use crate::server::{OwnServer, ServerOpts};
use crate::{parse_cpu_list, portcullis_bin, udp, Cli, Scenario, OWN_SECRET, TIMEOUT, WARMUP};

/// The push timeout the server is configured with.
const PUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Where the MFA logins come from (the `mfa-nas` client).
const MFA_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Users the PAP runs cycle through.
const PAP_USERS: u32 = 1000;
const DUO_IKEY: &str = "DIBENCHBENCHBENCHBENC";
const DUO_SKEY: &str = "bench-duo-secret-key-bench-duo-secret-key";

struct Pap {
    result: LoadResult,
    server_cpu: Option<f64>,
}

/// Runs the scenario; `Ok(false)` when it completed but something was wrong.
pub fn run(cli: &Cli) -> Result<bool> {
    ensure!(
        cli.server.is_none(),
        "--scenario mfa starts its own server (no --server)"
    );
    let logins = cli.mfa_logins;
    let rate = cli.mfa_fill_rate;
    let fill_time = Duration::from_secs_f64(f64::from(logins) / f64::from(rate));
    ensure!(
        fill_time + Duration::from_secs(2 * cli.duration + 10) < PUSH_TIMEOUT,
        "{logins} logins at {rate}/s take {fill_time:?}: with two {} s PAP runs that does not \
         fit in the {PUSH_TIMEOUT:?} push timeout (raise --mfa-fill-rate or lower --duration)",
        cli.duration
    );
    raise_fd_limit(u64::from(logins.div_ceil(256)) + 1024)?;
    let client_cpus = parse_cpu_list(&cli.client_cpu).context("--client-cpu")?;
    let server_cpus = parse_cpu_list(&cli.server_cpu).context("--server-cpu")?;
    // Pin first, so the stand-in's thread (spawned below) runs beside the load generator.
    udp::pin_current_thread(&client_cpus)
        .with_context(|| format!("cannot pin the load generator to CPU {}", cli.client_cpu))?;

    let t = Instant::now();
    let duo = DuoStandIn::start(DUO_IKEY, DUO_SKEY);
    // Status calls are long-polls, as at Duo: held (3 s) while nobody answers.
    duo.set_push_timeout(PUSH_TIMEOUT * 2);
    for i in 0..logins {
        duo.set_user(&user_name(i), UserScript::enrolled());
    }
    eprintln!(
        "[bench] Duo stand-in at {} with {logins} enrolled users ({:.1?})",
        duo.url(),
        t.elapsed()
    );

    let extra = format!(
        r#"
[[client]]
name = "mfa-nas"
address = "{MFA_SOURCE}/32"
secret = "{OWN_SECRET}"
require_message_authenticator = true
mfa = "duo"

[mfa]
require_user_match = true
override_number_matching_with_otp = false
push_timeout_seconds = {push}
max_pending_per_shard = {max}
max_pending_per_client = {max}
max_status_polls_per_second_per_shard = {polls}

[[mfa.provider]]
name = "duo"
type = "duo"
api_url = "{url}"
integration_key = "{DUO_IKEY}"
secret_key = "{DUO_SKEY}"
"#,
        push = PUSH_TIMEOUT.as_secs(),
        max = logins.max(1) as usize * 2,
        polls = cli.mfa_polls_per_second,
        url = duo.url(),
    );
    let opts = ServerOpts {
        client_address: "127.0.0.1/32".to_owned(),
        extra,
        // Every pending login is an in-progress entry of the RFC 5080 cache.
        duplicate_cache_entries: Some(logins as usize * 2 + 65536),
        users_text: Some(pap_users_file(logins.max(PAP_USERS))),
        ..ServerOpts::default()
    };
    let bin = portcullis_bin()?;
    let server = OwnServer::start_with(
        &bin,
        &cli.server_cpu,
        server_cpus.len(),
        logins.max(PAP_USERS),
        OWN_SECRET,
        &opts,
    )?;
    let secret = SharedSecret::new(OWN_SECRET.as_bytes()).context("the shared secret")?;

    // Baseline.
    let before = memory(&server)?;
    let base = pap(cli, &server, &secret, "PAP, pending table empty")?;

    // Fill.
    let mut sockets = Vec::with_capacity(logins.div_ceil(256) as usize);
    for _ in 0..logins.div_ceil(256) {
        let s = UdpSocket::bind((MFA_SOURCE, 0)).context("cannot bind 127.0.0.2")?;
        s.connect(server.auth)?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let mut authenticators = vec![[0u8; 16]; logins as usize];
    let started = Instant::now();
    fill(&sockets, &secret, &mut authenticators, rate, started)?;
    let fill_took = started.elapsed();
    // The last pushes are still being sent: wait until every login is pending with its push out.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (pending, pushes) = loop {
        let s = server.stats()?;
        let get = |k: &str| s.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let (p, sent) = (get("mfa_pending_logins"), get("mfa_pushes_sent"));
        if sent >= u64::from(logins) || Instant::now() > deadline {
            break (p, sent);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let early = count_replies(&sockets, |_, _| {})?;
    eprintln!(
        "[bench] fill: {logins} logins sent in {fill_took:.1?} ({:.0}/s); pending {pending}, \
         pushes sent {pushes}, early answers {early}",
        f64::from(logins) / fill_took.as_secs_f64()
    );
    let full = memory(&server)?;
    let stats = server.stats()?;
    let polls_at_full = stats.get("mfa_status_polls").cloned().unwrap_or_default();

    // Throughput while full.
    let loaded = pap(cli, &server, &secret, "PAP, table full")?;
    let after_pap = started.elapsed();

    // Expiry: every login answered with Access-Reject once its 120 s are up.
    let expiry_deadline = started + PUSH_TIMEOUT + fill_took + Duration::from_secs(30);
    let mut rejects = 0u64;
    let mut wrong = 0u64;
    let mut answered = vec![false; logins as usize];
    while rejects + wrong < u64::from(logins) && Instant::now() < expiry_deadline {
        count_replies(&sockets, |socket, reply| {
            match check_reject(reply, socket, &authenticators, &secret) {
                Some(i) if !answered[i] => {
                    answered[i] = true;
                    rejects += 1;
                }
                _ => wrong += 1,
            }
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let expired_at = started.elapsed();
    let after = server.stats()?;
    let stopped = server.stop()?;

    let per_login = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / f64::from(logins.max(1));
    println!();
    println!("mfa: {logins} push logins pending at once (Duo stand-in, nobody answers)");
    println!(
        "  fill            {:.1} s at {:.0} logins/s; pushes sent {pushes}; pending at full {pending}",
        fill_took.as_secs_f64(),
        f64::from(logins) / fill_took.as_secs_f64()
    );
    println!(
        "  memory          heap in use {} -> {} MiB: {:.0} bytes per pending login",
        before.heap / (1 << 20),
        full.heap / (1 << 20),
        per_login(before.heap, full.heap)
    );
    println!(
        "                  RSS {} -> {} MiB: {:.0} bytes per pending login",
        before.rss / (1 << 20),
        full.rss / (1 << 20),
        per_login(before.rss, full.rss)
    );
    println!("  status polls    {polls_at_full} by the end of the fill");
    for (label, p) in [("PAP, table empty", &base), ("PAP, table full ", &loaded)] {
        let r = &p.result;
        println!(
            "  {label}  {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us  lost {}  wrong {}  server CPU {}",
            r.ok as f64 / r.measured.as_secs_f64(),
            r.latency_us.value_at_quantile(0.5),
            r.latency_us.value_at_quantile(0.99),
            r.lost,
            r.wrong,
            p.server_cpu
                .map_or("-".to_owned(), |c| format!("{c:.0} %")),
        );
    }
    let ratio = (loaded.result.ok as f64 / loaded.result.measured.as_secs_f64())
        / (base.result.ok as f64 / base.result.measured.as_secs_f64());
    println!("  full / empty    {:.3}", ratio);
    println!(
        "  expiry          {rejects} Access-Reject (timeout) of {logins} by {:.0} s; wrong {wrong}; PAP run ended at {:.0} s",
        expired_at.as_secs_f64(),
        after_pap.as_secs_f64()
    );
    println!(
        "  server          access_reject {}  dropped {}",
        after.get("access_reject").map_or("?", String::as_str),
        after.get("dropped").map_or("?", String::as_str)
    );
    if !stopped.log.trim().is_empty() {
        eprintln!("[bench] server log (warn and above):");
        for l in stopped.log.lines().take(20) {
            eprintln!("  {l}");
        }
    }
    let mut ok = true;
    if early > 0 {
        eprintln!("[bench] FAILED: {early} logins answered before their timeout");
        ok = false;
    }
    if pending < u64::from(logins) {
        eprintln!("[bench] FAILED: only {pending} of {logins} logins pending at once");
        ok = false;
    }
    if rejects < u64::from(logins) || wrong > 0 {
        eprintln!("[bench] FAILED: {rejects} of {logins} timeouts answered, {wrong} wrong");
        ok = false;
    }
    if base.result.wrong + loaded.result.wrong > 0 {
        eprintln!("[bench] FAILED: wrong PAP replies");
        ok = false;
    }
    Ok(ok)
}

/// A users file with a salted SHA-512 PAP hash per user, written directly: the general
/// generator stores every credential (NT hash, reversible CHAP) and takes minutes for a
/// million users.
fn pap_users_file(count: u32) -> String {
    let mut text = String::from(store::NEW_FILE_HEADER);
    let mut salt = [0u8; 16];
    for i in 0..count {
        rand::thread_rng().fill_bytes(&mut salt);
        let hash = PasswordHash::create(HashScheme::Ssha512, password(i).as_bytes(), &salt);
        text.push_str(&format!(
            "\n[[user]]\nname = \"{}\"\npassword = \"{}\"\n",
            user_name(i),
            hash.encode()
        ));
    }
    text
}

struct Memory {
    heap: u64,
    rss: u64,
}

fn memory(server: &OwnServer) -> Result<Memory> {
    let s = server.stats()?;
    let heap = s
        .get("heap_in_use_bytes")
        .and_then(|v| v.parse().ok())
        .context("the server reports no heap_in_use_bytes")?;
    Ok(Memory {
        heap,
        rss: server.rss_bytes()?,
    })
}

/// A closed-loop PAP run from the `bench` client (no MFA).
fn pap(cli: &Cli, server: &OwnServer, secret: &SharedSecret, label: &str) -> Result<Pap> {
    let users = Users::new(PAP_USERS);
    let cfg = LoadConfig {
        target: server.auth,
        window: cli.window as usize,
        sockets: cli.sockets as usize,
        warmup: WARMUP,
        duration: Duration::from_secs(cli.duration),
        timeout: TIMEOUT,
        rate: None,
        label: label.to_owned(),
        spin: false,
    };
    let mut generator = Generator::new(Scenario::Pap, secret, &users, Expect::Accept);
    let mut cpu = (None, None);
    let result = load::run(&cfg, &mut generator, secret, &users, |m| {
        let now = server.cpu_seconds().ok();
        match m {
            load::Mark::MeasureStart => cpu.0 = now,
            load::Mark::MeasureEnd => cpu.1 = now,
        }
    })?;
    let server_cpu = match cpu {
        (Some(a), Some(b)) => Some((b - a) / result.measured.as_secs_f64() * 100.0),
        _ => None,
    };
    Ok(Pap { result, server_cpu })
}

/// Sends one Access-Request per login, paced at `rate` per second; login `i` goes out on
/// socket `i / 256` with identifier `i % 256`.
fn fill(
    sockets: &[UdpSocket],
    secret: &SharedSecret,
    authenticators: &mut [[u8; 16]],
    rate: u32,
    started: Instant,
) -> Result<()> {
    let mut rng = rand::thread_rng();
    let mut buf = Vec::with_capacity(256);
    let mut last_report = Instant::now();
    for (i, auth) in authenticators.iter_mut().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let n = u32::try_from(i).context("too many logins")?;
        rng.fill_bytes(auth);
        let mut b = PacketBuilder::with_buffer(
            std::mem::take(&mut buf),
            Code::ACCESS_REQUEST,
            (i % 256) as u8,
        );
        b.add_message_authenticator()?;
        b.push(AttrType::USER_NAME, user_name(n).as_bytes())?;
        b.push_ipv4(AttrType::NAS_IP_ADDRESS, MFA_SOURCE)?;
        b.push_u32(AttrType::NAS_PORT, n)?;
        b.push_user_password(password(n).as_bytes(), secret, auth)?;
        b.finish_access_request(secret, *auth);
        buf = b.into_buffer();
        let socket = &sockets[i / 256];
        loop {
            match socket.send(&buf) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) => return Err(e).context("sending a login"),
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!("[bench] fill: {} logins sent", i + 1);
        }
    }
    Ok(())
}

/// Reads every reply waiting on the sockets, handing each to `each` with its socket index.
fn count_replies(sockets: &[UdpSocket], mut each: impl FnMut(usize, &[u8])) -> Result<u64> {
    let mut buf = [0u8; udp::MAX_DATAGRAM];
    let mut n = 0;
    for (i, s) in sockets.iter().enumerate() {
        loop {
            match s.recv(&mut buf) {
                Ok(len) => {
                    n += 1;
                    each(i, &buf[..len]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends: not a reply.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e).context("receiving"),
            }
        }
    }
    Ok(n)
}

/// The login a verified Access-Reject answers, if it is one.
fn check_reject(
    reply: &[u8],
    socket: usize,
    authenticators: &[[u8; 16]],
    secret: &SharedSecret,
) -> Option<usize> {
    let p = RawPacket::decode(reply).ok()?;
    let i = socket * 256 + usize::from(p.identifier());
    let auth = authenticators.get(i)?;
    if p.code() != Code::ACCESS_REJECT || !verify_response_authenticator(&p, auth, secret) {
        return None;
    }
    let field = reply_ma_authenticator_field(p.code(), Code::ACCESS_REQUEST, auth);
    (verify_message_authenticator(&p, &field, secret) == Some(true)).then_some(i)
}

fn raise_fd_limit(want: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    if lim.rlim_max < want {
        bail!(
            "{want} sockets needed but the open-file limit is {} (hard)",
            lim.rlim_max
        );
    }
    lim.rlim_cur = want;
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
