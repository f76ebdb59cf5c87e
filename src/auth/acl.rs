//! Access rules: each grants a principal or a role one or both actions on
//! the channels it names, optionally only for some messages and only with
//! some parameter values, literal or taken from a token claim. Nothing is
//! allowed that no rule grants.

use std::collections::BTreeMap;

use super::{Action, Principal};
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

/// The rules of the config.
pub struct Rules(Vec<AclRule>);

impl Rules {
    /// The rules, in the order given.
    pub fn new(rules: &[AclRule]) -> Self {
        Self(rules.to_vec())
    }

    /// Whether some rule grants the request.
    pub fn allow(&self, principal: &Principal, request: &AccessRequest<'_>) -> bool {
        self.0.iter().any(|rule| grants(rule, principal, request))
    }
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
