//! The publish path shared by REST and WebSocket: select the message,
//! validate, resolve the address, publish, record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::MailboxError;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actors::connection::Publish;
use crate::actors::{CallLog, CallRecord};
use crate::auth::{AccessRequest, Action, Auth, Principal};
use crate::broker::address::AddressError;
use crate::broker::{BrokerError, Outbound, Separators};
use crate::catalog::{ChannelEntry, MessageEntry, SharedCatalog};
use crate::ids::{BrokerId, CallLogId, ChannelId, DocumentId, MessageId};

/// A publish as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The channel to publish on.
    pub channel_id: String,
    /// The payload.
    pub message_data: Value,
    /// Values of the channel's address parameters.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Which of the channel's messages this is (id or name); needed only
    /// when the channel carries several.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Headers to send with the message.
    #[serde(default)]
    pub headers: Option<Map<String, Value>>,
}

/// What happened to an accepted publish.
#[derive(Debug, Clone, Serialize)]
pub struct PublishOutcome {
    /// Always `delivered`: the broker has taken the message.
    pub status: &'static str,
    /// The call-log record of this publish.
    pub call_log_id: CallLogId,
    /// The channel.
    pub channel_id: ChannelId,
    /// The message definition selected; none for a route's raw address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_name: Option<String>,
    /// The concrete address (topic) published to.
    pub address: String,
    /// The broker that took it.
    pub broker_id: BrokerId,
    /// The broker's protocol.
    pub protocol: String,
    /// The MQTT QoS used.
    pub qos: u8,
    /// Whether the payload was validated against a schema.
    pub validated: bool,
    /// Why it was not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_validated_reason: Option<String>,
    /// Time from request to the broker's acknowledgement, in milliseconds.
    pub latency_ms: f64,
}

/// One schema violation.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaViolation {
    /// JSON pointer into the payload (or headers).
    pub pointer: String,
    /// The JSON Schema keyword that failed, such as `type`.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// JSON pointer into the schema.
    pub schema_path: String,
}

/// Why a publish was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// No channel has this id.
    #[error("unknown channel `{0}`")]
    UnknownChannel(String),
    /// The channel carries no message with this id or name.
    #[error("channel carries no message `{0}`")]
    UnknownMessage(String),
    /// The payload or headers do not match the message's schema.
    #[error("{what} does not match the schema of message `{message}`")]
    Invalid {
        /// `payload` or `headers`.
        what: &'static str,
        /// The message checked against (the last one tried).
        message: String,
        /// Every violation found.
        violations: Vec<SchemaViolation>,
    },
    /// The address could not be made concrete.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A parameter value does not match the parameter's schema.
    #[error("value of channel parameter `{name}` does not match its schema: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The channel has no broker to publish to.
    #[error("channel has no broker")]
    NoBroker,
    /// The broker failed or refused.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The principal may not publish here.
    #[error("{0}")]
    Forbidden(String),
    /// A header name the gateway keeps for itself (`stepflow-…`).
    #[error("header `{0}` is the gateway's own; headers starting with `stepflow-` cannot be set")]
    ReservedHeader(String),
}

impl PublishError {
    /// Whether the same publish may succeed later: the broker was down or
    /// did not answer in time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublishError::Broker(BrokerError::Unavailable(_) | BrokerError::Timeout(_))
        )
    }

    /// The short kind recorded in the call log.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::UnknownChannel(_) | PublishError::UnknownMessage(_) => "not_found",
            PublishError::Invalid { .. } => "validation",
            PublishError::Address(_) | PublishError::InvalidParameter { .. } => "parameter",
            PublishError::NoBroker
            | PublishError::Broker(BrokerError::Unavailable(_) | BrokerError::Unsupported(_)) => {
                "broker_unavailable"
            }
            PublishError::Broker(BrokerError::Timeout(_)) => "timeout",
            PublishError::Broker(BrokerError::Refused(_)) => "broker_refused",
            PublishError::Broker(BrokerError::InvalidAddress(_)) => "parameter",
            PublishError::Forbidden(_) => "forbidden",
            PublishError::ReservedHeader(_) => "header",
        }
    }
}

