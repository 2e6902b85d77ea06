//! The server: binds the listeners, attaches the XDP pre-filter, starts one shard per core,
//! serves the control socket, reloads on SIGHUP and shuts down cleanly on SIGTERM/SIGINT.
//!
//! Shards share nothing mutable: each has its own sockets, duplicate cache and counters. What
//! they read in common ([`Shared`]: clients, users, the accounting sink) is an immutable snapshot
//! behind an `ArcSwap`, replaced whole on reload.

pub mod clients;
pub mod dedup;
pub mod directory;
pub mod pipeline;
pub mod policy;
pub mod primary;
pub mod push_queue;
pub mod reply;
pub mod second_factor;
pub mod shard;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use portcullis_auth::store::LocalUsers;
use tokio_util::sync::CancellationToken;

use crate::accounting::{AccountingSink, AccountingWriter};
use crate::config::{Config, Origin};
use crate::stats::ShardStats;
use crate::xdp::XdpState;
use clients::ClientTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Auth,
    Accounting,
}

/// The read-only state every shard consults, replaced whole on reload.
pub struct Shared {
    pub clients: ClientTable,
    pub users: LocalUsers,
    pub accounting: AccountingSink,
    /// Built once at start-up and carried over by reloads (TOTP replay state and outstanding
    /// challenges survive a reload; provider settings need a restart).
    pub mfa: Arc<crate::mfa::Mfa>,
    /// `[directory]`, built once at start-up and carried over by reloads (its settings need a
    /// restart).
    pub directory: Option<Arc<directory::Backend>>,
    /// `[[policy]]`, compiled; replaced by a reload like the clients.
    pub policies: policy::Policies,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(config: Config) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let users = crate::users::load(&config.users)?;
    let (writer, sink) = AccountingWriter::start(
        &config.accounting.directory,
        config.accounting.max_batch,
        config.accounting.journal_bytes,
    )
    .with_context(|| {
        format!(
            "cannot start accounting in {}",
            config.accounting.directory.display()
        )
    })?;
    let mfa = Arc::new(crate::mfa::Mfa::build(&config)?);
    for p in &config.mfa.providers {
        tracing::info!(provider = %p.name, fail_mode = ?p.fail_mode, "MFA provider ready");
    }
    let directory = match &config.directory {
        None => None,
        Some(d) => {
            let dir = portcullis_directory::Directory::start(d.directory.clone())
                .context("cannot start the [directory] backend")?;
            tracing::info!(
                servers = ?d.directory.servers,
                mschapv2 = d.directory.ntlm.is_some(),
                "directory ready (users not in the local store are authenticated against it)"
            );
            Some(Arc::new(directory::Backend {
                directory: dir,
                on_unavailable: d.on_unavailable,
            }))
        }
    };
    let shared = Arc::new(ArcSwap::from_pointee(Shared {
        clients: ClientTable::new(&config.clients, &mfa)?,
        policies: policy::Policies::new(&config.policies, &config.clients, &mfa)?,
        users,
        accounting: sink,
        mfa,
        directory,
    }));

