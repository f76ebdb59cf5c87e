//! Static routes from the config, checked against the loaded documents
//! before any runs: both ends must be channels of loaded documents, every
//! placeholder of the target address must get a value, the route's
//! principal must be allowed both directions, and no route may feed itself,
//! directly or through other routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::{AccessRequest, Action, Auth, Principal};
use crate::catalog::{Catalog, ChannelEntry, DocumentEntry};
use crate::config::{RouteConfig, RouteEnd};
use crate::ids::DocumentId;
use crate::publish::Validation;
use entity::message_channels;

/// A route ready to run.
#[derive(Clone)]
pub struct Route {
    /// Its name.
    pub name: String,
    /// The channel messages come from.
    pub from: Arc<ChannelEntry>,
    /// Values that narrow what is taken from it.
    pub from_parameters: BTreeMap<String, String>,
    /// The channel messages go to.
    pub to: Arc<ChannelEntry>,
    /// Whether `to` is a raw address that no document declares: then it
    /// is published to as it is, with no schema to check.
    pub to_is_raw: bool,
    /// How the target's parameters are filled: literal text with
    /// `{name}` standing for a value captured from the source.
    pub to_parameters: BTreeMap<String, String>,
    /// Who the access rules see.
    pub principal: Principal,
    /// Whether each message is checked against the target's schema.
    pub validation: Validation,
    /// Messages that may wait for the target at most.
    pub max_pending: usize,
}

impl Route {
    /// The target's parameter values for a message that arrived with
    /// `captured`; none when a placeholder names a value not captured.
    pub fn target_values(
        &self,
        captured: &BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        for name in self.to.address.parameter_names() {
            let value = match self.to_parameters.get(name) {
                Some(pattern) => fill(pattern, captured)?,
                None => captured.get(name)?.clone(),
            };
            values.insert(name.to_owned(), value);
        }
        Some(values)
    }
}

