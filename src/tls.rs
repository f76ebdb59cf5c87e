//! TLS for broker connections: the Mozilla root store (webpki-roots), plus
//! the CA certificates of a PEM file the config names.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::credentials::TlsFiles;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read or holds none.
    #[error("cannot read TLS file `{path}`: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the settings.
    #[error("invalid TLS settings: {0}")]
    Settings(#[from] rustls::Error),
}

/// The client settings of every TLS broker connection: public roots, and
/// the certificates in `extra_ca` (PEM) when given.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let config = builder(extra_ca)?.with_no_client_auth();
    Ok(Arc::new(config))
}

/// The settings of one connection whose credentials name TLS files: the
/// public roots and the file's CA certificates, and the client
/// certificate and key when both are given. Without files, the shared
/// settings.
pub fn with_files(
    shared: &Arc<ClientConfig>,
    files: &TlsFiles,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = match (&files.ca_file, &files.cert_file) {
        (None, None) => return Ok(shared.clone()),
        (ca, _) => builder(ca.as_deref())?,
    };
    let config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                path: key.display().to_string(),
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn builder(
    extra_ca: Option<&Path>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for certificate in certificates(path)? {
            roots.add(certificate).map_err(|e| TlsError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots))
}

/// The certificates of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        assert!(client_config(None).is_ok());
        let dir = tempfile::tempdir().expect("folder");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("written");
        let error = client_config(Some(&empty))
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        let missing = client_config(Some(&dir.path().join("missing.pem")));
        assert!(missing
            .expect_err("refused")
            .to_string()
            .contains("missing.pem"));
    }

    #[test]
    fn connection_files_are_read_or_named() {
        let shared = client_config(None).expect("shared settings");
        let none = with_files(&shared, &TlsFiles::default()).expect("shared");
        assert!(Arc::ptr_eq(&none, &shared));
        let files = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let error = with_files(&shared, &files)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
