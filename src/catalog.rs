//! The catalog: the registered documents compiled for the hot path.
//!
//! It is rebuilt from the stored rows, so a restarted gateway serves exactly
//! what was registered. Readers take a snapshot without locking; a change
//! swaps in a new snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::Addr;
use arc_swap::ArcSwap;
use entity::{asyncapi_documents, message_brokers, message_channels, message_definitions};
use jsonschema::Validator;
use serde_json::Value;

use crate::actors::BrokerConnection;
use crate::asyncapi::avro;
use crate::asyncapi::schema::compile_payload;
use crate::asyncapi::{Diagnostic, Parameter};
use crate::broker::AddressTemplate;
use crate::ids::{BrokerId, ChannelId, DocumentId, MessageId};

/// The catalog shared by every front; cheap to read.
pub type SharedCatalog = Arc<ArcSwap<Catalog>>;

/// Schema formats whose payloads are JSON Schema (draft 7) or AsyncAPI
/// Schema, and can be validated as such.
const JSON_SCHEMA_FORMATS: &[&str] = &[
    "application/vnd.aai.asyncapi",
    "application/vnd.aai.asyncapi+json",
    "application/vnd.aai.asyncapi+yaml",
    "application/schema+json;version=draft-07",
    "application/schema+yaml;version=draft-07",
];

/// One snapshot of everything registered.
#[derive(Default, Clone)]
pub struct Catalog {
    documents: HashMap<DocumentId, Arc<DocumentEntry>>,
    channels: HashMap<ChannelId, Arc<ChannelEntry>>,
    connections: HashMap<BrokerId, Addr<BrokerConnection>>,
}

/// A registered document as the catalog knows it.
pub struct DocumentEntry {
    /// The stored document row.
    pub row: asyncapi_documents::Model,
    /// Its channels' ids, in document order.
    pub channel_ids: Vec<ChannelId>,
    /// Its brokers.
    pub brokers: Vec<message_brokers::Model>,
}

/// A channel compiled for publishing and subscribing.
pub struct ChannelEntry {
    /// The channel's id.
    pub id: ChannelId,
    /// The stored channel row.
    pub row: message_channels::Model,
    /// Its address as a template.
    pub address: AddressTemplate,
    /// Its parameters, compiled.
    pub parameters: BTreeMap<String, ParameterEntry>,
    /// Its messages, compiled.
    pub messages: Vec<MessageEntry>,
    /// The broker that carries it, if any.
    pub broker: Option<message_brokers::Model>,
    /// MQTT QoS from the operation bindings, 0 when none is given.
    pub qos: u8,
    /// The channel's binding for its broker's protocol, if any.
    pub binding: Option<Arc<Value>>,
    /// Its operations' binding for its broker's protocol, if any.
    pub operation_binding: Option<Arc<Value>>,
    /// A fixed Kafka message key (a `const` or single `enum` in the kafka
    /// message binding's `key` schema), if the document gives one.
    pub fixed_key: Option<String>,
    /// MQTT retain flag from the operation bindings.
    pub retain: bool,
}

/// A compiled channel parameter.
pub struct ParameterEntry {
    /// Validator of the parameter's schema, if it has one.
    pub validator: Option<Validator>,
    /// JSON pointer into the payload from the `location` expression.
    pub payload_pointer: Option<String>,
    /// JSON pointer into the headers from the `location` expression.
    pub header_pointer: Option<String>,
}

/// A compiled message definition.
pub struct MessageEntry {
    /// The message's id.
    pub id: MessageId,
    /// The stored message row.
    pub row: message_definitions::Model,
    /// Validator of the payload schema, when the payload can be validated.
    pub payload: Option<Validator>,
    /// The JSON Schema the payload is validated against, when it was
    /// converted from another format (Avro).
    pub converted: Option<Value>,
    /// Validator of the headers schema, if there is one.
    pub headers: Option<Validator>,
    /// Why the payload is not validated, when it is not.
    pub not_validated: Option<String>,
}

impl Catalog {
    /// The channel with `id`.
    pub fn channel(&self, id: &ChannelId) -> Option<&Arc<ChannelEntry>> {
        self.channels.get(id)
    }

