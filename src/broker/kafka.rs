//! Kafka through rdkafka: a producer with delivery reports (`acks=all`), so
//! a publish answers once the broker has the message; topics are created on
//! first use. A subscription is a consumer with partitions assigned by the
//! gateway, never a member of a group, so none is left behind in a group: a
//! concrete subscription reads every partition of its topic from the end; a
//! wildcard one reads every matching topic from the end and, once a second,
//! adds topics created since, from their beginning. With a consumer group
//! (the operation binding's `groupId`, else the config's), a subscription
//! commits a message's offset under that group once every consumer is done
//! with it (a route: once its target broker has taken it), and starts from
//! the group's committed offsets where there are some, so messages
//! published while the gateway was away are not missed.
//!
//! Addresses map to topic names reversibly: `_` becomes `__`, `/` becomes
//! `_s`, and any other character Kafka forbids becomes `_x` and its UTF-8
//! bytes in hex. A channel whose `kafka` binding names a `topic` uses that
//! topic for all its addresses; each record then carries its address in the
//! `stepflow-address` header.

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
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::SaslMechanism;
use crate::credentials::Credentials;

use super::settle::IN_HAND_LIMIT;
use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, Settle,
    SubscribeOptions, TopicFilter,
};
use offsets::Offsets;
pub use topics::{address_of, topic_name};

/// Partitions of a topic the gateway creates.
const NEW_TOPIC_PARTITIONS: i32 = 1;

/// The record header that carries a message's address on a topic that a
/// channel's `kafka` binding names, where many addresses share one topic.
pub const ADDRESS_HEADER: &str = "stepflow-address";

/// The topic a channel's `kafka` binding names, if it names one.
pub fn binding_topic(binding: Option<&serde_json::Value>) -> Option<String> {
    let topic = binding?.get("topic")?.as_str()?;
    (!topic.is_empty()).then(|| topic.to_owned())
}

