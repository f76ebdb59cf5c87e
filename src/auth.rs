//! Who may do what: client authentication (API keys and JWT bearer tokens)
//! and the access rules that decide, per channel and per direction, what an
//! authenticated principal may publish and subscribe to. Every front asks
//! [`Auth`] the same questions.

pub mod acl;
pub mod keys;
pub mod tokens;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use acl::AccessRequest;

use crate::config::AuthConfig;

/// The role that may use the management API.
pub const ADMIN_ROLE: &str = "admin";

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// Its name: the API key's name, or the token's `sub`.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// The token's claims (empty for API keys), for rules that bind a
    /// channel parameter to a claim.
    #[serde(skip)]
    pub claims: Map<String, Value>,
    /// When its token expires (Unix seconds), if it does.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// The principal of a gateway with authentication off: it may do
    /// everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            roles: vec![ADMIN_ROLE.into()],
            claims: Map::new(),
            expires_at: None,
        }
    }

    /// Its roles and claims as a stored webhook subscription keeps them.
    pub fn to_stored(&self) -> Value {
        serde_json::json!({"roles": self.roles, "claims": self.claims})
    }

    /// The principal `name` as [`Principal::to_stored`] kept it; without a
    /// stored form it has no roles or claims.
    pub fn from_stored(name: &str, stored: Option<&Value>) -> Self {
        let stored = stored.cloned().unwrap_or_default();
        Self {
            name: name.to_owned(),
            roles: serde_json::from_value(stored["roles"].clone()).unwrap_or_default(),
            claims: stored["claims"].as_object().cloned().unwrap_or_default(),
            expires_at: None,
        }
    }

    /// Whether it has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A claim as text, for rules that bind parameters to claims.
    pub fn claim(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// What a principal asks to do on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Send messages to the channel.
    Publish,
    /// Receive the channel's messages.
    Subscribe,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        })
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that do not hold (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Authentication and access rules, built once from the config.
pub struct Auth {
    enabled: bool,
    tokens: tokens::TokenVerifier,
    rules: acl::Rules,
}

/// Why the auth settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key file cannot be read or parsed.
    #[error("auth setting `{setting}`: {reason}")]
    Setting {
        /// The config key.
        setting: String,
        /// What is wrong.
        reason: String,
    },
}

impl Auth {
    /// The settings of `config`, checked.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        for (index, rule) in config.rules.iter().enumerate() {
            acl::check(rule).map_err(|e| AuthSetupError::Setting {
                setting: format!("auth.rules[{index}]{}", e.pointer.replace('/', ".")),
                reason: e.message,
            })?;
        }
        Ok(Self {
            enabled: config.enabled,
            tokens: tokens::TokenVerifier::new(&config.jwt)?,
            rules: acl::Rules::new(&config.rules),
        })
    }

    /// Whether clients must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The access rules, of the config and of the admin API.
    pub fn rules(&self) -> &acl::Rules {
        &self.rules
    }

    /// The verifier of bearer tokens.
    pub fn tokens(&self) -> &tokens::TokenVerifier {
        &self.tokens
    }

    /// Whether `principal` may do what `request` says; deny by default.
    pub fn authorize(
        &self,
        principal: &Principal,
        request: &AccessRequest<'_>,
    ) -> Result<(), AuthError> {
        if !self.enabled || self.rules.allow(principal, request) {
            return Ok(());
        }
        Err(AuthError::Forbidden(format!(
            "`{}` may not {} on channel `{}`{}",
            principal.name,
            request.action,
            request.address,
            describe_parameters(request.parameters)
        )))
    }

    /// Refuses principals without the admin role.
    pub fn require_admin(&self, principal: &Principal) -> Result<(), AuthError> {
        match !self.enabled || principal.has_role(ADMIN_ROLE) {
            true => Ok(()),
            false => Err(AuthError::Forbidden(format!(
                "`{}` lacks the `{ADMIN_ROLE}` role the management API needs",
                principal.name
            ))),
        }
    }
}

fn describe_parameters(parameters: &BTreeMap<String, String>) -> String {
    if parameters.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" with {}", pairs.join(", "))
}
