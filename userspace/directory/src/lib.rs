//! Active Directory as a RADIUS authentication and authorization backend.
//!
//! What it does:
//! - **PAP**: a service account searches the user (sAMAccountName, UPN or `DOMAIN\user`, see
//!   [`NameFormat`]); then a simple bind *as the user's DN* with the password, on a separate
//!   pool of connections that never searches. Empty passwords are refused before any bind (an
//!   LDAP bind with an empty password is an anonymous bind and would "succeed"). Active
//!   Directory's bind diagnostic (`data 533`, `701`, `773`, ...) says why a right password
//!   was still refused.
//! - **MS-CHAPv2**: the user is searched the same way, then the NT-Response is checked by the
//!   domain through Samba's `ntlm_auth --helper-protocol=ntlm-server-1`, a small pool of
//!   long-running helper processes (see `ntlm.rs`). Its user session key is the
//!   `PasswordHashHash` from which MS-CHAP2-Success and the MPPE keys are made.
//! - **Authorization data**: userAccountControl / msDS-User-Account-Control-Computed /
//!   lockoutTime / accountExpires / pwdLastSet (disabled, locked out, expired, password expired
//!   or to be changed), msNPAllowDialin (FALSE denies unless `ignore_dialin`; TRUE or absent
//!   allow), nested group membership through LDAP_MATCHING_RULE_IN_CHAIN
//!   (`member:1.2.840.113556.1.4.1941:=`), UPN, mail and any configured attribute.
//!   Each refusal is a distinct [`Denial`].
//! - **Several DCs**: tried in order; a DC that fails (connect, TLS, timeout, I/O) is marked down
//!   and skipped until its retry time, and probed in the background. When every DC is down the
//!   answer is an immediate [`DirectoryError::AllDown`]; every operation has a timeout and the
//!   whole request a deadline, so a request never hangs.
//! - **Transport**: LDAPS, or StartTLS, with certificates verified against a CA file (rustls);
//!   plain LDAP only with [`Transport::InsecurePlaintext`].
//! - **Caching**: group lists for a short TTL. Passwords and verdicts are never cached.
//!
//! What it does not do: Kerberos, SASL binds, LDAP referral chasing across domains or forests,
//! the user's primary group (not a `member` link; only groups reached through `member` are
//! reported), logon-hours evaluation of its own (the DC's answer is used), CHAP (AD does not
//! give out what CHAP needs), password changes.
//!
//! The work runs on the crate's own small tokio runtime (its connections, helper processes and
//! background health checks live there), so any caller, whatever its runtime, just awaits the
//! futures [`Directory`] returns.

mod account;
mod config;
mod error;
mod ldap;
mod ntlm;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use portcullis_auth::mschapv2::{challenge_hash, strip_domain, MsChapV2Success};

pub use account::{Denial, Group, UserInfo};
pub use config::{DirectoryConfig, NameFormat, NtlmConfig, Password, Transport};
pub use error::{DirectoryError, Fault};
pub use ldap::ServerStatus;

use ldap::{lock, Kind, Servers};
use ntlm::{NtlmAnswer, NtlmPool};

/// What the directory decided about a login.
#[derive(Debug)]
pub enum Verdict {
    /// Credentials right, account usable, dial-in allowed.
    Granted {
        user: Box<UserInfo>,
        /// For MS-CHAPv2: the authenticator response and MPPE keys.
        ms_chap2: Option<MsChapV2Success>,
    },
    /// Refused; `user` when the account was found.
    Denied {
        denial: Denial,
        user: Option<Box<UserInfo>>,
    },
}

/// An MS-CHAPv2 exchange as the RADIUS request carries it.
#[derive(Clone)]
pub struct MsChapV2 {
    pub authenticator_challenge: [u8; 16],
    pub peer_challenge: [u8; 16],
    pub nt_response: [u8; 24],
}

impl std::fmt::Debug for MsChapV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The NT-Response allows an offline dictionary attack: never shown.
        f.write_str("MsChapV2 { .. }")
    }
}

/// The directory: cheap to share (`Arc` inside); dropping the last handle stops its runtime.
pub struct Directory {
    inner: Arc<Inner>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("servers", &self.inner.servers.status())
            .finish_non_exhaustive()
    }
}

/// Lower-cased user DN -> (when read, the user's groups).
type GroupCache = HashMap<String, (Instant, Arc<Vec<Group>>)>;

struct Inner {
    config: DirectoryConfig,
    servers: Servers,
    ntlm: Option<NtlmPool>,
    groups: Mutex<GroupCache>,
    attributes: Vec<String>,
}

