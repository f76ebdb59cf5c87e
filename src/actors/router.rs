//! One static route: a consumer of the source channel's subscription that
//! publishes each message on the target channel, one at a time and in
//! order, through the same publish path as clients (validation against the
//! target's schema, access rules with the route's principal, call log).
//!
//! A message is settled with its source broker (AMQP ack, Kafka offset)
//! only once the target broker has taken it, or once it has been refused
//! for good. While the target broker is down the route tries the message
//! again with backoff, and those behind it wait, up to the route's
//! `max_pending`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::connection::{BrokerConnection, ConnectionState, GetStatus, Subscribe, Unsubscribe};
use super::log_writer::CallRecord;
use super::subscription::{ChannelTag, ConsumerAddr, Delivery, SubscriptionEnded};
use super::ws_session::next_consumer_id;
use crate::backoff;
use crate::broker::TopicFilter;
use crate::publish::{PublishRequest, Publisher};
use crate::routes::Route;

/// The first wait before a publish the target broker could not take is
/// tried again.
const RETRY_INITIAL_MS: u64 = 100;
/// The longest wait between tries.
const RETRY_MAX_MS: u64 = 5_000;

/// A route as `/connections/status` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct RouteStatus {
    /// The route's name.
    pub name: String,
    /// The source channel's address and document id.
    pub from: Value,
    /// The target channel's address and document id.
    pub to: Value,
    /// `subscribing`, `active`, `waiting` (the source broker is not
    /// connected), `retrying` (the target broker cannot take the oldest
    /// message yet), `stopping` or `stopped`.
    pub state: &'static str,
    /// Messages published on the target.
    pub forwarded: u64,
    /// Messages received and waiting their turn, the one in hand included.
    pub pending: usize,
    /// Publishes tried again because the target broker was down or did
    /// not answer in time.
    pub retries: u64,
    /// Messages not forwarded, by reason (`validation`, `forbidden`,
    /// `parameter`, `broker_refused`, `overflow`, …); each is in the call
    /// log, and none is tried again.
    pub failed: BTreeMap<&'static str, u64>,
    /// Why the latest message was not forwarded (or not yet), or why the
    /// subscription stopped.
    pub last_error: Option<String>,
    /// When the latest message was forwarded.
    pub last_forwarded_at: Option<DateTime<Utc>>,
}

/// Asks for the route's status.
#[derive(Message)]
#[rtype(result = "RouteStatus")]
pub struct GetRouteStatus;

/// Stops taking messages and forwards those in hand; replies once none is
/// left. The gateway sends it when it stops, and gives up waiting at its
/// deadline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// One route's actor.
pub struct Router {
    route: Route,
    publisher: Publisher,
    connection: Addr<BrokerConnection>,
    filter: TopicFilter,
    consumer_id: u64,
    status: RouteStatus,
    /// Messages received and not yet forwarded, oldest first.
    pending: VecDeque<Delivery>,
    /// Whether the oldest pending message is being published.
    busy: bool,
    /// Waiting for the pending messages to be forwarded before the gateway
    /// stops; [`Drain`]'s handler holds the receivers.
    drained_tx: Vec<oneshot::Sender<()>>,
    /// Whether the route still consumes its source.
    subscribed: bool,
}

impl Router {
    /// The actor of `route`, taking its source through `filter` on
    /// `connection`.
    pub fn new(
        route: Route,
        publisher: Publisher,
        connection: Addr<BrokerConnection>,
        filter: TopicFilter,
    ) -> Self {
        let end = |channel: &crate::catalog::ChannelEntry| {
            serde_json::json!({
                "document_id": channel.row.document_id,
                "channel_id": channel.id,
                "address": channel.row.address,
            })
        };
        let status = RouteStatus {
            name: route.name.clone(),
            from: end(&route.from),
            to: end(&route.to),
            state: "subscribing",
            forwarded: 0,
            pending: 0,
            retries: 0,
            failed: BTreeMap::new(),
            last_error: None,
            last_forwarded_at: None,
        };
        Self {
            route,
            publisher,
            connection,
            filter,
            consumer_id: next_consumer_id(),
            status,
            pending: VecDeque::new(),
            busy: false,
            drained_tx: Vec::new(),
            subscribed: true,
        }
    }

