//! `[[policy]]` and `[policies]`: NPS-style network policies, checked in order after the first
//! factor (first match wins). Parsed and validated here; `mod.rs` only hooks it in, and the
//! server compiles the result once per (re)load (`server/policy.rs`).

use std::collections::{BTreeMap, HashSet};

use ipnet::IpNet;
use portcullis_proto::dict::{self, AttrTarget, AttrValue, DataType};
use portcullis_proto::AttrType;
use serde::Deserialize;
use toml::Spanned;

use super::{ClientConfig, ConfigError, Cx, MfaProviderConfig};

/// What a matching policy (or `when_none_match`) does with the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAccess {
    Grant,
    Deny,
}

/// A policy's second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyMfa {
    /// Key absent: whatever the client's `mfa` says.
    Client,
    /// `mfa = "none"`: no second factor, whatever the client says.
    Skip,
    /// `mfa = "provider"`: this provider, whatever the client says.
    Provider(String),
}

/// One `[[policy]]`.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub name: String,
    /// Line of the `[[policy]]` table.
    pub line: usize,
    /// Conditions; `None` = any. All given ones must match.
    pub clients: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub nas_port_types: Option<Vec<u32>>,
    pub nas_ip: Option<Vec<IpNet>>,
    pub access: PolicyAccess,
    pub mfa: PolicyMfa,
    /// Added to every Access-Accept of a login this policy granted, in name order.
    pub reply_attributes: Vec<AttrValue>,
}

/// `[[policy]]` in order, and `[policies]`.
#[derive(Debug, Clone)]
pub struct PoliciesConfig {
    pub policies: Vec<PolicyConfig>,
    /// Default: `Grant` with no `[[policy]]` at all (the behaviour before policies existed),
    /// `Deny` (NPS reason 48) as soon as one is configured.
    pub when_none_match: PolicyAccess,
}

