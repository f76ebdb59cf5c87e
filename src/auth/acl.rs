//! Access rules: each grants a principal or a role one or both actions on
//! the channels it names, optionally only for some messages and only with
//! some parameter values, literal or taken from a token claim. Nothing is
//! allowed that no rule grants. Rules come from the config and from the
//! admin API.

use std::collections::BTreeMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Action, Principal};
use crate::broker::address::AddressTemplate;
use crate::config::AclRule;

/// One request to check.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// What the principal asks to do.
    pub action: Action,
    /// The name of the channel's document.
    pub document: &'a str,
    /// The channel's address, with its `{parameter}` placeholders.
    pub address: &'a str,
    /// The parameter values the request fixes; a subscription leaves out
    /// those it takes every value of.
    pub parameters: &'a BTreeMap<String, String>,
    /// The messages concerned: the one published, or every message of the
    /// channel for a subscription.
    pub messages: &'a [&'a str],
}

/// A rule added through the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRule {
    /// Its id, by which it is removed.
    pub id: String,
    /// The rule.
    #[serde(flatten)]
    pub rule: AclRule,
    /// The principal that added it.
    pub created_by: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// A rule that could never grant anything as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Where in the rule, as a JSON pointer.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// The rules of the config, fixed at start, and those of the admin API,
/// which change while the gateway runs.
#[derive(Default)]
pub struct Rules {
    configured: Vec<AclRule>,
    stored: RwLock<Vec<StoredRule>>,
}

impl Rules {
    /// The rules of the config, in the order given.
    pub fn new(rules: &[AclRule]) -> Self {
        Self {
            configured: rules.to_vec(),
            stored: RwLock::default(),
        }
    }

    /// Whether some rule grants the request.
    pub fn allow(&self, principal: &Principal, request: &AccessRequest<'_>) -> bool {
        let granted = |rule: &AclRule| grants(rule, principal, request);
        self.configured.iter().any(granted) || self.stored().iter().any(|s| granted(&s.rule))
    }

    /// The rules of the config.
    pub fn configured(&self) -> &[AclRule] {
        &self.configured
    }

    /// The rules of the admin API, oldest first.
    pub fn stored(&self) -> std::sync::RwLockReadGuard<'_, Vec<StoredRule>> {
        // A writer cannot panic while holding the lock: it only pushes or
        // retains.
        self.stored.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the admin API's rules (at start, from the database).
    pub fn set_stored(&self, rules: Vec<StoredRule>) {
        *self.stored.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Adds one rule of the admin API.
    pub fn add_stored(&self, rule: StoredRule) {
        self.stored
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
    }

    /// Removes one rule of the admin API.
    pub fn remove_stored(&self, id: &str) {
        self.stored
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|rule| rule.id != id);
    }
}

/// Refuses a rule that grants no action, or that fixes or binds a
/// parameter its channel does not have.
pub fn check(rule: &AclRule) -> Result<(), RuleError> {
    let error = |pointer: String, message: String| Err(RuleError { pointer, message });
    if rule.actions.is_empty() {
        return error(
            "/actions".into(),
            "`actions` must name `publish`, `subscribe` or both".into(),
        );
    }
    let names = [
        ("principal", rule.principal.as_deref()),
        ("role", rule.role.as_deref()),
        ("document", rule.document.as_deref()),
        ("channel", rule.channel.as_deref()),
    ];
    for (field, value) in names {
        if value.is_some_and(|v| v.trim().is_empty()) {
            return error(
                format!("/{field}"),
                format!("`{field}` must not be empty; leave it out to mean any"),
            );
        }
    }
    if let Some(at) = rule.messages.iter().position(|m| m.trim().is_empty()) {
        return error(
            format!("/messages/{at}"),
            "a message name must not be empty".into(),
        );
    }
    let Some(channel) = &rule.channel else {
        return Ok(());
    };
    let template = AddressTemplate::parse(channel);
    let names: Vec<&str> = template.parameter_names().collect();
    let fixed = rule.parameters.keys().map(|name| ("parameters", name));
    let bound = rule.bind.keys().map(|name| ("bind", name));
    for (field, name) in fixed.chain(bound) {
        if !names.contains(&name.as_str()) {
            let pointer = format!("/{field}/{}", name.replace('~', "~0").replace('/', "~1"));
            let message = format!("channel `{channel}` has no parameter `{name}`");
            return error(pointer, message);
        }
    }
    Ok(())
}

