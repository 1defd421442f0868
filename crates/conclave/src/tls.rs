//! HTTPS from the operator's own certificate files.
//!
//! [`ServerCert`] reads a PEM certificate chain and its private key, checks
//! that they belong together, and hands the pair to rustls for every
//! handshake; [`ServerCert::reload`] (what SIGHUP calls) swaps in the files'
//! new contents, or keeps the pair it has when they are unusable.
//! [`Incoming`] is the listener `axum::serve` takes: plain TCP, or TCP with
//! TLS handshakes done on their own tasks, bounded in number and time, so a
//! slow or silent client never holds up anyone else's connection.
//!
//! The same [`ServerCert`] serves a certificate the server obtained itself
//! from an ACME CA ([`crate::acme`] installs each renewal).
//!
//! Before its handshake, a connection whose ClientHello names a TURN server
//! can be handed on untouched to that server's TLS listener
//! ([`passthrough`]), so TURN/TLS and HTTPS share one address and port.
//!
//! One crypto provider, aws-lc-rs (str0m's DTLS already builds it).

pub mod passthrough;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use self::passthrough::{Passthrough, Peeked};

/// TLS handshakes in progress at once; a connection beyond it is closed.
pub const MAX_HANDSHAKES: usize = 1024;
/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Why a certificate or key cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key in it (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the certificate cannot be used: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the certificate in {} does not match the private key in {}", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
}

/// The one crypto provider the server's TLS uses.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Reads a certificate chain (leaf first) and its private key from PEM
/// files and checks that the key is the certificate's.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(cert_path, "certificate")?;
    let key_pem = read(key_path, "private key")?;
    parse(&cert_pem, cert_path, &key_pem, key_path)
}

/// Like [`load`], from PEM already in memory (what an ACME CA just issued);
/// the paths only name the pair in errors.
pub fn parse(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_path_buf(),
            });
        }
        Err(e) => return Err(pem_error(key_path, e)),
    };
    let signing_key =
        provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let pair = CertifiedKey::new(chain, signing_key);
    match pair.keys_match() {
        // A key that cannot name its public half is taken, as rustls does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The certificate the server presents, read from the operator's files and
/// swapped whole on [`ServerCert::reload`]: a handshake sees the old pair or
/// the new one, never a mix.
#[derive(Debug)]
pub struct ServerCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Loads the pair; an error names the file at fault.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerCert>, TlsError> {
        let pair = load(cert_path, key_path)?;
        Ok(Arc::new(ServerCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(pair)),
        }))
    }

    /// A pair already loaded (a certificate the server just obtained and
    /// stored in these files, [`crate::acme`]).
    pub fn from_pair(pair: CertifiedKey, cert_path: &Path, key_path: &Path) -> Arc<ServerCert> {
        Arc::new(ServerCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(pair)),
        })
    }

    /// Reads the files again and serves what they hold from the next
    /// handshake on. When they are unusable, keeps serving the pair it has,
    /// logs why and returns the reason.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one");
                Err(e)
            }
        }
    }

    /// Serves `pair` from the next handshake on (a certificate the server
    /// obtained itself, [`crate::acme`]); a later [`ServerCert::reload`]
    /// reads the files this was loaded from, where the new pair is stored.
    pub fn install(&self, pair: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
    }

    /// The certificate chain served now, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The rustls configuration that serves this certificate (HTTP/1.1 by
    /// ALPN: the server speaks nothing else).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What `axum::serve` accepts connections from: plain TCP, or TLS over TCP.
pub enum Incoming {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl axum::serve::Listener for Incoming {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self {
            Incoming::Plain(tcp) => {
                let (io, peer) = axum::serve::Listener::accept(tcp).await;
                (Either::Left(io), peer)
            }
            Incoming::Tls(tls) => {
                let (io, peer) = tls.accept().await;
                (Either::Right(io), peer)
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Incoming::Plain(tcp) => tcp.local_addr(),
            Incoming::Tls(tls) => Ok(tls.addr),
        }
    }
}

/// Connections whose TLS handshake has finished, handshakes run by a task
/// that lives until `shutdown` or until the listener is dropped.
pub struct TlsListener {
    addr: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// With `passthrough`, connections for its TURN names go to their
    /// backends instead of being served here.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        passthrough: Option<Arc<Passthrough>>,
        shutdown: CancellationToken,
    ) -> io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(handshakes(
            tcp,
            TlsAcceptor::from(config),
            passthrough,
            tx,
            shutdown,
        ));
        Ok(TlsListener { addr, accepted })
    }

    async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The handshake task has stopped: shutdown is under way.
            None => std::future::pending().await,
        }
    }
}

async fn handshakes(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    passthrough: Option<Arc<Passthrough>>,
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    let in_progress = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            () = accepted.closed() => return,
            conn = tcp.accept() => match conn {
                Ok(conn) => conn,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&in_progress).try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress; connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let accepted = accepted.clone();
        let passthrough = passthrough.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // One deadline for reading the ClientHello and the handshake,
            // so peeking first gives a slow client no second allowance.
            let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
            if let Some(p) = passthrough {
                match tokio::time::timeout_at(deadline, p.peek(&stream)).await {
                    Ok(Ok(Peeked::Own)) => {}
                    Ok(Ok(Peeked::Passthrough(backend))) => {
                        // A relayed connection holds a passthrough place,
                        // not a handshake's.
                        drop(permit);
                        p.relay(stream, peer, backend, shutdown).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS connection closed before its handshake");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "no ClientHello in time; connection closed");
                        return;
                    }
                }
            }
            let _permit = permit;
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server has stopped taking connections.
                    let _ = accepted.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// As `axum::serve` treats accept errors: a connection that died before it
/// was taken is nobody's problem; anything else (out of file descriptors)
/// is logged and waited out.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
