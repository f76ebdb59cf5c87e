//! BrokerConnection: one live connection to one broker, with its state,
//! its reconnect loop and its channel subscriptions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::log_writer::ConnectionEvent;
use super::subscription::{
    AddConsumer, ChannelSubscription, Delivery, EndSubscription, Receipts, RemoveConsumer,
};
use crate::broker::{
    adapter_for, redact_url, AdapterContext, AdapterEvent, BrokerError, EventsTx, Outbound,
    ProtocolAdapter, SubscribeOptions, TopicFilter,
};
use crate::config::BrokersConfig;

mod messages;

pub use messages::{
    BrokerSpec, ConnectionState, ConnectionStatus, Disconnect, GetSpec, GetStatus, Publish,
    StopHolding, Subscribe, Unsubscribe,
};

/// Runs an adapter call so that a panic inside a broker's client library
/// fails that call only, instead of stopping the connection actor.
async fn guarded<F>(call: F) -> Result<(), BrokerError>
where
    F: std::future::Future<Output = Result<(), BrokerError>>,
{
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!("broker client failed unexpectedly on a call");
            Err(BrokerError::Refused(
                "the broker client failed on this request".into(),
            ))
        }
    }
}

/// A connection that lasted this long counts as stable when it is lost.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// Added to the connect timeout for a broker-side subscribe.
const SUBSCRIBE_GRACE: Duration = Duration::from_secs(10);

/// Events an adapter may queue before it has to wait for the actor.
const EVENTS_CAPACITY: usize = 4_096;

struct SubscriptionSlot {
    subscription: Addr<ChannelSubscription>,
    consumers: usize,
    options: SubscribeOptions,
    /// The outcome of the broker-side subscribe (`None` while it runs);
    /// consumers that arrive meanwhile wait on a receiver.
    established: SubscribedTx,
}

/// Where the outcome of a broker-side subscribe is published; waiting
/// consumers hold receivers.
type SubscribedTx = watch::Sender<Option<Result<(), BrokerError>>>;

/// One connection to one broker.
pub struct BrokerConnection {
    /// The last connection event recorded, so that repeats are not.
    last_event: Option<(&'static str, Option<String>)>,
    /// Publishes handed to the adapter and not yet answered.
    in_flight: u64,
    /// Where channel subscriptions record what they receive.
    receipts: Receipts,
    spec: BrokerSpec,
    settings: BrokersConfig,
    adapter: Result<Arc<dyn ProtocolAdapter>, BrokerError>,
    state: ConnectionState,
    since: DateTime<Utc>,
    last_error: Option<String>,
    reconnects: u64,
    failed_attempts: u32,
    /// Connections in a row that were lost soon after they were made: a
    /// broker that accepts and then drops the connection is retried with a
    /// growing delay too.
    short_lived: u32,
    connected_at: Option<std::time::Instant>,
    subscriptions: HashMap<TopicFilter, SubscriptionSlot>,
    /// Given to the adapter at each connect; this actor holds the receiver
    /// as its stream.
    events_tx: Option<EventsTx>,
    /// Publishes waiting for the broker, oldest first.
    held: VecDeque<Held>,
    /// True while held publishes go out after a reconnect; new ones wait
    /// behind them, so that order is kept.
    draining: bool,
    /// Set once the gateway stops: a publish no longer waits for the
    /// broker to come back.
    stopping: bool,
}

/// A publish waiting for the broker to come back.
struct Held {
    message: Outbound,
    reply: oneshot::Sender<Result<(), BrokerError>>,
    deadline: Instant,
    /// Why its latest attempt failed, when it was tried.
    reason: Option<String>,
}

/// How often waiting publishes are checked for their deadline.
const HELD_SWEEP: Duration = Duration::from_millis(50);

impl BrokerConnection {
    /// A connection to `spec`; it connects once started.
    pub fn new(spec: BrokerSpec, settings: BrokersConfig, context: &AdapterContext) -> Self {
        let name = format!("stepflow-gateway broker {}", spec.id);
        let adapter = adapter_for(&spec, &name, context);
        let receipts = Receipts {
            call_log: context.call_log.clone(),
            broker: spec.id.clone(),
            protocol: crate::metrics::protocol_label(&spec.protocol),
        };
        Self {
            last_event: None,
            in_flight: 0,
            receipts,
            spec,
            settings,
            adapter,
            state: ConnectionState::Connecting,
            since: Utc::now(),
            last_error: None,
            reconnects: 0,
            failed_attempts: 0,
            short_lived: 0,
            connected_at: None,
            subscriptions: HashMap::new(),
            events_tx: None,
            held: VecDeque::new(),
            draining: false,
            stopping: false,
        }
    }

