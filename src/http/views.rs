//! The JSON shapes of documents, channels and messages in responses.

use entity::message_brokers;
use serde_json::{json, Value};

use crate::broker::redact_url;
use crate::catalog::{Catalog, ChannelEntry, DocumentEntry};
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
pub fn document(entry: &DocumentEntry, catalog: &Catalog) -> Value {
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
        "brokers": entry.brokers.iter().map(broker).collect::<Vec<_>>(),
        "channels": channels,
    })
}

/// A document just registered, from its rows and the new catalog.
pub fn registered(rows: &DocumentRows, catalog: &Catalog) -> Value {
    match catalog.document(&rows.document.id.clone().into()) {
        Some(entry) => document(entry, catalog),
        None => json!({ "id": rows.document.id, "name": rows.document.name }),
    }
}
