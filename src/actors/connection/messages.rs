//! What a BrokerConnection is told and what it answers: the broker it
//! connects to, its status, and the messages other actors send it.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::actors::subscription::ConsumerAddr;
use crate::broker::{BrokerError, Outbound, SubscribeOptions, TopicFilter};
use crate::credentials::Credentials;
use crate::ids::BrokerId;

/// What the gateway knows of a broker it should connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSpec {
    /// The broker's id.
    pub id: BrokerId,
    /// The protocol, such as `mqtt`.
    pub protocol: String,
    /// The URL to connect to.
    pub url: String,
    /// What the connection presents to the broker, from
    /// `brokers.credentials`; an error when they cannot be read.
    pub credentials: Result<Option<Credentials>, String>,
    /// The client id of a durable session that is one route's own (MQTT):
    /// the broker keeps it across gateway restarts. `None` for the shared
    /// connection of a document's server.
    pub session: Option<String>,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// The first attempt is under way.
    Connecting,
    /// Connected; publishes go through.
    Connected,
    /// The connection failed or was lost; attempts continue with backoff.
    Reconnecting,
    /// The broker cannot be served at all (unsupported protocol or URL).
    Failed,
}

/// A connection's state as the status endpoint shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct ConnectionStatus {
    /// The broker's id.
    pub broker_id: BrokerId,
    /// The protocol.
    pub protocol: String,
    /// The URL.
    pub url: String,
    /// The current state.
    pub state: ConnectionState,
    /// When the current state began.
    pub since: DateTime<Utc>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// How many times the connection was lost and re-established.
    pub reconnects: u64,
    /// Broker-side subscriptions held.
    pub subscriptions: usize,
    /// Publishes sent and not yet acknowledged by the broker.
    pub in_flight: u64,
    /// Publishes waiting for the broker to come back.
    pub waiting: usize,
}

/// Publishes one message and waits for the broker's acknowledgement.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish(pub Outbound);

/// Adds a consumer of `filter`, subscribing at the broker when it is the
/// first.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Subscribe {
    /// The topic filter in canonical form.
    pub filter: TopicFilter,
    /// How the filter is subscribed at the broker.
    pub options: SubscribeOptions,
    /// Key the consumer is removed by.
    pub consumer_id: u64,
    /// Where its messages go.
    pub consumer: ConsumerAddr,
    /// The last event id the consumer saw, when it resumes.
    pub resume_after: Option<String>,
}

impl Subscribe {
    /// A subscription of `channel`'s messages through `filter`, with the
    /// channel's QoS and binding.
    pub fn to_channel(
        channel: &crate::catalog::ChannelEntry,
        filter: TopicFilter,
        consumer_id: u64,
        consumer: ConsumerAddr,
        resume_after: Option<String>,
    ) -> Self {
        let options = SubscribeOptions {
            qos: channel.qos,
            binding: channel.binding.clone(),
            operation_binding: channel.operation_binding.clone(),
        };
        Self {
            filter,
            options,
            consumer_id,
            consumer,
            resume_after,
        }
    }
}

/// Removes a consumer; the broker-side subscription ends with the last one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    /// The topic filter the consumer subscribed with.
    pub filter: TopicFilter,
    /// Key given at subscription.
    pub consumer_id: u64,
}

/// Stops holding publishes for a broker that is down: those waiting fail
/// at once, and so do later ones that would wait. Sent when the gateway
/// stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopHolding;

/// Asks for the connection's status.
#[derive(Message)]
#[rtype(result = "ConnectionStatus")]
pub struct GetStatus;

/// Asks what the connection connects to.
#[derive(Message)]
#[rtype(result = "BrokerSpec")]
pub struct GetSpec;

/// Closes the connection and stops the actor; every consumer is told the
/// reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// Why, in words a client can be shown.
    pub reason: String,
}