impl Directory {
    /// Checks the configuration (server URLs, CA file), starts the runtime, the NTLM helpers
    /// and the background health checks. Does not contact any DC.
    pub fn start(config: DirectoryConfig) -> Result<Directory, DirectoryError> {
        if config.base_dn.is_empty() || config.bind_dn.is_empty() {
            return Err(DirectoryError::Config {
                reason: "base_dn and bind_dn are required".into(),
            });
        }
        if config.bind_password.is_empty() {
            return Err(DirectoryError::Config {
                reason: "the service account password is empty".into(),
            });
        }
        let servers = Servers::new(&config)?;
        let ntlm = match &config.ntlm {
            None => None,
            Some(n) => {
                let domain = config
                    .domain
                    .clone()
                    .ok_or_else(|| DirectoryError::Config {
                        reason: "MS-CHAPv2 through ntlm_auth needs the NetBIOS domain name".into(),
                    })?;
                Some(NtlmPool::new(n.clone(), domain, config.timeout))
            }
        };
        let mut attributes: Vec<String> = account::USER_ATTRIBUTES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for a in &config.attributes {
            if !attributes.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attributes.push(a.clone());
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portcullis-directory")
            .enable_all()
            .build()
            .map_err(|e| DirectoryError::Internal {
                message: format!("cannot start the directory runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let inner = Arc::new(Inner {
            config,
            servers,
            ntlm,
            groups: Mutex::new(HashMap::new()),
            attributes,
        });
        if let Some(n) = &inner.ntlm {
            // Spawning needs the runtime's reactor (process handles).
            let _guard = handle.enter();
            n.warm()?;
        }
        let weak = Arc::downgrade(&inner);
        handle.spawn(async move {
            loop {
                let interval = match weak.upgrade() {
                    Some(i) => i.config.health_interval,
                    None => return,
                };
                tokio::time::sleep(interval).await;
                let Some(i) = weak.upgrade() else { return };
                i.servers.probe_down().await;
            }
        });
        Ok(Directory {
            inner,
            handle,
            runtime: Some(runtime),
        })
    }

    /// The health of every DC, in configured order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.inner.servers.status()
    }

    /// The configuration in use.
    pub fn config(&self) -> &DirectoryConfig {
        &self.inner.config
    }

    fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, DirectoryError>> + Send + 'static,
    ) -> impl Future<Output = Result<T, DirectoryError>> + Send + 'static {
        let deadline = self.inner.config.request_timeout;
        let task = self.handle.spawn(async move {
            tokio::time::timeout(deadline, f)
                .await
                .unwrap_or(Err(DirectoryError::Timeout {
                    operation: what,
                    after: deadline,
                }))
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(DirectoryError::Internal {
                    message: format!("directory task failed: {e}"),
                })
            })
        }
    }

    /// PAP: checks `password` for `user_name` and the account's authorization data.
    pub fn pap(
        &self,
        user_name: &str,
        password: Password,
    ) -> impl Future<Output = Result<Verdict, DirectoryError>> + Send + 'static {
        let inner = self.inner.clone();
        let name = user_name.to_owned();
        self.run("PAP against the directory", async move {
            inner.pap(&name, password).await
        })
    }

    /// MS-CHAPv2: checks the response through the domain (NTLM helper) and the account's
    /// authorization data. `user_name` is the RADIUS User-Name (used in ChallengeHash without
    /// its `DOMAIN\` prefix, as the peer did).
    pub fn mschapv2(
        &self,
        user_name: &str,
        exchange: MsChapV2,
    ) -> impl Future<Output = Result<Verdict, DirectoryError>> + Send + 'static {
        let inner = self.inner.clone();
        let name = user_name.to_owned();
        self.run("MS-CHAPv2 against the directory", async move {
            inner.mschapv2(&name, exchange).await
        })
    }

    /// Looks a user up without authenticating (authorization data and groups). `Ok(None)`:
    /// no such user.
    pub fn lookup(
        &self,
        user_name: &str,
    ) -> impl Future<Output = Result<Option<UserInfo>, DirectoryError>> + Send + 'static {
        let inner = self.inner.clone();
        let name = user_name.to_owned();
        self.run("directory lookup", async move {
            let Some(mut u) = inner.find(&name).await? else {
                return Ok(None);
            };
            u.groups = inner.groups(&u.dn).await?.as_ref().clone();
            Ok(Some(u))
        })
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Never blocks, so dropping is fine from inside another runtime.
            rt.shutdown_background();
        }
    }
}

impl Inner {
    async fn find(&self, name: &str) -> Result<Option<UserInfo>, DirectoryError> {
        let Some(lookup) =
            account::normalise(name, self.config.name_format, self.config.domain.as_deref())?
        else {
            return Ok(None);
        };
        let filter = lookup.filter();
        let base = self.config.base_dn.clone();
        let attrs = self.attributes.clone();
        let t = self.servers.timeout();
        let entries = self
            .servers
            .run(Kind::Service, move |ldap, url| {
                let (filter, base, attrs) = (filter.clone(), base.clone(), attrs.clone());
                Box::pin(async move { ldap::search(ldap, url, t, &base, &filter, &attrs).await })
            })
            .await?;
        match entries.len() {
            0 => Ok(None),
            1 => {
                let e = &entries[0];
                Ok(Some(UserInfo::from_attributes(e.dn.clone(), &e.attrs)))
            }
            n => Err(DirectoryError::Ambiguous {
                user: name.to_owned(),
                count: n,
            }),
        }
    }

