//! How an AMQP connection logs in: the URL lapin connects to, with the
//! configured user, password and mechanism, and the TLS settings.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use super::BrokerError;
use crate::config::SaslMechanism;
use crate::credentials::{Credentials, TlsFiles};

/// The URL lapin connects to: the configured user and password replace
/// the URL's, a configured mechanism goes in `auth_mechanism`, and TLS
/// turns `amqp` into `amqps`.
pub(super) fn connection_url(
    url: &str,
    credentials: Credentials,
) -> Result<(String, Option<TlsFiles>), BrokerError> {
    let invalid = |reason: String| BrokerError::Unsupported(format!("AMQP URL: {reason}"));
    let mut parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let tls = match (parsed.scheme(), credentials.tls) {
        ("amqp", None) => None,
        ("amqp" | "amqps", Some(files)) => Some(files),
        ("amqps", None) => Some(TlsFiles::default()),
        (other, _) => {
            let message = format!("scheme `{other}` is not supported; use amqp:// or amqps://");
            return Err(invalid(message));
        }
    };
    let unusable = |_| invalid("it cannot carry a user name".into());
    if tls.is_some() {
        parsed.set_scheme("amqps").map_err(unusable)?;
    }
    if let Some(user) = &credentials.username {
        parsed.set_username(user).map_err(unusable)?;
        let password = credentials.password.as_deref();
        parsed.set_password(password).map_err(unusable)?;
    }
    if let Some(mechanism) = credentials.mechanism {
        let name = match mechanism {
            SaslMechanism::Plain => "plain",
            SaslMechanism::Amqplain => "amqplain",
            SaslMechanism::External => "external",
            _ => {
                let message = "AMQP logins are `plain`, `amqplain` or `external`";
                return Err(BrokerError::Unsupported(message.into()));
            }
        };
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "auth_mechanism")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("auth_mechanism", name);
    }
    Ok((parsed.to_string(), tls))
}

/// lapin's TLS settings: the CA file's certificates, and the client
/// certificate and key that EXTERNAL logins present.
pub(super) fn tls_config(tls: Option<&TlsFiles>) -> std::io::Result<OwnedTLSConfig> {
    let Some(tls) = tls else {
        return Ok(OwnedTLSConfig::default());
    };
    let cert_chain = tls
        .ca_file
        .as_ref()
        .map(std::fs::read_to_string)
        .transpose()?;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: std::fs::read(cert)?,
            key: std::fs::read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_logins_and_tls_shape_the_connection_url() {
        let credentials = Credentials {
            username: Some("svc user".into()),
            password: Some("p@ss".into()),
            mechanism: Some(SaslMechanism::Amqplain),
            tls: Some(TlsFiles::default()),
            ..Default::default()
        };
        let (url, tls) = connection_url(
            "amqp://guest:guest@127.0.0.1:5671/%2f?heartbeat=10",
            credentials,
        )
        .expect("url");
        assert_eq!(
            url,
            "amqps://svc%20user:p%40ss@127.0.0.1:5671/%2f?heartbeat=10&auth_mechanism=amqplain"
        );
        assert!(tls.is_some());
        let (url, tls) = connection_url("amqp://127.0.0.1", Credentials::default()).expect("url");
        assert_eq!((url.as_str(), tls), ("amqp://127.0.0.1", None));
        assert!(connection_url("http://127.0.0.1", Credentials::default()).is_err());
    }
}
