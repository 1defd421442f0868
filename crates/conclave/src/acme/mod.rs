//! A certificate from an ACME CA (Let's Encrypt by default), obtained and
//! renewed by the server itself: `conclave serve --domain meet.example.org`.
//!
//! The CA checks that we control the name with the HTTP-01 challenge,
//! answered by the plain-HTTP listener that otherwise redirects to HTTPS
//! (`crate::http::redirect`, port 80) from [`Challenges`]. instant-acme
//! speaks the protocol; this module decides when, keeps the ACME account and
//! the certificate in `<data_dir>/acme/` (private keys mode 0600) and hands
//! each new certificate to the [`ServerCert`] every handshake reads, so a
//! renewal needs no restart.
//!
//! At startup a stored certificate that is still valid and covers the names
//! is served at once, with no call to the CA (a CA outage never stops a
//! restart); without one the start waits for a new certificate and fails with
//! the CA's error if there is none, since an HTTPS server with no
//! certificate would only refuse every visitor. Renewal runs in the
//! background once two thirds of the lifetime have passed
//! ([`timing::renew_at`]); a failed renewal is logged, the current
//! certificate stays, and it is tried again with backoff
//! ([`timing::retry_delay`]).

pub mod timing;

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::tls::{self, ServerCert, TlsError};
use timing::Validity;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How long the CA may take to validate the challenges, then to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// Tokens being answered at once (one per name of an order in flight); a
/// bound so a misbehaving CA cannot grow the map without end.
const MAX_CHALLENGES: usize = 100;

/// Why no certificate could be had. Each CA error names the CA's directory
/// URL and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("cannot reach the ACME CA at {directory} ({step}): {reason}")]
    Unreachable {
        directory: String,
        step: &'static str,
        reason: String,
    },
    #[error("the ACME CA at {directory} refused {step}: {reason}")]
    Refused {
        directory: String,
        step: &'static str,
        reason: String,
    },
    #[error(
        "{directory} did not answer {step} as an ACME CA does (is --acme-directory right?): {reason}"
    )]
    NotAcme {
        directory: String,
        step: &'static str,
        reason: String,
    },
    #[error("the ACME CA at {directory} did not finish {step} within {}s", ORDER_TIMEOUT.as_secs())]
    Stalled {
        directory: String,
        step: &'static str,
    },
    #[error("ACME with the CA at {directory} failed ({step}): {reason}")]
    Failed {
        directory: String,
        step: &'static str,
        reason: String,
    },
    #[error("cannot use {} as the ACME CA's root certificate: {reason}", path.display())]
    CaRoot { path: PathBuf, reason: String },
    #[error("cannot store the ACME {what} in {}: {source}", path.display())]
    Store {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: unreadable ACME account ({reason}); move it away to create a new account", path.display())]
    BadAccount { path: PathBuf, reason: String },
    #[error("the ACME CA at {directory} issued a certificate that cannot be served: {source}")]
    Unusable { directory: String, source: TlsError },
}

/// What the server was asked to do: get and keep a certificate for
/// `domains` from the CA at `directory`, stored under `dir`.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub directory: String,
    /// An e-mail address the CA may write to about the certificate.
    pub contact: Option<String>,
    /// A PEM root to trust for the CA's own HTTPS instead of the system's
    /// (a private CA; the tests' pebble).
    pub ca_root: Option<PathBuf>,
    /// Where the account and the certificate are kept (`<data_dir>/acme`).
    pub dir: PathBuf,
}

/// The HTTP-01 answers being offered: token to key authorization. The
/// plain-HTTP listener reads it; an order in flight fills it.
#[derive(Debug, Default)]
pub struct Challenges(RwLock<HashMap<String, String>>);

impl Challenges {
    /// The key authorization for `token`, while its challenge is open.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    fn offer(&self, token: String, key_authorization: String) -> bool {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CHALLENGES {
            return false;
        }
        map.insert(token, key_authorization);
        true
    }

    fn withdraw(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// Withdraws an order's tokens however the order ends.
struct Offered<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for Offered<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.withdraw(t);
        }
    }
}

