//! What the client trusts for TLS: the meeting server's HTTPS (the
//! signaling WebSocket over `wss://`) and `turns:` relays. The system's
//! roots, so that a certificate from a public CA just works, and an
//! operator's own CA when given one (`--ca-file`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// What the server's certificate (wss) and a `turns:` relay's are checked
/// against: the system's roots (which honour `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`), and the PEM certificates of `extra` if given (an
/// operator's own CA).
pub fn client_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system root certificate store could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    if let Some(path) = extra {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsSetupError::Roots {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsSetupError::Roots {
                path: path.display().to_string(),
                detail: "no certificate in it".into(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| TlsSetupError::Roots {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: cannot read CA certificates: {detail}")]
    Roots { path: String, detail: String },
    #[error("TLS setup: {0}")]
    Rustls(String),
}