/// Why the routes of the config cannot run.
#[derive(Debug, thiserror::Error)]
#[error("route `{route}`: {reason}")]
pub struct RouteError {
    /// The route's name.
    pub route: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks every route against `catalog` and `auth`.
pub fn resolve(
    routes: &[RouteConfig],
    catalog: &Catalog,
    auth: &Auth,
) -> Result<Vec<Route>, RouteError> {
    let mut resolved = Vec::new();
    for config in routes {
        let failed = |reason: String| RouteError {
            route: config.name.clone(),
            reason,
        };
        if let Some(problem) = name_problem(&config.name) {
            return Err(failed(problem.into()));
        }
        if resolved.iter().any(|r: &Route| r.name == config.name) {
            return Err(failed("another route has this name".into()));
        }
        let from = end(catalog, &config.from, &config.name, "from")
            .map_err(|e| failed(format!("from: {e}")))?;
        let to =
            end(catalog, &config.to, &config.name, "to").map_err(|e| failed(format!("to: {e}")))?;
        let mut claims = serde_json::Map::new();
        let name = config
            .principal
            .clone()
            .unwrap_or_else(|| config.name.clone());
        claims.insert("sub".into(), name.clone().into());
        let route = Route {
            name: config.name.clone(),
            from,
            from_parameters: config.from.parameters.clone(),
            to,
            to_is_raw: config.to.address.is_some(),
            to_parameters: config.to.parameters.clone(),
            principal: Principal {
                name,
                roles: config.roles.clone(),
                claims,
                expires_at: None,
            },
            validation: match config.validate {
                true => Validation::On,
                false => Validation::Off,
            },
            max_pending: config.max_pending,
        };
        check_parameters(&route).map_err(failed)?;
        authorize(&route, catalog, auth).map_err(failed)?;
        resolved.push(route);
    }
    if let Some(cycle) = find_cycle(&resolved) {
        return Err(RouteError {
            route: cycle[0].clone(),
            reason: format!(
                "it would feed itself: {} leads back to the same broker and address",
                cycle.join(" -> ")
            ),
        });
    }
    Ok(resolved)
}

/// The channel `end` names: a channel of its document, or a raw address
/// on one of the document's servers.
fn end(
    catalog: &Catalog,
    end: &RouteEnd,
    route: &str,
    side: &str,
) -> Result<Arc<ChannelEntry>, String> {
    let document = catalog
        .documents()
        .into_iter()
        .find(|d| d.row.name == end.document)
        .ok_or_else(|| format!("no document named `{}` is loaded", end.document))?;
    match (&end.channel, &end.address) {
        (Some(channel), None) if end.server.is_none() => declared(catalog, document, channel),
        (Some(_), None) => Err("`server` goes with `address`, not with `channel`".into()),
        (None, Some(address)) => raw(document, end, address, &format!("{route}:{side}")),
        (Some(_), Some(_)) => Err("give either `channel` or `address`, not both".into()),
        (None, None) => Err("give a `channel` of the document or an `address`".into()),
    }
}

/// A channel of `document`: by address as written, else by its name.
fn declared(
    catalog: &Catalog,
    document: &DocumentEntry,
    channel: &str,
) -> Result<Arc<ChannelEntry>, String> {
    let id = DocumentId::from(document.row.id.clone());
    let channels = catalog.channels(Some(&id));
    let found = channels
        .iter()
        .find(|c| c.row.address == channel)
        .or_else(|| channels.iter().find(|c| c.row.name == channel));
    let found = found.ok_or_else(|| {
        let known: Vec<&str> = channels.iter().map(|c| c.row.address.as_str()).collect();
        format!(
            "document `{}` has no channel `{channel}`; its channels: [{}]",
            document.row.name,
            known.join(", ")
        )
    })?;
    if found.broker.is_none() {
        return Err(format!("channel `{channel}` has no broker"));
    }
    Ok((*found).clone())
}

/// A channel for a raw address on one of `document`'s brokers, known to
/// no document: no messages, and its placeholders take any value.
fn raw(
    document: &DocumentEntry,
    end: &RouteEnd,
    address: &str,
    id: &str,
) -> Result<Arc<ChannelEntry>, String> {
    let wildcard = address
        .split(['/', '.'])
        .find(|level| matches!(*level, "+" | "#" | "*" | ">"));
    if let Some(wildcard) = wildcard {
        return Err(format!(
            "address `{address}` has the wildcard `{wildcard}`; write `{{name}}` for a level of any value"
        ));
    }
    if address.is_empty() {
        return Err("the address is empty".into());
    }
    let brokers = &document.brokers;
    let broker = match &end.server {
        Some(server) => brokers.iter().find(|b| &b.server_name == server),
        None if brokers.len() == 1 => brokers.first(),
        None => {
            let names: Vec<&str> = brokers.iter().map(|b| b.server_name.as_str()).collect();
            return Err(format!(
                "document `{}` has {} servers: name one with `server` ([{}])",
                document.row.name,
                names.len(),
                names.join(", ")
            ));
        }
    };
    let broker = broker.ok_or_else(|| {
        format!(
            "document `{}` has no server `{}`",
            document.row.name,
            end.server.as_deref().unwrap_or_default()
        )
    })?;
    let row = message_channels::Model {
        id: format!("route:{id}"),
        document_id: document.row.id.clone(),
        name: address.to_owned(),
        address: address.to_owned(),
        description: None,
        parameters: serde_json::json!({}),
        bindings: serde_json::json!({}),
        operation_bindings: serde_json::json!({}),
        client_publish: false,
        client_subscribe: false,
        broker_id: Some(broker.id.clone()),
        created_at: document.row.created_at,
    };
    let spec = &document.row.spec;
    let compiled = ChannelEntry::compile(row, Vec::new(), Some(broker.clone()), spec);
    // With no schema, nothing can fail to compile.
    compiled
        .map(Arc::new)
        .map_err(|_| format!("address `{address}` cannot be used"))
}

/// Every narrowing value names a source parameter, and every target
/// placeholder gets a value that the source can capture.
fn check_parameters(route: &Route) -> Result<(), String> {
    let captured: Vec<&str> = route.from.address.parameter_names().collect();
    if let Some(name) = route
        .from_parameters
        .keys()
        .find(|n| !captured.contains(&n.as_str()))
    {
        return Err(format!(
            "from: channel `{}` has no parameter `{name}`",
            route.from.row.address
        ));
    }
    let targets: Vec<&str> = route.to.address.parameter_names().collect();
    if let Some(name) = route
        .to_parameters
        .keys()
        .find(|n| !targets.contains(&n.as_str()))
    {
        return Err(format!(
            "to: channel `{}` has no parameter `{name}`",
            route.to.row.address
        ));
    }
    let sample: BTreeMap<String, String> = captured
        .iter()
        .map(|n| ((*n).to_owned(), "x".to_owned()))
        .collect();
    for name in targets {
        let filled = match route.to_parameters.get(name) {
            Some(pattern) => fill(pattern, &sample).is_some(),
            None => sample.contains_key(name),
        };
        if !filled {
            return Err(format!(
                "to: parameter `{name}` of `{}` gets no value: give it under to.parameters, or capture it on from",
                route.to.row.address
            ));
        }
    }
    Ok(())
}

/// The route's principal must be allowed to take every message of the
/// source (with its narrowing values); publishing on the target is checked
/// per message, with its parameter values, as for any client.
fn authorize(route: &Route, catalog: &Catalog, auth: &Auth) -> Result<(), String> {
    let id = DocumentId::from(route.from.row.document_id.clone());
    let document = catalog
        .document(&id)
        .map(|d| d.row.name.clone())
        .unwrap_or_default();
    let messages: Vec<&str> = route
        .from
        .messages
        .iter()
        .map(|m| m.row.name.as_str())
        .collect();
    let request = AccessRequest {
        action: Action::Subscribe,
        document: &document,
        address: &route.from.row.address,
        parameters: &route.from_parameters,
        messages: &messages,
    };
    auth.authorize(&route.principal, &request)
        .map_err(|e| e.to_string())
}

/// Why a route's name cannot be used, if it cannot: it names the route's
/// MQTT session (`stepflow-route-<name>`), which a broker takes only
/// short and printable.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("a route needs a name")
    } else if name.len() > MAX_NAME_BYTES {
        Some("the name is longer than 200 bytes")
    } else if name.chars().any(char::is_control) {
        Some("the name holds a control character")
    } else {
        None
    }
}