/// Whether a publish checks its payload and headers against the message's
/// schemas. Clients' publishes always do; a route may be told not to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// The payload must match a message of the channel.
    On,
    /// The message named, else the channel's first, is taken as it is.
    Off,
}

/// A failed publish with its call-log record.
#[derive(Debug, Clone)]
pub struct PublishFailure {
    /// Why it failed.
    pub error: PublishError,
    /// The call-log record of the attempt.
    pub call_log_id: CallLogId,
}

/// Publishes on behalf of every front.
#[derive(Clone)]
pub struct Publisher {
    catalog: SharedCatalog,
    call_log: CallLog,
    auth: Arc<Auth>,
    timeout: Duration,
    keep_payloads: bool,
}

/// One publish as [`Publisher::run`] takes it.
struct Call<'a> {
    request: &'a PublishRequest,
    principal: &'a Principal,
    validation: Validation,
    raw: Option<&'a ChannelEntry>,
    id: &'a CallLogId,
    started: Instant,
}

/// What is known of an attempt while it runs, for its call-log record.
#[derive(Default)]
struct Attempt {
    document_id: Option<DocumentId>,
    channel_id: Option<ChannelId>,
    message_id: Option<MessageId>,
    broker_id: Option<BrokerId>,
    protocol: Option<&'static str>,
    address: Option<String>,
}

impl Publisher {
    /// A publisher over `catalog` that records into `call_log`.
    pub fn new(
        catalog: SharedCatalog,
        call_log: CallLog,
        auth: Arc<Auth>,
        timeout: Duration,
        keep_payloads: bool,
    ) -> Self {
        Self {
            catalog,
            call_log,
            auth,
            timeout,
            keep_payloads,
        }
    }

    /// The call log this publisher records into.
    pub fn call_log(&self) -> &CallLog {
        &self.call_log
    }

    /// Runs one publish to the end and records it, delivered or not.
    pub async fn publish(
        &self,
        request: PublishRequest,
        principal: &Principal,
    ) -> Result<PublishOutcome, PublishFailure> {
        self.publish_as(request, principal, Validation::On, None)
            .await
    }

    /// [`Publisher::publish`], with the payload checked or not; with
    /// `raw`, on that channel (a route's raw address, which no document
    /// declares and no schema checks) rather than the request's.
    pub async fn publish_as(
        &self,
        request: PublishRequest,
        principal: &Principal,
        validation: Validation,
        raw: Option<&ChannelEntry>,
    ) -> Result<PublishOutcome, PublishFailure> {
        let started = Instant::now();
        let id = CallLogId::generate();
        let mut attempt = Attempt::default();
        // Serialising a `Value` cannot fail: its keys are strings.
        let payload = Bytes::from(serde_json::to_vec(&request.message_data).unwrap_or_default());
        let payload_bytes = payload.len();
        let call = Call {
            request: &request,
            principal,
            validation,
            raw,
            id: &id,
            started,
        };
        let result = self.run(call, payload, &mut attempt).await;
        let record = CallRecord {
            id: id.clone(),
            document_id: attempt.document_id,
            channel_id: attempt.channel_id,
            message_id: attempt.message_id,
            broker_id: attempt.broker_id,
            protocol: attempt.protocol.unwrap_or("other"),
            direction: "publish",
            address: attempt.address,
            status: match &result {
                Ok(_) => "delivered",
                Err(PublishError::Broker(_) | PublishError::NoBroker) => "failed",
                Err(_) => "rejected",
            },
            error_kind: result.as_ref().err().map(PublishError::kind),
            error: result.as_ref().err().map(ToString::to_string),
            latency_us: Some(started.elapsed().as_micros().min(i64::MAX as u128) as i64),
            payload_bytes: payload_bytes as i64,
            payload: self.keep_payloads.then(|| request.message_data.clone()),
            headers: request.headers.clone().map(Value::Object),
            created_at: Utc::now(),
        };
        self.call_log.record(record);
        result.map_err(|error| PublishFailure {
            error,
            call_log_id: id,
        })
    }

