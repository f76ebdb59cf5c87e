//! Brokers: the [`ProtocolAdapter`] trait, one module per protocol, and the
//! mapping from AsyncAPI addresses to broker topics.

pub mod address;
pub mod amqp;
pub mod kafka;
pub mod memory;
pub mod mqtt;
pub mod nats;
pub mod settle;
pub mod websocket;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::actors::connection::BrokerSpec;

pub use address::{redact_url, AddressTemplate, Separators, TopicFilter};
pub use settle::Settle;

/// A message on its way to a broker.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The concrete topic, already mapped for the protocol.
    pub topic: String,
    /// The encoded payload.
    pub payload: Bytes,
    /// Headers, where the protocol carries them.
    pub headers: Vec<(String, String)>,
    /// MQTT quality of service (0, 1 or 2); other protocols ignore it.
    pub qos: u8,
    /// Whether the broker should retain the message (MQTT).
    pub retain: bool,
    /// The message key, where the protocol has one (Kafka).
    pub key: Option<String>,
    /// The channel's binding for the protocol, if the document gives one.
    pub binding: Option<Arc<serde_json::Value>>,
    /// The binding for the protocol of the channel's operations, if any.
    pub operation_binding: Option<Arc<serde_json::Value>>,
}

/// How a filter is subscribed at the broker.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// MQTT quality of service (0, 1 or 2); other protocols ignore it.
    pub qos: u8,
    /// The channel's binding for the protocol, if the document gives one.
    pub binding: Option<Arc<serde_json::Value>>,
    /// The binding for the protocol of the channel's operations, if any.
    pub operation_binding: Option<Arc<serde_json::Value>>,
}

/// A message that arrived from a broker.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The concrete topic it arrived on.
    pub topic: Arc<str>,
    /// The payload as received.
    pub payload: Bytes,
    /// Headers, where the protocol carries them.
    pub headers: Vec<(String, String)>,
    /// The subscription it came through, where each subscription is its own
    /// consumer at the broker (NATS, AMQP, Kafka): it goes to that one
    /// only, so overlapping filters do not deliver it twice. `None` where
    /// the broker sends one copy per client whatever the filters (MQTT).
    pub via: Option<TopicFilter>,
    /// The broker's acknowledgement, held until consumers are done with
    /// the message; `None` where the protocol acknowledges on receipt
    /// (MQTT, NATS, WebSocket, memory).
    pub settle: Option<Settle>,
}

/// What an adapter reports to its connection actor.
#[derive(Debug)]
pub enum AdapterEvent {
    /// A message arrived on a subscribed topic.
    Message(Inbound),
    /// The connection was lost; the reason in words.
    Disconnected(String),
}

/// Why a broker operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or refused the connection.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker did not acknowledge in time.
    #[error("broker did not acknowledge within {0} ms")]
    Timeout(u64),
    /// The broker refused the operation.
    #[error("broker refused the operation: {0}")]
    Refused(String),
    /// The address cannot be used on this broker (too long, bad characters).
    #[error("address not usable on this broker: {0}")]
    InvalidAddress(String),
    /// The server's URL or protocol cannot be served.
    #[error("unsupported broker: {0}")]
    Unsupported(String),
}

/// Sender half of the events an adapter reports; its connection actor holds
/// the receiver.
pub type EventsTx = mpsc::Sender<AdapterEvent>;

/// One broker protocol behind one connection.
///
/// Methods take `&self` so that publishes can run concurrently; an adapter
/// keeps whatever state it needs behind its own synchronisation.
#[async_trait]
pub trait ProtocolAdapter: Send + Sync {
    /// Connects (or reconnects) and starts reporting into `events_tx`.
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError>;

    /// Publishes one message, returning once the broker has taken it as far
    /// as the protocol and QoS allow.
    async fn publish(&self, message: Outbound) -> Result<(), BrokerError>;

    /// Starts receiving messages that match `filter`.
    async fn subscribe(
        &self,
        filter: &TopicFilter,
        options: &SubscribeOptions,
    ) -> Result<(), BrokerError>;