/// The longest route name, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// `pattern` with each `{name}` replaced by its captured value; none when
/// a name was not captured.
fn fill(pattern: &str, captured: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let len = rest[open..].find('}')?;
        out.push_str(&rest[..open]);
        out.push_str(captured.get(&rest[open + 1..open + len])?);
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Whether an address written to one channel can arrive on another: same
/// broker, and level by level either a placeholder or the same text.
fn feeds(to: &ChannelEntry, from: &ChannelEntry) -> bool {
    // Documents each have their own broker rows: two rows that name the
    // same server are the same broker.
    let broker = |c: &ChannelEntry| c.broker.as_ref().map(|b| same_server(&b.protocol, &b.url));
    if broker(to) != broker(from) {
        return false;
    }
    let protocol = to.broker.as_ref().map_or("", |b| b.protocol.as_str());
    let levels = |c: &'_ ChannelEntry| -> Vec<String> {
        match protocol {
            // Routing keys, subjects and topic names are dotted: `.` parts
            // levels there as `/` does.
            "amqp" | "amqps" | "nats" | "kafka" => {
                c.row.address.split(['/', '.']).map(str::to_owned).collect()
            }
            _ => c.row.address.split('/').map(str::to_owned).collect(),
        }
    };
    let (a, b) = (levels(to), levels(from));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || x.contains('{') || y.contains('{'))
}

/// A server's identity: protocol, host (`localhost` and loopback
/// addresses as one) and port, whatever else its URL says; every
/// in-memory server is the one in-memory broker.
fn same_server(protocol: &str, url: &str) -> (String, String, Option<u16>) {
    let protocol = protocol.to_ascii_lowercase();
    if protocol == "memory" {
        // One in-memory broker per gateway, whatever its URL says.
        return (protocol, String::new(), None);
    }
    let parsed = url::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_else(|| url.to_ascii_lowercase());
    let host = match host.as_str() {
        "localhost" | "127.0.0.1" | "[::1]" | "::1" => "loopback".to_owned(),
        _ => host,
    };
    let port = parsed.as_ref().and_then(url::Url::port_or_known_default);
    (protocol, host, port)
}

/// The names along a cycle of routes, the first repeated at the end.
fn find_cycle(routes: &[Route]) -> Option<Vec<String>> {
    let next = |i: usize| -> Vec<usize> {
        (0..routes.len())
            .filter(|&j| feeds(&routes[i].to, &routes[j].from))
            .collect()
    };
    for start in 0..routes.len() {
        let mut path = vec![start];
        let mut stack = vec![next(start)];
        while let Some(options) = stack.last_mut() {
            match options.pop() {
                Some(j) if j == start => {
                    let mut names: Vec<String> =
                        path.iter().map(|&i| routes[i].name.clone()).collect();
                    names.push(routes[start].name.clone());
                    return Some(names);
                }
                Some(j) if !path.contains(&j) => {
                    path.push(j);
                    stack.push(next(j));
                }
                Some(_) => {}
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_target_values_are_filled_from_captures() {
        let captured: BTreeMap<String, String> = [("deviceId".into(), "d1".into())].into();
        assert_eq!(
            fill("site-{deviceId}", &captured).as_deref(),
            Some("site-d1")
        );
        assert_eq!(fill("plain", &captured).as_deref(), Some("plain"));
        assert_eq!(fill("{other}", &captured), None);
    }
}
