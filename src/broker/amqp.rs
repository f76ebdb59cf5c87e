//! AMQP 0-9-1 through lapin: messages go to the topic exchange `amq.topic`
//! (or the exchange the channel's `amqp` binding names) with the address in
//! dotted form as routing key (`/` to `.`, `+` to `*`, `#` to `#`); a
//! publish answers after the broker's publisher confirm; each subscription
//! is an exclusive, auto-deleted queue bound with its filter, and a message
//! is acknowledged once it is handed on for fan-out.
//!
//! A channel whose binding says `is: queue` is one named queue instead:
//! publishes go to it through the default exchange, and subscriptions
//! consume from it (sharing its messages with any other consumer of it),
//! leaving it in place when they end.
//!
//! The operation binding's `cc`, `bcc`, `deliveryMode`, `priority`,
//! `expiration`, `replyTo`, `userId`, `timestamp` and `mandatory` shape each
//! publish; message headers travel as AMQP headers both ways.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, DefaultConnectionBuilder};
use tokio::task::JoinHandle;

use super::address::{dotted, undotted};
use super::settle::IN_HAND_LIMIT;
use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, Settle,
    SubscribeOptions, TopicFilter,
};
use crate::credentials::{Credentials, TlsFiles};
use login::{connection_url, tls_config};

/// The exchange addresses are published to and bound on when the channel's
/// `amqp` binding names none.
const DEFAULT_EXCHANGE: &str = "amq.topic";

/// Longest exchange name or routing key AMQP 0-9-1 carries (a short
/// string).
const MAX_SHORT_STRING: usize = 255;

/// Refuses a name AMQP cannot carry, before the client library sees it.
fn short(what: &str, text: &str) -> Result<(), BrokerError> {
    match text.len() > MAX_SHORT_STRING {
        true => Err(BrokerError::InvalidAddress(format!(
            "the AMQP {what} is {} bytes long; at most {MAX_SHORT_STRING} are allowed",
            text.len()
        ))),
        false => Ok(()),
    }
}

/// The exchange of a channel: from its `amqp` binding's `exchange`, else
/// `amq.topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Its name.
    pub name: String,
    /// `topic`, `direct`, `fanout`, `headers` or a plugin's type.
    pub kind: String,
    /// Whether it survives a broker restart.
    pub durable: bool,
    /// Whether it is deleted when no queue is bound any more.
    pub auto_delete: bool,
}

impl Exchange {
    /// The exchange a channel binding names, or the default one.
    pub fn of(binding: Option<&serde_json::Value>) -> Self {
        let exchange = binding.and_then(|b| b.get("exchange"));
        let text = |key: &str| {
            exchange
                .and_then(|e| e.get(key))
                .and_then(serde_json::Value::as_str)
        };
        let flag = |key: &str, default: bool| {
            exchange
                .and_then(|e| e.get(key))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(default)
        };
        match text("name") {
            Some(name) if !name.is_empty() => Self {
                name: name.to_owned(),
                kind: text("type").unwrap_or("topic").to_owned(),
                durable: flag("durable", true),
                auto_delete: flag("autoDelete", false),
            },
            _ => Self {
                name: DEFAULT_EXCHANGE.into(),
                kind: "topic".into(),
                durable: true,
                auto_delete: false,
            },
        }
    }

    /// Whether the broker has it already (`amq.*` exchanges are built in).
    fn built_in(&self) -> bool {
        self.name.starts_with("amq.")
    }

    fn kind(&self) -> lapin::ExchangeKind {
        match self.kind.as_str() {
            "topic" => lapin::ExchangeKind::Topic,
            "direct" => lapin::ExchangeKind::Direct,
            "fanout" => lapin::ExchangeKind::Fanout,
            "headers" => lapin::ExchangeKind::Headers,
            other => lapin::ExchangeKind::Custom(other.to_owned()),
        }
    }
}

/// A channel whose `amqp` binding says `is: queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Its name: the binding's `queue.name`, else the dotted address.
    pub name: String,
    /// Whether it survives a broker restart.
    pub durable: bool,
    /// Whether only the declaring connection may use it.
    pub exclusive: bool,
    /// Whether it is deleted when its last consumer leaves.
    pub auto_delete: bool,
}

impl Queue {
    /// The queue of a channel at `address`, when its binding says
    /// `is: queue`.
    pub fn of(binding: Option<&serde_json::Value>, address: &str) -> Option<Self> {
        let binding = binding?;
        if binding.get("is").and_then(serde_json::Value::as_str) != Some("queue") {
            return None;
        }
        let queue = binding.get("queue");
        let field = |key: &str| queue.and_then(|q| q.get(key));
        let flag = |key: &str, default: bool| {
            field(key)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(default)
        };
        let name = field("name")
            .and_then(serde_json::Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| dotted(address, "#"), str::to_owned);
        Some(Self {
            name,
            durable: flag("durable", true),
            exclusive: flag("exclusive", false),
            auto_delete: flag("autoDelete", false),
        })
    }