    async fn run(
        &self,
        call: Call<'_>,
        payload: Bytes,
        attempt: &mut Attempt,
    ) -> Result<PublishOutcome, PublishError> {
        let Call {
            request,
            principal,
            validation,
            raw,
            id,
            started,
        } = call;
        let catalog = self.catalog.load();
        let channel_id = ChannelId::from(request.channel_id.as_str());
        let channel: &ChannelEntry = match raw {
            Some(channel) => channel,
            None => catalog
                .channel(&channel_id)
                .ok_or_else(|| PublishError::UnknownChannel(request.channel_id.clone()))?,
        };
        attempt.channel_id = Some(channel.id.clone());
        attempt.protocol = Some(channel.protocol_label());
        attempt.document_id = Some(DocumentId::from(channel.row.document_id.clone()));

        let headers = Value::Object(request.headers.clone().unwrap_or_default());
        if let Some(reserved) = reserved_header(&headers) {
            return Err(PublishError::ReservedHeader(reserved));
        }
        let message = choose_message(channel, request, &headers, raw.is_some(), validation)?;
        attempt.message_id = message.map(|m| m.id.clone());

        let values = parameter_values(channel, request, &headers)?;
        self.check_access(principal, &catalog, channel, &values, message)?;
        let address = render_address(channel, &values)?;
        attempt.address = Some(address.clone());

        let broker = channel.broker.as_ref().ok_or(PublishError::NoBroker)?;
        attempt.broker_id = Some(BrokerId::from(broker.id.clone()));
        let connection = catalog
            .connection(&broker.id)
            .ok_or(PublishError::NoBroker)?
            .clone();
        let outbound = Outbound {
            topic: address.clone(),
            payload,
            headers: header_pairs(&headers),
            qos: channel.qos,
            retain: channel.retain,
            key: message_key(channel, &values),
            binding: channel.binding.clone(),
            operation_binding: channel.operation_binding.clone(),
        };
        self.send(&connection, outbound).await?;

        Ok(PublishOutcome {
            status: "delivered",
            call_log_id: id.clone(),
            channel_id: channel.id.clone(),
            message_id: message.map(|m| m.id.clone()),
            message_name: message.map(|m| m.row.name.clone()),
            address,
            broker_id: BrokerId::from(broker.id.clone()),
            protocol: broker.protocol.clone(),
            qos: channel.qos,
            validated: message.is_some_and(|m| m.payload.is_some()) && validation == Validation::On,
            not_validated_reason: match message {
                Some(m) => m.not_validated.clone(),
                None => Some("a raw address has no schema".into()),
            },
            latency_ms: started.elapsed().as_secs_f64() * 1_000.0,
        })
    }

    /// Whether `principal` may publish this message with these values.
    fn check_access(
        &self,
        principal: &Principal,
        catalog: &crate::catalog::Catalog,
        channel: &ChannelEntry,
        values: &BTreeMap<String, String>,
        message: Option<&MessageEntry>,
    ) -> Result<(), PublishError> {
        let document = catalog.document(&DocumentId::from(channel.row.document_id.clone()));
        let messages: Vec<&str> = message.map(|m| m.row.name.as_str()).into_iter().collect();
        let access = AccessRequest {
            action: Action::Publish,
            document: document.map_or("", |d| d.row.name.as_str()),
            address: &channel.row.address,
            parameters: values,
            messages: &messages,
        };
        let allowed = self.auth.authorize(principal, &access);
        allowed.map_err(|e| PublishError::Forbidden(e.to_string()))
    }