    /// Records a connection event, unless it repeats the last one (a
    /// broker that stays down is recorded once, not at every attempt).
    fn log_event(&mut self, event: &'static str, detail: Option<String>) {
        let key = (event, detail.clone());
        if self.last_event.as_ref() == Some(&key) {
            return;
        }
        self.last_event = Some(key);
        self.receipts.call_log.connection_event(ConnectionEvent {
            broker_id: self.spec.id.clone(),
            protocol: self.spec.protocol.clone(),
            url: redact_url(&self.spec.url),
            event,
            detail,
            at: Utc::now(),
        });
    }

    fn set_state(&mut self, state: ConnectionState, error: Option<String>) {
        if state != self.state {
            self.since = Utc::now();
        }
        self.state = state;
        if error.is_some() {
            self.last_error = error;
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let (Ok(adapter), Some(events_tx)) = (self.adapter.clone(), self.events_tx.clone()) else {
            return;
        };
        let timeout = Duration::from_millis(self.settings.connect_timeout_ms);
        let attempt = async move {
            match tokio::time::timeout(timeout, guarded(adapter.connect(events_tx))).await {
                Ok(result) => result,
                Err(_) => Err(BrokerError::Unavailable(format!(
                    "connect timed out after {} ms",
                    timeout.as_millis()
                ))),
            }
        };
        ctx.wait(
            attempt
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(()) => act.on_connected(ctx),
                    Err(error) => act.on_connect_failed(error, ctx),
                }),
        );
    }