    fn declare_options(&self) -> QueueDeclareOptions {
        QueueDeclareOptions {
            durable: self.durable,
            exclusive: self.exclusive,
            auto_delete: self.auto_delete,
            ..Default::default()
        }
    }
}

/// The message properties and publish options the operation binding asks
/// for, with the message's headers.
fn publish_properties(message: &Outbound) -> (BasicProperties, BasicPublishOptions) {
    let binding = message.operation_binding.as_deref();
    let field = |key: &str| binding.and_then(|b| b.get(key));
    let mut headers = FieldTable::default();
    for (key, value) in &message.headers {
        headers.insert(
            key.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    // RabbitMQ routes a message to the routing keys in `CC` and `BCC` too.
    for (key, header) in [("cc", "CC"), ("bcc", "BCC")] {
        let keys: Vec<AMQPValue> = field(key)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(|k| AMQPValue::LongString(k.into()))
            .collect();
        if !keys.is_empty() {
            headers.insert(header.into(), AMQPValue::FieldArray(keys.into()));
        }
    }
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers);
    let number = |key: &str| field(key).and_then(serde_json::Value::as_u64);
    let text = |key: &str| field(key).and_then(serde_json::Value::as_str);
    if let Some(mode) = number("deliveryMode").filter(|m| (1..=2).contains(m)) {
        properties = properties.with_delivery_mode(mode as u8);
    }
    if let Some(priority) = number("priority") {
        properties = properties.with_priority(priority.min(255) as u8);
    }
    if let Some(expiration) = number("expiration") {
        properties = properties.with_expiration(expiration.to_string().into());
    }
    if let Some(reply_to) = text("replyTo") {
        properties = properties.with_reply_to(reply_to.into());
    }
    if let Some(user_id) = text("userId") {
        properties = properties.with_user_id(user_id.into());
    }
    if field("timestamp").and_then(serde_json::Value::as_bool) == Some(true) {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        properties = properties.with_timestamp(now);
    }
    let options = BasicPublishOptions {
        mandatory: field("mandatory").and_then(serde_json::Value::as_bool) == Some(true),
        ..Default::default()
    };
    (properties, options)
}

/// Headers of a delivery as text; values that are not text or numbers are
/// left out.
fn inbound_headers(properties: &BasicProperties) -> Vec<(String, String)> {
    let Some(table) = properties.headers() else {
        return Vec::new();
    };
    table
        .inner()
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                AMQPValue::Double(n) => n.to_string(),
                _ => return None,
            };
            Some((key.as_str().to_owned(), text))
        })
        .collect()
}

/// Where a consumer's deliveries come from and how their address is known.
enum Source {
    /// A queue bound with a routing pattern: the address is the routing key.
    Routed(TopicFilter),
    /// A channel's own queue: every delivery has the channel's address.
    Fixed(std::sync::Arc<str>),
}

struct Live {
    connection: Connection,
    /// Publishes with confirms on; consuming uses its own channel.
    publish: Channel,
    consume: Channel,
}

struct Consumer {
    queue: String,
    tag: String,
    /// Whether the queue was made for this subscription and is deleted
    /// with it; a channel's own queue stays.
    owned: bool,
    task: JoinHandle<()>,
}

/// One AMQP connection.
pub struct AmqpAdapter {
    /// The URL with the configured user, password, mechanism and TLS.
    url: String,
    /// CA and client certificate files of an `amqps` connection.
    tls: Option<TlsFiles>,
    /// The connection's name, as RabbitMQ's tools show it.
    name: String,
    connect_timeout: Duration,
    live: Mutex<Option<std::sync::Arc<Live>>>,
    /// Exchanges declared on this connection.
    declared: Mutex<std::collections::HashSet<String>>,
    consumers: Mutex<HashMap<TopicFilter, Consumer>>,
    events_tx: Mutex<Option<EventsTx>>,
}

impl AmqpAdapter {
    /// A client for an `amqp://` or `amqps://` URL, not yet connected,
    /// whose connection is named `name`; configured credentials win over
    /// the URL's.
    pub fn new(
        url: &str,
        name: &str,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let (url, tls) = connection_url(url, credentials.unwrap_or_default())?;
        Ok(Self {
            url,
            tls,
            name: name.to_owned(),
            connect_timeout,
            live: Mutex::new(None),
            declared: Mutex::new(Default::default()),
            consumers: Mutex::new(HashMap::new()),
            events_tx: Mutex::new(None),
        })
    }

