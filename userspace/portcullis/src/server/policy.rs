//! Network policies as the shards evaluate them: compiled once per (re)load from
//! `[[policy]]` (client names become client indices, MFA provider names become providers,
//! reply attributes are parsed), then checked in order after the first factor, first match
//! wins, without allocating.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use portcullis_proto::dict::AttrValue;

use crate::config::{ClientConfig, PoliciesConfig, PolicyAccess, PolicyMfa};
use crate::mfa::{Mfa, Provider};

/// What a policy says about the second factor.
pub enum SecondFactor {
    /// The client's `mfa`.
    Client,
    /// None, whatever the client says.
    Skip,
    /// This provider, whatever the client says.
    Provider(Arc<Provider>),
}

/// One compiled `[[policy]]`.
pub struct Policy {
    pub name: Box<str>,
    /// Sorted client indices (`None` = any client).
    clients: Option<Box<[u32]>>,
    /// Group names, compared ASCII-case-insensitively (AD group names are case-insensitive).
    groups: Option<Box<[Box<str>]>>,
    nas_port_types: Option<Box<[u32]>>,
    nas_ip: Option<Box<[IpNet]>>,
    pub access: PolicyAccess,
    pub mfa: SecondFactor,
    /// Added to every Access-Accept of the logins this policy grants.
    pub reply: Box<[AttrValue]>,
}

/// What a login brings to the policies.
pub struct Facts<G> {
    pub client_index: u32,
    /// The user's groups (local `groups`, or the directory's, nested ones included).
    pub groups: G,
    pub nas_port_type: Option<u32>,
    /// NAS-IP-Address (or NAS-IPv6-Address) from the request.
    pub nas_ip: Option<IpAddr>,
}

impl<G> Facts<G> {
    pub fn new(
        client_index: u32,
        groups: G,
        nas_port_type: Option<u32>,
        nas_ip: Option<IpAddr>,
    ) -> Self {
        Facts {
            client_index,
            groups,
            nas_port_type,
            nas_ip,
        }
    }
}

/// The policies' verdict on a login.
pub enum Verdict<'p> {
    /// Go on (second factor, then Access-Accept); `None`: no policy matched and
    /// `when_none_match = "grant"` (or no policies at all).
    Grant(Option<&'p Arc<Policy>>),
    /// Access-Reject: an explicit deny policy (NPS reason 65), or none matched (reason 48).
    Deny(Option<&'p Arc<Policy>>),
}

/// The compiled policy set of one configuration snapshot.
pub struct Policies {
    list: Box<[Arc<Policy>]>,
    when_none_match: PolicyAccess,
}

impl Policies {
    /// No policies and nothing to deny: every login is granted as before policies existed.
    pub fn open() -> Self {
        Policies {
            list: Box::new([]),
            when_none_match: PolicyAccess::Grant,
        }
    }

    pub fn new(cfg: &PoliciesConfig, clients: &[ClientConfig], mfa: &Mfa) -> anyhow::Result<Self> {
        let mut list = Vec::with_capacity(cfg.policies.len());
        for p in &cfg.policies {
            let clients = p.clients.as_ref().map(|names| {
                let mut idx: Vec<u32> = clients
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| names.contains(&c.name))
                    .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                    .collect();
                idx.sort_unstable();
                idx.dedup();
                idx.into_boxed_slice()
            });
            let second = match &p.mfa {
                PolicyMfa::Client => SecondFactor::Client,
                PolicyMfa::Skip => SecondFactor::Skip,
                PolicyMfa::Provider(name) => {
                    SecondFactor::Provider(mfa.providers.get(name).cloned().ok_or_else(|| {
                        anyhow::anyhow!(
                            "policy `{}` (line {}): no running MFA provider `{name}` \
                             (providers need a restart)",
                            p.name,
                            p.line
                        )
                    })?)
                }
            };
            list.push(Arc::new(Policy {
                name: p.name.as_str().into(),
                clients,
                groups: p
                    .groups
                    .as_ref()
                    .map(|g| g.iter().map(|s| s.as_str().into()).collect()),
                nas_port_types: p.nas_port_types.as_ref().map(|v| v.as_slice().into()),
                nas_ip: p.nas_ip.as_ref().map(|v| v.as_slice().into()),
                access: p.access,
                mfa: second,
                reply: p.reply_attributes.as_slice().into(),
            }));
        }
        Ok(Policies {
            list: list.into_boxed_slice(),
            when_none_match: cfg.when_none_match,
        })
    }

    /// Nothing to evaluate: no policies and grant when none match.
    pub fn is_open(&self) -> bool {
        self.list.is_empty() && self.when_none_match == PolicyAccess::Grant
    }

    /// The first policy whose conditions all hold decides.
    pub fn evaluate<'g, G>(&self, facts: &Facts<G>) -> Verdict<'_>
    where
        G: Iterator<Item = &'g str> + Clone,
    {
        for p in self.list.iter() {
            if p.matches(facts) {
                return match p.access {
                    PolicyAccess::Grant => Verdict::Grant(Some(p)),
                    PolicyAccess::Deny => Verdict::Deny(Some(p)),
                };
            }
        }
        match self.when_none_match {
            PolicyAccess::Grant => Verdict::Grant(None),
            PolicyAccess::Deny => Verdict::Deny(None),
        }
    }
}