    /// The document with `id`.
    pub fn document(&self, id: &DocumentId) -> Option<&Arc<DocumentEntry>> {
        self.documents.get(id)
    }

    /// Every document, oldest first.
    pub fn documents(&self) -> Vec<&Arc<DocumentEntry>> {
        let mut all: Vec<_> = self.documents.values().collect();
        all.sort_by(|a, b| (a.row.created_at, &a.row.id).cmp(&(b.row.created_at, &b.row.id)));
        all
    }

    /// The channels of `document`, or of every document, in order.
    pub fn channels(&self, document: Option<&DocumentId>) -> Vec<&Arc<ChannelEntry>> {
        self.documents()
            .into_iter()
            .filter(|d| document.is_none_or(|id| id.as_str() == d.row.id))
            .flat_map(|d| d.channel_ids.iter().filter_map(|id| self.channels.get(id)))
            .collect()
    }

    /// The live connection of `broker`.
    pub fn connection(&self, broker: &str) -> Option<&Addr<BrokerConnection>> {
        self.connections.get(&BrokerId::from(broker))
    }

    /// A copy with `document` and its channels and connections added.
    pub fn with_document(
        &self,
        document: DocumentEntry,
        channels: Vec<ChannelEntry>,
        connections: HashMap<BrokerId, Addr<BrokerConnection>>,
    ) -> Catalog {
        let mut next = self.clone();
        for channel in channels {
            next.channels.insert(channel.id.clone(), Arc::new(channel));
        }
        next.connections.extend(connections);
        next.documents.insert(
            DocumentId::from(document.row.id.clone()),
            Arc::new(document),
        );
        next
    }

    /// A copy without `document`, its channels and its connections.
    pub fn without_document(&self, id: &DocumentId) -> Catalog {
        let mut next = self.clone();
        if let Some(document) = next.documents.remove(id) {
            for channel in &document.channel_ids {
                next.channels.remove(channel);
            }
            for broker in &document.brokers {
                next.connections.remove(&BrokerId::from(broker.id.clone()));
            }
        }
        next
    }
}

