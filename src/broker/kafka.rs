//! Kafka through rdkafka: a producer with delivery reports (`acks=all`), so
//! a publish answers once the broker has the message; topics are created on
//! first use. A subscription is a consumer with partitions assigned by the
//! gateway, not by a group, so none is left behind in a group: a concrete
//! subscription reads every partition of its topic from the end; a wildcard
//! one reads every matching topic from the end and, once a second, adds
//! topics created since, from their beginning.
//!
//! Addresses map to topic names reversibly: `_` becomes `__`, `/` becomes
//! `_s`, and any other character Kafka forbids becomes `_x` and its UTF-8
//! bytes in hex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};

/// Partitions of a topic the gateway creates.
const NEW_TOPIC_PARTITIONS: i32 = 1;

/// The Kafka topic of a concrete address.
pub fn topic_name(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        match c {
            '_' => out.push_str("__"),
            '/' => out.push_str("_s"),
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => out.push(c),
            other => {
                let mut buffer = [0u8; 4];
                for byte in other.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("_x{byte:02x}"));
                }
            }
        }
    }
    out
}

/// The address of a topic named by [`topic_name`]; `None` for a name it
/// cannot have made.
pub fn address_of(topic: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(topic.len());
    let mut rest = topic.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        if first != b'_' {
            bytes.push(first);
            continue;
        }
        match rest.split_first() {
            Some((b'_', tail)) => (bytes.push(b'_'), rest = tail).1,
            Some((b's', tail)) => (bytes.push(b'/'), rest = tail).1,
            Some((b'x', tail)) if tail.len() >= 2 => {
                let hex = std::str::from_utf8(&tail[..2]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

struct Subscription {
    task: JoinHandle<()>,
    /// Looks for new topics, for a wildcard subscription.
    scanner: Option<JoinHandle<()>>,
}

impl Subscription {
    fn stop(self) {
        self.task.abort();
        if let Some(scanner) = self.scanner {
            scanner.abort();
        }
    }
}

/// Reports a lost cluster to the connection actor: librdkafka reconnects by
/// itself and says so only through this callback.
struct Watch {
    events_tx: EventsTx,
}

impl rdkafka::ClientContext for Watch {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            let reason = format!("all Kafka brokers are down: {reason}");
            let _ = self.events_tx.try_send(AdapterEvent::Disconnected(reason));
        }
    }
}

impl rdkafka::producer::ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _report: &rdkafka::message::DeliveryResult<'_>, _opaque: ()) {}
}

/// One Kafka cluster.
pub struct KafkaAdapter {
    bootstrap: String,
    timeout: Duration,
    producer: Mutex<Option<FutureProducer<Watch>>>,
    /// Topics known to exist, so that a publish asks to create one only once.
    known_topics: Mutex<std::collections::HashSet<String>>,
    admin: Mutex<Option<Arc<AdminClient<DefaultClientContext>>>>,
    subscriptions: Mutex<HashMap<TopicFilter, Subscription>>,
    events_tx: Mutex<Option<EventsTx>>,
}

impl KafkaAdapter {
    /// A client for a `kafka://host:port` URL, not yet connected.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, BrokerError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| BrokerError::Unsupported(format!("invalid Kafka URL `{url}`: {e}")))?;
        if parsed.scheme() != "kafka" {
            return Err(BrokerError::Unsupported(format!(
                "Kafka scheme `{}` is not supported; use kafka://",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| BrokerError::Unsupported(format!("Kafka URL `{url}` has no host")))?;
        let bootstrap = format!("{host}:{}", parsed.port().unwrap_or(9092));
        Ok(Self {
            bootstrap,
            timeout,
            producer: Mutex::new(None),
            known_topics: Mutex::new(Default::default()),
            admin: Mutex::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            events_tx: Mutex::new(None),
        })
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.nagle.disable", "true")
            .set(
                "socket.timeout.ms",
                self.timeout.as_millis().max(1_000).to_string(),
            );
        config
    }

    fn producer(&self) -> Result<FutureProducer<Watch>, BrokerError> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        producer.ok_or_else(|| BrokerError::Unavailable("not connected to Kafka".into()))
    }

    /// A consumer that never joins a group: its partitions are assigned by
    /// the gateway. librdkafka wants a group id all the same.
    fn consumer(&self) -> Result<StreamConsumer, BrokerError> {
        self.config()
            .set(
                "group.id",
                format!("stepflow-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| BrokerError::Unavailable(format!("cannot create Kafka consumer: {e}")))
    }

    /// Stops every subscription's tasks; their consumers close with them.
    fn stop_subscriptions(&self) {
        let all: Vec<Subscription> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for subscription in all {
            subscription.stop();
        }
    }

    /// Creates `topic` unless it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BrokerError> {
        if self
            .known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let admin = self.admin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let admin =
            admin.ok_or_else(|| BrokerError::Unavailable("not connected to Kafka".into()))?;
        let new_topic = NewTopic::new(topic, NEW_TOPIC_PARTITIONS, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("Kafka topic creation failed: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BrokerError::Refused(format!(
                        "cannot create Kafka topic `{name}`: {code}"
                    )))
                }
            }
        }
        self.known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned());
        Ok(())
    }

    /// A consumer reading every partition of `topic` from its current end.
    async fn concrete_consumer(&self, topic: String) -> Result<StreamConsumer, BrokerError> {
        let consumer = self.consumer()?;
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let mut assignment = TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
                assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(high))?;
            }
            consumer.assign(&assignment)?;
            Ok(consumer)
        })
        .await
        .map_err(|_| BrokerError::Unavailable("Kafka consumer set-up stopped".into()))?
        .map_err(|e: rdkafka::error::KafkaError| {
            BrokerError::Refused(format!("cannot read Kafka topic: {e}"))
        })
    }

    /// A consumer of every existing topic matching a wildcard filter, from
    /// its current end, with the topics it covers.
    async fn wildcard_consumer(
        &self,
        filter: &TopicFilter,
    ) -> Result<(StreamConsumer, std::collections::HashSet<String>), BrokerError> {
        let consumer = self.consumer()?;
        let (timeout, shape) = (self.timeout, filter.clone());
        tokio::task::spawn_blocking(move || {
            let mut known = std::collections::HashSet::new();
            let list = matching_partitions(&consumer, &shape, &mut known, Start::End, timeout)?;
            consumer.assign(&list)?;
            Ok((consumer, known))
        })
        .await
        .map_err(|_| BrokerError::Unavailable("Kafka consumer set-up stopped".into()))?
        .map_err(|e: rdkafka::error::KafkaError| {
            BrokerError::Refused(format!("cannot read Kafka topics: {e}"))
        })
    }
}

