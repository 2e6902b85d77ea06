//! Glue between the configuration and the XDP pre-filter (`portcullis-xdp-loader`).
//!
//! At start-up the program is attached to each configured interface when the process may do so;
//! otherwise the server says plainly why and carries on, because the shards apply the same
//! checks in userspace for every datagram anyway. `xdp.required = true` turns "cannot attach"
//! into a start-up failure.
//!
//! The filter gets every `[[client]]`'s network, secret and `require_message_authenticator`, so
//! it drops unknown sources, malformed packets and requests whose Message-Authenticator or
//! Accounting Request Authenticator does not verify. The shards still verify everything
//! themselves: a packet that reached them may have bypassed XDP (another interface, generic
//! mode ordering, a reload in progress), so the kernel verdict is never trusted.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use portcullis_xdp_loader::{XdpClient, XdpFilter, XdpMode, XdpSettings};

use crate::config::{Config, XdpModeSetting};

pub struct XdpState {
    filters: Vec<XdpFilter>,
    /// Why XDP is not in use, when it is not.
    inactive_reason: Option<String>,
}

fn clients_of(config: &Config) -> Vec<XdpClient> {
    config
        .clients
        .iter()
        .map(|c| XdpClient {
            network: (c.network.addr(), c.network.prefix_len()),
            // The current secret and, during a change-over, the next one: either verifies.
            secrets: std::iter::once(&c.secret)
                .chain(c.secret_next.as_ref())
                .map(|s| s.expose().as_bytes().to_vec())
                .collect(),
            require_message_authenticator: c.require_message_authenticator,
        })
        .collect()
}

impl XdpState {
    pub fn start(config: &Config) -> Result<XdpState> {
        let mode = match config.xdp.mode {
            XdpModeSetting::Off => {
                tracing::info!("XDP pre-filter disabled by configuration (xdp.mode = \"off\"); filtering in userspace");
                return Ok(XdpState {
                    filters: Vec::new(),
                    inactive_reason: Some("disabled by configuration".into()),
                });
            }
            XdpModeSetting::Auto => XdpMode::Auto,
            XdpModeSetting::Generic => XdpMode::Generic,
            XdpModeSetting::Native => XdpMode::Native,
        };
        let mut filters = Vec::new();
        for iface in &config.xdp.interfaces {
            let settings = XdpSettings {
                interface: iface.clone(),
                mode,
                ports: config.listen_ports(),
                clients: clients_of(config),
            };
            match XdpFilter::attach(&settings) {
                Ok(f) => {
                    tracing::info!(
                        interface = %iface,
                        mode = %f.attached_mode(),
                        "XDP pre-filter attached: datagrams to the RADIUS ports from unknown clients, malformed packets and bad authenticators are dropped in the kernel"
                    );
                    filters.push(f);
                }
                Err(e) => {
                    if config.xdp.required {
                        bail!("XDP pre-filter required (xdp.required = true) but cannot attach to {iface}: {e}");
                    }
                    tracing::warn!(
                        interface = %iface,
                        reason = %e,
                        "XDP pre-filter not attached; unknown clients are filtered in userspace instead"
                    );
                    // Detach what was attached: the kernel filter is all interfaces or none.
                    return Ok(XdpState {
                        filters: Vec::new(),
                        inactive_reason: Some(format!("{iface}: {e}")),
                    });
                }
            }
        }
        Ok(XdpState {
            filters,
            inactive_reason: None,
        })
    }

    /// Pushes a reloaded client list into the kernel maps.
    pub fn replace_clients(&mut self, config: &Config) {
        let clients = clients_of(config);
        for f in &mut self.filters {
            if let Err(e) = f.replace_clients(&clients) {
                tracing::error!(interface = %f.interface(), error = %e, "cannot update XDP client map");
            }
        }
    }

    /// `name value` lines for the control socket.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.inactive_reason {
            Some(r) => {
                let _ = writeln!(out, "xdp.active 0");
                let _ = writeln!(out, "xdp.reason {}", r.replace('\n', " "));
            }
            None => {
                let _ = writeln!(out, "xdp.active 1");
            }
        }
        for f in &self.filters {
            let _ = writeln!(out, "xdp.{}.mode {}", f.interface(), f.attached_mode());
            match f.counters() {
                Ok(c) => {
                    for (name, v) in c.iter() {
                        let _ = writeln!(out, "xdp.{}.{} {}", f.interface(), name, v);
                    }
                    // Every pass of a known client's datagram, verified or not.
                    let _ = writeln!(
                        out,
                        "xdp.{}.pass_known_client {}",
                        f.interface(),
                        c.known_client_passed()
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "xdp.{}.error {}", f.interface(), e);
                }
            }
        }
        out
    }
}