    /// Stops receiving messages that match `filter`.
    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError>;

    /// Closes the connection.
    async fn disconnect(&self);
}

/// How `address` (with its `{parameter}` placeholders) appears on a broker
/// of `protocol`, as `GET /channels` shows it.
pub fn mapping(
    protocol: &str,
    address: &str,
    binding: Option<&serde_json::Value>,
) -> serde_json::Value {
    use serde_json::json;
    match protocol {
        "nats" => json!({ "subject": address::dotted(address, ">") }),
        "amqp" => {
            if let Some(queue) = amqp::Queue::of(binding, address) {
                return json!({ "queue": queue.name, "exchange": "" });
            }
            let exchange = amqp::Exchange::of(binding);
            json!({ "exchange": exchange.name, "exchange_type": exchange.kind, "routing_key": address::dotted(address, "#") })
        }
        "kafka" => match kafka::binding_topic(binding) {
            Some(topic) => json!({ "topic": topic }),
            None => json!({ "topic": kafka_topic_template(address) }),
        },
        "ws" | "wss" => json!({ "path": address }),
        _ => json!({ "topic": address }),
    }
}

/// The Kafka topic of an address, its placeholders kept as they are.
fn kafka_topic_template(address: &str) -> String {
    let mut out = String::new();
    let mut rest = address;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&kafka::topic_name(&rest[..open]));
        out.push_str(&rest[open..=open + len]);
        rest = &rest[open + len + 1..];
    }
    out.push_str(&kafka::topic_name(rest));
    out
}

/// What adapters may share within one gateway process.
#[derive(Clone)]
pub struct AdapterContext {
    /// The in-memory broker of this gateway.
    pub memory: memory::MemoryBus,
    /// How long one connection attempt may take.
    pub connect_timeout: std::time::Duration,
    /// The Kafka consumer group whose committed offsets subscriptions
    /// resume from, unless a channel's operation binding names one.
    pub kafka_group_id: Option<String>,
    /// Client settings of TLS connections (`wss`).
    pub tls: Arc<rustls::ClientConfig>,
    /// Where connections record the messages they receive.
    pub call_log: crate::actors::CallLog,
}

/// Builds the adapter of `spec`; `name` identifies the connection to
/// brokers that show client names (AMQP).
pub fn adapter_for(
    spec: &BrokerSpec,
    name: &str,
    context: &AdapterContext,
) -> Result<Arc<dyn ProtocolAdapter>, BrokerError> {
    let credentials = spec.credentials.clone().map_err(BrokerError::Unsupported)?;
    let url = spec.url.as_str();
    let timeout = context.connect_timeout;
    match spec.protocol.as_str() {
        "memory" => Ok(Arc::new(memory::MemoryAdapter::new(context.memory.clone()))),
        "mqtt" => match &spec.session {
            Some(client_id) => Ok(Arc::new(mqtt::MqttSession::new(
                url,
                client_id,
                credentials,
                &context.tls,
                timeout,
            )?)),
            None => Ok(Arc::new(mqtt::MqttAdapter::new(url, credentials, timeout)?)),
        },
        "nats" => Ok(Arc::new(nats::NatsAdapter::new(url, credentials, timeout)?)),
        "amqp" => Ok(Arc::new(amqp::AmqpAdapter::new(
            url,
            name,
            credentials,
            timeout,
        )?)),
        "ws" | "wss" => Ok(Arc::new(websocket::WebSocketAdapter::new(
            url,
            context.tls.clone(),
            credentials,
            timeout,
        )?)),
        "kafka" => Ok(Arc::new(kafka::KafkaAdapter::new(
            url,
            context.kafka_group_id.clone(),
            credentials,
            timeout,
        )?)),
        other => Err(BrokerError::Unsupported(format!(
            "protocol `{other}` is not supported"
        ))),
    }
}

#[cfg(test)]
mod tests;
