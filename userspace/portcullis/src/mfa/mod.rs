//! The second factor as the server runs it: the configured providers (with their fail mode and
//! resilience wrapper), the shared OTP challenge table, and the decisions the NPS extension
//! makes — which factor to ask for, when to skip, what an unenrolled user gets.
//!
//! The per-shard pending table for pushes and the RADIUS side (Access-Challenge, replies to
//! every joined request) are in `server::pipeline`; the providers themselves are in the
//! `portcullis-mfa` crate.

pub mod challenge;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use portcullis_mfa::{Factor, MfaProvider, MfaRequest, ProviderState};

use crate::audit::Method;
use crate::config::{Config, FailMode, MfaConfig, MfaProviderKind};
use crate::server::primary::Grant;

/// A configured provider.
pub struct Provider {
    pub name: String,
    pub fail_mode: FailMode,
    pub inner: Arc<dyn MfaProvider>,
}

/// What a pending OTP challenge remembers until the user answers.
pub struct ChallengeState {
    pub provider: Arc<Provider>,
    pub state: ProviderState,
    pub request: MfaRequest,
    /// What the Access-Accept must carry once the code checks out (the reply attributes of
    /// the first round: unlike the NPS extension, the challenge path loses none of them).
    pub grant: Grant,
}

/// The MFA runtime shared by all shards; built once, kept across reloads.
pub struct Mfa {
    pub settings: MfaConfig,
    pub providers: HashMap<String, Arc<Provider>>,
    pub challenges: challenge::ChallengeTable<ChallengeState>,
}

impl Mfa {
    pub fn build(config: &Config) -> Result<Mfa> {
        let mut providers = HashMap::new();
        for p in &config.mfa.providers {
            let inner = build_provider(config, &p.kind, &p.name)
                .with_context(|| format!("MFA provider `{}` (line {})", p.name, p.line))?;
            let r = &p.resilience;
            let mut rc = portcullis_mfa::resilience::ResilienceConfig::default();
            rc.timeout = r.timeout;
            rc.retries = r.retries;
            rc.backoff = r.backoff;
            rc.breaker_failures = r.breaker_failures;
            rc.breaker_reset = r.breaker_reset;
            let wrapped = portcullis_mfa::resilience::Resilient::new(inner, rc);
            providers.insert(
                p.name.clone(),
                Arc::new(Provider {
                    name: p.name.clone(),
                    fail_mode: p.fail_mode,
                    inner: Arc::new(wrapped),
                }),
            );
        }
        Ok(Mfa {
            challenges: challenge::ChallengeTable::new(config.mfa.max_challenges),
            settings: config.mfa.clone(),
            providers,
        })
    }
}