    async fn send(
        &self,
        connection: &actix::Addr<crate::actors::BrokerConnection>,
        outbound: Outbound,
    ) -> Result<(), PublishError> {
        let timeout_ms = self.timeout.as_millis() as u64;
        match tokio::time::timeout(self.timeout, connection.send(Publish(outbound))).await {
            Ok(Ok(result)) => result.map_err(PublishError::from),
            Ok(Err(MailboxError::Closed | MailboxError::Timeout)) => {
                Err(BrokerError::Unavailable("broker connection has stopped".into()).into())
            }
            Err(_) => Err(BrokerError::Timeout(timeout_ms).into()),
        }
    }
}

/// The message named by the request, the channel's only message, or the
/// first whose schema the payload matches.
fn select_message<'c>(
    channel: &'c ChannelEntry,
    request: &PublishRequest,
    headers: &Value,
) -> Result<&'c MessageEntry, PublishError> {
    if let Some(wanted) = &request.message_id {
        let message = channel
            .message(wanted)
            .ok_or_else(|| PublishError::UnknownMessage(wanted.clone()))?;
        check(message, &request.message_data, headers)?;
        return Ok(message);
    }
    let mut last_error = None;
    for message in &channel.messages {
        match check(message, &request.message_data, headers) {
            Ok(()) => return Ok(message),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        PublishError::UnknownMessage("(the channel declares no message)".into())
    }))
}

/// The checks of a publish that need no broker and no principal: the
/// message chosen (and its payload and headers validated), the parameter
/// values, and the address they give.
pub fn resolve<'c>(
    channel: &'c ChannelEntry,
    request: &PublishRequest,
    validation: Validation,
) -> Result<(&'c MessageEntry, String), PublishError> {
    let headers = Value::Object(request.headers.clone().unwrap_or_default());
    let message = match validation {
        Validation::On => select_message(channel, request, &headers)?,
        Validation::Off => named_message(channel, request)?,
    };
    let values = parameter_values(channel, request, &headers)?;
    Ok((message, render_address(channel, &values)?))
}

/// A header the gateway keeps for itself, if the request sets one.
fn reserved_header(headers: &Value) -> Option<String> {
    let names = headers.as_object()?.keys();
    names
        .into_iter()
        .find(|name| name.to_ascii_lowercase().starts_with("stepflow-"))
        .cloned()
}

/// The message a publish is: none on a raw address (no schema), else the
/// one chosen by the payload (validated) or by name (not validated).
fn choose_message<'c>(
    channel: &'c ChannelEntry,
    request: &PublishRequest,
    headers: &Value,
    raw: bool,
    validation: Validation,
) -> Result<Option<&'c MessageEntry>, PublishError> {
    match (raw, validation) {
        (true, _) => Ok(None),
        (false, Validation::On) => select_message(channel, request, headers).map(Some),
        (false, Validation::Off) => named_message(channel, request).map(Some),
    }
}

/// The concrete address `values` give on `channel`, in its protocol's form.
fn render_address(
    channel: &ChannelEntry,
    values: &BTreeMap<String, String>,
) -> Result<String, PublishError> {
    let separators = channel
        .broker
        .as_ref()
        .map_or(Separators::Slash, |b| Separators::of(&b.protocol));
    Ok(channel.address.render_in(values, separators)?)
}

/// The message named by the request, else the channel's first, unchecked.
fn named_message<'c>(
    channel: &'c ChannelEntry,
    request: &PublishRequest,
) -> Result<&'c MessageEntry, PublishError> {
    match &request.message_id {
        Some(wanted) => channel
            .message(wanted)
            .ok_or_else(|| PublishError::UnknownMessage(wanted.clone())),
        None => channel.messages.first().ok_or_else(|| {
            PublishError::UnknownMessage("(the channel declares no message)".into())
        }),
    }
}

