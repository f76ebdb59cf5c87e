//! WebhookSession: one actor per webhook subscription. It consumes a
//! channel's deliveries like a WebSocket session and POSTs them, one at a
//! time and in order, to the callback URL. A failed attempt is retried with
//! capped backoff; a message that exhausts its attempts, or that the
//! endpoint refuses, is recorded as failed in the call log; a subscription
//! whose messages keep failing is paused until it is resumed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use entity::webhook_subscriptions;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::Value;

use super::connection::{BrokerConnection, Subscribe, Unsubscribe};
use super::frames::message_frame;
use super::stats::Observed;
use super::subscription::{ChannelTag, ConsumerAddr, Delivery, MissedEvents, SubscriptionEnded};
use super::ws_session::next_consumer_id;
use super::{CallLog, CallRecord};
use crate::auth::{AccessRequest, Action, Auth, Principal};
use crate::broker::TopicFilter;
use crate::catalog::ChannelEntry;
use crate::config::WebhooksConfig;
use crate::ids::MessageId;
use crate::webhook::{sign, PublicOnlyResolver, Verdict};

/// Headers of every delivery.
pub mod headers {
    /// The same for every attempt of one message: endpoints drop repeats.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    /// The subscription's id.
    pub const SUBSCRIPTION: &str = "stepflow-subscription-id";
    /// Unix seconds when the attempt was signed.
    pub const TIMESTAMP: &str = "stepflow-timestamp";
    /// `sha256=<hex>`, present when the subscription has a secret.
    pub const SIGNATURE: &str = "stepflow-signature";
    /// 1 for the first attempt of a message.
    pub const ATTEMPT: &str = "stepflow-attempt";
}

/// What each delivery is checked against: the access rules in force, and
/// the subscription's owner.
pub struct Access {
    /// The gateway's authentication and rules.
    pub auth: Arc<Auth>,
    /// The principal that created the subscription; none when
    /// authentication was off then.
    pub owner: Option<Principal>,
    /// The name of the channel's document.
    pub document: String,
}

impl Access {
    /// Whether the owner may still receive `message` with these parameter
    /// values: rules change while a subscription lives.
    fn check(
        &self,
        channel: &ChannelEntry,
        message: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        if !self.auth.enabled() {
            return Ok(());
        }
        let Some(owner) = &self.owner else {
            return Err("the subscription was made while authentication was off and has no owner to authorize; create it again".into());
        };
        let request = AccessRequest {
            action: Action::Subscribe,
            document: &self.document,
            address: &channel.row.address,
            parameters,
            messages: &[message],
        };
        self.auth
            .authorize(owner, &request)
            .map_err(|e| e.to_string())
    }
}

/// What a subscription's actor needs to start.
pub struct WebhookParts {
    /// Who may receive what.
    pub access: Access,
    /// The stored subscription.
    pub row: webhook_subscriptions::Model,
    /// Its channel.
    pub channel: Arc<ChannelEntry>,
    /// Parameter values that narrow it.
    pub fixed: BTreeMap<String, String>,
    /// The filter those values give.
    pub filter: TopicFilter,
    /// The connection of the channel's broker.
    pub connection: Addr<BrokerConnection>,
    /// Delivery settings.
    pub settings: Arc<WebhooksConfig>,
    /// Where failed deliveries are recorded.
    pub call_log: CallLog,
    /// Where a pause is recorded.
    pub db: DatabaseConnection,
}

/// A subscription as the API shows it: the stored fields and live counts.
/// The secret is never part of it.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    /// The subscription's id.
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The channel's document.
    pub document_id: String,
    /// Where messages are POSTed.
    pub callback_url: String,
    /// Parameter values that narrow the subscription.
    pub parameters: Value,
    /// Whether deliveries are signed.
    pub signed: bool,
    /// `active`, `paused` or `unavailable` (its channel is not loaded).
    pub state: &'static str,
    /// Why it is paused or unavailable.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The principal that created it, when authentication was on.
    pub owner: Option<String>,
    /// Messages waiting, the one being attempted included.
    pub queued: usize,
    /// Messages the endpoint took since the gateway started.
    pub delivered: u64,
    /// Messages recorded as failed since the gateway started.
    pub failed: u64,
    /// Attempts retried since the gateway started.
    pub retries: u64,
    /// Why the latest attempt failed.
    pub last_error: Option<String>,
    /// When the endpoint last took a message.
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl WebhookView {
    /// The view of a subscription with no running actor.
    pub fn stored(row: &webhook_subscriptions::Model, state: &'static str) -> Self {
        Self {
            id: row.id.clone(),
            channel_id: row.channel_id.clone(),
            document_id: row.document_id.clone(),
            callback_url: row.callback_url.clone(),
            parameters: row.parameters.clone(),
            signed: row.secret.is_some(),
            state,
            reason: row.paused_reason.clone(),
            created_at: row.created_at,
            owner: row.owner.clone(),
            queued: 0,
            delivered: 0,
            failed: 0,
            retries: 0,
            last_error: None,
            last_delivered_at: None,
        }
    }
}