    /// Counts a message that will not be forwarded.
    fn count_failure(&mut self, kind: &'static str, error: String) {
        *self.status.failed.entry(kind).or_default() += 1;
        tracing::debug!(route = %self.route.name, kind, %error, "message not forwarded");
        self.status.last_error = Some(error);
    }

    /// Counts and records a message that will not be forwarded and never
    /// reached the publish path (a parameter it cannot fill, no room).
    fn failed(&mut self, delivery: &Delivery, kind: &'static str, error: String) {
        let detail = format!("route `{}`: {error}", self.route.name);
        let mut record = CallRecord::failure(&self.route.to, "route", "rejected", kind, detail);
        record.address = Some(delivery.topic.to_string());
        record.payload_bytes = delivery.payload_bytes as i64;
        self.publisher.call_log().record(record);
        self.count_failure(kind, error);
    }

    /// The target's publish request for `delivery`; none when its address
    /// lacks a value the target needs.
    fn request(&self, delivery: &Delivery) -> Result<PublishRequest, String> {
        let captured = self
            .route
            .from
            .address
            .capture(&delivery.topic)
            .ok_or_else(|| format!("address `{}` is not the source channel's", delivery.topic))?;
        let values = self.route.target_values(&captured).ok_or_else(|| {
            format!(
                "address `{}` gives no value for the target's parameters",
                delivery.topic
            )
        })?;
        let parameters: Map<String, Value> = values
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        // The gateway's own headers (such as Kafka's `stepflow-address`)
        // describe the source, not the target.
        let headers: Map<String, Value> = delivery
            .headers
            .iter()
            .filter(|(name, _)| !name.starts_with("stepflow-"))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Ok(PublishRequest {
            channel_id: self.route.to.id.to_string(),
            message_data: (*delivery.payload).clone(),
            parameters: Some(parameters),
            message_id: None,
            headers: (!headers.is_empty()).then_some(headers),
        })
    }

    /// Starts forwarding the oldest pending message unless one is in hand;
    /// tells drain waiters when nothing is left.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.status.pending = self.pending.len();
        if self.busy {
            return;
        }
        if self.pending.is_empty() {
            for drained in self.drained_tx.drain(..) {
                let _ = drained.send(());
            }
            return;
        }
        self.busy = true;
        self.forward(1, ctx);
    }

    /// Settles the oldest pending message and goes on with the next.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        if let Some(settle) = self.pending.pop_front().and_then(|d| d.settle) {
            settle.done();
        }
        self.busy = false;
        self.pump(ctx);
    }

    /// Publishes the oldest pending message on the target. A target broker
    /// that is down or slow is tried again, with backoff, until it takes
    /// the message or the route stops.
    fn forward(&mut self, attempt: u32, ctx: &mut Context<Self>) {
        let Some(delivery) = self.pending.front() else {
            self.busy = false;
            return;
        };
        let request = match self.request(delivery) {
            Ok(request) => request,
            Err(error) => {
                let delivery = delivery.clone();
                self.failed(&delivery, "parameter", error);
                return self.finish(ctx);
            }
        };
        let (publisher, route) = (self.publisher.clone(), self.route.clone());
        let publish = async move {
            let raw = route.to_is_raw.then_some(route.to.as_ref());
            publisher
                .publish_as(request, &route.principal, route.validation, raw)
                .await
        };
        ctx.spawn(publish.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(_) => {
                    act.status.forwarded += 1;
                    act.status.last_forwarded_at = Some(Utc::now());
                    act.status.state = act.running_state();
                }
                Err(failure) if failure.error.is_transient() => {
                    return act.retry(attempt, failure.error.to_string(), ctx);
                }
                Err(failure) => {
                    // The publish path has written its own record of it.
                    act.count_failure(failure.error.kind(), failure.error.to_string());
                }
            }
            act.finish(ctx);
        }));
    }

    /// Tries the oldest pending message again after a delay, unless the
    /// route is stopping: then it stays unsettled, and the source broker
    /// keeps it (AMQP, Kafka).
    fn retry(&mut self, attempt: u32, error: String, ctx: &mut Context<Self>) {
        self.status.retries += 1;
        self.status.last_error = Some(error);
        if self.status.state == "stopping" {
            self.busy = false;
            self.pending.clear();
            return self.pump(ctx);
        }
        self.status.state = "retrying";
        let delay = backoff::delay(attempt, RETRY_INITIAL_MS, RETRY_MAX_MS);
        ctx.run_later(delay, move |act, ctx| act.forward(attempt + 1, ctx));
    }

    /// Leaves the source's subscription, once.
    fn unsubscribe(&mut self) {
        if std::mem::take(&mut self.subscribed) {
            self.connection.do_send(Unsubscribe {
                filter: self.filter.clone(),
                consumer_id: self.consumer_id,
            });
        }
    }

    fn running_state(&self) -> &'static str {
        match self.status.state {
            "stopping" | "stopped" => self.status.state,
            _ => "active",
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let consumer = ConsumerAddr {
            deliveries: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            missed: None,
            settles: true,
            channel: ChannelTag::of(&self.route.from),
        };
        let mut subscribe = Subscribe::to_channel(
            &self.route.from,
            self.filter.clone(),
            self.consumer_id,
            consumer,
            None,
        );
        // At QoS 1 an MQTT broker keeps what arrives for the route while
        // the gateway is disconnected, and sends it when the session
        // resumes.
        subscribe.options.qos = subscribe.options.qos.max(1);
        let request = self.connection.send(subscribe);
        ctx.wait(request.into_actor(self).map(|result, act, _ctx| {
            act.status.state = "active";
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "the broker connection is gone".to_owned(),
            };
            // The connection keeps the subscription and makes it at the
            // broker once it connects.
            act.status.last_error = Some(format!("subscribing: {error}"));
            tracing::warn!(route = %act.route.name, %error, "route subscription not confirmed");
        }));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.pending.is_empty() {
            let left = self.pending.len();
            tracing::warn!(route = %self.route.name, left, "route stopped with messages not forwarded");
        }
        self.unsubscribe();
    }
}

