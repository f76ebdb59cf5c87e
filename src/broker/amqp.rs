//! AMQP 0-9-1 through lapin: messages go to the topic exchange `amq.topic`
//! with the address in dotted form as routing key (`/` to `.`, `+` to `*`,
//! `#` to `#`); a publish answers after the broker's publisher confirm; each
//! subscription is an exclusive, auto-deleted queue bound with its filter,
//! and a message is acknowledged once it is handed on for fan-out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;

use super::address::{dotted, undotted};
use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};

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

struct Live {
    connection: Connection,
    /// Publishes with confirms on; consuming uses its own channel.
    publish: Channel,
    consume: Channel,
}

struct Consumer {
    queue: String,
    task: JoinHandle<()>,
}

/// One AMQP connection.
pub struct AmqpAdapter {
    url: String,
    connect_timeout: Duration,
    live: Mutex<Option<std::sync::Arc<Live>>>,
    /// Exchanges declared on this connection.
    declared: Mutex<std::collections::HashSet<String>>,
    consumers: Mutex<HashMap<TopicFilter, Consumer>>,
    events_tx: Mutex<Option<EventsTx>>,
}

impl AmqpAdapter {
    /// A client for an `amqp://` URL, not yet connected.
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, BrokerError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| BrokerError::Unsupported(format!("invalid AMQP URL `{url}`: {e}")))?;
        if parsed.scheme() != "amqp" {
            return Err(BrokerError::Unsupported(format!(
                "AMQP scheme `{}` is not supported; use amqp://",
                parsed.scheme()
            )));
        }
        Ok(Self {
            url: url.to_owned(),
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
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consume = connection.create_channel().await?;
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

/// Hands each delivery on, then acknowledges it, until the task is aborted.
async fn forward(mut consumer: lapin::Consumer, shape: TopicFilter, events_tx: EventsTx) {
    while let Some(Ok(delivery)) = consumer.next().await {
        if let Some(topic) = undotted(&shape, delivery.routing_key.as_str()) {
            let payload = bytes::Bytes::copy_from_slice(&delivery.data);
            let inbound = Inbound {
                topic: topic.into(),
                payload,
                headers: Vec::new(),
            };
            if events_tx
                .send(AdapterEvent::Message(inbound))
                .await
                .is_err()
            {
                return;
            }
        }
        // Handed on for fan-out, or not ours: either way it is done.
        let _ = delivery.ack(BasicAckOptions::default()).await;
    }
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
        let exchange = Exchange::of(message.binding.as_deref());
        self.declare(&live, &exchange).await?;
        let routing_key = dotted(&message.topic, "#");
        short("routing key", &routing_key)?;
        let confirm = live
            .publish
            .basic_publish(
                exchange.name.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &message.payload,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .map_err(|e| BrokerError::Unavailable(format!("AMQP publish failed: {e}")))?;
        let confirmation = confirm
            .await
            .map_err(|e| BrokerError::Unavailable(format!("AMQP confirm failed: {e}")))?;
        match confirmation.is_ack() {
            true => Ok(()),
            false => Err(BrokerError::Refused(
                "the AMQP broker did not confirm the message".into(),
            )),
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
        let exchange = Exchange::of(options.binding.as_deref());
        self.declare(&live, &exchange).await?;
        short("routing key", &dotted(filter.as_str(), "#"))?;
        let refused = |e: lapin::Error| {
            BrokerError::Refused(format!("AMQP subscribe to `{filter}` failed: {e}"))
        };
        let (queue, consumer) = bind_queue(&live, filter, &exchange)
            .await
            .map_err(refused)?;

        let task = tokio::spawn(forward(consumer, filter.clone(), events_tx));
        let previous = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(filter.clone(), Consumer { queue, task });
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
        live.consume
            .queue_delete(
                consumer.queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Refused(format!("AMQP queue delete failed: {e}")))
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