/// How often a wildcard subscription looks for new matching topics.
const TOPIC_SCAN: Duration = Duration::from_secs(1);

/// The partitions of every topic matching `filter` that is not in `known`,
/// at the given start; the topics are added to `known`.
fn matching_partitions(
    consumer: &StreamConsumer,
    filter: &TopicFilter,
    known: &mut std::collections::HashSet<String>,
    start: Start,
    timeout: Duration,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut list = TopicPartitionList::new();
    for topic in metadata.topics() {
        let name = topic.name();
        let matches = address_of(name).is_some_and(|address| filter.matches(&address));
        // A topic just created may not list its partitions yet: it is
        // taken up at a later scan.
        if !matches || known.contains(name) || topic.partitions().is_empty() {
            continue;
        }
        for partition in topic.partitions() {
            let offset = match start {
                Start::End => {
                    Offset::Offset(consumer.fetch_watermarks(name, partition.id(), timeout)?.1)
                }
                Start::Beginning => Offset::Beginning,
            };
            list.add_partition_offset(name, partition.id(), offset)?;
        }
        known.insert(name.to_owned());
    }
    Ok(list)
}

/// Where a newly assigned partition is read from.
#[derive(Clone, Copy)]
enum Start {
    /// Topics that existed when the subscription was made: what comes next.
    End,
    /// Topics created since: all of it, which all came after.
    Beginning,
}

