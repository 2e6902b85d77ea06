//! Domain controllers: TLS settings, connection pools (service-account searches and user binds
//! kept apart), health (a DC that fails is skipped until its retry time) and failover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use tokio::sync::Semaphore;

use crate::config::{DirectoryConfig, Password, Transport};
use crate::error::DirectoryError;

/// Which pool a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Bound as the service account; used for searches only.
    Service,
    /// Rebound as whichever user logs in; never used for searches.
    UserBind,
}

struct Pool {
    idle: Mutex<Vec<Ldap>>,
    /// Bounds the connections of this kind open to one DC.
    permits: Semaphore,
}

pub(crate) struct Server {
    pub(crate) url: String,
    down_until: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    service: Pool,
    user: Pool,
}

/// The health of one DC, as reported by [`crate::Directory::servers`].
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub url: String,
    pub up: bool,
    pub last_error: Option<String>,
}

/// What one attempt on one DC came to.
pub(crate) enum Attempt<T> {
    Done(T),
    /// The DC (or the connection) failed: try the next one.
    Failed(String),
    /// An answer that is final whatever the other DCs would say.
    Fatal(DirectoryError),
}

enum ConnectError {
    Failed(String),
    Fatal(DirectoryError),
}

pub(crate) struct Servers {
    pub(crate) list: Vec<Server>,
    settings: LdapConnSettings,
    bind_dn: String,
    bind_password: Password,
    timeout: Duration,
    retry_down_after: Duration,
    pool_size: usize,
}

impl Servers {
    pub(crate) fn new(c: &DirectoryConfig) -> Result<Servers, DirectoryError> {
        if c.servers.is_empty() {
            return Err(DirectoryError::Config {
                reason: "no servers".into(),
            });
        }
        let mut list = Vec::new();
        for s in &c.servers {
            let u = url::Url::parse(s).map_err(|e| DirectoryError::Config {
                reason: format!("server `{s}`: {e}"),
            })?;
            match (u.scheme(), c.transport) {
                ("ldaps", Transport::Ldaps) => {}
                ("ldap", Transport::StartTls | Transport::InsecurePlaintext) => {}
                ("ldaps", _) => {
                    return Err(DirectoryError::Config {
                        reason: format!("server `{s}` is ldaps:// but starttls or insecure_plaintext is set"),
                    })
                }
                ("ldap", Transport::Ldaps) => {
                    return Err(DirectoryError::Config {
                        reason: format!("server `{s}` is plain ldap://: use ldaps://, starttls = true, or (tests only) insecure_plaintext = true"),
                    })
                }
                (other, _) => {
                    return Err(DirectoryError::Config {
                        reason: format!("server `{s}`: scheme `{other}` is not ldap or ldaps"),
                    })
                }
            }
            if u.host_str().is_none_or(str::is_empty) {
                return Err(DirectoryError::Config {
                    reason: format!("server `{s}` has no host"),
                });
            }
            list.push(Server {
                url: s.clone(),
                down_until: Mutex::new(None),
                last_error: Mutex::new(None),
                service: Pool {
                    idle: Mutex::new(Vec::new()),
                    permits: Semaphore::new(c.pool_size),
                },
                user: Pool {
                    idle: Mutex::new(Vec::new()),
                    permits: Semaphore::new(c.pool_size),
                },
            });
        }
        let mut settings = LdapConnSettings::new().set_conn_timeout(c.timeout);
        if c.transport != Transport::InsecurePlaintext {
            settings = settings
                .set_config(tls_config(c.ca_file.as_deref())?)
                .set_starttls(c.transport == Transport::StartTls);
        }
        Ok(Servers {
            list,
            settings,
            bind_dn: c.bind_dn.clone(),
            bind_password: c.bind_password.clone(),
            timeout: c.timeout,
            retry_down_after: c.retry_down_after,
            pool_size: c.pool_size,
        })
    }

    pub(crate) fn status(&self) -> Vec<ServerStatus> {
        let now = Instant::now();
        self.list
            .iter()
            .map(|s| ServerStatus {
                url: s.url.clone(),
                up: lock(&s.down_until).is_none_or(|t| t <= now),
                last_error: lock(&s.last_error).clone(),
            })
            .collect()
    }