fn check(message: &MessageEntry, payload: &Value, headers: &Value) -> Result<(), PublishError> {
    if let Some(validator) = &message.payload {
        violations(validator, payload, "payload", &message.row.name)?;
    }
    if let Some(validator) = &message.headers {
        violations(validator, headers, "headers", &message.row.name)?;
    }
    Ok(())
}

fn violations(
    validator: &jsonschema::Validator,
    instance: &Value,
    what: &'static str,
    message: &str,
) -> Result<(), PublishError> {
    let violations: Vec<SchemaViolation> = validator
        .iter_errors(instance)
        .map(|e| SchemaViolation {
            pointer: e.instance_path().as_str().to_owned(),
            rule: e.kind().keyword().to_owned(),
            message: e.to_string(),
            schema_path: e.schema_path().as_str().to_owned(),
        })
        .collect();
    match violations.is_empty() {
        true => Ok(()),
        false => Err(PublishError::Invalid {
            what,
            message: message.to_owned(),
            violations,
        }),
    }
}

/// Values of every address parameter: from the request, from the
/// parameter's `location`, or from a top-level payload field of its name.
fn parameter_values(
    channel: &ChannelEntry,
    request: &PublishRequest,
    headers: &Value,
) -> Result<BTreeMap<String, String>, PublishError> {
    let given_names = request.parameters.iter().flat_map(|p| p.keys());
    if let Some(unknown) = given_names
        .into_iter()
        .find(|name| !channel.parameters.contains_key(*name))
    {
        let known: Vec<&str> = channel.parameters.keys().map(String::as_str).collect();
        return Err(PublishError::InvalidParameter {
            name: unknown.clone(),
            reason: format!(
                "channel `{}` has no such parameter; its parameters: [{}]",
                channel.row.address,
                known.join(", ")
            ),
        });
    }
    let mut values = BTreeMap::new();
    for (name, parameter) in &channel.parameters {
        let given = request.parameters.as_ref().and_then(|p| p.get(name));
        let located = parameter
            .payload_pointer
            .as_deref()
            .and_then(|p| request.message_data.pointer(p))
            .or_else(|| {
                parameter
                    .header_pointer
                    .as_deref()
                    .and_then(|p| headers.pointer(p))
            });
        let field = request.message_data.get(name);
        let Some(value) = given.or(located).or(field) else {
            return Err(AddressError::MissingParameter(name.clone()).into());
        };
        let text = scalar_text(value).ok_or_else(|| PublishError::InvalidParameter {
            name: name.clone(),
            reason: "a parameter value must be a string, number or boolean".into(),
        })?;
        if let Some(validator) = &parameter.validator {
            check_parameter(validator, name, &text)?;
        }
        values.insert(name.clone(), text);
    }
    Ok(values)
}

/// A value passes as a string, or as the number it spells.
pub(crate) fn check_parameter(
    validator: &jsonschema::Validator,
    name: &str,
    text: &str,
) -> Result<(), PublishError> {
    let as_string = Value::String(text.to_owned());
    if validator.is_valid(&as_string) {
        return Ok(());
    }
    if let Ok(number) = text.parse::<serde_json::Number>() {
        if validator.is_valid(&Value::Number(number)) {
            return Ok(());
        }
    }
    let reason = validator
        .iter_errors(&as_string)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Err(PublishError::InvalidParameter {
        name: name.to_owned(),
        reason,
    })
}

pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The Kafka key: the one the document fixes, else the value of the
/// channel's first address parameter (so that one device's messages keep
/// their order in one partition).
fn message_key(channel: &ChannelEntry, values: &BTreeMap<String, String>) -> Option<String> {
    if let Some(key) = &channel.fixed_key {
        return Some(key.clone());
    }
    let first = channel.address.parameter_names().next()?;
    values.get(first).cloned()
}

fn header_pairs(headers: &Value) -> Vec<(String, String)> {
    let Some(map) = headers.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| (k.clone(), scalar_text(v).unwrap_or_else(|| v.to_string())))
        .collect()
}