/// Keeps a wildcard subscription's assignment up to date with the topics
/// that appear, until the task is aborted.
fn scan_topics(
    consumer: Arc<StreamConsumer>,
    filter: TopicFilter,
    mut known: std::collections::HashSet<String>,
    timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TOPIC_SCAN);
        loop {
            tick.tick().await;
            let (scanner, shape, mut seen) = (consumer.clone(), filter.clone(), known.clone());
            let found = tokio::task::spawn_blocking(move || {
                let list =
                    matching_partitions(&scanner, &shape, &mut seen, Start::Beginning, timeout)?;
                if list.count() > 0 {
                    scanner.incremental_assign(&list)?;
                }
                Ok::<_, rdkafka::error::KafkaError>(seen)
            })
            .await;
            if let Ok(Ok(seen)) = found {
                known = seen;
            }
        }
    })
}

/// Forwards a consumer's messages until the task is aborted.
fn forward(consumer: Arc<StreamConsumer>, events_tx: EventsTx) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = consumer.stream();
        while let Some(item) = stream.next().await {
            let Ok(message) = item else { continue };
            let Some(topic) = address_of(message.topic()) else {
                continue;
            };
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            let value = header
                                .value
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default();
                            (header.key.to_owned(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
            let inbound = Inbound {
                topic: topic.into(),
                payload,
                headers,
            };
            if events_tx
                .send(AdapterEvent::Message(inbound))
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

#[async_trait]
impl ProtocolAdapter for KafkaAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        self.stop_subscriptions();
        // A restarted cluster may have lost its topics.
        self.known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let producer: FutureProducer<Watch> = self
            .config()
            .set("acks", "all")
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            .create_with_context(Watch {
                events_tx: events_tx.clone(),
            })
            .map_err(|e| BrokerError::Unavailable(format!("cannot create Kafka producer: {e}")))?;
        let admin: AdminClient<DefaultClientContext> = self.config().create().map_err(|e| {
            BrokerError::Unavailable(format!("cannot create Kafka admin client: {e}"))
        })?;
        // librdkafka connects lazily: asking for metadata proves the broker
        // answers.
        let probe = producer.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, timeout))
            .await
            .map_err(|_| BrokerError::Unavailable("Kafka connect stopped".into()))?
            .map_err(|e| {
                BrokerError::Unavailable(format!("cannot reach Kafka at {}: {e}", self.bootstrap))
            })?;
        *self.producer.lock().unwrap_or_else(|p| p.into_inner()) = Some(producer);
        *self.admin.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(admin));
        *self.events_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(events_tx);
        Ok(())
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        let producer = self.producer()?;
        let topic = topic_name(&message.topic);
        self.ensure_topic(&topic).await?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic)
            .payload(message.payload.as_ref())
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_str());
        }
        match producer.send(record, self.timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(BrokerError::Unavailable(format!(
                "Kafka did not take the message: {error}"
            ))),
        }
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        _options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        let events_tx = self
            .events_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let events_tx =
            events_tx.ok_or_else(|| BrokerError::Unavailable("not connected to Kafka".into()))?;
        let (consumer, scanner) = match filter.is_wildcard() {
            true => {
                let (consumer, known) = self.wildcard_consumer(filter).await?;
                let consumer = Arc::new(consumer);
                let scanner = scan_topics(consumer.clone(), filter.clone(), known, self.timeout);
                (consumer, Some(scanner))
            }
            false => {
                let topic = topic_name(filter.as_str());
                self.ensure_topic(&topic).await?;
                (Arc::new(self.concrete_consumer(topic).await?), None)
            }
        };
        let task = forward(consumer, events_tx);
        let previous = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(filter.clone(), Subscription { task, scanner });
        if let Some(previous) = previous {
            previous.stop();
        }
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        // Dropping the consumer with its task closes it; it is in no group.
        if let Some(subscription) = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(filter)
        {
            subscription.stop();
        }
        Ok(())
    }

    async fn disconnect(&self) {
        self.stop_subscriptions();
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(producer) = producer {
            // Whatever is still queued has been answered as failed already.
            let _ =
                tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(1))).await;
        }
        self.admin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests;