    /// Re-establishes every subscription before the connection counts as
    /// connected, so that nothing published after "connected" can be missed
    /// by a subscriber; the actor takes no message meanwhile.
    fn on_connected(&mut self, ctx: &mut Context<Self>) {
        let Ok(adapter) = self.adapter.clone() else {
            return;
        };
        let slots: Vec<(TopicFilter, SubscribeOptions, SubscribedTx)> = self
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), s.options.clone(), s.established.clone()))
            .collect();
        let resubscribe = async move {
            for (filter, options, established) in slots {
                let outcome = guarded(adapter.subscribe(&filter, &options)).await;
                if let Err(error) = &outcome {
                    tracing::warn!(%filter, %error, "broker subscription failed after reconnect");
                }
                established.send_replace(Some(outcome));
            }
        };
        ctx.wait(resubscribe.into_actor(self).map(|(), act, ctx| {
            if act.failed_attempts > 0 || act.state == ConnectionState::Reconnecting {
                act.reconnects += 1;
            }
            act.failed_attempts = 0;
            act.set_state(ConnectionState::Connected, None);
            act.log_event("connected", None);
            act.connected_at = Some(std::time::Instant::now());
            tracing::info!(broker = %act.spec.id, url = %redact_url(&act.spec.url), "broker connected");
            act.drain(ctx);
        }));
    }

    /// Why publishes cannot go out now.
    fn unavailable(&self) -> String {
        self.last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into())
    }

    /// Holds a publish until the broker is back, within the configured
    /// time and number; fails it at once beyond them.
    fn hold(
        &mut self,
        message: Outbound,
        reason: Option<String>,
    ) -> ResponseFuture<Result<(), BrokerError>> {
        let wait = Duration::from_millis(self.settings.buffer_timeout_ms);
        let refuse = |reason: String| -> ResponseFuture<Result<(), BrokerError>> {
            Box::pin(std::future::ready(Err(BrokerError::Unavailable(reason))))
        };
        if wait.is_zero() {
            return refuse(reason.unwrap_or_else(|| self.unavailable()));
        }
        if self.stopping {
            return refuse(format!("the gateway is stopping: {}", self.unavailable()));
        }
        if self.held.len() >= self.settings.buffer_capacity {
            let waiting = self.held.len();
            return refuse(format!(
                "{waiting} publishes already wait for this broker, the most it holds: {}",
                self.unavailable()
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.held.push_back(Held {
            message,
            reply,
            deadline: Instant::now() + wait,
            reason,
        });
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(BrokerError::Unavailable(
                    "the broker connection stopped".into(),
                ))
            })
        })
    }

    /// Fails the held publishes whose time is up.
    fn expire_held(&mut self) {
        let now = Instant::now();
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            let Some(held) = self.held.pop_front() else {
                break;
            };
            let why = held.reason.clone().unwrap_or_else(|| self.unavailable());
            let reason = format!(
                "the broker stayed unavailable for {} ms: {why}",
                self.settings.buffer_timeout_ms
            );
            let _ = held.reply.send(Err(BrokerError::Unavailable(reason)));
        }
    }

    /// Sends the held publishes, in order, one at a time; those whose
    /// client has stopped waiting are dropped, not sent. When the broker
    /// proves unavailable again, the rest wait on, in order.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let ready = self.state == ConnectionState::Connected && !self.held.is_empty();
        let (Ok(adapter), true) = (self.adapter.clone(), ready) else {
            self.draining = false;
            return;
        };
        self.draining = true;
        let batch: VecDeque<Held> = self.held.drain(..).collect();
        let send = async move {
            let mut batch = batch;
            while let Some(held) = batch.pop_front() {
                if held.reply.is_closed() {
                    continue;
                }
                match guarded(adapter.publish(held.message.clone())).await {
                    Err(BrokerError::Unavailable(reason)) => {
                        let mut held = held;
                        held.reason = Some(reason);
                        batch.push_front(held);
                        break;
                    }
                    outcome => {
                        let _ = held.reply.send(outcome);
                    }
                }
            }
            batch
        };
        ctx.spawn(send.into_actor(self).map(|mut left, act, ctx| {
            if left.is_empty() {
                return act.drain(ctx);
            }
            left.append(&mut act.held);
            act.held = left;
            act.draining = false;
        }));
    }

    /// Fails what waited too long, and sends what waits while connected:
    /// publishes that found the connection gone before this actor heard of
    /// it, when it turns out to be fine after all.
    fn sweep_held(&mut self, ctx: &mut Context<Self>) {
        self.expire_held();
        if !self.draining {
            self.drain(ctx);
        }
    }

    fn on_connect_failed(&mut self, error: BrokerError, ctx: &mut Context<Self>) {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        let delay = self.backoff();
        tracing::warn!(broker = %self.spec.id, url = %redact_url(&self.spec.url), %error, retry_ms = delay.as_millis() as u64, "broker connection failed");
        self.set_state(ConnectionState::Reconnecting, Some(error.to_string()));
        let event = match is_auth_failure(&error.to_string()) {
            true => "auth_failed",
            false => "connect_failed",
        };
        self.log_event(event, Some(error.to_string()));
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// Capped exponential backoff with jitter.
    fn backoff(&self) -> Duration {
        let settings = &self.settings;
        crate::backoff::delay(
            self.failed_attempts,
            settings.reconnect_initial_ms,
            settings.reconnect_max_ms,
        )
    }

    fn subscribe_at_broker(&mut self, filter: TopicFilter, ctx: &mut Context<Self>) {
        let (Ok(adapter), Some(slot)) = (self.adapter.clone(), self.subscriptions.get(&filter))
        else {
            return;
        };
        let (options, established) = (slot.options.clone(), slot.established.clone());
        established.send_replace(None);
        let broker = self.spec.id.clone();
        ctx.spawn(
            async move {
                let outcome = guarded(adapter.subscribe(&filter, &options)).await;
                if let Err(error) = &outcome {
                    tracing::warn!(%broker, %filter, %error, "broker subscription failed");
                }
                established.send_replace(Some(outcome));
            }
            .into_actor(self),
        );
    }

    fn status(&self) -> ConnectionStatus {
        ConnectionStatus {
            broker_id: self.spec.id.clone(),
            protocol: self.spec.protocol.clone(),
            url: redact_url(&self.spec.url),
            state: self.state,
            since: self.since,
            last_error: self.last_error.clone(),
            reconnects: self.reconnects,
            subscriptions: self.subscriptions.len(),
            in_flight: self.in_flight,
            waiting: self.held.len(),
        }
    }
}