/// Asks for the subscription's view.
#[derive(Message)]
#[rtype(result = "WebhookView")]
pub struct GetView;

/// Resumes a paused subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// Answers once the subscription is in place at the broker (or has failed,
/// or is paused), so that a creator told "created" misses nothing
/// published afterwards.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AwaitSubscribed;

/// Ends the subscription; its messages are no longer taken.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Told to the owner when a session has stopped on its own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    /// The subscription's id.
    pub id: String,
}

/// One message waiting for the endpoint.
struct Pending {
    delivery: Delivery,
    message: Option<String>,
    body: Bytes,
    key: String,
    attempts: u32,
}

/// One webhook subscription's deliveries.
pub struct WebhookSession {
    parts: WebhookParts,
    owner: Recipient<SessionEnded>,
    client: awc::Client,
    consumer_id: u64,
    queue: VecDeque<Pending>,
    /// True while an attempt, or the wait before a retry, is under way.
    busy: bool,
    paused: Option<String>,
    subscribed: bool,
    /// The latest event taken, to resume after when unpaused.
    last_event_id: Option<Arc<str>>,
    delivered: u64,
    failed: u64,
    retries: u64,
    failed_in_a_row: u32,
    last_error: Option<String>,
    last_delivered_at: Option<DateTime<Utc>>,
    stopping: bool,
    /// Whether the latest subscribe has been answered.
    settled: bool,
    /// Who waits for it.
    waiting: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl WebhookSession {
    /// Starts the subscription's actor; `owner` is told when it ends on its
    /// own (its channel went away).
    pub fn start(parts: WebhookParts, owner: Recipient<SessionEnded>) -> Addr<Self> {
        let client = http_client(&parts.settings);
        let paused = (parts.row.state == "paused")
            .then(|| parts.row.paused_reason.clone().unwrap_or_default());
        WebhookSession {
            parts,
            owner,
            client,
            consumer_id: next_consumer_id(),
            queue: VecDeque::new(),
            busy: false,
            paused,
            subscribed: false,
            last_event_id: None,
            delivered: 0,
            failed: 0,
            retries: 0,
            failed_in_a_row: 0,
            last_error: None,
            last_delivered_at: None,
            stopping: false,
            settled: false,
            waiting: Vec::new(),
        }
        .start()
    }

    fn subscribe(&mut self, ctx: &mut Context<Self>) {
        let consumer = ConsumerAddr {
            deliveries: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            missed: Some(ctx.address().recipient()),
            settles: false,
            channel: ChannelTag::of(&self.parts.channel),
        };
        let resume = self.last_event_id.as_deref().map(str::to_owned);
        let subscribe = Subscribe::to_channel(
            &self.parts.channel,
            self.parts.filter.clone(),
            self.consumer_id,
            consumer,
            resume,
        );
        self.subscribed = true;
        self.settled = false;
        let request = self.parts.connection.send(subscribe);
        ctx.spawn(request.into_actor(self).map(|result, act, _ctx| {
            act.settled = true;
            for waiter in act.waiting.drain(..) {
                let _ = waiter.send(());
            }
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "the broker connection is gone".to_owned(),
            };
            tracing::warn!(webhook = %act.parts.row.id, %error, "webhook cannot subscribe");
            act.last_error = Some(format!("cannot subscribe: {error}"));
        }));
    }

    fn unsubscribe(&mut self) {
        if std::mem::take(&mut self.subscribed) {
            self.parts.connection.do_send(Unsubscribe {
                filter: self.parts.filter.clone(),
                consumer_id: self.consumer_id,
            });
        }
    }