impl ChannelEntry {
    /// Compiles a channel from its rows; `spec` is the resolved document,
    /// against which references left by cycles are resolved.
    pub fn compile(
        row: message_channels::Model,
        messages: Vec<message_definitions::Model>,
        broker: Option<message_brokers::Model>,
        spec: &Value,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let parameters = compile_parameters(&row, spec, &mut problems);
        let messages: Vec<MessageEntry> = messages
            .into_iter()
            .filter_map(|m| compile_message(m, &row.name, spec, &mut problems))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mqtt = row.operation_bindings.get("mqtt");
        let qos = mqtt
            .and_then(|m| m.get("qos"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(2) as u8;
        let retain = mqtt
            .and_then(|m| m.get("retain"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let binding = broker
            .as_ref()
            .and_then(|b| protocol_binding(&row.bindings, &b.protocol));
        let operation_binding = broker
            .as_ref()
            .and_then(|b| protocol_binding(&row.operation_bindings, &b.protocol));
        let fixed_key = messages_key(&messages);
        Ok(Self {
            id: ChannelId::from(row.id.clone()),
            address: AddressTemplate::parse(&row.address),
            row,
            parameters,
            messages,
            binding,
            operation_binding,
            fixed_key,
            broker,
            qos,
            retain,
        })
    }

    /// Its broker's protocol as a metrics label.
    pub fn protocol_label(&self) -> &'static str {
        self.broker
            .as_ref()
            .map_or("other", |b| crate::metrics::protocol_label(&b.protocol))
    }

    /// The message with `id`, if the channel carries it.
    pub fn message(&self, id: &str) -> Option<&MessageEntry> {
        self.messages
            .iter()
            .find(|m| m.id.as_str() == id || m.row.name == id)
    }
}

/// The binding of `protocol` among a channel's bindings.
fn protocol_binding(bindings: &Value, protocol: &str) -> Option<Arc<Value>> {
    bindings.get(protocol).cloned().map(Arc::new)
}

/// A key every message of the channel shares: the `const`, or the only
/// `enum` value, of the kafka message binding's `key` schema.
fn messages_key(messages: &[MessageEntry]) -> Option<String> {
    let keys: Vec<String> = messages
        .iter()
        .map(|m| {
            let key = m.row.bindings.get("kafka")?.get("key")?;
            let value = key.get("const").or_else(|| {
                key.get("enum")?
                    .as_array()
                    .filter(|e| e.len() == 1)?
                    .first()
            })?;
            crate::publish::scalar_text(value)
        })
        .collect::<Option<Vec<_>>>()?;
    let first = keys.first()?;
    keys.iter().all(|k| k == first).then(|| first.clone())
}

fn compile_parameters(
    row: &message_channels::Model,
    spec: &Value,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<String, ParameterEntry> {
    let declared: BTreeMap<String, Parameter> =
        serde_json::from_value(row.parameters.clone()).unwrap_or_default();
    let mut out = BTreeMap::new();
    for name in AddressTemplate::parse(&row.address).parameter_names() {
        let parameter = declared.get(name).cloned().unwrap_or_default();
        let at = format!(
            "/channels/{}/parameters/{name}",
            row.name.replace('~', "~0").replace('/', "~1")
        );
        let validator = parameter
            .schema
            .as_ref()
            .and_then(|schema| compile(schema, Some(spec), &at, problems));
        let location = parameter.location.as_deref().unwrap_or_default();
        let entry = ParameterEntry {
            validator,
            payload_pointer: location
                .strip_prefix("$message.payload#")
                .map(str::to_owned),
            header_pointer: location.strip_prefix("$message.header#").map(str::to_owned),
        };
        out.insert(name.to_owned(), entry);
    }
    out
}

fn compile_message(
    row: message_definitions::Model,
    channel: &str,
    spec: &Value,
    problems: &mut Vec<Diagnostic>,
) -> Option<MessageEntry> {
    let at = format!(
        "/channels/{}/messages/{}",
        escape(channel),
        escape(&row.name)
    );
    let (payload, converted, not_validated) = match &row.payload_schema {
        None => (None, None, None),
        Some(schema) => compile_payload_of(&row, schema, spec, &format!("{at}/payload"), problems),
    };
    let headers = row
        .headers_schema
        .as_ref()
        .and_then(|schema| compile(schema, Some(spec), &format!("{at}/headers"), problems));
    Some(MessageEntry {
        id: MessageId::from(row.id.clone()),
        row,
        payload,
        converted,
        headers,
        not_validated,
    })
}

/// The payload validator for the message's schema format: JSON Schema and
/// AsyncAPI Schema as they are, Avro through its JSON Schema equivalent,
/// anything else not validated (and said so).
fn compile_payload_of(
    row: &message_definitions::Model,
    schema: &Value,
    spec: &Value,
    at: &str,
    problems: &mut Vec<Diagnostic>,
) -> (Option<Validator>, Option<Value>, Option<String>) {
    let format = row.schema_format.as_deref().unwrap_or_default();
    let base = format.split(";version=").next().unwrap_or(format);
    if format.is_empty()
        || JSON_SCHEMA_FORMATS.contains(&format)
        || JSON_SCHEMA_FORMATS[..3].contains(&base)
    {
        return (compile(schema, Some(spec), at, problems), None, None);
    }
    if !avro::is_avro(format) {
        return (
            None,
            None,
            Some(format!("payload schemaFormat `{format}` is not validated")),
        );
    }
    match avro::to_json_schema(schema) {
        Ok(converted) => (
            compile(&converted, None, at, problems),
            Some(converted),
            None,
        ),
        Err(error) => {
            problems.push(Diagnostic::new(
                "avro-schema",
                at,
                format!("invalid Avro schema: {error}"),
            ));
            (None, None, None)
        }
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Compiles a payload, headers or parameter schema, recording why not.
fn compile(
    schema: &Value,
    spec: Option<&Value>,
    at: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<Validator> {
    let empty = Value::Null;
    match compile_payload(schema, spec.unwrap_or(&empty)) {
        Ok(validator) => Some(validator),
        Err(error) => {
            let message = format!("schema cannot be compiled: {error}");
            problems.push(Diagnostic::new("schema-compile", at, message));
            None
        }
    }
}