impl PoliciesConfig {
    /// No policies and grant when none match: nothing to evaluate.
    pub fn is_open(&self) -> bool {
        self.policies.is_empty() && self.when_none_match == PolicyAccess::Grant
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    name: Spanned<String>,
    clients: Option<Spanned<Vec<Spanned<String>>>>,
    groups: Option<Spanned<Vec<Spanned<String>>>>,
    nas_port_types: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    nas_ip: Option<Spanned<Vec<Spanned<String>>>>,
    access: Option<Spanned<String>>,
    mfa: Option<Spanned<String>>,
    reply_attributes: Option<BTreeMap<String, Spanned<toml::Value>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicies {
    when_none_match: Option<Spanned<String>>,
}

/// Attributes a policy may not add to an Access-Accept: the server produces them itself per
/// request (State, Proxy-State, Message-Authenticator, EAP-Message) or they must never appear
/// in one (passwords, RFC 2865 §5.44).
const NOT_IN_REPLY: &[u8] = &[2, 3, 24, 33, 60, 79, 80];

impl Cx<'_> {
    pub(super) fn policies(
        &self,
        raw: &[Spanned<RawPolicy>],
        settings: &RawPolicies,
        clients: &[ClientConfig],
        providers: &[MfaProviderConfig],
    ) -> Result<PoliciesConfig, ConfigError> {
        let mut names = HashSet::new();
        let mut policies = Vec::with_capacity(raw.len());
        for p in raw {
            let line = self.line_of(p.span().start);
            let r = p.get_ref();
            let name = r.name.get_ref().trim();
            if name.is_empty() {
                return Err(self.err(&r.name, "policy name must not be empty"));
            }
            if !names.insert(name.to_owned()) {
                return Err(self.err(&r.name, format!("duplicate policy name `{name}`")));
            }
            let nonempty = |span: std::ops::Range<usize>, empty: bool, key: &str| {
                if empty {
                    Err(self.err_line(
                        self.line_of(span.start),
                        format!(
                            "policy `{name}`: {key} = [] matches nothing; omit it to match any"
                        ),
                    ))
                } else {
                    Ok(())
                }
            };
            let client_names = match &r.clients {
                None => None,
                Some(list) => {
                    nonempty(list.span(), list.get_ref().is_empty(), "clients")?;
                    let mut out = Vec::new();
                    for c in list.get_ref() {
                        if !clients.iter().any(|k| &k.name == c.get_ref()) {
                            return Err(self.err(
                                c,
                                format!("policy `{name}`: no [[client]] named `{}`", c.get_ref()),
                            ));
                        }
                        out.push(c.get_ref().clone());
                    }
                    Some(out)
                }
            };
            let groups = match &r.groups {
                None => None,
                Some(list) => {
                    nonempty(list.span(), list.get_ref().is_empty(), "groups")?;
                    let mut out = Vec::new();
                    for g in list.get_ref() {
                        if g.get_ref().trim().is_empty() {
                            return Err(self.err(g, format!("policy `{name}`: empty group name")));
                        }
                        out.push(g.get_ref().trim().to_owned());
                    }
                    Some(out)
                }
            };
            let nas_port_types = match &r.nas_port_types {
                None => None,
                Some(list) => {
                    nonempty(list.span(), list.get_ref().is_empty(), "nas_port_types")?;
                    let mut out = Vec::new();
                    for v in list.get_ref() {
                        out.push(self.port_type(v, name)?);
                    }
                    Some(out)
                }
            };
            let nas_ip = match &r.nas_ip {
                None => None,
                Some(list) => {
                    nonempty(list.span(), list.get_ref().is_empty(), "nas_ip")?;
                    let mut out = Vec::new();
                    for v in list.get_ref() {
                        let s = v.get_ref().trim();
                        let net = s
                            .parse::<IpNet>()
                            .ok()
                            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                            .ok_or_else(|| {
                                self.err(
                                    v,
                                    format!("policy `{name}`: nas_ip `{s}` is not an IP address or network"),
                                )
                            })?;
                        if net.trunc() != net {
                            return Err(self.err(
                                v,
                                format!("policy `{name}`: nas_ip `{s}` has host bits set"),
                            ));
                        }
                        out.push(net);
                    }
                    Some(out)
                }
            };
            let access = match &r.access {
                None => PolicyAccess::Grant,
                Some(a) => self.access(a, &format!("policy `{name}`: access"))?,
            };
            let mfa = match &r.mfa {
                None => PolicyMfa::Client,
                Some(m) if m.get_ref() == "none" => PolicyMfa::Skip,
                Some(m) => {
                    if !providers.iter().any(|p| &p.name == m.get_ref()) {
                        return Err(self.err(
                            m,
                            format!(
                                "policy `{name}`: mfa = `{}` names no [[mfa.provider]]",
                                m.get_ref()
                            ),
                        ));
                    }
                    PolicyMfa::Provider(m.get_ref().clone())
                }
            };
            let mut reply_attributes = Vec::new();
            for (attr, value) in r.reply_attributes.iter().flatten() {
                reply_attributes.push(self.reply_attribute(attr, value, name)?);
            }
            if access == PolicyAccess::Deny && (!reply_attributes.is_empty() || r.mfa.is_some()) {
                return Err(self.err_line(
                    line,
                    format!(
                        "policy `{name}`: access = \"deny\" takes no mfa and no reply_attributes"
                    ),
                ));
            }
            policies.push(PolicyConfig {
                name: name.to_owned(),
                line,
                clients: client_names,
                groups,
                nas_port_types,
                nas_ip,
                access,
                mfa,
                reply_attributes,
            });
        }
        let when_none_match = match &settings.when_none_match {
            Some(w) => self.access(w, "policies.when_none_match")?,
            None if policies.is_empty() => PolicyAccess::Grant,
            None => PolicyAccess::Deny,
        };
        Ok(PoliciesConfig {
            policies,
            when_none_match,
        })
    }

    fn access(&self, a: &Spanned<String>, what: &str) -> Result<PolicyAccess, ConfigError> {
        match a.get_ref().as_str() {
            "grant" => Ok(PolicyAccess::Grant),
            "deny" => Ok(PolicyAccess::Deny),
            other => Err(self.err(
                a,
                format!("{what} = `{other}` is not \"grant\" or \"deny\""),
            )),
        }
    }

    fn port_type(&self, v: &Spanned<toml::Value>, policy: &str) -> Result<u32, ConfigError> {
        let bad = |why: String| self.err(v, format!("policy `{policy}`: nas_port_types: {why}"));
        match v.get_ref() {
            toml::Value::Integer(i) => {
                u32::try_from(*i).map_err(|_| bad(format!("{i} is out of range")))
            }
            toml::Value::String(s) => dict::attr_by_name("NAS-Port-Type")
                .and_then(|d| d.value_by_name(s))
                .ok_or_else(|| bad(format!("`{s}` is not an RFC 2865 NAS-Port-Type name"))),
            other => Err(bad(format!(
                "expected a number or a name, not {}",
                other.type_str()
            ))),
        }
    }

    fn reply_attribute(
        &self,
        attr: &str,
        value: &Spanned<toml::Value>,
        policy: &str,
    ) -> Result<AttrValue, ConfigError> {
        let err =
            |why: String| self.err(value, format!("policy `{policy}`: reply_attributes: {why}"));
        let data_type = dict::attr_by_name(attr.split(':').next().unwrap_or(attr))
            .map(|d| d.data_type)
            .or_else(|| dict::vendor_attr_by_name(attr).map(|d| d.data_type))
            .ok_or_else(|| err(format!("unknown attribute `{attr}`")))?;
        let text = match value.get_ref() {
            toml::Value::String(s)
                if data_type == DataType::Integer || data_type == DataType::Date =>
            {
                // A named value (`Framed-User`); numbers are written as TOML integers.
                if s.trim().bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(format!(
                        "{attr} takes an integer: write {s} without quotes"
                    )));
                }
                s.clone()
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i)
                if data_type == DataType::Integer || data_type == DataType::Date =>
            {
                u32::try_from(*i)
                    .map_err(|_| err(format!("{attr} = {i} is out of range (0-4294967295)")))?
                    .to_string()
            }
            other => {
                return Err(err(format!(
                    "{attr} takes {}, not {}",
                    type_name(data_type),
                    other.type_str()
                )))
            }
        };
        let v = AttrValue::parse(attr, &text).map_err(|e| err(e.to_string()))?;
        if let AttrTarget::Standard(AttrType(t)) = v.target {
            if NOT_IN_REPLY.contains(&t) {
                return Err(err(format!("{attr} cannot be set by a policy")));
            }
        }
        Ok(v)
    }
}

