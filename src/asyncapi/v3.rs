//! AsyncAPI 3.0: servers by host, channels by id with an address, and
//! top-level operations that point at their channel and messages.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::diagnostics::{child_pointer, Diagnostic};
use super::load::{
    entries, info, message, object_or_empty, required_text, substitute_variables, text, with_traits,
};
use super::model::{Channel, Document, Parameter, Server};
use super::refs::{last_segment, ref_of, Refs};
use super::traits::{merge, Precedence};

/// Builds the model of a 3.0 document, reporting problems into `refs`.
pub fn build(refs: &mut Refs, version: &str) -> Document {
    let (title, info_version) = info(refs);
    let servers = servers(refs);
    let root = refs.root();
    let default_content_type = text(root, "defaultContentType");
    let mut channels: Vec<Channel> = entries(root, "channels")
        .into_iter()
        .filter_map(|(id, item)| channel(refs, id, item, default_content_type.as_deref()))
        .collect();
    for (id, raw) in entries(root, "operations") {
        operation(refs, &mut channels, id, raw);
    }
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
        let host = required_text(refs, server, &at, "host");
        let protocol = required_text(refs, server, &at, "protocol");
        let pathname = text(server, "pathname").unwrap_or_default();
        let url =
            substitute_variables(refs, &format!("{protocol}://{host}{pathname}"), server, &at);
        out.push(Server {
            name: name.clone(),
            url,
            protocol,
            protocol_version: text(server, "protocolVersion"),
            description: text(server, "description"),
            bindings: refs.resolve(&object_or_empty(server.get("bindings")), &at),
        });
    }
    out
}

fn channel<'a>(
    refs: &mut Refs<'a>,
    id: &str,
    raw: &'a Value,
    content_type: Option<&str>,
) -> Option<Channel> {
    let at = child_pointer("/channels", id);
    let (item, _) = refs.follow(raw, &at)?;
    let mut channel = Channel {
        name: id.to_owned(),
        // A channel without an address is one whose address is only known
        // at run time; the gateway uses its id in that case.
        address: text(item, "address").unwrap_or_else(|| id.to_owned()),
        description: text(item, "description"),
        parameters: parameters(refs, item, &at),
        bindings: refs.resolve(&object_or_empty(item.get("bindings")), &at),
        operation_bindings: object_or_empty(None),
        servers: server_names(item),
        client_publish: false,
        client_subscribe: false,
        messages: Vec::new(),
    };
    for (key, raw_message) in entries(item, "messages") {
        let message_at = child_pointer(&format!("{at}/messages"), key);
        let Some((body, _)) = refs.follow(raw_message, &message_at) else {
            continue;
        };
        let resolved = with_traits(refs, body, &message_at, Precedence::ObjectWins);
        channel
            .messages
            .push(message(&resolved, key.clone(), content_type));
    }
    Some(channel)
}

/// 3.0 parameters carry `enum`, `default` and `location` instead of a schema;
/// the model turns them into a string schema.
fn parameters<'a>(refs: &mut Refs<'a>, item: &'a Value, at: &str) -> BTreeMap<String, Parameter> {
    let mut out = BTreeMap::new();
    for (name, raw) in entries(item, "parameters") {
        let param_at = child_pointer(&format!("{at}/parameters"), name);
        let Some((param, _)) = refs.follow(raw, &param_at) else {
            continue;
        };
        let schema = match param.get("enum") {
            Some(values) => json!({ "type": "string", "enum": values }),
            None => json!({ "type": "string" }),
        };
        let parameter = Parameter {
            schema: Some(schema),
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
        .filter_map(ref_of)
        .filter_map(last_segment)
        .collect()
}

/// Applies one operation to its channel: `send` means the application sends
/// (clients receive), `receive` means clients send.
fn operation<'a>(refs: &mut Refs<'a>, channels: &mut [Channel], id: &str, raw: &'a Value) {
    let at = child_pointer("/operations", id);
    let Some((op, _)) = refs.follow(raw, &at) else {
        return;
    };
    let Some(channel_ref) = op.get("channel").and_then(ref_of) else {
        let message = "an operation must name its channel with a `$ref`";
        refs.report(Diagnostic::new(
            "operation-channel",
            format!("{at}/channel"),
            message,
        ));
        return;
    };
    let listed = listed_messages(refs, op, channel_ref, &at);
    let Some(channel_key) = channel_key(channel_ref) else {
        let message = format!("operation channel `{channel_ref}` must point into `#/channels`");
        refs.report(Diagnostic::new(
            "operation-channel",
            format!("{at}/channel"),
            message,
        ));
        return;
    };
    // A reference to a channel that does not exist is reported once, as an
    // unresolved reference, when the whole document is resolved.
    let Some(channel) = channels.iter_mut().find(|c| c.name == channel_key) else {
        return;
    };
    let clients_send = match text(op, "action").as_deref() {
        Some("receive") => true,
        Some("send") => false,
        _ => {
            let message = "`action` must be `send` or `receive`";
            refs.report(Diagnostic::new(
                "operation-action",
                format!("{at}/action"),
                message,
            ));
            return;
        }
    };

    let resolved = with_traits(refs, op, &at, Precedence::ObjectWins);
    merge(
        &mut channel.operation_bindings,
        &object_or_empty(resolved.get("bindings")),
    );
    channel.client_publish |= clients_send;
    channel.client_subscribe |= !clients_send;
    for message in &mut channel.messages {
        if listed
            .as_ref()
            .is_none_or(|keys| keys.contains(&message.key))
        {
            message.client_publish |= clients_send;
            message.client_subscribe |= !clients_send;
        }
    }
}

