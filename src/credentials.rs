//! Credentials the gateway presents to brokers. The config lists entries
//! that select servers by document, server name and the security schemes a
//! server requires; the first entry that selects a server is resolved for
//! its broker, reading secrets from the environment where it says so.

use std::path::PathBuf;

use serde_json::Value;

use crate::config::{BrokerCredentials, SaslMechanism};

/// Scheme types that a user name and password answer.
const PASSWORD_SCHEMES: &[&str] = &["userPassword", "plain", "scramSha256", "scramSha512"];

/// Header that carries an API key when neither the config nor the scheme
/// names one.
const DEFAULT_API_KEY_HEADER: &str = "X-API-Key";

/// What one broker's connection presents.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// SASL mechanism, when the config chose one.
    pub mechanism: Option<SaslMechanism>,
    /// TLS settings, when the connection is to use TLS.
    pub tls: Option<TlsFiles>,
    /// Bearer token.
    pub token: Option<String>,
    /// API key and the header that carries it.
    pub api_key: Option<ApiKey>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("mechanism", &self.mechanism)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("api_key", &self.api_key.as_ref().map(|k| &k.header))
            .finish()
    }
}

/// Files of a TLS connection; the public roots and `brokers.tls_ca_file`
/// are trusted besides `ca_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's key.
    pub key_file: Option<PathBuf>,
}

/// An API key and its header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The header's name.
    pub header: String,
    /// The key.
    pub value: String,
}

/// One security scheme a server requires: the name of the component it is
/// (when it is one) and the scheme object.
#[derive(Debug, Clone)]
pub struct Requirement<'s> {
    /// Its name under `components.securitySchemes`.
    pub name: Option<String>,
    /// The scheme object.
    pub scheme: &'s Value,
}

impl Requirement<'_> {
    /// The scheme's `type`.
    pub fn kind(&self) -> &str {
        self.scheme["type"].as_str().unwrap_or_default()
    }
}

/// The schemes the server `server` of `spec` requires.
pub fn server_requirements<'s>(spec: &'s Value, server: &str) -> Vec<Requirement<'s>> {
    requirements(spec, &spec["servers"][server]["security"])
}

/// The schemes a `security` list of `spec` names. In 2.x it lists
/// `{name: scopes}` objects, in 3.0 the scheme objects themselves, named
/// here by the component they equal, scopes aside.
pub fn requirements<'s>(spec: &'s Value, security: &'s Value) -> Vec<Requirement<'s>> {
    let components = &spec["components"]["securitySchemes"];
    // An operation's requirement may add the `scopes` it needs to the
    // scheme it names; the rest identifies the component.
    let without_scopes = |scheme: &Value| {
        let mut scheme = scheme.clone();
        if let Some(map) = scheme.as_object_mut() {
            map.remove("scopes");
        }
        scheme
    };
    let named = |scheme: &Value| {
        let all = components.as_object()?;
        let wanted = without_scopes(scheme);
        let found = all.iter().find(|(_, v)| without_scopes(v) == wanted);
        found.map(|(k, _)| k.clone())
    };
    let items = security.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .flat_map(|item| match item.get("type") {
            Some(_) => vec![Requirement {
                name: named(item),
                scheme: item,
            }],
            None => item
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, _)| Requirement {
                    name: Some(name.clone()),
                    scheme: &components[name.as_str()],
                })
                .collect(),
        })
        .collect()
}

/// The first entry that selects the server `server` of `document`, with
/// its index.
pub fn select<'c>(
    entries: &'c [BrokerCredentials],
    document: &str,
    server: &str,
    requirements: &[Requirement<'_>],
) -> Option<(usize, &'c BrokerCredentials)> {
    entries.iter().enumerate().find(|(_, entry)| {
        entry.document.as_ref().is_none_or(|d| d == document)
            && entry.server.as_ref().is_none_or(|s| s == server)
            && entry
                .scheme
                .as_ref()
                .is_none_or(|wanted| requirements.iter().any(|r| r.name.as_ref() == Some(wanted)))
    })
}

/// The credentials for the server `server` of the document `document`
/// (whose content is `spec`); none when no entry selects it. An entry whose
/// environment variable is not set is an error that names both.
pub fn for_server(
    entries: &[BrokerCredentials],
    document: &str,
    server: &str,
    spec: &Value,
) -> Result<Option<Credentials>, String> {
    let requirements = server_requirements(spec, server);
    let Some((index, entry)) = select(entries, document, server, &requirements) else {
        return Ok(None);
    };
    let secret = |value: &Option<String>, env: &Option<String>, field: &str| {
        if let Some(value) = value {
            return Ok(Some(value.clone()));
        }
        let Some(name) = env else { return Ok(None) };
        std::env::var(name).map(Some).map_err(|_| {
            format!("environment variable `{name}` named by brokers.credentials[{index}].{field}_env is not set")
        })
    };
    let password = secret(&entry.password, &entry.password_env, "password")?;
    let token = secret(&entry.token, &entry.token_env, "token")?;
    let api_key = secret(&entry.api_key, &entry.api_key_env, "api_key")?;
    let header = entry.api_key_header.clone().or_else(|| {
        requirements
            .iter()
            .find(|r| r.kind() == "httpApiKey" && r.scheme["in"] == "header")
            .and_then(|r| r.scheme["name"].as_str().map(str::to_owned))
    });
    let files = [&entry.ca_file, &entry.cert_file, &entry.key_file];
    let named = ["ca_file", "cert_file", "key_file"];
    for (file, field) in files.iter().zip(named) {
        if let Some(path) = file {
            std::fs::metadata(path).map_err(|e| {
                format!(
                    "brokers.credentials[{index}].{field} `{}`: {e}",
                    path.display()
                )
            })?;
        }
    }
    let tls = (entry.tls || files.iter().any(|f| f.is_some())).then(|| TlsFiles {
        ca_file: entry.ca_file.clone(),
        cert_file: entry.cert_file.clone(),
        key_file: entry.key_file.clone(),
    });
    Ok(Some(Credentials {
        username: entry.username.clone(),
        password,
        mechanism: entry.mechanism,
        tls,
        token,
        api_key: api_key.map(|value| ApiKey {
            header: header.unwrap_or_else(|| DEFAULT_API_KEY_HEADER.into()),
            value,
        }),
    }))
}