    /// Starts the next attempt unless one is under way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.paused.is_some() {
            return;
        }
        let Some(next) = self.queue.front_mut() else {
            return;
        };
        next.attempts += 1;
        self.busy = true;
        let Some(next) = self.queue.front() else {
            return;
        };
        let (request, body) = (self.request(next), next.body.clone());
        let attempt = async move {
            let mut response = request.send_body(body).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Reading the answer lets the connection be reused; its content
            // does not matter.
            let drain = response.body().limit(64 * 1024);
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            Ok::<_, String>((status, retry_after))
        };
        ctx.spawn(attempt.into_actor(self).map(|outcome, act, ctx| {
            let verdict = match outcome {
                Ok((status, retry_after)) => {
                    if status < 200 {
                        // The final answer may still come on that connection
                        // and be read as the next message's: a new client
                        // drops the connection with its pool.
                        act.client = http_client(&act.parts.settings);
                    }
                    Verdict::of_status(status, retry_after.as_deref())
                }
                Err(error) => Verdict::Retry {
                    reason: format!("the request failed: {error}"),
                    after: None,
                },
            };
            act.judge(verdict, ctx);
        }));
    }

    /// The signed POST of one message.
    fn request(&self, pending: &Pending) -> awc::ClientRequest {
        let settings = &self.parts.settings;
        let timestamp = Utc::now().timestamp();
        let request = self
            .client
            .post(self.parts.row.callback_url.as_str())
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .content_type("application/json")
            .insert_header((headers::SUBSCRIPTION, self.parts.row.id.as_str()))
            .insert_header((headers::IDEMPOTENCY_KEY, pending.key.as_str()))
            .insert_header((headers::TIMESTAMP, timestamp.to_string()))
            .insert_header((headers::ATTEMPT, pending.attempts.to_string()));
        match &self.parts.row.secret {
            Some(secret) => {
                let signature = sign(secret.as_bytes(), timestamp, &pending.body);
                request.insert_header((headers::SIGNATURE, signature))
            }
            None => request,
        }
    }

    fn judge(&mut self, verdict: Verdict, ctx: &mut Context<Self>) {
        let settings = self.parts.settings.clone();
        match verdict {
            Verdict::Delivered => {
                if let Some(done) = self.queue.pop_front() {
                    let seen = Observed::delivered(&self.parts.channel, "webhook", &done.delivery);
                    self.parts.call_log.observe(seen);
                }
                self.delivered += 1;
                self.failed_in_a_row = 0;
                self.last_delivered_at = Some(Utc::now());
                self.busy = false;
                self.pump(ctx);
            }
            Verdict::Retry { reason, after } => {
                let attempts = self.queue.front().map_or(0, |p| p.attempts);
                if attempts >= settings.max_attempts.max(1) {
                    return self.give_up(reason, ctx);
                }
                self.retries += 1;
                self.last_error = Some(reason);
                let backoff = || {
                    crate::backoff::delay(
                        attempts,
                        settings.retry_initial_ms,
                        settings.retry_max_ms,
                    )
                };
                let cap = Duration::from_millis(settings.retry_max_ms);
                let delay = after.map_or_else(backoff, |after| after.min(cap));
                ctx.run_later(delay, |act, ctx| {
                    act.busy = false;
                    act.pump(ctx);
                });
            }
            Verdict::Refused { reason } => self.give_up(reason, ctx),
        }
    }

    /// Records the front message as failed and moves on, or pauses when
    /// too many failed in a row.
    fn give_up(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.busy = false;
        let Some(pending) = self.queue.pop_front() else {
            return;
        };
        let attempts = pending.attempts;
        let error = format!("{reason} (after {attempts} attempt(s))");
        self.record_failure(
            &pending.delivery,
            pending.message.as_deref(),
            "webhook",
            error,
        );
        self.failed_in_a_row += 1;
        self.last_error = Some(reason.clone());
        if self.failed_in_a_row >= self.parts.settings.pause_after_failures.max(1) {
            let n = self.failed_in_a_row;
            self.pause(
                format!("{n} messages in a row failed; the last: {reason}"),
                ctx,
            );
        } else {
            self.pump(ctx);
        }
    }

    /// Stops taking messages until resumed; queued ones are kept.
    fn pause(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::warn!(webhook = %self.parts.row.id, %reason, "webhook subscription paused");
        self.unsubscribe();
        self.paused = Some(reason.clone());
        let (db, id) = (self.parts.db.clone(), self.parts.row.id.clone());
        ctx.spawn(
            async move {
                if let Err(error) = crate::store::webhooks::set_paused(&db, &id, Some(reason)).await
                {
                    tracing::error!(webhook = %id, %error, "cannot record the pause");
                }
            }
            .into_actor(self),
        );
    }

    fn record_failure(
        &mut self,
        delivery: &Delivery,
        message: Option<&str>,
        kind: &'static str,
        error: String,
    ) {
        self.failed += 1;
        let mut record = self.failure_record(kind, error);
        record.message_id = message.and_then(|name| {
            let channel = &self.parts.channel;
            let found = channel.messages.iter().find(|m| m.row.name == name);
            found.map(|m| MessageId::from(m.id.as_str()))
        });
        record.address = Some(delivery.topic.to_string());
        record.payload_bytes = delivery.payload_bytes as i64;
        self.parts.call_log.record(record);
    }

    /// A call-log record of a failure of this subscription.
    fn failure_record(&self, kind: &'static str, error: String) -> CallRecord {
        let detail = format!("{}: {error}", self.parts.row.callback_url);
        CallRecord::failure(&self.parts.channel, "webhook", "failed", kind, detail)
    }

    /// The body POSTed for one message.
    fn body(&self, frame: Value, key: &str) -> Bytes {
        let mut body = match frame {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        body.remove("type");
        body.insert("id".into(), key.into());
        body.insert("subscription_id".into(), self.parts.row.id.clone().into());
        let channel = self.parts.channel.row.name.clone();
        body.insert("channel".into(), channel.into());
        Bytes::from(Value::Object(body).to_string())
    }

    fn view(&self) -> WebhookView {
        let mut view = WebhookView::stored(&self.parts.row, "active");
        if let Some(reason) = &self.paused {
            view.state = "paused";
            view.reason = Some(reason.clone());
        } else {
            view.reason = None;
        }
        view.queued = self.queue.len();
        view.delivered = self.delivered;
        view.failed = self.failed;
        view.retries = self.retries;
        view.last_error = self.last_error.clone();
        view.last_delivered_at = self.last_delivered_at;
        view
    }
}

