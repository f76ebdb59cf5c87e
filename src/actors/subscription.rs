//! ChannelSubscription: the single broker-side subscription of one topic
//! filter, fanned out to every consumer that asked for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::log_writer::{CallLog, CallRecord};
use crate::broker::{Inbound, Settle, TopicFilter};
use crate::catalog::ChannelEntry;
use crate::ids::{BrokerId, CallLogId, ChannelId, DocumentId};

/// One message handed to a consumer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Delivery {
    /// The concrete topic the message arrived on.
    pub topic: Arc<str>,
    /// The payload: JSON when it parses as JSON, else a string.
    pub payload: Arc<Value>,
    /// Size of the payload in bytes.
    pub payload_bytes: usize,
    /// Headers, where the protocol carries them.
    pub headers: Arc<Vec<(String, String)>>,
    /// When the gateway received it.
    pub received_at: DateTime<Utc>,
    /// `<epoch>-<sequence>`, given by the channel subscription that fans it
    /// out; an SSE client resumes after it with `Last-Event-ID`.
    pub event_id: Option<Arc<str>>,
    /// The broker's acknowledgement, given only to consumers that must be
    /// done with the message before the broker may forget it (a route).
    pub settle: Option<Settle>,
}

/// Tells a resuming consumer that some messages since its last event are
/// no longer buffered.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct MissedEvents {
    /// The event id the consumer resumed after.
    pub last_event_id: String,
}

impl Delivery {
    /// Decodes an inbound message once for all consumers.
    pub fn from_inbound(inbound: Inbound) -> Self {
        let payload = serde_json::from_slice(&inbound.payload).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&inbound.payload).into_owned())
        });
        Self {
            topic: inbound.topic,
            payload: Arc::new(payload),
            payload_bytes: inbound.payload.len(),
            headers: Arc::new(inbound.headers),
            received_at: Utc::now(),
            event_id: None,
            settle: inbound.settle,
        }
    }
}

/// Tells a consumer that its subscription has ended and why.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SubscriptionEnded {
    /// Why, in words a client can be shown.
    pub reason: String,
}

/// Where a consumer's messages go; its actor holds the other ends.
#[derive(Clone)]
pub struct ConsumerAddr {
    /// Receives each delivery.
    pub deliveries: Recipient<Delivery>,
    /// Receives the end of the subscription.
    pub ended: Recipient<SubscriptionEnded>,
    /// Is told of messages lost before a resume, if it resumes.
    pub missed: Option<Recipient<MissedEvents>>,
    /// Whether the broker may forget a message only once this consumer is
    /// done with it (a route); other consumers get no [`Settle`] with
    /// their deliveries.
    pub settles: bool,
    /// The channel the consumer subscribed to: a message is recorded as
    /// received once per channel among the consumers that take it.
    pub channel: ChannelTag,
}

/// Which channel of which document a consumer follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTag {
    /// The channel.
    pub id: ChannelId,
    /// Its document.
    pub document: DocumentId,
}

impl ChannelTag {
    /// The tag of `channel`.
    pub fn of(channel: &ChannelEntry) -> Self {
        Self {
            id: channel.id.clone(),
            document: DocumentId::from(channel.row.document_id.clone()),
        }
    }
}

/// Where a subscription records what it receives: the call log, with the
/// broker it receives from.
#[derive(Clone)]
pub struct Receipts {
    /// The call log (and the statistics behind it).
    pub call_log: CallLog,
    /// The broker.
    pub broker: BrokerId,
    /// Its protocol, as a metrics label.
    pub protocol: &'static str,
}

impl Receipts {
    /// Records `delivery` as received on `channel`.
    fn record(&self, channel: &ChannelTag, delivery: &Delivery) {
        let keep = self.call_log.keeps_payloads();
        self.call_log.record(CallRecord {
            id: CallLogId::generate(),
            document_id: Some(channel.document.clone()),
            channel_id: Some(channel.id.clone()),
            message_id: None,
            broker_id: Some(self.broker.clone()),
            protocol: self.protocol,
            direction: "receive",
            address: Some(delivery.topic.to_string()),
            status: "received",
            error_kind: None,
            error: None,
            latency_us: None,
            payload_bytes: delivery.payload_bytes as i64,
            payload: keep.then(|| (*delivery.payload).clone()),
            headers: (!delivery.headers.is_empty()).then(|| {
                let pairs = delivery
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()));
                Value::Object(pairs.collect())
            }),
            created_at: delivery.received_at,
        });
    }
}

