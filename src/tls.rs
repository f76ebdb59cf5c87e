//! TLS for broker connections: the Mozilla root store (webpki-roots), plus
//! the CA certificates of a PEM file the config names.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no certificate.
    #[error("cannot read CA certificates from `{path}`: {reason}")]
    CaFile {
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
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let ca_error = |reason: String| TlsError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| ca_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
}