/// The keys of the messages an operation lists (`None` when it lists none,
/// meaning all of its channel's); each must be a reference to a message of
/// the operation's own channel.
fn listed_messages(
    refs: &mut Refs<'_>,
    op: &Value,
    channel_ref: &str,
    at: &str,
) -> Option<Vec<String>> {
    let items = op.get("messages").and_then(Value::as_array)?;
    let prefix = format!("{}/messages/", decode(channel_ref));
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = ref_of(item)
            .map(decode)
            .and_then(|r| r.strip_prefix(prefix.as_str()).and_then(last_segment));
        match key {
            Some(key) => keys.push(key),
            None => {
                let message = format!("operation messages must be references to messages of its channel `{channel_ref}`");
                let rule = "operation-messages-from-referred-channel";
                refs.report(Diagnostic::new(rule, format!("{at}/messages/{i}"), message));
            }
        }
    }
    Some(keys)
}

fn decode(reference: &str) -> String {
    percent_encoding::percent_decode_str(reference)
        .decode_utf8_lossy()
        .into_owned()
}

/// `#/channels/lightingMeasured` gives `lightingMeasured`.
fn channel_key(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix("#/channels/")?;
    let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
    Some(decoded.replace("~1", "/").replace("~0", "~"))
}

/// The resolved document with the references that the 3.0 schema requires
/// put back: an operation's `channel` and `messages` (and its reply's), and
/// a channel's `servers`, must be `$ref`s, not the objects they name.
pub fn schema_view(raw: &Value, resolved: &Value) -> Value {
    let mut view = resolved.clone();
    for section in ["/operations", "/components/operations"] {
        restore(
            raw,
            &mut view,
            section,
            &["channel", "messages"],
            Some("reply"),
        );
    }
    for section in ["/channels", "/components/channels"] {
        restore(raw, &mut view, section, &["servers"], None);
    }
    view
}

fn restore(raw: &Value, view: &mut Value, section: &str, fields: &[&str], nested: Option<&str>) {
    let keys: Vec<String> = match view.pointer(section).and_then(Value::as_object) {
        Some(map) => map.keys().cloned().collect(),
        None => return,
    };
    for key in keys {
        let at = child_pointer(section, &key);
        let Some(raw_item) = follow_raw(raw, raw.pointer(&at)) else {
            continue;
        };
        put_back(raw_item, view.pointer_mut(&at), fields);
        if let Some(nested) = nested {
            let raw_nested = follow_raw(raw, raw_item.get(nested));
            let target = view.pointer_mut(&at).and_then(|v| v.get_mut(nested));
            if let Some(raw_nested) = raw_nested {
                put_back(raw_nested, target, fields);
            }
        }
    }
}

fn put_back(raw_item: &Value, target: Option<&mut Value>, fields: &[&str]) {
    let Some(Value::Object(target)) = target else {
        return;
    };
    for field in fields {
        if let Some(original) = raw_item.get(*field) {
            target.insert((*field).to_owned(), original.clone());
        }
    }
}

/// Follows local references in the raw document.
fn follow_raw<'v>(raw: &'v Value, value: Option<&'v Value>) -> Option<&'v Value> {
    let mut current = value?;
    for _ in 0..32 {
        let Some(reference) = ref_of(current) else {
            return Some(current);
        };
        let pointer = reference.strip_prefix('#')?;
        current =
            raw.pointer(&percent_encoding::percent_decode_str(pointer).decode_utf8_lossy())?;
    }
    None
}