/// How a server's scheme is answered: `url` (user and password in the
/// server URL), `config` (an entry of `brokers.credentials`), `missing`,
/// or `not supported` (a kind the gateway cannot present).
pub fn coverage(
    requirement: &Requirement<'_>,
    entry: Option<&BrokerCredentials>,
    url_has_user: bool,
) -> &'static str {
    let kind = requirement.kind();
    // A variable that is not set is no answer: the broker fails for it.
    let has = |value: &Option<String>, env: &Option<String>| {
        value.is_some()
            || env
                .as_ref()
                .is_some_and(|name| std::env::var_os(name).is_some())
    };
    let answers = |entry: &BrokerCredentials| match kind {
        k if PASSWORD_SCHEMES.contains(&k) => {
            entry.username.is_some() && has(&entry.password, &entry.password_env)
        }
        "X509" => entry.cert_file.is_some() && entry.key_file.is_some(),
        "httpApiKey" => has(&entry.api_key, &entry.api_key_env),
        "http" => has(&entry.token, &entry.token_env),
        _ => false,
    };
    let bearer = kind == "http" && requirement.scheme["scheme"] == "bearer";
    let supported =
        PASSWORD_SCHEMES.contains(&kind) || ["X509", "httpApiKey"].contains(&kind) || bearer;
    match (supported, entry) {
        (false, _) => "not supported",
        (true, Some(entry)) if answers(entry) => "config",
        _ if url_has_user && PASSWORD_SCHEMES.contains(&kind) => "url",
        _ => "missing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "servers": {
                "prod": {"security": [{"user": []}, {"key": []}]},
                "open": {}
            },
            "components": {"securitySchemes": {
                "user": {"type": "userPassword"},
                "key": {"type": "httpApiKey", "in": "header", "name": "X-Token"},
                "oauth": {"type": "oauth2", "flows": {}}
            }}
        })
    }

    #[test]
    fn entries_select_servers_and_read_secrets_from_the_environment() {
        let entries = vec![
            BrokerCredentials {
                document: Some("Other".into()),
                username: Some("wrong".into()),
                ..Default::default()
            },
            BrokerCredentials {
                scheme: Some("user".into()),
                username: Some("svc".into()),
                password_env: Some("STEPFLOW_TEST_CREDENTIALS_PASSWORD".into()),
                api_key: Some("k".into()),
                ..Default::default()
            },
        ];
        let spec = spec();
        assert_eq!(for_server(&entries, "Doc", "open", &spec), Ok(None));
        let missing = for_server(&entries, "Doc", "prod", &spec).expect_err("variable unset");
        assert!(
            missing.contains("STEPFLOW_TEST_CREDENTIALS_PASSWORD"),
            "{missing}"
        );
        assert!(
            missing.contains("brokers.credentials[1].password_env"),
            "{missing}"
        );
        std::env::set_var("STEPFLOW_TEST_CREDENTIALS_PASSWORD", "s3cret");
        let found = for_server(&entries, "Doc", "prod", &spec)
            .expect("resolved")
            .expect("selected");
        assert_eq!(found.username.as_deref(), Some("svc"));
        assert_eq!(found.password.as_deref(), Some("s3cret"));
        assert_eq!(
            found.api_key.as_ref().map(|k| k.header.as_str()),
            Some("X-Token")
        );
        assert!(!format!("{found:?}").contains("s3cret"));

        let missing_file = vec![BrokerCredentials {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        }];
        let error = for_server(&missing_file, "Doc", "prod", &spec).expect_err("no such file");
        assert!(
            error.contains("brokers.credentials[0].ca_file `/nonexistent/ca.pem`"),
            "{error}"
        );
    }

    #[test]
    fn sasl_mechanisms_take_their_usual_names() {
        #[derive(serde::Deserialize)]
        struct Entry {
            mechanism: SaslMechanism,
        }
        for (text, expected) in [
            ("scram-sha-256", SaslMechanism::ScramSha256),
            ("scram-sha-512", SaslMechanism::ScramSha512),
            ("amqplain", SaslMechanism::Amqplain),
        ] {
            let entry: Entry = serde_json::from_value(json!({ "mechanism": text })).expect(text);
            assert_eq!(entry.mechanism, expected);
        }
    }

    #[test]
    fn coverage_tells_config_url_missing_and_unsupported_apart() {
        let spec = spec();
        let requirements = server_requirements(&spec, "prod");
        let user = &requirements[0];
        let entry = BrokerCredentials {
            username: Some("svc".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        assert_eq!(coverage(user, Some(&entry), false), "config");
        assert_eq!(coverage(user, None, true), "url");
        assert_eq!(coverage(user, None, false), "missing");
        assert_eq!(coverage(&requirements[1], Some(&entry), false), "missing");
        let oauth = Requirement {
            name: Some("oauth".into()),
            scheme: &spec["components"]["securitySchemes"]["oauth"],
        };
        assert_eq!(coverage(&oauth, Some(&entry), true), "not supported");
    }
}
