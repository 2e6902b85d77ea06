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
//!
//! Rate limits: each `[[client]]`'s `rate_limit_pps` / `rate_limit_burst` and the global
//! `xdp.global_rate_limit_pps` / `xdp.global_rate_limit_burst` go to the filter, which drops
//! packets over them before any HMAC work (per-CPU buckets: the loader divides each limit by
//! the number of CPUs). [`XdpState::render`] shows the per-reason counters and, per client,
//! `xdp.IFACE.client.NAME.REASON N` (spaces in names as `_`).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use portcullis_xdp_loader::{ClientCounters, XdpClient, XdpFilter, XdpMode, XdpSettings};

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
            name: c.name.clone(),
            rate_pps: c.rate_limit_pps,
            burst: c.rate_limit_burst,
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
                global_rate_pps: config.xdp.global_rate_limit_pps,
                global_burst: config.xdp.global_rate_limit_burst,
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
            match f.client_counters() {
                Ok(clients) => render_clients(&mut out, f.interface(), &clients),
                Err(e) => {
                    let _ = writeln!(out, "xdp.{}.client_error {}", f.interface(), e);
                }
            }
        }
        out
    }
}

/// `xdp.IFACE.client.NAME.REASON N` for every client and reason.
fn render_clients(out: &mut String, interface: &str, clients: &[(String, ClientCounters)]) {
    for (name, counters) in clients {
        let name = metric_name(name);
        for (reason, n) in counters.iter() {
            let _ = writeln!(out, "xdp.{interface}.client.{name}.{reason} {n}");
        }
    }
}

/// A client name as one field of a `name value` line: whitespace becomes `_`.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    #[test]
    fn client_lines_escape_names() {
        let mut out = String::new();
        let counters = ClientCounters {
            passed: 3,
            drop_rate_limited: 2,
            ..ClientCounters::default()
        };
        render_clients(&mut out, "eth0", &[("core nas\t1".into(), counters)]);
        assert!(
            out.contains("xdp.eth0.client.core_nas_1.passed 3\n"),
            "{out}"
        );
        assert!(
            out.contains("xdp.eth0.client.core_nas_1.drop_rate_limited 2\n"),
            "{out}"
        );
        assert!(
            out.contains("xdp.eth0.client.core_nas_1.drop_bad_ma 0\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 6);
        assert_eq!(metric_name("a b\tc"), "a_b_c");
    }

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Origin::File("/etc/portcullis/test.toml".into()))
    }

    #[test]
    fn rate_limits_reach_the_filter_settings() {
        let c = parse(
            "[xdp]\nglobal_rate_limit_pps = 5000\nglobal_rate_limit_burst = 100\n\
             [[client]]\nname = \"nas one\"\naddress = \"10.0.0.0/8\"\nsecret = \"x\"\n\
             rate_limit_pps = 200\nrate_limit_burst = 50\n\
             [[client]]\naddress = \"192.0.2.1\"\nsecret = \"y\"\n",
        )
        .expect("valid config");
        assert_eq!(c.xdp.global_rate_limit_pps, 5000);
        assert_eq!(c.xdp.global_rate_limit_burst, 100);
        let clients = clients_of(&c);
        assert_eq!(clients[0].name, "nas one");
        assert_eq!((clients[0].rate_pps, clients[0].burst), (200, 50));
        // Defaults: unlimited.
        assert_eq!((clients[1].rate_pps, clients[1].burst), (0, 0));
        let d = parse("[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"x\"\n").expect("valid");
        assert_eq!(d.xdp.global_rate_limit_pps, 0);
        assert_eq!(d.xdp.global_rate_limit_burst, 0);
    }

    #[test]
    fn rate_limits_are_range_checked_with_their_line() {
        let e = parse("[xdp]\nglobal_rate_limit_pps = -1\n").expect_err("negative rate");
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("xdp.global_rate_limit_pps"), "{e}");
        let e = parse(
            "[[client]]\naddress = \"10.0.0.0/8\"\nsecret = \"x\"\nrate_limit_burst = 1000000000000\n",
        )
        .expect_err("burst too large");
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("rate_limit_burst"), "{e}");
    }
}