/// Adds a consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddConsumer {
    /// Key the consumer is removed by.
    pub consumer_id: u64,
    /// Where its messages go.
    pub consumer: ConsumerAddr,
    /// The last event id the consumer saw, when it resumes: buffered
    /// messages after it are sent first.
    pub resume_after: Option<String>,
}

/// Ends the subscription: every consumer is told why, then it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndSubscription {
    /// Why, in words a client can be shown.
    pub reason: String,
}

/// Removes a consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveConsumer {
    /// Key given when it was added.
    pub consumer_id: u64,
}

/// Fans the messages of one topic filter out to its consumers.
pub struct ChannelSubscription {
    filter: TopicFilter,
    consumers: HashMap<u64, ConsumerAddr>,
    /// Names this instance in event ids, so that ids of an earlier
    /// subscription of the same filter are recognised as such.
    epoch: String,
    next_seq: u64,
    /// The latest deliveries, for consumers that resume.
    recent: VecDeque<Delivery>,
    recent_capacity: usize,
    receipts: Receipts,
}

impl ChannelSubscription {
    /// A subscription of `filter` with no consumers yet, keeping the latest
    /// `recent_capacity` deliveries for consumers that resume.
    pub fn new(filter: TopicFilter, recent_capacity: usize, receipts: Receipts) -> Self {
        let epoch = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Self {
            filter,
            consumers: HashMap::new(),
            epoch,
            next_seq: 0,
            recent: VecDeque::new(),
            recent_capacity,
            receipts,
        }
    }

    /// Sends a resuming consumer what it missed after `last`, saying so
    /// when some of it is no longer buffered.
    fn replay(&self, last: &str, consumer: &ConsumerAddr) {
        let seq = last
            .strip_prefix(&self.epoch)
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&seq| seq <= self.next_seq);
        let oldest = (self.next_seq + 1).saturating_sub(self.recent.len() as u64);
        let complete = seq.is_some_and(|seq| seq.saturating_add(1) >= oldest);
        if !complete {
            if let Some(missed) = &consumer.missed {
                missed.do_send(MissedEvents {
                    last_event_id: last.to_owned(),
                });
            }
        }
        // From an unknown id (another epoch), nothing buffered is known to
        // follow it: only the loss is reported.
        let Some(seq) = seq else { return };
        let skip =
            usize::try_from(seq.saturating_add(1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        for delivery in self.recent.iter().skip(skip) {
            consumer.deliveries.do_send(delivery.clone());
        }
    }
}

impl Actor for ChannelSubscription {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(filter = %self.filter, "channel subscription started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(filter = %self.filter, "channel subscription stopped");
    }
}

impl Handler<AddConsumer> for ChannelSubscription {
    type Result = ();

    fn handle(&mut self, msg: AddConsumer, _ctx: &mut Self::Context) {
        if let Some(last) = &msg.resume_after {
            self.replay(last, &msg.consumer);
        }
        self.consumers.insert(msg.consumer_id, msg.consumer);
    }
}

impl Handler<RemoveConsumer> for ChannelSubscription {
    type Result = ();

    fn handle(&mut self, msg: RemoveConsumer, _ctx: &mut Self::Context) {
        self.consumers.remove(&msg.consumer_id);
    }
}

impl Handler<Delivery> for ChannelSubscription {
    type Result = ();

    fn handle(&mut self, mut msg: Delivery, _ctx: &mut Self::Context) {
        self.next_seq += 1;
        msg.event_id = Some(format!("{}-{}", self.epoch, self.next_seq).into());
        let settle = msg.settle.take();
        if self.recent_capacity > 0 {
            if self.recent.len() == self.recent_capacity {
                self.recent.pop_front();
            }
            self.recent.push_back(msg.clone());
        }
        let mut recorded: Vec<&ChannelTag> = Vec::new();
        for consumer in self.consumers.values() {
            if !recorded.contains(&&consumer.channel) {
                self.receipts.record(&consumer.channel, &msg);
                recorded.push(&consumer.channel);
            }
        }
        // Consumers bound their own queues; a consumer that has stopped is
        // removed when its RemoveConsumer arrives, and a copy it can no
        // longer take gives the message back.
        for consumer in self.consumers.values() {
            let mut copy = msg.clone();
            if consumer.settles {
                copy.settle.clone_from(&settle);
            }
            consumer.deliveries.do_send(copy);
        }
        if let Some(settle) = settle {
            settle.done();
        }
    }
}

impl Handler<EndSubscription> for ChannelSubscription {
    type Result = ();

    fn handle(&mut self, msg: EndSubscription, ctx: &mut Self::Context) {
        for consumer in self.consumers.values() {
            consumer.ended.do_send(SubscriptionEnded {
                reason: msg.reason.clone(),
            });
        }
        ctx.stop();
    }
}