fn type_name(t: DataType) -> &'static str {
    match t {
        DataType::Integer => "an integer",
        DataType::Date => "a time (seconds since 1970)",
        DataType::IpAddr => "an IPv4 address (string)",
        DataType::Ipv6Addr => "an IPv6 address (string)",
        DataType::Ipv6Prefix => "an IPv6 prefix (string)",
        DataType::Text => "text (a string)",
        _ => "a string",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Config, ConfigError, Origin};
    use super::*;
    use std::path::PathBuf;

    const BASE: &str = "\
[[client]]
name = \"vpn\"
address = \"10.0.0.1\"
secret = \"s\"

[[client]]
name = \"wifi\"
address = \"10.0.0.2\"
secret = \"s\"

[[mfa.provider]]
name = \"otp\"
type = \"totp\"
store = \"/nonexistent/totp.toml\"
key_file = \"/nonexistent/totp.key\"
";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{BASE}{extra}"),
            Origin::File(PathBuf::from("/etc/portcullis/test.toml")),
        )
    }

    fn line_of(extra: &str, needle: &str) -> usize {
        let text = format!("{BASE}{extra}");
        let at = text.find(needle).unwrap();
        text[..at].matches('\n').count() + 1
    }

    #[test]
    fn a_full_policy_parses() {
        let extra = "\n[[policy]]\nname = \"staff-vpn\"\nclients = [\"vpn\"]\ngroups = [\"staff\"]\n\
             nas_port_types = [5, \"Ethernet\", \"Wireless-802.11\"]\nnas_ip = [\"10.0.0.0/8\", \"192.0.2.1\"]\n\
             mfa = \"otp\"\nreply_attributes = { \"Session-Timeout\" = 3600, \"Class\" = \"vpn-staff\", \
             \"Framed-IP-Address\" = \"10.1.2.3\", \"Service-Type\" = \"Framed-User\" }\n\
             [[policy]]\nname = \"nobody-else\"\naccess = \"deny\"\n";
        let c = parse(extra).unwrap();
        let p = &c.policies.policies;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "staff-vpn");
        assert_eq!(p[0].clients.as_deref(), Some(&["vpn".to_owned()][..]));
        assert_eq!(p[0].nas_port_types.as_deref(), Some(&[5, 15, 19][..]));
        assert_eq!(p[0].nas_ip.as_ref().unwrap().len(), 2);
        assert_eq!(p[0].mfa, PolicyMfa::Provider("otp".into()));
        assert_eq!(p[0].access, PolicyAccess::Grant);
        let attrs: Vec<String> = p[0]
            .reply_attributes
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(attrs.len(), 4);
        assert!(
            attrs.contains(&"Session-Timeout = 3600".to_owned()),
            "{attrs:?}"
        );
        assert!(attrs.iter().any(|a| a.starts_with("Class = ")), "{attrs:?}");
        assert!(
            attrs.contains(&"Framed-IP-Address = 10.1.2.3".to_owned()),
            "{attrs:?}"
        );
        assert_eq!(p[1].access, PolicyAccess::Deny);
        assert_eq!(p[1].mfa, PolicyMfa::Client);
        assert_eq!(c.policies.when_none_match, PolicyAccess::Deny);
        // The line of the second `[[policy]]` table.
        let text = format!("{BASE}{extra}");
        let at = text.rfind("[[policy]]").unwrap();
        assert_eq!(p[1].line, text[..at].matches('\n').count() + 1);
    }

    #[test]
    fn when_none_match_defaults() {
        assert_eq!(
            parse("").unwrap().policies.when_none_match,
            PolicyAccess::Grant
        );
        assert!(parse("").unwrap().policies.is_open());
        let c = parse("[[policy]]\nname = \"p\"\n").unwrap();
        assert_eq!(c.policies.when_none_match, PolicyAccess::Deny);
        let c =
            parse("[[policy]]\nname = \"p\"\n[policies]\nwhen_none_match = \"grant\"\n").unwrap();
        assert_eq!(c.policies.when_none_match, PolicyAccess::Grant);
        assert!(!c.policies.is_open());
        let c = parse("[policies]\nwhen_none_match = \"deny\"\n").unwrap();
        assert!(!c.policies.is_open());
    }

    /// Each bad policy is refused with the line of the offending value and the reason.
    #[test]
    fn errors_name_line_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Sesion-Timeout\" = 5 }\n",
                "reply_attributes",
                "unknown attribute `Sesion-Timeout`",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Framed-IP-Address\" = 5 }\n",
                "reply_attributes",
                "Framed-IP-Address takes an IPv4 address (string), not integer",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Session-Timeout\" = \"soon\" }\n",
                "reply_attributes",
                "invalid value for Session-Timeout",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Session-Timeout\" = \"3600\" }\n",
                "reply_attributes",
                "Session-Timeout takes an integer: write 3600 without quotes",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Class\" = 5 }\n",
                "reply_attributes",
                "Class takes a string, not integer",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"Session-Timeout\" = -1 }\n",
                "reply_attributes",
                "out of range",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"State\" = \"x\" }\n",
                "reply_attributes",
                "State cannot be set by a policy",
            ),
            (
                "[[policy]]\nname = \"p\"\nreply_attributes = { \"User-Password\" = \"x\" }\n",
                "reply_attributes",
                "encrypted",
            ),
            (
                "[[policy]]\nname = \"p\"\nclients = [\"vpn\", \"nas9\"]\n",
                "clients",
                "no [[client]] named `nas9`",
            ),
            (
                "[[policy]]\nname = \"p\"\nmfa = \"duo\"\n",
                "mfa = \"duo\"",
                "mfa = `duo` names no [[mfa.provider]]",
            ),
            (
                "[[policy]]\nname = \"p\"\n[[policy]]\nname = \"p\"\n",
                "name = \"p\"\n\n",
                "duplicate policy name `p`",
            ),
            (
                "[[policy]]\nname = \"p\"\nnas_port_types = [\"Carrier-Pigeon\"]\n",
                "nas_port_types",
                "not an RFC 2865 NAS-Port-Type name",
            ),
            (
                "[[policy]]\nname = \"p\"\nnas_ip = [\"10.0.0.1/8\"]\n",
                "nas_ip",
                "host bits",
            ),
            (
                "[[policy]]\nname = \"p\"\ngroups = []\n",
                "groups",
                "matches nothing",
            ),
            (
                "[[policy]]\nname = \"p\"\naccess = \"maybe\"\n",
                "access",
                "is not \"grant\" or \"deny\"",
            ),
            (
                "[[policy]]\nname = \"p\"\ncolour = \"red\"\n",
                "colour",
                "unknown field `colour`",
            ),
            (
                "[policies]\nwhen_none_match = \"shrug\"\n",
                "when_none_match",
                "policies.when_none_match",
            ),
        ];
        for (extra, at, reason) in cases {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.file, "/etc/portcullis/test.toml");
            assert!(e.reason.contains(reason), "{extra:?}: {}", e.reason);
            // The duplicate's line is the second `name = "p"`.
            let want = if reason.starts_with("duplicate") {
                line_of(extra, "[[policy]]\nname = \"p\"\n[[policy]]") + 3
            } else {
                line_of(extra, at)
            };
            assert_eq!(e.line, want, "{extra:?}: {e}");
        }
    }
}
