//! The JSON shapes of documents, channels and messages in responses.

use entity::{asyncapi_documents, message_brokers};
use serde_json::{json, Value};

use crate::broker::redact_url;
use crate::catalog::{Catalog, ChannelEntry, DocumentEntry};
use crate::config::BrokerCredentials;
use crate::credentials;
use crate::store::documents::DocumentRows;

/// A broker as responses show it.
pub fn broker(row: &message_brokers::Model) -> Value {
    json!({
        "id": row.id,
        "server_name": row.server_name,
        "protocol": row.protocol,
        "url": redact_url(&row.url),
        "protocol_version": row.protocol_version,
    })
}

/// The resolved document with the passwords of its server URLs masked, as
/// everywhere else a URL is shown.
pub fn without_url_passwords(mut spec: Value) -> Value {
    let servers = spec.get_mut("servers").and_then(Value::as_object_mut);
    for server in servers.into_iter().flat_map(|s| s.values_mut()) {
        for field in ["url", "host"] {
            if let Some(Value::String(text)) = server.get_mut(field) {
                *text = redact_url(text);
            }
        }
    }
    spec
}

/// A broker with the security its server asks for: each scheme's name and
/// type, and how the gateway answers it (see [`credentials::coverage`]).
pub fn broker_with_security(
    row: &message_brokers::Model,
    document: &asyncapi_documents::Model,
    entries: &[BrokerCredentials],
) -> Value {
    let mut shown = broker(row);
    let has_user = url::Url::parse(&row.url).is_ok_and(|u| !u.username().is_empty());
    let requirements = credentials::server_requirements(&document.spec, &row.server_name);
    let entry = credentials::select(entries, &document.name, &row.server_name, &requirements);
    let security: Vec<Value> = requirements
        .iter()
        .map(|r| {
            let answered = credentials::coverage(r, entry.map(|(_, e)| e), has_user);
            json!({"scheme": r.name, "type": r.kind(), "credentials": answered})
        })
        .collect();
    shown["security"] = json!(security);
    shown
}

/// Every security scheme of a document, with the servers and operations
/// that ask for it.
pub fn security_schemes(spec: &Value) -> Vec<Value> {
    let mut users: Vec<(String, Option<String>)> = Vec::new();
    let mut note = |user: String, security: &Value| {
        for requirement in credentials::requirements(spec, security) {
            users.push((user.clone(), requirement.name));
        }
    };
    for (name, server) in spec["servers"].as_object().into_iter().flatten() {
        note(format!("server {name}"), &server["security"]);
    }
    for (name, operation) in spec["operations"].as_object().into_iter().flatten() {
        note(format!("operation {name}"), &operation["security"]);
    }
    for (address, channel) in spec["channels"].as_object().into_iter().flatten() {
        for action in ["publish", "subscribe"] {
            note(format!("{action} {address}"), &channel[action]["security"]);
        }
    }
    let schemes = spec["components"]["securitySchemes"].as_object();
    schemes
        .into_iter()
        .flatten()
        .map(|(name, scheme)| {
            let used_by: Vec<&String> = users
                .iter()
                .filter(|(_, n)| n.as_deref() == Some(name.as_str()))
                .map(|(user, _)| user)
                .collect();
            json!({"name": name, "type": scheme["type"], "description": scheme["description"], "used_by": used_by})
        })
        .collect()
}

/// A channel with its messages, broker and address mapping.
pub fn channel(entry: &ChannelEntry) -> Value {
    let row = &entry.row;
    let messages: Vec<Value> = entry
        .messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.row.name,
                "title": m.row.title,
                "content_type": m.row.content_type,
                "schema_format": m.row.schema_format,
                "validated": m.payload.is_some(),
                "not_validated_reason": m.not_validated,
                "client_publish": m.row.client_publish,
                "client_subscribe": m.row.client_subscribe,
            })
        })
        .collect();
    json!({
        "id": row.id,
        "document_id": row.document_id,
        "name": row.name,
        "address": row.address,
        "description": row.description,
        "parameters": row.parameters,
        "client_publish": row.client_publish,
        "client_subscribe": row.client_subscribe,
        "bindings": row.bindings,
        "operation_bindings": row.operation_bindings,
        "qos": entry.qos,
        "broker": entry.broker.as_ref().map(broker),
        "mapping": entry.broker.as_ref().map(|b| {
            let binding = entry.binding.as_deref();
            let mut shown = crate::broker::mapping(&b.protocol, &row.address, binding);
            shown["protocol"] = json!(b.protocol);
            shown
        }),
        "messages": messages,
    })
}

/// A registered document with its channels and brokers.
pub fn document(
    entry: &DocumentEntry,
    catalog: &Catalog,
    credentials: &[BrokerCredentials],
) -> Value {
    let row = &entry.row;
    let channels: Vec<Value> = entry
        .channel_ids
        .iter()
        .filter_map(|id| catalog.channel(id))
        .map(|c| channel(c))
        .collect();
    json!({
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "title": row.title,
        "asyncapi_version": row.asyncapi_version,
        "info_version": row.info_version,
        "base_url": row.base_url.as_deref().map(redact_url),
        "created_at": row.created_at,
        "brokers": entry.brokers.iter().map(|b| broker_with_security(b, row, credentials)).collect::<Vec<_>>(),
        "security_schemes": security_schemes(&row.spec),
        "channels": channels,
    })
}

/// A document just registered, from its rows and the new catalog.
pub fn registered(
    rows: &DocumentRows,
    catalog: &Catalog,
    credentials: &[BrokerCredentials],
) -> Value {
    match catalog.document(&rows.document.id.clone().into()) {
        Some(entry) => document(entry, catalog, credentials),
        None => json!({ "id": rows.document.id, "name": rows.document.name }),
    }
}