fn grants(rule: &AclRule, principal: &Principal, request: &AccessRequest<'_>) -> bool {
    let who = rule.principal.as_ref().is_none_or(|p| *p == principal.name)
        && rule.role.as_ref().is_none_or(|r| principal.has_role(r));
    let what = rule.actions.contains(&request.action)
        && rule.document.as_ref().is_none_or(|d| d == request.document)
        && rule.channel.as_ref().is_none_or(|c| c == request.address)
        && (rule.messages.is_empty()
            || request
                .messages
                .iter()
                .all(|m| rule.messages.iter().any(|r| r == m)));
    let fixed = |name: &String, wanted: Option<String>| {
        wanted.is_some_and(|wanted| request.parameters.get(name) == Some(&wanted))
    };
    let values = rule
        .parameters
        .iter()
        .all(|(name, value)| fixed(name, Some(value.clone())))
        && rule
            .bind
            .iter()
            .all(|(name, claim)| fixed(name, principal.claim(claim)));
    who && what && values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(sub: &str) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), sub.into());
        Principal {
            name: sub.into(),
            roles: vec!["device".into()],
            claims,
            expires_at: None,
        }
    }

    fn rule(actions: &[Action]) -> AclRule {
        AclRule {
            role: Some("device".into()),
            channel: Some("device/{deviceId}/data".into()),
            bind: [("deviceId".to_owned(), "sub".to_owned())].into(),
            actions: actions.to_vec(),
            ..Default::default()
        }
    }

    fn request<'a>(
        action: Action,
        parameters: &'a BTreeMap<String, String>,
        messages: &'a [&'a str],
    ) -> AccessRequest<'a> {
        AccessRequest {
            action,
            document: "IoT",
            address: "device/{deviceId}/data",
            parameters,
            messages,
        }
    }

    #[test]
    fn a_device_may_use_only_its_own_address_in_the_granted_direction() {
        let rules = Rules::new(&[rule(&[Action::Publish])]);
        let own: BTreeMap<String, String> = [("deviceId".into(), "d1".into())].into();
        let other: BTreeMap<String, String> = [("deviceId".into(), "d2".into())].into();
        let any = BTreeMap::new();
        let d1 = device("d1");
        assert!(rules.allow(&d1, &request(Action::Publish, &own, &["data"])));
        assert!(!rules.allow(&d1, &request(Action::Publish, &other, &["data"])));
        assert!(!rules.allow(&d1, &request(Action::Publish, &any, &["data"])));
        assert!(!rules.allow(&d1, &request(Action::Subscribe, &own, &["data"])));
        let mut operator = d1.clone();
        operator.roles = vec!["operator".into()];
        assert!(!rules.allow(&operator, &request(Action::Publish, &own, &["data"])));
    }

    #[test]
    fn message_lists_and_literal_values_narrow_a_rule() {
        let narrow = AclRule {
            principal: Some("svc".into()),
            messages: vec!["placed".into()],
            parameters: [("region".to_owned(), "eu".to_owned())].into(),
            actions: vec![Action::Subscribe],
            ..Default::default()
        };
        let rules = Rules::new(&[narrow]);
        let svc = Principal {
            name: "svc".into(),
            roles: Vec::new(),
            claims: serde_json::Map::new(),
            expires_at: None,
        };
        let eu: BTreeMap<String, String> = [("region".into(), "eu".into())].into();
        assert!(rules.allow(&svc, &request(Action::Subscribe, &eu, &["placed"])));
        assert!(!rules.allow(&svc, &request(Action::Subscribe, &eu, &["placed", "paid"])));
        let us: BTreeMap<String, String> = [("region".into(), "us".into())].into();
        assert!(!rules.allow(&svc, &request(Action::Subscribe, &us, &["placed"])));
    }
}