    fn live(&self) -> Result<std::sync::Arc<Live>, BrokerError> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        live.ok_or_else(|| BrokerError::Unavailable("not connected to the AMQP broker".into()))
    }

    fn take_consumers(&self) -> Vec<Consumer> {
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect()
    }

    async fn open(&self) -> Result<Live, lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let connection = DefaultConnectionBuilder::new()?
            .with_uri_str(self.url.clone())
            .with_properties(properties)
            .with_tls_config(tls_config(self.tls.as_ref()).map_err(lapin::Error::from)?)
            .connect()
            .await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consume = connection.create_channel().await?;
        // Each consumer may hold this many unacknowledged messages; a route
        // whose target is down leaves the rest with the broker.
        consume
            .basic_qos(IN_HAND_LIMIT, BasicQosOptions::default())
            .await?;
        Ok(Live {
            connection,
            publish,
            consume,
        })
    }
}

impl AmqpAdapter {
    /// Declares the channel's exchange once per connection, as its binding
    /// describes it.
    async fn declare(&self, live: &Live, exchange: &Exchange) -> Result<(), BrokerError> {
        short("exchange name", &exchange.name)?;
        if exchange.built_in()
            || self
                .declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&exchange.name)
        {
            return Ok(());
        }
        let options = lapin::options::ExchangeDeclareOptions {
            durable: exchange.durable,
            auto_delete: exchange.auto_delete,
            ..Default::default()
        };
        live.publish
            .exchange_declare(
                exchange.name.as_str().into(),
                exchange.kind(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                BrokerError::Refused(format!(
                    "cannot declare AMQP exchange `{}`: {e}",
                    exchange.name
                ))
            })?;
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(exchange.name.clone());
        Ok(())
    }

    /// Declares a channel's own queue once per connection.
    async fn declare_queue(&self, live: &Live, queue: &Queue) -> Result<(), BrokerError> {
        let key = format!("queue:{}", queue.name);
        if self
            .declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        live.publish
            .queue_declare(
                queue.name.as_str().into(),
                queue.declare_options(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                BrokerError::Refused(format!("cannot declare AMQP queue `{}`: {e}", queue.name))
            })?;
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(())
    }
}

/// An exclusive, auto-deleted queue bound to `exchange` with the filter's
/// routing pattern, and a consumer of it.
async fn bind_queue(
    live: &Live,
    filter: &TopicFilter,
    exchange: &Exchange,
) -> Result<(String, lapin::Consumer), lapin::Error> {
    let queue_options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = live
        .consume
        .queue_declare("".into(), queue_options, FieldTable::default())
        .await?;
    let name = queue.name().to_string();
    let pattern = dotted(filter.as_str(), "#");
    let bind_options = QueueBindOptions::default();
    live.consume
        .queue_bind(
            name.as_str().into(),
            exchange.name.as_str().into(),
            pattern.as_str().into(),
            bind_options,
            FieldTable::default(),
        )
        .await?;
    let consume_options = BasicConsumeOptions::default();
    let consumer = live
        .consume
        .basic_consume(
            name.as_str().into(),
            "".into(),
            consume_options,
            FieldTable::default(),
        )
        .await?;
    Ok((name, consumer))
}