    fn mark_down(&self, s: &Server, why: &str) {
        let mut d = lock(&s.down_until);
        if d.is_none() {
            tracing::warn!(server = %s.url, error = %why, retry_in = ?self.retry_down_after, "domain controller marked down");
        }
        *d = Some(Instant::now() + self.retry_down_after);
        *lock(&s.last_error) = Some(why.to_owned());
        // Its pooled connections are suspect now.
        lock(&s.service.idle).clear();
        lock(&s.user.idle).clear();
    }

    fn mark_up(&self, s: &Server) {
        if lock(&s.down_until).take().is_some() {
            tracing::info!(server = %s.url, "domain controller is back");
        }
    }

    /// A fresh connection, bound as the service account for [`Kind::Service`].
    async fn connect(&self, s: &Server, kind: Kind) -> Result<Ldap, ConnectError> {
        let (conn, mut ldap) = LdapConnAsync::with_settings(self.settings.clone(), &s.url)
            .await
            .map_err(|e| ConnectError::Failed(format!("connect: {}", describe(&e))))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        if kind == Kind::Service {
            let r = ldap
                .with_timeout(self.timeout)
                .simple_bind(&self.bind_dn, self.bind_password.expose())
                .await
                .map_err(|e| ConnectError::Failed(format!("service bind: {}", describe(&e))))?;
            match r.rc {
                0 => {}
                49 | 50 | 53 => {
                    return Err(ConnectError::Fatal(DirectoryError::ServiceBind {
                        server: s.url.clone(),
                        message: format!("result {}: {}", r.rc, r.text),
                    }))
                }
                _ => {
                    return Err(ConnectError::Failed(format!(
                        "service bind: result {}: {}",
                        r.rc, r.text
                    )))
                }
            }
        }
        Ok(ldap)
    }

    /// Runs `op` on a connection of `kind`, DC by DC in order, skipping those marked down.
    /// A pooled connection that fails is replaced by a fresh one on the same DC before the DC
    /// is blamed.
    pub(crate) async fn run<T, F>(&self, kind: Kind, op: F) -> Result<T, DirectoryError>
    where
        F: for<'a> Fn(
            &'a mut Ldap,
            &'a str,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Attempt<T>> + Send + 'a>,
        >,
    {
        let now = Instant::now();
        let mut tried = 0;
        let mut last = String::new();
        let mut soonest: Option<Instant> = None;
        for s in &self.list {
            if let Some(t) = *lock(&s.down_until) {
                if t > now {
                    soonest = Some(soonest.map_or(t, |x: Instant| x.min(t)));
                    continue;
                }
            }
            tried += 1;
            let pool = match kind {
                Kind::Service => &s.service,
                Kind::UserBind => &s.user,
            };
            let Ok(permit) = tokio::time::timeout(self.timeout, pool.permits.acquire()).await
            else {
                last = format!(
                    "{}: all {} connections busy for {:?}",
                    s.url, self.pool_size, self.timeout
                );
                continue;
            };
            let _permit = permit.map_err(|_| DirectoryError::Internal {
                message: "connection pool closed".into(),
            })?;
            // A pooled connection first, then a fresh one.
            let pooled = lock(&pool.idle).pop();
            if let Some(mut ldap) = pooled {
                match op(&mut ldap, &s.url).await {
                    Attempt::Done(v) => {
                        lock(&pool.idle).push(ldap);
                        return Ok(v);
                    }
                    Attempt::Fatal(e) => {
                        lock(&pool.idle).push(ldap);
                        return Err(e);
                    }
                    Attempt::Failed(why) => {
                        tracing::debug!(server = %s.url, error = %why, "pooled LDAP connection failed; reconnecting");
                    }
                }
            }
            let mut ldap = match self.connect(s, kind).await {
                Ok(l) => l,
                Err(ConnectError::Fatal(e)) => return Err(e),
                Err(ConnectError::Failed(why)) => {
                    last = format!("{}: {why}", s.url);
                    self.mark_down(s, &why);
                    continue;
                }
            };
            match op(&mut ldap, &s.url).await {
                Attempt::Done(v) => {
                    self.mark_up(s);
                    lock(&pool.idle).push(ldap);
                    return Ok(v);
                }
                Attempt::Fatal(e) => {
                    lock(&pool.idle).push(ldap);
                    return Err(e);
                }
                Attempt::Failed(why) => {
                    last = format!("{}: {why}", s.url);
                    self.mark_down(s, &why);
                }
            }
        }
        if tried == 0 {
            return Err(DirectoryError::AllDown {
                servers: self.list.len(),
                retry_in: soonest.map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            });
        }
        Err(DirectoryError::Unavailable { tried, last })
    }