impl Actor for BrokerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Err(error) = &self.adapter {
            tracing::error!(broker = %self.spec.id, url = %redact_url(&self.spec.url), %error, "broker cannot be served");
            let message = error.to_string();
            self.set_state(ConnectionState::Failed, Some(message.clone()));
            self.log_event("failed", Some(message));
            return;
        }
        let (events_tx, events_rx) = mpsc::channel(EVENTS_CAPACITY);
        self.events_tx = Some(events_tx);
        ctx.add_stream(ReceiverStream::new(events_rx));
        ctx.run_interval(HELD_SWEEP, |act, ctx| act.sweep_held(ctx));
        self.connect(ctx);
    }
}

impl StreamHandler<AdapterEvent> for BrokerConnection {
    fn handle(&mut self, event: AdapterEvent, ctx: &mut Self::Context) {
        match event {
            AdapterEvent::Message(mut inbound) => {
                let via = inbound.via.take();
                let mut delivery = Delivery::from_inbound(inbound);
                if let Some(filter) = via {
                    // A subscription that has just ended takes nothing.
                    if let Some(slot) = self.subscriptions.get(&filter) {
                        slot.subscription.do_send(delivery);
                    }
                    return;
                }
                let settle = delivery.settle.take();
                for (filter, slot) in &self.subscriptions {
                    if filter.matches(&delivery.topic) {
                        let mut copy = delivery.clone();
                        copy.settle.clone_from(&settle);
                        slot.subscription.do_send(copy);
                    }
                }
                if let Some(settle) = settle {
                    settle.done();
                }
            }
            AdapterEvent::Disconnected(reason) => {
                if self.state != ConnectionState::Connected {
                    return;
                }
                tracing::warn!(broker = %self.spec.id, url = %redact_url(&self.spec.url), %reason, "broker connection lost");
                self.set_state(ConnectionState::Reconnecting, Some(reason.clone()));
                self.log_event("disconnected", Some(reason));
                let lasted = self.connected_at.map(|at| at.elapsed()).unwrap_or_default();
                self.short_lived = match lasted < STABLE_CONNECTION {
                    true => self.short_lived.saturating_add(1),
                    false => 0,
                };
                self.failed_attempts = 1 + self.short_lived;
                let delay = self.backoff();
                ctx.run_later(delay, |act, ctx| act.connect(ctx));
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // The actor holds a sender itself, so the stream only ends when the
        // actor is stopping anyway.
    }
}

impl Handler<Publish> for BrokerConnection {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    /// Publishes at once while connected; while the broker is down, or
    /// held publishes are still going out, the publish waits its turn. A
    /// publish that finds the connection gone before this actor has heard
    /// of it waits too, rather than failing.
    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let direct = self.state == ConnectionState::Connected && !self.draining;
        let adapter = match &self.adapter {
            Err(error) => return Box::pin(fut::ready(Err(error.clone()))),
            Ok(adapter) if direct && self.held.is_empty() => adapter.clone(),
            Ok(_) => return Box::pin(fut::wrap_future(self.hold(msg.0, None))),
        };
        let again = msg.0.clone();
        let sent = guarded(async move { adapter.publish(msg.0).await });
        self.in_flight += 1;
        Box::pin(sent.into_actor(self).then(move |outcome, act, _ctx| {
            act.in_flight -= 1;
            let next: ResponseFuture<Result<(), BrokerError>> = match outcome {
                Err(BrokerError::Unavailable(reason)) if act.settings.buffer_timeout_ms > 0 => {
                    act.hold(again, Some(reason))
                }
                other => Box::pin(std::future::ready(other)),
            };
            fut::wrap_future(next)
        }))
    }
}

impl Handler<Subscribe> for BrokerConnection {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    /// Replies once the broker-side subscription is in place, so that a
    /// consumer told "subscribed" misses nothing published afterwards; while
    /// the broker is down it replies at once, and the subscription is made
    /// on reconnect.
    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        if let Err(error) = &self.adapter {
            return Box::pin(std::future::ready(Err(error.clone())));
        }
        let is_new = !self.subscriptions.contains_key(&msg.filter);
        let slot = self
            .subscriptions
            .entry(msg.filter.clone())
            .or_insert_with(|| SubscriptionSlot {
                subscription: ChannelSubscription::new(
                    msg.filter.clone(),
                    self.settings.replay_messages,
                    self.receipts.clone(),
                )
                .start(),
                consumers: 0,
                options: msg.options,
                established: watch::channel(None).0,
            });
        slot.consumers += 1;
        slot.subscription.do_send(AddConsumer {
            consumer_id: msg.consumer_id,
            consumer: msg.consumer,
            resume_after: msg.resume_after,
        });
        let mut established = slot.established.subscribe();
        if self.state != ConnectionState::Connected {
            return Box::pin(std::future::ready(Ok(())));
        }
        if is_new {
            self.subscribe_at_broker(msg.filter, ctx);
        }
        // A broker-side subscribe may take a few round trips (a Kafka group
        // waits for its partitions), so it gets more than one connect time.
        let timeout = Duration::from_millis(self.settings.connect_timeout_ms) + SUBSCRIBE_GRACE;
        Box::pin(async move {
            let outcome =
                tokio::time::timeout(timeout, established.wait_for(Option::is_some)).await;
            match outcome {
                Ok(Ok(done)) => done.clone().unwrap_or(Ok(())),
                Ok(Err(_)) => Err(BrokerError::Unavailable("broker connection stopped".into())),
                Err(_) => Err(BrokerError::Timeout(timeout.as_millis() as u64)),
            }
        })
    }
}