/// Hands each delivery on until the task is aborted; it is acknowledged
/// once every consumer is done with it (a route: once its target broker
/// has taken it), or at once when it is not for this subscription.
async fn forward(
    mut consumer: lapin::Consumer,
    filter: TopicFilter,
    source: Source,
    events_tx: EventsTx,
) {
    let runtime = tokio::runtime::Handle::current();
    while let Some(Ok(delivery)) = consumer.next().await {
        let topic = match &source {
            Source::Routed(shape) => undotted(shape, delivery.routing_key.as_str()).map(Into::into),
            Source::Fixed(address) => Some(address.clone()),
        };
        let Some(topic) = topic else {
            let _ = delivery.ack(BasicAckOptions::default()).await;
            continue;
        };
        let (acker, runtime) = (delivery.acker.clone(), runtime.clone());
        let settle = Settle::new(move |ack| {
            // A channel closed meanwhile has given the message back to its
            // queue already: then neither answer has anything left to do.
            runtime.spawn(async move {
                let _ = match ack {
                    true => acker.ack(BasicAckOptions::default()).await,
                    false => acker.nack(requeue()).await,
                };
            });
        });
        let inbound = Inbound {
            topic,
            payload: bytes::Bytes::copy_from_slice(&delivery.data),
            headers: inbound_headers(&delivery.properties),
            via: Some(filter.clone()),
            settle: Some(settle),
        };
        if events_tx
            .send(AdapterEvent::Message(inbound))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Gives a message back to its queue, for another consumer or a later try.
fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

/// Declares a channel's own queue and consumes from it.
async fn consume_queue(live: &Live, queue: &Queue) -> Result<lapin::Consumer, lapin::Error> {
    live.consume
        .queue_declare(
            queue.name.as_str().into(),
            queue.declare_options(),
            FieldTable::default(),
        )
        .await?;
    live.consume
        .basic_consume(
            queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[async_trait]
impl ProtocolAdapter for AmqpAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for consumer in self.take_consumers() {
            consumer.task.abort();
        }
        let opened = tokio::time::timeout(self.connect_timeout, self.open()).await;
        let live = match opened {
            Ok(Ok(live)) => live,
            Ok(Err(e)) => {
                return Err(BrokerError::Unavailable(format!(
                    "cannot connect to the AMQP broker: {e}"
                )))
            }
            Err(_) => return Err(BrokerError::Unavailable("AMQP connect timed out".into())),
        };
        let mut events = live.connection.events_listener();
        let lost_tx = events_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(error) = event {
                    let reason = format!("connection to the AMQP broker lost: {error}");
                    let _ = lost_tx.send(AdapterEvent::Disconnected(reason)).await;
                    return;
                }
            }
        });
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::new(live));
        *self.events_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(events_tx);
        Ok(())
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        let live = self.live()?;
        let binding = message.binding.as_deref();
        let (exchange, routing_key) = match Queue::of(binding, &message.topic) {
            Some(queue) => {
                short("queue name", &queue.name)?;
                self.declare_queue(&live, &queue).await?;
                (String::new(), queue.name)
            }
            None => {
                let exchange = Exchange::of(binding);
                self.declare(&live, &exchange).await?;
                (exchange.name, dotted(&message.topic, "#"))
            }
        };
        short("routing key", &routing_key)?;
        let (properties, options) = publish_properties(&message);
        let confirm = live
            .publish
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                options,
                &message.payload,
                properties,
            )
            .await
            .map_err(|e| BrokerError::Unavailable(format!("AMQP publish failed: {e}")))?;
        let confirmation = confirm
            .await
            .map_err(|e| BrokerError::Unavailable(format!("AMQP confirm failed: {e}")))?;
        if !confirmation.is_ack() {
            let refused = "the AMQP broker did not confirm the message";
            return Err(BrokerError::Refused(refused.into()));
        }
        match confirmation.take_message() {
            Some(_) => Err(BrokerError::Refused(format!(
                "the AMQP broker could route the mandatory message to no queue \
                 (routing key `{routing_key}`)"
            ))),
            None => Ok(()),
        }
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        let live = self.live()?;
        let events_tx = self
            .events_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let events_tx = events_tx
            .ok_or_else(|| BrokerError::Unavailable("not connected to the AMQP broker".into()))?;
        let refused = |e: lapin::Error| {
            BrokerError::Refused(format!("AMQP subscribe to `{filter}` failed: {e}"))
        };
        let binding = options.binding.as_deref();
        let consumer = match Queue::of(binding, filter.as_str()) {
            Some(queue) => {
                if filter.is_wildcard() {
                    return Err(BrokerError::InvalidAddress(format!(
                        "the channel is the AMQP queue `{}`, which carries no address: \
                         give every channel parameter",
                        queue.name
                    )));
                }
                short("queue name", &queue.name)?;
                let consumer = consume_queue(&live, &queue).await.map_err(refused)?;
                let source = Source::Fixed(filter.as_str().into());
                (queue.name, consumer, false, source)
            }
            None => {
                let exchange = Exchange::of(binding);
                self.declare(&live, &exchange).await?;
                short("routing key", &dotted(filter.as_str(), "#"))?;
                let (queue, consumer) = bind_queue(&live, filter, &exchange)
                    .await
                    .map_err(refused)?;
                (queue, consumer, true, Source::Routed(filter.clone()))
            }
        };
        let (queue, consumer, owned, source) = consumer;
        let tag = consumer.tag().to_string();
        let task = tokio::spawn(forward(consumer, filter.clone(), source, events_tx));
        let previous = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                filter.clone(),
                Consumer {
                    queue,
                    tag,
                    owned,
                    task,
                },
            );
        if let Some(previous) = previous {
            previous.task.abort();
        }
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        let removed = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(filter);
        let Some(consumer) = removed else {
            return Ok(());
        };
        consumer.task.abort();
        let live = self.live()?;
        let failed =
            |e: lapin::Error| BrokerError::Refused(format!("AMQP unsubscribe failed: {e}"));
        if !consumer.owned {
            let tag = consumer.tag.as_str().into();
            let options = lapin::options::BasicCancelOptions::default();
            return live
                .consume
                .basic_cancel(tag, options)
                .await
                .map_err(failed);
        }
        live.consume
            .queue_delete(
                consumer.queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn disconnect(&self) {
        for consumer in self.take_consumers() {
            consumer.task.abort();
        }
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(live) = live {
            // Closing fails only when the connection is already gone.
            let _ = live.connection.close(200, "gateway closing".into()).await;
        }
    }
}

mod login;