    /// Nested group membership of `dn`, from the cache when fresh.
    async fn groups(&self, dn: &str) -> Result<Arc<Vec<Group>>, DirectoryError> {
        let ttl = self.config.group_cache_ttl;
        let key = dn.to_ascii_lowercase();
        if !ttl.is_zero() {
            if let Some((at, g)) = lock(&self.groups).get(&key) {
                if at.elapsed() < ttl {
                    return Ok(g.clone());
                }
            }
        }
        let filter = format!(
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={}))",
            ldap3::ldap_escape(dn)
        );
        let base = self.config.base_dn.clone();
        let t = self.servers.timeout();
        let entries = self
            .servers
            .run(Kind::Service, move |ldap, url| {
                let (filter, base) = (filter.clone(), base.clone());
                Box::pin(async move {
                    ldap::search(ldap, url, t, &base, &filter, &["cn".to_owned()]).await
                })
            })
            .await?;
        let mut groups: Vec<Group> = entries
            .into_iter()
            .map(|e| Group {
                cn: e
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("cn"))
                    .and_then(|(_, v)| v.first().cloned())
                    .unwrap_or_default(),
                dn: e.dn,
            })
            .collect();
        groups.sort();
        let groups = Arc::new(groups);
        if !ttl.is_zero() {
            let mut cache = lock(&self.groups);
            if cache.len() >= self.config.group_cache_entries {
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= self.config.group_cache_entries {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), groups.clone()));
        }
        Ok(groups)
    }

    /// The checks after the credentials: account restrictions, dial-in, then groups.
    async fn authorize(
        &self,
        mut user: UserInfo,
        ms_chap2: Option<MsChapV2Success>,
    ) -> Result<Verdict, DirectoryError> {
        let denied = |denial, user| Verdict::Denied {
            denial,
            user: Some(Box::new(user)),
        };
        if let Some(d) = user.restriction(account::filetime(SystemTime::now())) {
            return Ok(denied(d, user));
        }
        if user.dialin == Some(false) && !self.config.ignore_dialin {
            return Ok(denied(Denial::DialinDenied, user));
        }
        user.groups = self.groups(&user.dn).await?.as_ref().clone();
        Ok(Verdict::Granted {
            user: Box::new(user),
            ms_chap2,
        })
    }

    async fn pap(&self, name: &str, password: Password) -> Result<Verdict, DirectoryError> {
        let Some(user) = self.find(name).await? else {
            return Ok(Verdict::Denied {
                denial: Denial::NoSuchUser,
                user: None,
            });
        };
        if password.is_empty() {
            // An empty password would make the bind anonymous (RFC 4513 §5.1.2).
            return Ok(Verdict::Denied {
                denial: Denial::BadCredentials,
                user: Some(Box::new(user)),
            });
        }
        let dn = user.dn.clone();
        let t = self.servers.timeout();
        let refused = self
            .servers
            .run(Kind::UserBind, move |ldap, url| {
                let (dn, password) = (dn.clone(), password.clone());
                Box::pin(async move { ldap::user_bind(ldap, url, t, &dn, &password).await })
            })
            .await?;
        if let Some(diagnostic) = refused {
            return Ok(Verdict::Denied {
                denial: account::bind_denial(&diagnostic),
                user: Some(Box::new(user)),
            });
        }
        self.authorize(user, None).await
    }

    async fn mschapv2(&self, name: &str, x: MsChapV2) -> Result<Verdict, DirectoryError> {
        let Some(pool) = &self.ntlm else {
            return Err(DirectoryError::NtlmNotConfigured);
        };
        let Some(user) = self.find(name).await? else {
            return Ok(Verdict::Denied {
                denial: Denial::NoSuchUser,
                user: None,
            });
        };
        let challenge = challenge_hash(
            &x.peer_challenge,
            &x.authenticator_challenge,
            strip_domain(name.as_bytes()),
        );
        match pool
            .mschapv2(&user.sam_account_name, &challenge, &x.nt_response)
            .await?
        {
            NtlmAnswer::Refused(denial) => Ok(Verdict::Denied {
                denial,
                user: Some(Box::new(user)),
            }),
            NtlmAnswer::Authenticated { mut session_key } => {
                let ok = MsChapV2Success::from_hash_hash(
                    &session_key,
                    name.as_bytes(),
                    &x.authenticator_challenge,
                    &x.peer_challenge,
                    &x.nt_response,
                );
                zeroize::Zeroize::zeroize(&mut session_key);
                self.authorize(user, Some(ok)).await
            }
        }
    }
}
