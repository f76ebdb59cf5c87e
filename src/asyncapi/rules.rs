//! Semantic rules that the JSON Schema cannot express, run on the resolved
//! document after the schema check. Rule names follow the reference
//! parser's, without its version prefix.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::diagnostics::{child_pointer, Diagnostic};
use super::load::entries;

/// Keys under which user data or schemas live; tags there are not
/// AsyncAPI tags.
const DATA_KEYS: &[&str] = &[
    "payload", "headers", "schemas", "examples", "bindings", "default", "enum", "const", "schema",
];

/// Runs every rule for the document's major version.
pub fn check(resolved: &Value, version: &str, out: &mut Vec<Diagnostic>) {
    tags_uniqueness(resolved, "", out);
    let v2 = version.starts_with('2');
    for (key, channel) in entries(resolved, "channels") {
        let at = child_pointer("/channels", key);
        let address = match v2 {
            true => Some(key.as_str()),
            false => channel.get("address").and_then(Value::as_str),
        };
        channel_parameters(channel, address, &at, v2, out);
        no_query_nor_fragment(address, &at, out);
        if v2 {
            channel_servers(resolved, channel, &at, out);
        }
    }
    if !v2 {
        let components = resolved.get("components").cloned().unwrap_or_default();
        for (key, channel) in entries(&components, "channels") {
            let at = child_pointer("/components/channels", key);
            let address = channel.get("address").and_then(Value::as_str);
            channel_parameters(channel, address, &at, v2, out);
        }
    }
    if v2 {
        security_names(resolved, out);
        unique_ids(resolved, out);
    }
    // The reference parser checks message examples in 2.x documents only, and
    // 3.0 examples are left unchecked to give the same verdicts.
    if v2 {
        message_examples(resolved, v2, out);
    }
}

fn tags_uniqueness(value: &Value, at: &str, out: &mut Vec<Diagnostic>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let item_at = child_pointer(at, key);
                if key == "tags" {
                    duplicate_tags(item, &item_at, out);
                }
                if !DATA_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
                    tags_uniqueness(item, &item_at, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                tags_uniqueness(item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn duplicate_tags(tags: &Value, at: &str, out: &mut Vec<Diagnostic>) {
    let Some(list) = tags.as_array() else { return };
    let mut seen = BTreeSet::new();
    for (i, tag) in list.iter().enumerate() {
        let Some(name) = tag.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !seen.insert(name) {
            let message = format!("tag `{name}` appears more than once");
            out.push(Diagnostic::new(
                "tags-uniqueness",
                format!("{at}/{i}/name"),
                message,
            ));
        }
    }
}

/// Every `{name}` of the address is declared, and every declared parameter
/// appears in the address.
fn channel_parameters(
    channel: &Value,
    address: Option<&str>,
    at: &str,
    v2: bool,
    out: &mut Vec<Diagnostic>,
) {
    let used: BTreeSet<String> = address.map(placeholders).unwrap_or_default();
    // Like the reference parser, 2.x declared parameters are only checked
    // against an address that has parameters at all.
    let declared_checked = !v2 || !used.is_empty();
    let declared: BTreeSet<String> = entries(channel, "parameters")
        .into_iter()
        .map(|(k, _)| k.clone())
        .collect();
    // An undeclared address parameter is routed as a plain string value,
    // so it is reported without refusing the document.
    for name in used.difference(&declared) {
        let message = format!(
            "address parameter `{name}` is not declared in `parameters`; any value is accepted"
        );
        let at = format!("{at}/parameters");
        out.push(Diagnostic::warning("channel-parameters", at, message));
    }
    for name in declared.difference(&used).filter(|_| declared_checked) {
        let message = format!("parameter `{name}` does not appear in the channel address");
        out.push(Diagnostic::new(
            "channel-parameters",
            child_pointer(&format!("{at}/parameters"), name),
            message,
        ));
    }
}

/// The `{name}` placeholders of an address.
pub fn placeholders(address: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = address;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.insert(rest[open + 1..open + len].to_owned());
        rest = &rest[open + len + 1..];
    }
    out
}

fn no_query_nor_fragment(address: Option<&str>, at: &str, out: &mut Vec<Diagnostic>) {
    let Some(address) = address else { return };
    if address.contains('?') || address.contains('#') {
        let message = "a channel address may not contain a query (`?`) or fragment (`#`)";
        out.push(Diagnostic::new(
            "channel-no-query-nor-fragment",
            at,
            message,
        ));
    }
}

/// 2.x: the servers a channel names exist.
fn channel_servers(root: &Value, channel: &Value, at: &str, out: &mut Vec<Diagnostic>) {
    let Some(names) = channel.get("servers").and_then(Value::as_array) else {
        return;
    };
    for (i, name) in names.iter().enumerate() {
        let Some(name) = name.as_str() else { continue };
        if root.get("servers").and_then(|s| s.get(name)).is_none() {
            let message =
                format!("channel names server `{name}`, which the document does not define");
            out.push(Diagnostic::new(
                "channel-servers",
                format!("{at}/servers/{i}"),
                message,
            ));
        }
    }
}

/// 2.x: security requirements name schemes of `components.securitySchemes`.
fn security_names(root: &Value, out: &mut Vec<Diagnostic>) {
    let schemes = root.pointer("/components/securitySchemes");
    let mut check = |list: &Value, at: String, rule: &'static str| {
        let Some(list) = list.as_array() else { return };
        for (i, requirement) in list.iter().enumerate() {
            let Some(names) = requirement.as_object() else {
                continue;
            };
            for name in names.keys() {
                if schemes.and_then(|s| s.get(name)).is_none() {
                    let message = format!("security requirement names `{name}`, which components.securitySchemes does not define");
                    out.push(Diagnostic::new(
                        rule,
                        child_pointer(&format!("{at}/{i}"), name),
                        message,
                    ));
                }
            }
        }
    };
    for (name, server) in entries(root, "servers") {
        if let Some(list) = server.get("security") {
            check(
                list,
                format!("{}/security", child_pointer("/servers", name)),
                "server-security",
            );
        }
    }
    for (key, channel) in entries(root, "channels") {
        for op in ["publish", "subscribe"] {
            if let Some(list) = channel.get(op).and_then(|o| o.get("security")) {
                let at = format!("{}/{op}/security", child_pointer("/channels", key));
                check(list, at, "operation-security");
            }
        }
    }
}

/// 2.x: `operationId` and `messageId` are unique across the document.
fn unique_ids(root: &Value, out: &mut Vec<Diagnostic>) {
    let mut operations: HashMap<String, String> = HashMap::new();
    let mut messages: HashMap<String, (String, Value)> = HashMap::new();
    for (key, channel) in entries(root, "channels") {
        for op in ["publish", "subscribe"] {
            let Some(operation) = channel.get(op) else {
                continue;
            };
            let at = format!("{}/{op}", child_pointer("/channels", key));
            if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                if operations.insert(id.to_owned(), at.clone()).is_some() {
                    let message = format!("operationId `{id}` is used by more than one operation");
                    out.push(Diagnostic::new(
                        "operation-operationId-uniqueness",
                        format!("{at}/operationId"),
                        message,
                    ));
                }
            }
            for (message_at, message) in operation_messages(operation, &at) {
                let Some(id) = message.get("messageId").and_then(Value::as_str) else {
                    continue;
                };
                match messages.get(id) {
                    Some(_) => {
                        let text = format!("messageId `{id}` is used by more than one message");
                        out.push(Diagnostic::new(
                            "message-messageId-uniqueness",
                            format!("{message_at}/messageId"),
                            text,
                        ));
                    }
                    None => {
                        messages.insert(id.to_owned(), (message_at, message.clone()));
                    }
                }
            }
        }
    }
}

