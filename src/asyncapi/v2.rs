//! AsyncAPI 2.0 to 2.6: servers, channels keyed by address, and the
//! `publish` / `subscribe` operations inside each channel.

use std::collections::BTreeMap;

use serde_json::Value;

use super::diagnostics::{child_pointer, Diagnostic};
use super::load::{
    entries, info, message, object_or_empty, required_text, substitute_variables, text, with_traits,
};
use super::model::{Channel, Document, Parameter, Server};
use super::refs::Refs;
use super::traits::{merge, Precedence};

/// Builds the model of a 2.x document, reporting problems into `refs`.
pub fn build(refs: &mut Refs, version: &str) -> Document {
    let (title, info_version) = info(refs);
    let servers = servers(refs);
    let root = refs.root();
    let default_content_type = text(root, "defaultContentType");
    if root.get("channels").is_none() {
        refs.report(Diagnostic::new(
            "required",
            "/channels",
            "`channels` is required in AsyncAPI 2.x",
        ));
    }
    let channels = entries(root, "channels")
        .into_iter()
        .filter_map(|(address, item)| channel(refs, address, item, default_content_type.as_deref()))
        .collect();
    Document {
        asyncapi_version: version.to_owned(),
        title,
        info_version,
        servers,
        channels,
        resolved: refs.resolve(root, ""),
        warnings: Vec::new(),
    }
}

fn servers(refs: &mut Refs<'_>) -> Vec<Server> {
    let root = refs.root();
    let mut out = Vec::new();
    for (name, raw) in entries(root, "servers") {
        let at = child_pointer("/servers", name);
        let Some((server, _)) = refs.follow(raw, &at) else {
            continue;
        };
        let url = required_text(refs, server, &at, "url");
        let protocol = required_text(refs, server, &at, "protocol");
        let url = substitute_variables(refs, &url, server, &at);
        out.push(Server {
            name: name.clone(),
            url: with_scheme(&url, &protocol),
            protocol,
            protocol_version: text(server, "protocolVersion"),
            description: text(server, "description"),
            bindings: refs.resolve(&object_or_empty(server.get("bindings")), &at),
        });
    }
    out
}

/// A 2.x server URL may omit its scheme (`test.mosquitto.org:1883`).
fn with_scheme(url: &str, protocol: &str) -> String {
    match url.contains("://") {
        true => url.to_owned(),
        false => format!("{protocol}://{url}"),
    }
}

fn channel<'a>(
    refs: &mut Refs<'a>,
    address: &str,
    raw: &'a Value,
    content_type: Option<&str>,
) -> Option<Channel> {
    let at = child_pointer("/channels", address);
    let (item, _) = refs.follow(raw, &at)?;
    let mut channel = Channel {
        name: address.to_owned(),
        address: address.to_owned(),
        description: text(item, "description"),
        parameters: parameters(refs, item, &at),
        bindings: refs.resolve(&object_or_empty(item.get("bindings")), &at),
        operation_bindings: object_or_empty(None),
        servers: server_names(item),
        client_publish: false,
        client_subscribe: false,
        messages: Vec::new(),
    };
    for key in ["publish", "subscribe"] {
        if let Some(raw_op) = item.get(key) {
            operation(
                refs,
                &mut channel,
                raw_op,
                &child_pointer(&at, key),
                content_type,
            );
        }
    }
    Some(channel)
}

fn parameters<'a>(refs: &mut Refs<'a>, item: &'a Value, at: &str) -> BTreeMap<String, Parameter> {
    let mut out = BTreeMap::new();
    for (name, raw) in entries(item, "parameters") {
        let param_at = child_pointer(&format!("{at}/parameters"), name);
        let Some((param, _)) = refs.follow(raw, &param_at) else {
            continue;
        };
        let schema = param
            .get("schema")
            .map(|s| refs.resolve(s, &format!("{param_at}/schema")));
        let parameter = Parameter {
            schema,
            location: text(param, "location"),
            description: text(param, "description"),
        };
        out.insert(name.clone(), parameter);
    }
    out
}

fn server_names(item: &Value) -> Vec<String> {
    let Some(list) = item.get("servers").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Reads one operation: `publish` means clients send, `subscribe` means
/// clients receive.
fn operation<'a>(
    refs: &mut Refs<'a>,
    channel: &mut Channel,
    raw: &'a Value,
    at: &str,
    content_type: Option<&str>,
) {
    let Some((op, _)) = refs.follow(raw, at) else {
        return;
    };
    let clients_send = at.ends_with("/publish");
    let resolved = with_traits(refs, op, at, Precedence::TraitWins);
    merge(
        &mut channel.operation_bindings,
        &object_or_empty(resolved.get("bindings")),
    );
    channel.client_publish |= clients_send;
    channel.client_subscribe |= !clients_send;

    let Some(raw_message) = op.get("message") else {
        return;
    };
    let message_at = format!("{at}/message");
    let Some((msg, ref_name)) = refs.follow_named(raw_message, &message_at) else {
        return;
    };
    let fallback = text(op, "operationId").map(|id| format!("{id}Message"));
    let candidates: Vec<(&Value, String, Option<String>)> =
        match msg.get("oneOf").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, m)| (m, format!("{message_at}/oneOf/{i}"), None))
                .collect(),
            None => vec![(msg, message_at.clone(), ref_name)],
        };
    for (i, (candidate, candidate_at, name)) in candidates.into_iter().enumerate() {
        let Some((body, named)) = refs.follow_named(candidate, &candidate_at) else {
            continue;
        };
        let resolved = with_traits(refs, body, &candidate_at, Precedence::TraitWins);
        let key = name
            .or(named)
            .or_else(|| fallback.clone())
            .unwrap_or_else(|| format!("message{i}"));
        let mut built = message(&resolved, key, content_type);
        built.client_publish = clients_send;
        built.client_subscribe = !clients_send;
        channel.add_message(built);
    }
}