impl Handler<Unsubscribe> for BrokerConnection {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) {
        let Some(slot) = self.subscriptions.get_mut(&msg.filter) else {
            return;
        };
        slot.subscription.do_send(RemoveConsumer {
            consumer_id: msg.consumer_id,
        });
        slot.consumers = slot.consumers.saturating_sub(1);
        if slot.consumers > 0 {
            return;
        }
        // Dropping the last address stops the subscription actor.
        self.subscriptions.remove(&msg.filter);
        let (Ok(adapter), ConnectionState::Connected) = (self.adapter.clone(), self.state) else {
            return;
        };
        let filter = msg.filter;
        ctx.spawn(
            async move {
                if let Err(error) = guarded(adapter.unsubscribe(&filter)).await {
                    tracing::debug!(%filter, %error, "broker unsubscribe failed");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<StopHolding> for BrokerConnection {
    type Result = ();

    fn handle(&mut self, _msg: StopHolding, _ctx: &mut Self::Context) {
        self.stopping = true;
        let unavailable = self.unavailable();
        for held in self.held.drain(..) {
            let why = held.reason.unwrap_or_else(|| unavailable.clone());
            let reason = format!("the gateway is stopping: {why}");
            let _ = held.reply.send(Err(BrokerError::Unavailable(reason)));
        }
    }
}

impl Handler<GetStatus> for BrokerConnection {
    type Result = ConnectionStatus;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> ConnectionStatus {
        self.status()
    }
}

impl Handler<GetSpec> for BrokerConnection {
    type Result = MessageResult<GetSpec>;

    fn handle(&mut self, _msg: GetSpec, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.spec.clone())
    }
}

impl Handler<Disconnect> for BrokerConnection {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Disconnect, _ctx: &mut Self::Context) -> Self::Result {
        for slot in self.subscriptions.values() {
            slot.subscription.do_send(EndSubscription {
                reason: msg.reason.clone(),
            });
        }
        let adapter = self.adapter.clone().ok();
        Box::pin(
            async move {
                if let Some(adapter) = adapter {
                    adapter.disconnect().await;
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| {
                act.subscriptions.clear();
                tracing::info!(broker = %act.spec.id, "broker disconnected");
                act.log_event("disconnected", Some(msg.reason));
                ctx.stop();
            }),
        )
    }
}

/// Whether a connection error says the broker refused the credentials.
fn is_auth_failure(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    [
        "password",
        "not authorized",
        "not authorised",
        "access_refused",
        "access refused",
        "authentication",
        "authorization violation",
        "sasl",
        "401",
        "403",
    ]
    .iter()
    .any(|sign| error.contains(sign))
}