impl Handler<Delivery> for Router {
    type Result = ();

    /// Queues the message behind those pending. Beyond the route's
    /// `max_pending` it is refused, counted and recorded; one with a
    /// source acknowledgement goes back to its broker instead of being
    /// settled.
    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        if self.status.state == "stopping" {
            return;
        }
        if self.pending.len() >= self.route.max_pending {
            let error = format!(
                "{} messages already wait for the target, the most the route holds",
                self.pending.len()
            );
            return self.failed(&delivery, "overflow", error);
        }
        self.pending.push_back(delivery);
        self.pump(ctx);
    }
}

impl Handler<SubscriptionEnded> for Router {
    type Result = ();

    fn handle(&mut self, ended: SubscriptionEnded, _ctx: &mut Self::Context) {
        self.status.state = "stopped";
        self.status.last_error = Some(ended.reason);
    }
}

impl Handler<GetRouteStatus> for Router {
    type Result = ResponseFuture<RouteStatus>;

    /// The route's counts; an `active` route whose source broker is not
    /// connected is `waiting`, with the connection's last error.
    fn handle(&mut self, _msg: GetRouteStatus, _ctx: &mut Self::Context) -> Self::Result {
        let mut status = self.status.clone();
        let source = self.connection.send(GetStatus);
        Box::pin(async move {
            let Ok(connection) = source.await else {
                return status;
            };
            if status.state == "active" && connection.state != ConnectionState::Connected {
                status.state = "waiting";
                let reason = connection.last_error.unwrap_or_else(|| "connecting".into());
                status.last_error = Some(format!("source broker: {reason}"));
            }
            status
        })
    }
}

impl Handler<Drain> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        self.status.state = "stopping";
        self.unsubscribe();
        let (drained_tx, drained) = oneshot::channel();
        self.drained_tx.push(drained_tx);
        self.pump(ctx);
        let name = self.route.name.clone();
        Box::pin(async move {
            let _ = drained.await;
            tracing::debug!(route = %name, took_ms = started.elapsed().as_millis() as u64, "route drained");
        })
    }
}