/// What the pipeline does with a login whose first factor succeeded.
pub enum Next {
    /// Access-Reject with this reason, naming the deny policy when one matched.
    Reject {
        reason: crate::audit::Reason,
        policy: Option<Arc<Policy>>,
    },
    /// Go on: the grant carries `policy`; `provider` is the second factor (the policy's, else
    /// the client's); `skipped` says a policy waived the client's second factor.
    Go {
        policy: Option<Arc<Policy>>,
        provider: Option<Arc<Provider>>,
        skipped: bool,
    },
}

/// The NAS-Port-Type of a request, when it has a well-formed one.
pub fn nas_port_type(request: &portcullis_proto::VerifiedRequest<'_>) -> Option<u32> {
    request
        .get(portcullis_proto::AttrType::NAS_PORT_TYPE)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_be_bytes)
}

impl Policies {
    /// The policies' decision for a login through `client`, and its second factor.
    pub fn next<'g, G>(&self, client: &super::clients::Client, facts: &Facts<G>) -> Next
    where
        G: Iterator<Item = &'g str> + Clone,
    {
        if self.is_open() {
            return Next::Go {
                policy: None,
                provider: client.mfa.clone(),
                skipped: false,
            };
        }
        match self.evaluate(facts) {
            Verdict::Deny(Some(p)) => Next::Reject {
                reason: crate::audit::Reason::PolicyDenied,
                policy: Some(p.clone()),
            },
            Verdict::Deny(None) => Next::Reject {
                reason: crate::audit::Reason::NoPolicyMatch,
                policy: None,
            },
            Verdict::Grant(p) => {
                let (provider, skipped) = match p.map(|p| &p.mfa) {
                    None | Some(SecondFactor::Client) => (client.mfa.clone(), false),
                    Some(SecondFactor::Skip) => (None, client.mfa.is_some()),
                    Some(SecondFactor::Provider(x)) => (Some(x.clone()), false),
                };
                Next::Go {
                    policy: p.cloned(),
                    provider,
                    skipped,
                }
            }
        }
    }
}