    /// Probes every DC marked down whose retry time has come (connect + service bind + a
    /// rootDSE read) and marks it up when it answers.
    pub(crate) async fn probe_down(&self) {
        let now = Instant::now();
        for s in &self.list {
            let due = matches!(*lock(&s.down_until), Some(t) if t <= now);
            if !due {
                continue;
            }
            let probe = async {
                let mut ldap = self.connect(s, Kind::Service).await.map_err(|e| match e {
                    ConnectError::Failed(w) => w,
                    ConnectError::Fatal(e) => e.to_string(),
                })?;
                let r = ldap
                    .with_timeout(self.timeout)
                    .search(
                        "",
                        Scope::Base,
                        "(objectClass=*)",
                        vec!["defaultNamingContext"],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                if r.1.rc != 0 {
                    return Err(format!("rootDSE read: result {}", r.1.rc));
                }
                let _ = ldap.unbind().await;
                Ok::<(), String>(())
            };
            match tokio::time::timeout(self.timeout * 2, probe).await {
                Ok(Ok(())) => self.mark_up(s),
                Ok(Err(why)) => self.mark_down(s, &why),
                Err(_) => self.mark_down(s, "health probe timed out"),
            }
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// One search with the service account: entries (references skipped) or the reason.
pub(crate) async fn search(
    ldap: &mut Ldap,
    server: &str,
    timeout: Duration,
    base: &str,
    filter: &str,
    attrs: &[String],
) -> Attempt<Vec<SearchEntry>> {
    match ldap
        .with_timeout(timeout)
        .search(base, Scope::Subtree, filter, attrs.to_vec())
        .await
    {
        Err(e) => Attempt::Failed(format!("search: {}", describe(&e))),
        Ok(r) => match r.1.rc {
            // 10 = referral: what we have is what this DC holds.
            0 | 10 => Attempt::Done(
                r.0.into_iter()
                    .filter(|e| !e.is_ref() && !e.is_intermediate())
                    .map(SearchEntry::construct)
                    .collect(),
            ),
            51 | 52 | 80 => Attempt::Failed(format!("search: result {}: {}", r.1.rc, r.1.text)),
            rc => Attempt::Fatal(DirectoryError::Ldap {
                server: server.to_owned(),
                operation: "search",
                message: format!("result {rc}: {}", r.1.text),
            }),
        },
    }
}

/// What a user bind said: `Ok(None)` = success, `Ok(Some(diagnostic))` = invalid credentials.
pub(crate) async fn user_bind(
    ldap: &mut Ldap,
    server: &str,
    timeout: Duration,
    dn: &str,
    password: &Password,
) -> Attempt<Option<String>> {
    match ldap
        .with_timeout(timeout)
        .simple_bind(dn, password.expose())
        .await
    {
        Err(e) => Attempt::Failed(format!("user bind: {}", describe(&e))),
        Ok(r) => match r.rc {
            0 => Attempt::Done(None),
            49 => Attempt::Done(Some(r.text)),
            51 | 52 | 80 => Attempt::Failed(format!("user bind: result {}: {}", r.rc, r.text)),
            rc => Attempt::Fatal(DirectoryError::Ldap {
                server: server.to_owned(),
                operation: "bind",
                message: format!("result {rc}: {}", r.text),
            }),
        },
    }
}

/// An LDAP error as text. ldap3's errors carry no request data (never a password).
fn describe(e: &LdapError) -> String {
    match e {
        LdapError::Timeout { elapsed } => format!("timed out after {elapsed}"),
        other => other.to_string(),
    }
}

const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // Without a CA file: the system's bundle (Debian's path), when there is one.
    let system = std::path::Path::new(SYSTEM_CA_BUNDLE);
    let ca_file = ca_file.or_else(|| system.exists().then_some(system));
    if let Some(path) = ca_file {
        let err = |message: String| DirectoryError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificates in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryError::Internal {
            message: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