/// Partitions of a topic the gateway creates: the binding's `partitions`,
/// else one.
fn binding_partitions(binding: Option<&serde_json::Value>) -> i32 {
    binding
        .and_then(|b| b.get("partitions"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(NEW_TOPIC_PARTITIONS)
}

/// The consumer group of a subscription: the operation binding's `groupId`
/// (its schema's `const`, or its only `enum` value), else `configured`.
fn group_of(options: &SubscribeOptions, configured: Option<&str>) -> Option<String> {
    let schema = options
        .operation_binding
        .as_deref()
        .and_then(|b| b.get("groupId"));
    let named = schema.and_then(|s| match (s.get("const"), s.get("enum")) {
        (Some(value), _) => value.as_str(),
        (None, Some(serde_json::Value::Array(values))) if values.len() == 1 => values[0].as_str(),
        _ => None,
    });
    named
        .or(configured)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
}

struct Subscription {
    task: JoinHandle<()>,
    /// Looks for new topics, for a wildcard subscription.
    scanner: Option<JoinHandle<()>>,
    /// The consumer, when it commits offsets under a group.
    committing: Option<Arc<StreamConsumer>>,
}

impl Subscription {
    /// Stops the tasks; a committing consumer then commits what it handed
    /// on, in the returned task.
    fn stop(self) -> Option<JoinHandle<()>> {
        self.task.abort();
        if let Some(scanner) = self.scanner {
            scanner.abort();
        }
        let consumer = self.committing?;
        Some(tokio::task::spawn_blocking(move || {
            // Nothing stored yet is the only failure, and harmless.
            let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
        }))
    }
}

/// How a consumer's records find their address.
#[derive(Clone)]
struct Reading {
    filter: TopicFilter,
    /// The topic is the channel's `kafka` binding's, shared by its
    /// addresses.
    bound: bool,
    /// Offsets are stored for commit once a record is handed on.
    commit: bool,
}

impl Reading {
    /// The address of a record, or `None` when it is not for this filter.
    fn address(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Option<String> {
        if !self.bound {
            return address_of(message.topic());
        }
        let carried = message.headers().and_then(|headers| {
            let header = headers.iter().find(|h| h.key == ADDRESS_HEADER)?;
            String::from_utf8(header.value?.to_vec()).ok()
        });
        match carried {
            Some(address) => self.filter.matches(&address).then_some(address),
            // A record from another producer: its address is known only
            // when the filter names one.
            None => (!self.filter.is_wildcard()).then(|| self.filter.as_str().to_owned()),
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

/// librdkafka's `security.protocol`, SASL and SSL settings for the
/// configured credentials: SASL when a user name is given (PLAIN unless a
/// SCRAM mechanism is named), SSL when TLS is.
fn security_settings(credentials: Credentials) -> Result<Vec<(&'static str, String)>, BrokerError> {
    let mut settings = Vec::new();
    let sasl = credentials.username.is_some();
    let protocol = match (sasl, credentials.tls.is_some()) {
        (false, false) => return Ok(settings),
        (true, false) => "SASL_PLAINTEXT",
        (false, true) => "SSL",
        (true, true) => "SASL_SSL",
    };
    settings.push(("security.protocol", protocol.to_owned()));
    if let Some(user) = credentials.username {
        let mechanism = match credentials.mechanism {
            None | Some(SaslMechanism::Plain) => "PLAIN",
            Some(SaslMechanism::ScramSha256) => "SCRAM-SHA-256",
            Some(SaslMechanism::ScramSha512) => "SCRAM-SHA-512",
            Some(_) => {
                let message = "Kafka logins are `plain`, `scram-sha-256` or `scram-sha-512`";
                return Err(BrokerError::Unsupported(message.into()));
            }
        };
        settings.push(("sasl.mechanism", mechanism.to_owned()));
        settings.push(("sasl.username", user));
        settings.push(("sasl.password", credentials.password.unwrap_or_default()));
    }
    let files = credentials.tls.unwrap_or_default();
    let path = |file: &std::path::Path| file.display().to_string();
    let named = [
        ("ssl.ca.location", files.ca_file),
        ("ssl.certificate.location", files.cert_file),
        ("ssl.key.location", files.key_file),
    ];
    for (key, file) in named {
        if let Some(file) = file {
            settings.push((key, path(&file)));
        }
    }
    Ok(settings)
}

/// One Kafka cluster.
pub struct KafkaAdapter {
    bootstrap: String,
    /// librdkafka settings of the configured login and TLS.
    security: Vec<(&'static str, String)>,
    timeout: Duration,
    producer: Mutex<Option<FutureProducer<Watch>>>,
    /// Topics known to exist, so that a publish asks to create one only
    /// once, with how many partitions each has at least.
    known_topics: Mutex<HashMap<String, i32>>,
    admin: Mutex<Option<Arc<AdminClient<DefaultClientContext>>>>,
    subscriptions: Mutex<HashMap<TopicFilter, Subscription>>,
    events_tx: Mutex<Option<EventsTx>>,
    /// The configured consumer group, if any.
    group_id: Option<String>,
}

impl KafkaAdapter {
    /// A client for a `kafka://host:port` URL, not yet connected, whose
    /// subscriptions commit under `group_id` when one is given.
    pub fn new(
        url: &str,
        group_id: Option<String>,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
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
            security: security_settings(credentials.unwrap_or_default())?,
            timeout,
            producer: Mutex::new(None),
            known_topics: Mutex::new(Default::default()),
            admin: Mutex::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            events_tx: Mutex::new(None),
            group_id,
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
        for (key, value) in &self.security {
            config.set(*key, value);
        }
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
    /// the gateway. With `group`, it commits the offsets stored after each
    /// hand-on under that group; without, librdkafka wants a group id all
    /// the same, and nothing is committed.
    fn consumer(&self, group: Option<&str>) -> Result<StreamConsumer, BrokerError> {
        let unique = || format!("stepflow-{}", uuid::Uuid::new_v4().simple());
        let group_id = group.map_or_else(unique, str::to_owned);
        self.config()
            .set("group.id", group_id)
            .set("enable.auto.commit", group.is_some().to_string())
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are always assigned explicitly; one found out of
            // range (a broker may answer so for an empty partition) is
            // read from the earliest message kept, so nothing is skipped.
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| BrokerError::Unavailable(format!("cannot create Kafka consumer: {e}")))
    }

    /// Stops every subscription's tasks and waits for their last commits;
    /// their consumers close with them.
    async fn stop_subscriptions(&self) {
        let all: Vec<Subscription> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let commits: Vec<JoinHandle<()>> = all.into_iter().filter_map(Subscription::stop).collect();
        for commit in commits {
            let _ = commit.await;
        }
    }

    /// Creates `topic` with `partitions` unless it exists; answers how
    /// many partitions it has at least.
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<i32, BrokerError> {
        let known = self
            .known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .copied();
        if let Some(known) = known {
            return Ok(known);
        }
        let admin = self.admin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let admin =
            admin.ok_or_else(|| BrokerError::Unavailable("not connected to Kafka".into()))?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("Kafka topic creation failed: {e}")))?;
        let mut at_least = partitions;
        for result in results {
            match result {
                Ok(_) => {}
                // Made by someone else, with as many partitions as they chose.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => at_least = 1,
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
            .insert(topic.to_owned(), at_least);
        Ok(at_least)
    }

    /// Forgets that `topic` exists, so that it is created again.
    fn forget_topic(&self, topic: &str) {
        self.known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(topic);
    }

    /// A consumer reading every partition of `topic` from its current end,
    /// or from the group's committed offsets.
    async fn concrete_consumer(
        &self,
        topic: String,
        partitions: i32,
        group: Option<&str>,
    ) -> Result<StreamConsumer, BrokerError> {
        let consumer = self.consumer(group)?;
        let (timeout, committed) = (self.timeout, group.is_some());
        tokio::task::spawn_blocking(move || {
            let metadata = complete_metadata(&consumer, &topic, partitions, timeout)?;
            let mut assignment = TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
                assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(high))?;
            }
            if committed {
                assignment = resume_committed(&consumer, assignment, timeout)?;
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
        group: Option<&str>,
    ) -> Result<(StreamConsumer, std::collections::HashSet<String>), BrokerError> {
        let consumer = self.consumer(group)?;
        let (timeout, shape, committed) = (self.timeout, filter.clone(), group.is_some());
        tokio::task::spawn_blocking(move || {
            let mut known = std::collections::HashSet::new();
            let mut list = matching_partitions(&consumer, &shape, &mut known, Start::End, timeout)?;
            if committed {
                list = resume_committed(&consumer, list, timeout)?;
            }
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

/// The metadata of `topic` once it lists `partitions` partitions at least:
/// a topic just created may list fewer for a moment, and a partition left
/// out would never be read.
fn complete_metadata(
    consumer: &StreamConsumer,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, rdkafka::error::KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let listed = metadata
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
        if listed >= partitions.max(1) as usize || std::time::Instant::now() >= deadline {
            return Ok(metadata);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `list` with each partition's offset replaced by the group's committed
/// one, where the group has committed one.
fn resume_committed(
    consumer: &StreamConsumer,
    list: TopicPartitionList,
    timeout: Duration,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let committed = consumer.committed_offsets(list.clone(), timeout)?;
    let mut resumed = TopicPartitionList::new();
    for element in list.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let stored = committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
            .filter(|offset| matches!(offset, Offset::Offset(n) if *n >= 0));
        resumed.add_partition_offset(topic, partition, stored.unwrap_or(element.offset()))?;
    }
    Ok(resumed)
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

/// Forwards a consumer's messages until the task is aborted. At most
/// [`IN_HAND_LIMIT`] of them are in hand at once: a consumer that holds on
/// to messages (a route whose target is down) stops the reading. With a
/// group, a record's offset is stored for commit once every consumer is
/// done with it, and never past a record still in hand or given back.
fn forward(consumer: Arc<StreamConsumer>, reading: Reading, events_tx: EventsTx) -> JoinHandle<()> {
    let offsets = reading.commit.then(|| Offsets::new(consumer.clone()));
    let window = Arc::new(Semaphore::new(usize::from(IN_HAND_LIMIT)));
    tokio::spawn(async move {
        let mut stream = consumer.stream();
        while let Some(item) = stream.next().await {
            let Ok(message) = item else { continue };
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let Some(address) = reading.address(&message) else {
                if let Some(offsets) = &offsets {
                    offsets.skipped(topic, partition, offset);
                }
                continue;
            };
            let Ok(permit) = window.clone().acquire_owned().await else {
                return;
            };
            let held = offsets
                .clone()
                .inspect(|o| o.taken(topic, partition, offset));
            let topic = topic.to_owned();
            let settle = Settle::new(move |done| {
                drop(permit);
                if let (Some(offsets), true) = (held, done) {
                    offsets.settled(&topic, partition, offset);
                }
            });
            let inbound = Inbound {
                topic: address.into(),
                payload: bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default()),
                headers: record_headers(&message),
                via: Some(reading.filter.clone()),
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
    })
}

/// A record's headers as text, without the gateway's address header.
fn record_headers(message: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, String)> {
    let Some(headers) = message.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .filter(|header| header.key != ADDRESS_HEADER)
        .map(|header| {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (header.key.to_owned(), value)
        })
        .collect()
}

#[async_trait]
impl ProtocolAdapter for KafkaAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        self.stop_subscriptions().await;
        // A restarted cluster may have lost its topics.
        self.known_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let producer: FutureProducer<Watch> = self
            .config()
            .set("acks", "all")
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            // A publish is answered once the broker has it: waiting to
            // batch (librdkafka's default 5 ms) would add that to every
            // answer, and cap a route, which sends one message at a time,
            // at 200 a second. Concurrent publishes still share batches.
            .set("linger.ms", "0")
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
        let binding = message.binding.as_deref();
        let bound = binding_topic(binding);
        let topic = bound.clone().unwrap_or_else(|| topic_name(&message.topic));
        self.ensure_topic(&topic, binding_partitions(binding))
            .await?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        if bound.is_some() {
            headers = headers.insert(Header {
                key: ADDRESS_HEADER,
                value: Some(message.topic.as_bytes()),
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
            Err((error, _)) => {
                // The broker may have restarted without its topics (it
                // then answers "unknown topic", or nothing in time): the
                // next try makes sure the topic exists again.
                self.forget_topic(&topic);
                Err(BrokerError::Unavailable(format!(
                    "Kafka did not take the message: {error}"
                )))
            }
        }
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        let events_tx = self
            .events_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let events_tx =
            events_tx.ok_or_else(|| BrokerError::Unavailable("not connected to Kafka".into()))?;
        let group = group_of(options, self.group_id.as_deref());
        let binding = options.binding.as_deref();
        let bound = binding_topic(binding);
        let (consumer, scanner) = match (&bound, filter.is_wildcard()) {
            (None, true) => {
                let (consumer, known) = self.wildcard_consumer(filter, group.as_deref()).await?;
                let consumer = Arc::new(consumer);
                let scanner = scan_topics(consumer.clone(), filter.clone(), known, self.timeout);
                (consumer, Some(scanner))
            }
            (Some(_), _) | (None, false) => {
                let topic = bound.clone().unwrap_or_else(|| topic_name(filter.as_str()));
                let partitions = self
                    .ensure_topic(&topic, binding_partitions(binding))
                    .await?;
                let consumer = self
                    .concrete_consumer(topic, partitions, group.as_deref())
                    .await?;
                (Arc::new(consumer), None)
            }
        };
        let reading = Reading {
            filter: filter.clone(),
            bound: bound.is_some(),
            commit: group.is_some(),
        };
        let committing = group.is_some().then(|| consumer.clone());
        let task = forward(consumer, reading, events_tx);
        let subscription = Subscription {
            task,
            scanner,
            committing,
        };
        let previous = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(filter.clone(), subscription);
        if let Some(commit) = previous.and_then(Subscription::stop) {
            let _ = commit.await;
        }
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        // The consumer closes with its task; it is in no group.
        let removed = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(filter);
        if let Some(commit) = removed.and_then(Subscription::stop) {
            let _ = commit.await;
        }
        Ok(())
    }

    async fn disconnect(&self) {
        self.stop_subscriptions().await;
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

mod offsets;
mod topics;

#[cfg(test)]
mod tests;