fn build_provider(
    config: &Config,
    kind: &MfaProviderKind,
    name: &str,
) -> Result<Arc<dyn MfaProvider>> {
    match kind {
        MfaProviderKind::Totp { store, key_file } => {
            let (text, origin, key) = match (store, key_file) {
                (None, _) => (
                    crate::config::EMBEDDED_TOTP.to_owned(),
                    "<embedded demo TOTP enrollments>".to_owned(),
                    portcullis_auth::reversible::ReversibleKey::from_key_file(
                        crate::config::EMBEDDED_CHAP_KEY,
                    )?,
                ),
                (Some(path), Some(k)) => (
                    std::fs::read_to_string(path)
                        .with_context(|| format!("{}: cannot read", path.display()))?,
                    path.display().to_string(),
                    crate::users::read_key(k)?,
                ),
                (Some(_), None) => {
                    anyhow::bail!(
                        "a totp provider with a store needs key_file (its seeds are encrypted)"
                    )
                }
            };
            let store = portcullis_mfa::totp::TotpStore::parse(&text, &origin, &key)?;
            // Used steps are kept beside the data, so a code is not good again after a restart.
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("{}: cannot create", config.data_dir.display()))?;
            let replay = config.data_dir.join(format!("totp-used-{name}.log"));
            let provider = portcullis_mfa::totp::TotpProvider::new(
                name,
                store,
                Arc::new(portcullis_mfa::totp::SystemClock),
            )
            .with_replay_file(&replay)
            .with_context(|| format!("{}: cannot use as the TOTP replay file", replay.display()))?;
            Ok(Arc::new(provider))
        }
        MfaProviderKind::Entra {
            tenant_id,
            client_id,
            client_secret,
            certificate,
            login_url,
            service_url,
            ca_file,
        } => {
            use portcullis_mfa::entra::{Entra, EntraConfig, EntraCredential};
            let credential = match (client_secret, certificate) {
                (Some(s), _) => EntraCredential::Secret(s.expose().to_owned()),
                (None, Some((cert, key))) => EntraCredential::Certificate {
                    cert_pem: cert.clone(),
                    key_pem: key.clone(),
                },
                (None, None) => anyhow::bail!("no credential"),
            };
            let mut c = EntraConfig::new(name, tenant_id.clone(), client_id.clone(), credential);
            c.login_url = url::Url::parse(login_url)
                .with_context(|| format!("`{login_url}` is not a URL"))?;
            c.service_url = url::Url::parse(service_url)
                .with_context(|| format!("`{service_url}` is not a URL"))?;
            c.ca_file = ca_file.clone();
            Ok(Arc::new(Entra::new(c)?))
        }
        MfaProviderKind::Duo {
            api_url,
            integration_key,
            secret_key,
            ca_file,
        } => {
            use portcullis_mfa::duo::{Duo, DuoConfig};
            let url =
                url::Url::parse(api_url).with_context(|| format!("`{api_url}` is not a URL"))?;
            let mut c = DuoConfig::new(
                name,
                url,
                integration_key.clone(),
                secret_key.expose().to_owned(),
            );
            c.ca_file = ca_file.clone();
            Ok(Arc::new(Duo::new(c)?))
        }
        MfaProviderKind::PrivacyIdea {
            url,
            realm,
            verify_tls,
            ca_file,
        } => {
            let url = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
            let mut c = portcullis_mfa::privacyidea::PrivacyIdeaConfig::new(name, url);
            c.realm = realm.clone();
            c.verify_tls = *verify_tls;
            c.ca_file = ca_file.clone();
            Ok(Arc::new(portcullis_mfa::privacyidea::PrivacyIdea::new(c)?))
        }
    }
}

/// What to do after the first factor succeeded on a client that requires MFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No second factor: the NAS-IP-Address is in `skip_nas_ip`.
    SkipNasAllowList,
    /// Ask the provider for this factor.
    Ask(Factor),
}

/// The NPS extension's choice of factor: PAP can carry a one-time code (through
/// Access-Challenge) when `override_number_matching_with_otp` is on; CHAP and MS-CHAPv2 cannot
/// (the second password would have to be the code itself), so they get a push.
pub fn plan(settings: &MfaConfig, method: Method, nas_ip: Option<IpAddr>) -> Plan {
    if nas_ip.is_some_and(|ip| settings.skip_nas_ip.contains(&ip)) {
        return Plan::SkipNasAllowList;
    }
    match method {
        Method::Pap if settings.override_number_matching_with_otp => Plan::Ask(Factor::Otp),
        _ => Plan::Ask(Factor::Push),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn settings(extra: &str) -> MfaConfig {
        Config::parse(&format!("[mfa]\n{extra}"), Origin::File("t.toml".into()))
            .unwrap()
            .mfa
    }

    #[test]
    fn pap_gets_otp_unless_overridden_and_mschap_gets_push() {
        let s = settings("");
        assert_eq!(plan(&s, Method::Pap, None), Plan::Ask(Factor::Otp));
        assert_eq!(plan(&s, Method::MsChapV2, None), Plan::Ask(Factor::Push));
        assert_eq!(plan(&s, Method::Chap, None), Plan::Ask(Factor::Push));
        let s = settings("override_number_matching_with_otp = false\n");
        assert_eq!(plan(&s, Method::Pap, None), Plan::Ask(Factor::Push));
    }

    #[test]
    fn nas_ip_allow_list_skips_by_attribute() {
        let s = settings("skip_nas_ip = [\"192.0.2.7\", \"2001:db8::7\"]\n");
        assert_eq!(
            plan(&s, Method::Pap, Some("192.0.2.7".parse().unwrap())),
            Plan::SkipNasAllowList
        );
        assert_eq!(
            plan(&s, Method::Pap, Some("2001:db8::7".parse().unwrap())),
            Plan::SkipNasAllowList
        );
        assert_eq!(
            plan(&s, Method::Pap, Some("192.0.2.8".parse().unwrap())),
            Plan::Ask(Factor::Otp)
        );
    }

    #[test]
    fn defaults_follow_the_nps_extension() {
        let s = settings("");
        assert!(s.require_user_match, "REQUIRE_USER_MATCH defaults to TRUE");
        assert!(s.override_number_matching_with_otp);
        assert!(s.join_pending_logins);
    }
}