    let shards = if config.server.shards == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.server.shards
    };

    // Bind every socket before anything starts, so a busy port fails the start-up plainly.
    let listeners: Vec<(SocketAddr, ListenerKind)> = config
        .server
        .auth_listen
        .iter()
        .map(|a| (*a, ListenerKind::Auth))
        .chain(
            config
                .server
                .acct_listen
                .iter()
                .map(|a| (*a, ListenerKind::Accounting)),
        )
        .collect();
    let mut per_shard: Vec<Vec<shard::ShardSocket>> = (0..shards).map(|_| Vec::new()).collect();
    for (index, (addr, kind)) in listeners.iter().enumerate() {
        for (s, sockets) in per_shard.iter_mut().enumerate() {
            let (socket, sizes) = crate::net::bind_reuseport(
                *addr,
                config.server.recv_buffer_bytes,
                config.server.send_buffer_bytes,
            )
            .with_context(|| format!("cannot listen on {addr} ({kind:?})"))?;
            if s == 0 {
                tracing::info!(
                    listen = %addr,
                    kind = ?kind,
                    shards,
                    recv_buffer = sizes.recv,
                    send_buffer = sizes.send,
                    "listening"
                );
                if sizes.recv < config.server.recv_buffer_bytes {
                    tracing::warn!(
                        asked = config.server.recv_buffer_bytes,
                        got = sizes.recv,
                        "receive buffer smaller than configured (raise net.core.rmem_max or run with CAP_NET_ADMIN)"
                    );
                }
            }
            sockets.push(shard::ShardSocket {
                index: u16::try_from(index).context("too many listeners")?,
                kind: *kind,
                socket,
            });
        }
    }

    let xdp = XdpState::start(&config)?;

    let cancel = CancellationToken::new();
    let stats: Vec<Arc<ShardStats>> = (0..shards)
        .map(|_| Arc::new(ShardStats::default()))
        .collect();
    let mut threads = Vec::new();
    for (id, sockets) in per_shard.into_iter().enumerate() {
        let params = shard::ShardParams {
            id,
            sockets,
            shared: shared.clone(),
            stats: stats[id].clone(),
            cancel: cancel.clone(),
            batch: config.server.batch,
            udp_gso: config.server.udp_gso,
            dedup_window: config.server.duplicate_window,
            dedup_entries: config.server.duplicate_cache_entries,
            shutdown_grace: config.server.shutdown_grace,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    if let Err(e) = shard::run(params) {
                        tracing::error!(shard = id, error = %e, "shard failed");
                    }
                })
                .context("cannot start shard thread")?,
        );
    }
    tracing::info!(
        shards,
        clients = config.clients.len(),
        origin = %match &config.origin { Origin::Embedded => "embedded default".to_owned(), Origin::File(p) => p.display().to_string() },
        startup_ms = started.elapsed().as_millis() as u64,
        "portcullis ready"
    );

    let xdp = std::sync::Mutex::new(xdp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let control_path = config.server.control_socket.clone();
    let result = rt.block_on(async {
        let mut control: std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<()>> + '_>,
        > = Box::pin(crate::control::serve(
            &control_path,
            stats.clone(),
            &xdp,
            started,
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut sweep = tokio::time::interval(std::time::Duration::from_secs(10));
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = hup.recv() => reload(&config, &shared, &xdp),
                _ = sweep.tick() => {
                    shared.load().mfa.challenges.sweep(Instant::now());
                }
                r = &mut control => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "control socket failed");
                    }
                    // Keep serving RADIUS without the control socket.
                    control = Box::pin(crate::control::never());
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    });

    // Stop receiving, let every shard answer what it has in flight, then flush accounting.
    cancel.cancel();
    for t in threads {
        let _ = t.join();
    }
    drop(shared);
    writer.finish();
    let _ = std::fs::remove_file(&config.server.control_socket);
    drop(xdp); // detaches the XDP program
    tracing::info!("portcullis stopped; accounting flushed");
    result
}

/// SIGHUP: re-read the configuration file and swap in new clients and users. Listeners, shards
/// and XDP attachment need a restart to change; new client networks reach the XDP maps at once.
fn reload(config: &Config, shared: &Arc<ArcSwap<Shared>>, xdp: &std::sync::Mutex<XdpState>) {
    let new = match &config.origin {
        Origin::Embedded => Config::embedded(),
        Origin::File(p) => Config::load(Path::new(p)),
    };
    let new = match new {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload refused: configuration invalid; keeping the old one");
            return;
        }
    };
    let users = match crate::users::load(&new.users) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload refused: users invalid; keeping the old ones");
            return;
        }
    };
    if new.server.auth_listen != config.server.auth_listen
        || new.server.acct_listen != config.server.acct_listen
    {
        tracing::warn!("listener changes need a restart; they are ignored by this reload");
    }
    let old = shared.load();
    let clients = match ClientTable::new(&new.clients, &old.mfa) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload refused; keeping the old clients");
            return;
        }
    };
    let policies = match policy::Policies::new(&new.policies, &new.clients, &old.mfa) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload refused; keeping the old policies");
            return;
        }
    };
    shared.store(Arc::new(Shared {
        clients,
        policies,
        users,
        accounting: old.accounting.clone(),
        mfa: old.mfa.clone(),
        directory: old.directory.clone(),
    }));
    if let Ok(mut x) = xdp.lock() {
        x.replace_clients(&new);
    }
    tracing::info!(
        clients = new.clients.len(),
        policies = new.policies.policies.len(),
        "configuration reloaded"
    );
}

/// Refuses to go on when the result of a step is unusable; used by `check-config`.
pub fn check(config: &Config) -> Result<()> {
    crate::users::load(&config.users)?;
    if config.clients.is_empty() {
        bail!("no [[client]] configured: every request would be dropped");
    }
    Ok(())
}
