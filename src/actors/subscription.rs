//! ChannelSubscription: the single broker-side subscription of one topic
//! filter, fanned out to every consumer that asked for it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::broker::{Inbound, TopicFilter};

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
}

/// Adds a consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddConsumer {
    /// Key the consumer is removed by.
    pub consumer_id: u64,
    /// Where its messages go.
    pub consumer: ConsumerAddr,
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
}

impl ChannelSubscription {
    /// A subscription of `filter` with no consumers yet.
    pub fn new(filter: TopicFilter) -> Self {
        Self {
            filter,
            consumers: HashMap::new(),
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

    fn handle(&mut self, msg: Delivery, _ctx: &mut Self::Context) {
        // Consumers bound their own queues; a consumer that has stopped is
        // removed when its RemoveConsumer arrives.
        for consumer in self.consumers.values() {
            consumer.deliveries.do_send(msg.clone());
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