/// What the certificate manager has done, for logs, tests and operators.
#[derive(Debug, Clone, Default)]
pub struct AcmeStatus {
    /// Certificates this process obtained from the CA.
    pub issued: u64,
    /// The last attempt's error, until an attempt succeeds.
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the next renewal attempt is planned.
    pub next_attempt: Option<SystemTime>,
}

/// The account as stored: the credentials and the CA they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Gets, stores and renews the server's certificate.
pub struct Acme {
    settings: AcmeSettings,
    challenges: Arc<Challenges>,
    status: Mutex<AcmeStatus>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Acme {
    pub fn new(settings: AcmeSettings) -> Arc<Acme> {
        // instant-acme's HTTP client builds its rustls config with the
        // process default provider: make it ours whatever else is linked.
        let _ = rustls::crypto::CryptoProvider::install_default(tls::provider());
        Arc::new(Acme {
            settings,
            challenges: Arc::new(Challenges::default()),
            status: Mutex::new(AcmeStatus::default()),
        })
    }

    /// The HTTP-01 answers, for the plain-HTTP listener.
    pub fn challenges(&self) -> Arc<Challenges> {
        Arc::clone(&self.challenges)
    }

    pub fn status(&self) -> AcmeStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn cert_path(&self) -> PathBuf {
        self.settings.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.settings.dir.join("key.pem")
    }

    pub fn account_path(&self) -> PathBuf {
        self.settings.dir.join("account.json")
    }

    /// The certificate to start with: the stored one when it is still
    /// usable, else a new one from the CA (an error when the CA gives none).
    /// The plain-HTTP listener must already answer [`Acme::challenges`].
    pub async fn certificate(&self) -> Result<Arc<ServerCert>, AcmeError> {
        create_private_dir(&self.settings.dir)?;
        if let Some(cert) = self.stored() {
            return Ok(cert);
        }
        tracing::info!(domains = ?self.settings.domains, ca = %self.settings.directory, "requesting a certificate from the ACME CA");
        let started = std::time::Instant::now();
        let (pair, validity) = self.obtain().await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            not_after = %when(validity.not_after),
            "certificate obtained"
        );
        Ok(ServerCert::from_pair(
            pair,
            &self.cert_path(),
            &self.key_path(),
        ))
    }