fn http_client(settings: &WebhooksConfig) -> awc::Client {
    let connector =
        awc::Connector::new().timeout(Duration::from_millis(settings.timeout_ms.max(1)));
    let builder = awc::Client::builder().disable_redirects();
    if settings.allow_private_targets {
        return builder.connector(connector).finish();
    }
    let resolver = actix_tls::connect::Resolver::custom(PublicOnlyResolver);
    let tcp = actix_tls::connect::Connector::new(resolver).service();
    builder.connector(connector.connector(tcp)).finish()
}

impl Actor for WebhookSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.paused.is_none() {
            self.subscribe(ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.unsubscribe();
        if !self.stopping {
            self.owner.do_send(SessionEnded {
                id: self.parts.row.id.clone(),
            });
        }
    }
}

impl Handler<Delivery> for WebhookSession {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        let Some(frame) = message_frame(&self.parts.channel, &self.parts.fixed, &delivery) else {
            return;
        };
        self.last_event_id.clone_from(&delivery.event_id);
        let message = frame["message"].as_str().map(str::to_owned);
        let parameters: BTreeMap<String, String> =
            serde_json::from_value(frame["parameters"].clone()).unwrap_or_default();
        let name = message.as_deref().unwrap_or_default();
        if let Err(reason) = self
            .parts
            .access
            .check(&self.parts.channel, name, &parameters)
        {
            self.record_failure(&delivery, message.as_deref(), "forbidden", reason);
            return;
        }
        if self.queue.len() >= self.parts.settings.queue_capacity.max(1) {
            let capacity = self.queue.len();
            let error = format!("the delivery queue is full ({capacity} messages waiting)");
            self.record_failure(&delivery, message.as_deref(), "queue-full", error);
            return;
        }
        let event = delivery.event_id.as_deref().unwrap_or_default();
        let key = format!("{}:{event}", self.parts.row.id);
        let body = self.body(frame, &key);
        self.queue.push_back(Pending {
            delivery,
            message,
            body,
            key,
            attempts: 0,
        });
        self.pump(ctx);
    }
}

impl Handler<MissedEvents> for WebhookSession {
    type Result = ();

    /// On resume, messages that arrived while paused and are no longer
    /// buffered cannot be delivered; one record says so.
    fn handle(&mut self, missed: MissedEvents, _ctx: &mut Self::Context) {
        let error = format!(
            "messages after event {} arrived while the subscription was paused \
             and are no longer buffered",
            missed.last_event_id
        );
        let record = self.failure_record("missed", error);
        self.parts.call_log.record(record);
    }
}

impl Handler<SubscriptionEnded> for WebhookSession {
    type Result = ();

    fn handle(&mut self, ended: SubscriptionEnded, ctx: &mut Self::Context) {
        tracing::info!(webhook = %self.parts.row.id, reason = %ended.reason, "webhook subscription ended");
        self.subscribed = false;
        ctx.stop();
    }
}

impl Handler<GetView> for WebhookSession {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _msg: GetView, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.view())
    }
}

impl Handler<Resume> for WebhookSession {
    type Result = ();

    fn handle(&mut self, _msg: Resume, ctx: &mut Self::Context) {
        if self.paused.take().is_none() {
            return;
        }
        self.failed_in_a_row = 0;
        self.parts.row.state = "active".into();
        self.parts.row.paused_reason = None;
        self.subscribe(ctx);
        self.pump(ctx);
    }
}

impl Handler<AwaitSubscribed> for WebhookSession {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: AwaitSubscribed, _ctx: &mut Self::Context) -> Self::Result {
        if self.settled || !self.subscribed {
            return Box::pin(std::future::ready(()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Stop> for WebhookSession {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        self.stopping = true;
        ctx.stop();
    }
}
