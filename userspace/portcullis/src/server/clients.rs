//! The RADIUS client table: which source addresses may talk to us, and with which secret.
//! Longest-prefix match over the configured networks; exact host entries are a hash lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use portcullis_proto::{SharedSecret, VerifyPolicy};

use crate::config::ClientConfig;

pub struct Client {
    /// Position in the configuration; stable across a reload that keeps the client list.
    pub index: u32,
    pub name: Arc<str>,
    pub network: IpNet,
    pub secret: SharedSecret,
    pub require_message_authenticator: bool,
    /// The verification policy derived from the settings above, built once.
    pub policy: VerifyPolicy,
    /// The second factor every login through this client must pass.
    pub mfa: Option<Arc<crate::mfa::Provider>>,
    /// During a secret change-over: the same client with the next secret. A request that does
    /// not verify with `secret` is tried with it, and then handled (replies signed) as this one.
    pub rotated: Option<Arc<Client>>,
}

pub struct ClientTable {
    hosts: HashMap<IpAddr, usize>,
    /// Non-host networks, longest prefix first.
    networks: Vec<(IpNet, usize)>,
    clients: Vec<Arc<Client>>,
}

impl ClientTable {
    pub fn new(cfg: &[ClientConfig], mfa: &crate::mfa::Mfa) -> anyhow::Result<Self> {
        let mut clients: Vec<Arc<Client>> = Vec::with_capacity(cfg.len());
        for (index, c) in cfg.iter().enumerate() {
            let provider = match &c.mfa {
                None => None,
                Some(name) => Some(mfa.providers.get(name).cloned().ok_or_else(|| {
                    anyhow::anyhow!(
                        "client `{}` (line {}): no MFA provider `{name}`",
                        c.name,
                        c.line
                    )
                })?),
            };
            let policy = {
                let mut p = VerifyPolicy::default();
                p.require_message_authenticator = c.require_message_authenticator;
                p
            };
            let rotated = match &c.secret_next {
                None => None,
                Some(next) => Some(Arc::new(Client {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    name: c.name.as_str().into(),
                    network: c.network,
                    secret: SharedSecret::new(next.expose().as_bytes()).map_err(|e| {
                        anyhow::anyhow!("client `{}` (line {}): secret_next: {e}", c.name, c.line)
                    })?,
                    require_message_authenticator: c.require_message_authenticator,
                    policy,
                    mfa: provider.clone(),
                    rotated: None,
                })),
            };
            clients.push(Arc::new(Client {
                rotated,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                mfa: provider,
                name: c.name.as_str().into(),
                network: c.network,
                secret: SharedSecret::new(c.secret.expose().as_bytes())
                    .map_err(|e| anyhow::anyhow!("client `{}` (line {}): {e}", c.name, c.line))?,
                require_message_authenticator: c.require_message_authenticator,
                policy,
            }));
        }
        let mut hosts = HashMap::new();
        let mut networks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            if c.network.prefix_len() == c.network.max_prefix_len() {
                hosts.insert(c.network.addr(), i);
            } else {
                networks.push((c.network, i));
            }
        }
        networks.sort_by_key(|n| std::cmp::Reverse(n.0.prefix_len()));
        Ok(ClientTable {
            hosts,
            networks,
            clients,
        })
    }

    /// The client a datagram from `ip` belongs to, if any. IPv4-mapped IPv6 sources match IPv4
    /// client entries.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if let Some(&i) = self.hosts.get(&ip) {
            return Some(&self.clients[i]);
        }
        self.networks
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|&(_, i)| &self.clients[i])
    }

    pub fn clients(&self) -> &[Arc<Client>] {
        &self.clients
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Config, Origin};

    #[test]
    fn longest_prefix_wins_and_unknown_is_none() {
        let cfg = Config::parse(
            "[[client]]\nname = \"wide\"\naddress = \"10.0.0.0/8\"\nsecret = \"a\"\n\
             [[client]]\nname = \"narrow\"\naddress = \"10.1.0.0/16\"\nsecret = \"b\"\n\
             [[client]]\nname = \"host\"\naddress = \"10.1.2.3\"\nsecret = \"c\"\n\
             [[client]]\nname = \"v6\"\naddress = \"2001:db8::/32\"\nsecret = \"d\"\n",
            Origin::File("t.toml".into()),
        )
        .unwrap();
        let t = ClientTable::new(&cfg.clients, &crate::mfa::Mfa::build(&cfg).unwrap()).unwrap();
        let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|c| c.name.clone());
        assert_eq!(name("10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name("10.1.2.4").as_deref(), Some("narrow"));
        assert_eq!(name("10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(name("::ffff:10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(name("2001:db8::1").as_deref(), Some("v6"));
        assert_eq!(name("192.0.2.1"), None);
        assert_eq!(name("2001:db9::1"), None);
    }
}