    /// The stored certificate, when it was issued by the configured CA for
    /// the configured names and has not expired.
    fn stored(&self) -> Option<Arc<ServerCert>> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        if !cert_path.exists() {
            return None;
        }
        match read_account(&self.account_path()) {
            Ok(Some(a)) if a.directory == self.settings.directory => {}
            _ => {
                tracing::info!(
                    "the stored certificate is not from the configured ACME CA; requesting a new one"
                );
                return None;
            }
        }
        let cert = match ServerCert::load(&cert_path, &key_path) {
            Ok(cert) => cert,
            Err(e) => {
                tracing::warn!(error = %e, "the stored certificate cannot be used; requesting a new one");
                return None;
            }
        };
        let Some(validity) = cert.chain().first().and_then(validity) else {
            tracing::warn!(cert = %cert_path.display(), "the stored certificate's validity cannot be read; requesting a new one");
            return None;
        };
        if !timing::usable(&validity, &self.settings.domains, SystemTime::now()) {
            tracing::info!(names = ?validity.names, not_after = %when(validity.not_after), "the stored certificate has expired or does not cover every domain; requesting a new one");
            return None;
        }
        tracing::info!(names = ?validity.names, not_after = %when(validity.not_after), "serving the stored certificate");
        Some(cert)
    }

    /// Renews `cert` in place whenever it is due, until `shutdown`. Every
    /// failure is logged; the certificate served stays until a new one is in.
    pub async fn keep_renewed(self: Arc<Self>, cert: Arc<ServerCert>, shutdown: CancellationToken) {
        let mut next = self.due(&cert);
        loop {
            self.update(|s| s.next_attempt = Some(next));
            let wait = timing::sleep_for(SystemTime::now(), next);
            if !wait.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
            tracing::info!(domains = ?self.settings.domains, ca = %self.settings.directory, "renewing the certificate");
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.obtain() => r,
            };
            match attempt {
                Ok((pair, validity)) => {
                    cert.install(pair);
                    self.update(|s| {
                        s.failures = 0;
                        s.last_error = None;
                    });
                    next = timing::renew_at(&validity);
                    tracing::info!(not_after = %when(validity.not_after), "certificate renewed and served");
                }
                Err(e) => {
                    let now = SystemTime::now();
                    let not_after = cert.chain().first().and_then(validity).map(|v| v.not_after);
                    let failures = self.status().failures.saturating_add(1);
                    let delay = timing::retry_delay(failures, now, not_after);
                    self.update(|s| {
                        s.failures = failures;
                        s.last_error = Some(e.to_string());
                    });
                    next = now + delay;
                    tracing::error!(error = %e, failures, retry_in_s = delay.as_secs(), "certificate renewal failed; still serving the current certificate");
                }
            }
        }
    }

    /// When `cert` is due: now if it cannot be read.
    fn due(&self, cert: &ServerCert) -> SystemTime {
        match cert.chain().first().and_then(validity) {
            Some(v) => timing::renew_at(&v),
            None => SystemTime::now(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut AcmeStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// One order from start to a stored certificate: the account, the
    /// HTTP-01 challenges, finalization, the download; the new pair is
    /// written to the data directory before it is returned.
    async fn obtain(&self) -> Result<(rustls::sign::CertifiedKey, Validity), AcmeError> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| self.ca_error("a new order", e))?;
        let mut offered = Offered {
            challenges: &self.challenges,
            tokens: Vec::new(),
        };
        {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(|e| self.ca_error("fetching an authorization", e))?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(self.refused(
                            "the authorization",
                            format!("{} is {other:?}", authz.identifier()),
                        ));
                    }
                }
                let name = authz.identifier().to_string();
                let Some(mut challenge) = authz.challenge(ChallengeType::Http01) else {
                    return Err(self.refused(
                        "the authorization",
                        format!("it offers no HTTP-01 challenge for {name}"),
                    ));
                };
                let key_authorization = challenge.key_authorization().as_str().to_owned();
                if !self
                    .challenges
                    .offer(challenge.token.clone(), key_authorization)
                {
                    return Err(self.refused("the authorization", "too many challenges".into()));
                }
                offered.tokens.push(challenge.token.clone());
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| self.ca_error("starting the HTTP-01 validation", e))?;
            }
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| self.ca_error("validating the domains", e))?;
        if status != OrderStatus::Ready {
            return Err(self.refused("validating the domains", why_invalid(&mut order).await));
        }
        drop(offered);
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| self.ca_error("finalizing the order", e))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| self.ca_error("downloading the certificate", e))?;
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let pair = tls::parse(
            chain_pem.as_bytes(),
            &cert_path,
            key_pem.as_bytes(),
            &key_path,
        )
        .map_err(|source| AcmeError::Unusable {
            directory: self.settings.directory.clone(),
            source,
        })?;
        let validity = pair
            .cert
            .first()
            .and_then(validity)
            .ok_or_else(|| AcmeError::Unusable {
                directory: self.settings.directory.clone(),
                source: TlsError::BadCertificate {
                    path: cert_path.clone(),
                    reason: "its validity cannot be read".into(),
                },
            })?;
        // The key first: a crash between the two leaves a pair that does
        // not match, which the next start refuses and replaces.
        write_private(&key_path, key_pem.as_bytes(), "private key")?;
        write_private(&cert_path, chain_pem.as_bytes(), "certificate")?;
        self.update(|s| s.issued += 1);
        Ok((pair, validity))
    }

    /// The stored account for the configured CA, or a new one (stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.account_path();
        let directory = &self.settings.directory;
        if let Some(stored) = read_account(&path)?
            && &stored.directory == directory
        {
            return self
                .builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| self.ca_error("reading its directory", e));
        }
        let contact = self
            .settings
            .contact
            .as_ref()
            .map(|c| format!("mailto:{c}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(|e| self.ca_error("creating an account", e))?;
        let stored = StoredAccount {
            directory: directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| AcmeError::Store {
            what: "account",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_private(&path, &json, "account")?;
        tracing::info!(id = account.id(), ca = %directory, "ACME account created");
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, AcmeError> {
        match &self.settings.ca_root {
            Some(path) => Account::builder_with_root(path).map_err(|e| AcmeError::CaRoot {
                path: path.clone(),
                reason: chain(&e),
            }),
            None => Account::builder().map_err(|e| self.ca_error("setting up HTTPS", e)),
        }
    }

    fn refused(&self, step: &'static str, reason: String) -> AcmeError {
        AcmeError::Refused {
            directory: self.settings.directory.clone(),
            step,
            reason,
        }
    }

    /// Sorts instant-acme's error into what the operator has to do about it.
    fn ca_error(&self, step: &'static str, e: instant_acme::Error) -> AcmeError {
        let directory = self.settings.directory.clone();
        match e {
            instant_acme::Error::Api(problem) => AcmeError::Refused {
                directory,
                step,
                reason: problem.to_string(),
            },
            instant_acme::Error::Json(e) => AcmeError::NotAcme {
                directory,
                step,
                reason: e.to_string(),
            },
            instant_acme::Error::Timeout(_) => AcmeError::Stalled { directory, step },
            e @ (instant_acme::Error::Hyper(_)
            | instant_acme::Error::Http(_)
            | instant_acme::Error::InvalidUri(_)
            | instant_acme::Error::Other(_)) => AcmeError::Unreachable {
                directory,
                step,
                reason: chain(&e),
            },
            e => AcmeError::Failed {
                directory,
                step,
                reason: chain(&e),
            },
        }
    }
}

/// Why an order ended invalid: the first challenge error the CA reports.
async fn why_invalid(order: &mut Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await
            && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            return format!("{name}: {problem}");
        }
    }
    "the order became invalid".into()
}

/// The validity and DNS names of a certificate; `None` if it cannot be read.
pub fn validity(der: &CertificateDer<'_>) -> Option<Validity> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let names = match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|n| match n {
                GeneralName::DnsName(d) => Some(d.to_string().to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(Validity {
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        names,
    })
}

fn read_account(path: &Path) -> Result<Option<StoredAccount>, AcmeError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AcmeError::BadAccount {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AcmeError::BadAccount {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn create_private_dir(dir: &Path) -> Result<(), AcmeError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let store_error = |source| AcmeError::Store {
        what: "directory",
        path: dir.to_path_buf(),
        source,
    };
    builder.create(dir).map_err(store_error)?;
    // One made by hand, or by a looser umask, is closed too: private keys
    // live in it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(store_error)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by the owner only, through a
/// temporary file renamed over it: a reader sees the old file or the new
/// one, never half of one.
fn write_private(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), AcmeError> {
    let tmp = path.with_extension("tmp");
    let store_error = |source| AcmeError::Store {
        what,
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(store_error)?;
    file.write_all(bytes).map_err(store_error)?;
    file.sync_all().map_err(store_error)?;
    std::fs::rename(&tmp, path).map_err(store_error)
}

/// An error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A time for logs, as RFC 3339 in UTC (der's calendar, already linked for
/// reading certificates).
fn when(t: SystemTime) -> String {
    x509_cert::der::DateTime::from_system_time(t)
        .map_or_else(|_| format!("{t:?}"), |d| d.to_string())
}

#[cfg(test)]
mod tests;