/// The messages of a 2.x operation with their pointers (`oneOf` expanded).
fn operation_messages<'v>(operation: &'v Value, at: &str) -> Vec<(String, &'v Value)> {
    let Some(message) = operation.get("message") else {
        return Vec::new();
    };
    let at = format!("{at}/message");
    match message.get("oneOf").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{at}/oneOf/{i}"), m))
            .collect(),
        None => vec![(at, message)],
    }
}

/// Message examples match the message's payload and headers schemas.
fn message_examples(root: &Value, v2: bool, out: &mut Vec<Diagnostic>) {
    let mut found: Vec<(String, &Value)> = Vec::new();
    for (key, channel) in entries(root, "channels") {
        let at = child_pointer("/channels", key);
        match v2 {
            true => {
                for op in ["publish", "subscribe"] {
                    if let Some(operation) = channel.get(op) {
                        found.extend(operation_messages(operation, &format!("{at}/{op}")));
                    }
                }
            }
            false => {
                for (name, message) in entries(channel, "messages") {
                    found.push((child_pointer(&format!("{at}/messages"), name), message));
                }
            }
        }
    }
    for (at, message) in found {
        check_examples(root, message, &at, out);
    }
}

fn check_examples(root: &Value, message: &Value, at: &str, out: &mut Vec<Diagnostic>) {
    let Some(examples) = message.get("examples").and_then(Value::as_array) else {
        return;
    };
    let json_schema = message
        .get("schemaFormat")
        .and_then(Value::as_str)
        .is_none_or(|f| {
            f.starts_with("application/vnd.aai.asyncapi") || f.starts_with("application/schema+")
        });
    if !json_schema {
        return;
    }
    for part in ["payload", "headers"] {
        let Some(schema) = message.get(part) else {
            continue;
        };
        let Ok(validator) = super::schema::compile_payload(schema, root) else {
            continue;
        };
        for (i, example) in examples.iter().enumerate() {
            let Some(instance) = example.get(part) else {
                continue;
            };
            for error in validator.iter_errors(instance) {
                let pointer = format!("{at}/examples/{i}/{part}{}", error.instance_path().as_str());
                let message = format!(
                    "example does not match the message's {part} schema: {}",
                    short(&error.to_string())
                );
                out.push(Diagnostic::new("message-examples", pointer, message));
            }
        }
    }
}

/// `text` cut to a readable length.
pub fn short(text: &str) -> String {
    const LIMIT: usize = 240;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
