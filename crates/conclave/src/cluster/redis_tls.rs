//! TLS to Redis (`rediss://`): rustls on the server's one crypto provider,
//! trusting the CA file `cluster.redis_ca_file` names, or else the system's
//! roots. Built here rather than by fred from the URL, so that a CA file
//! that cannot be used stops the node at start with its path and reason,
//! and so that no second crypto provider is chosen behind our back.

use std::path::Path;
use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::ClusterError;

/// The TLS settings for a `rediss://` URL.
pub fn config(ca_file: Option<&Path>) -> Result<TlsConfig, ClusterError> {
    let roots = match ca_file {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(client).into())
}

fn roots_from(path: &Path) -> Result<RootCertStore, ClusterError> {
    let bad = |reason: String| ClusterError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ClusterError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system CA certificate could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(ClusterError::Tls(
            "rediss:// without cluster.redis_ca_file, and no system CA certificates were found"
                .into(),
        ));
    }
    Ok(roots)
}