impl Policy {
    fn matches<'g, G>(&self, f: &Facts<G>) -> bool
    where
        G: Iterator<Item = &'g str> + Clone,
    {
        if let Some(c) = &self.clients {
            if c.binary_search(&f.client_index).is_err() {
                return false;
            }
        }
        if let Some(t) = &self.nas_port_types {
            if !f.nas_port_type.is_some_and(|v| t.contains(&v)) {
                return false;
            }
        }
        if let Some(nets) = &self.nas_ip {
            if !f
                .nas_ip
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
            {
                return false;
            }
        }
        if let Some(want) = &self.groups {
            let hit = f
                .groups
                .clone()
                .any(|g| want.iter().any(|w| w.eq_ignore_ascii_case(g)));
            if !hit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Config, Origin};

    fn compile(extra: &str) -> Policies {
        let text = format!(
            "[[client]]\nname = \"vpn\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n\
             [[client]]\nname = \"wifi\"\naddress = \"10.0.0.2\"\nsecret = \"s\"\n{extra}"
        );
        let c = Config::parse(&text, Origin::File("/x/test.toml".into())).unwrap();
        let mfa = Mfa::build(&c).unwrap();
        Policies::new(&c.policies, &c.clients, &mfa).unwrap()
    }

    fn name<G>(p: &Policies, f: &Facts<G>) -> String
    where
        G: Iterator<Item = &'static str> + Clone,
    {
        match p.evaluate(f) {
            Verdict::Grant(Some(p)) => format!("grant {}", p.name),
            Verdict::Grant(None) => "grant -".into(),
            Verdict::Deny(Some(p)) => format!("deny {}", p.name),
            Verdict::Deny(None) => "deny -".into(),
        }
    }

    fn facts(
        client: u32,
        groups: &'static [&'static str],
        port: Option<u32>,
        ip: Option<&str>,
    ) -> Facts<impl Iterator<Item = &'static str> + Clone> {
        Facts::new(
            client,
            groups.iter().copied(),
            port,
            ip.map(|s| s.parse().unwrap()),
        )
    }

    #[test]
    fn no_policies_grant_everything() {
        let p = compile("");
        assert!(p.is_open());
        assert_eq!(name(&p, &facts(0, &[], None, None)), "grant -");
    }

    #[test]
    fn first_match_wins_in_order() {
        let p = compile(
            "[[policy]]\nname = \"deny-contractors\"\ngroups = [\"contractors\"]\naccess = \"deny\"\n\
             [[policy]]\nname = \"staff\"\ngroups = [\"staff\"]\n\
             [[policy]]\nname = \"all\"\n",
        );
        // In both groups: the deny comes first.
        assert_eq!(
            name(&p, &facts(0, &["staff", "contractors"], None, None)),
            "deny deny-contractors"
        );
        assert_eq!(name(&p, &facts(0, &["STAFF"], None, None)), "grant staff");
        assert_eq!(name(&p, &facts(0, &[], None, None)), "grant all");
    }

    #[test]
    fn none_matching_is_denied_by_default_once_policies_exist() {
        let p = compile("[[policy]]\nname = \"staff\"\ngroups = [\"staff\"]\n");
        assert_eq!(name(&p, &facts(0, &["other"], None, None)), "deny -");
        let p = compile(
            "[[policy]]\nname = \"staff\"\ngroups = [\"staff\"]\n[policies]\nwhen_none_match = \"grant\"\n",
        );
        assert_eq!(name(&p, &facts(0, &["other"], None, None)), "grant -");
    }

    #[test]
    fn each_condition_must_hold() {
        let p = compile(
            "[[policy]]\nname = \"c\"\nclients = [\"wifi\"]\n\
             [[policy]]\nname = \"t\"\nnas_port_types = [\"Virtual\"]\n\
             [[policy]]\nname = \"n\"\nnas_ip = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
             [[policy]]\nname = \"all-of\"\nclients = [\"vpn\"]\ngroups = [\"g\"]\nnas_port_types = [15]\n",
        );
        assert_eq!(name(&p, &facts(1, &[], None, None)), "grant c");
        assert_eq!(name(&p, &facts(0, &[], Some(5), None)), "grant t");
        assert_eq!(name(&p, &facts(0, &[], Some(15), None)), "deny -");
        assert_eq!(name(&p, &facts(0, &[], None, Some("192.0.2.9"))), "grant n");
        assert_eq!(
            name(&p, &facts(0, &[], None, Some("2001:db8::1"))),
            "grant n"
        );
        assert_eq!(
            name(&p, &facts(0, &[], None, Some("198.51.100.1"))),
            "deny -"
        );
        // A condition on an absent attribute does not match.
        assert_eq!(name(&p, &facts(0, &["g"], None, None)), "deny -");
        assert_eq!(name(&p, &facts(0, &["g"], Some(15), None)), "grant all-of");
        assert_eq!(name(&p, &facts(0, &["h"], Some(15), None)), "deny -");
    }
}
