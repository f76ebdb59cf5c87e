//! LogWriter: persists call records in batched transactions without ever
//! slowing the path that produced them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde_json::Value;

use super::stats::{Kind, Observed, Stats};
use crate::config::CallLogConfig;
use crate::ids::{BrokerId, CallLogId, ChannelId, DocumentId, MessageId};
use crate::metrics::Metrics;
use crate::store;

/// One publish or receipt to be recorded in `message_call_logs`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CallRecord {
    /// The record's id, known to the caller before it is written.
    pub id: CallLogId,
    /// The channel's document, when the channel was known.
    pub document_id: Option<DocumentId>,
    /// The channel, when it was known.
    pub channel_id: Option<ChannelId>,
    /// The message definition, when one was selected.
    pub message_id: Option<MessageId>,
    /// The broker, when the call reached one.
    pub broker_id: Option<BrokerId>,
    /// The broker's protocol as a metrics label (not stored).
    pub protocol: &'static str,
    /// `publish`, `receive` or `webhook` (a delivery to a webhook).
    pub direction: &'static str,
    /// The concrete address, when it was resolved.
    pub address: Option<String>,
    /// `delivered`, `rejected` or `failed`.
    pub status: &'static str,
    /// A short reason kind such as `validation`.
    pub error_kind: Option<&'static str>,
    /// The reason in words.
    pub error: Option<String>,
    /// Time to the broker's acknowledgement, in microseconds.
    pub latency_us: Option<i64>,
    /// Payload size in bytes.
    pub payload_bytes: i64,
    /// The payload, kept only when the config says so.
    pub payload: Option<Value>,
    /// Headers sent with the message.
    pub headers: Option<Value>,
    /// When the call happened.
    pub created_at: DateTime<Utc>,
}

impl CallRecord {
    /// A record of something on `channel` that did not happen: a message
    /// a route refused, a webhook delivery given up, a subscriber dropped.
    pub fn failure(
        channel: &crate::catalog::ChannelEntry,
        direction: &'static str,
        status: &'static str,
        kind: &'static str,
        error: String,
    ) -> Self {
        Self {
            id: CallLogId::generate(),
            document_id: Some(DocumentId::from(channel.row.document_id.clone())),
            channel_id: Some(channel.id.clone()),
            message_id: None,
            broker_id: channel
                .broker
                .as_ref()
                .map(|b| BrokerId::from(b.id.clone())),
            protocol: channel.protocol_label(),
            direction,
            address: None,
            status,
            error_kind: Some(kind),
            error: Some(error),
            latency_us: None,
            payload_bytes: 0,
            payload: None,
            headers: None,
            created_at: Utc::now(),
        }
    }
}

/// One event in the life of a broker connection, for `connection_events`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ConnectionEvent {
    /// The broker connection.
    pub broker_id: BrokerId,
    /// Its protocol.
    pub protocol: String,
    /// Its URL, password masked.
    pub url: String,
    /// `connected`, `disconnected`, `connect_failed` or `auth_failed`.
    pub event: &'static str,
    /// Why, for a disconnect or a failure.
    pub detail: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Writes what is buffered; replies once it is in the database.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Batches call records and writes them.
pub struct LogWriter {
    db: DatabaseConnection,
    settings: CallLogConfig,
    buffer: Vec<CallRecord>,
    events: Vec<ConnectionEvent>,
}

impl LogWriter {
    /// A writer into `db`; start it with [`LogWriter::spawn`].
    pub fn new(db: DatabaseConnection, settings: CallLogConfig) -> Self {
        let capacity = settings.batch_size;
        Self {
            db,
            settings,
            buffer: Vec::with_capacity(capacity),
            events: Vec::new(),
        }
    }

    /// Starts the writer, and the Stats actor beside it, on a thread of
    /// their own, and returns the handle producers use. Building a batch's
    /// statement takes milliseconds; on the thread of the broker
    /// connections it would hold every publish waiting meanwhile.
    pub fn spawn(self, stream_buffer: usize) -> CallLog {
        let capacity = self.settings.queue_capacity;
        let sample_rate = self.settings.sample_rate.clamp(0.0, 1.0);
        let keep_payloads = self.settings.keep_payloads;
        let bookkeeping = Arbiter::new().handle();
        // The mailbox has its capacity before any producer holds the
        // address: set from the writer's thread, it would come too late
        // for the first records.
        let (tx, rx) = actix::dev::channel::channel(capacity);
        bookkeeping.spawn_fn(move || {
            actix::spawn(Context::with_receiver(rx).into_future(self));
        });
        let addr = Addr::new(tx);
        let stats = Stats::start_in_arbiter(&bookkeeping, move |_| Stats::new(stream_buffer));
        CallLog {
            addr,
            dropped: Arc::new(AtomicU64::new(0)),
            successes: Arc::new(AtomicU64::new(0)),
            sample_rate,
            keep_payloads,
            stats,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Writes the buffer; the actor takes no new record until it is done,
    /// so records queue in the bounded mailbox meanwhile.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.buffer.is_empty() && self.events.is_empty() {
            return;
        }
        let batch = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.settings.batch_size),
        );
        let events = std::mem::take(&mut self.events);
        let db = self.db.clone();
        let count = batch.len();
        ctx.wait(
            async move {
                if let Err(error) = store::call_logs::insert_batch(&db, batch).await {
                    tracing::error!(%error, records = count, "call log batch could not be written");
                }
                if let Err(error) = store::connection_events::insert_batch(&db, events).await {
                    tracing::error!(%error, "connection events could not be written");
                }
            }
            .into_actor(self),
        );
    }

    /// Deletes log rows past their age or beyond their count; the writer
    /// takes no record meanwhile.
    fn prune(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let age =
            chrono::Duration::seconds(self.settings.retention_secs.min(i64::MAX as u64) as i64);
        let cutoff = Utc::now() - age;
        let max_rows = self.settings.max_rows;
        ctx.wait(
            async move {
                use entity::{connection_events, message_call_logs};
                let calls = store::retention::prune::<message_call_logs::Entity>(
                    &db,
                    message_call_logs::Column::CreatedAt,
                    cutoff,
                    max_rows,
                );
                let events = store::retention::prune::<connection_events::Entity>(
                    &db,
                    connection_events::Column::CreatedAt,
                    cutoff,
                    max_rows,
                );
                match (calls.await, events.await) {
                    (Ok(calls), Ok(events)) if calls + events > 0 => {
                        tracing::debug!(calls, events, "old log rows removed");
                    }
                    (Err(error), _) | (_, Err(error)) => {
                        tracing::warn!(%error, "old log rows could not be removed");
                    }
                    _ => {}
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for LogWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let interval = Duration::from_millis(self.settings.flush_interval_ms.max(1));
        ctx.run_interval(interval, |act, ctx| act.flush(ctx));
        let prune = Duration::from_millis(self.settings.prune_interval_ms.max(1));
        ctx.run_interval(prune, |act, ctx| act.prune(ctx));
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        self.flush(ctx);
        Running::Stop
    }
}

impl Handler<CallRecord> for LogWriter {
    type Result = ();

    fn handle(&mut self, record: CallRecord, ctx: &mut Self::Context) {
        self.buffer.push(record);
        if self.buffer.len() >= self.settings.batch_size {
            self.flush(ctx);
        }
    }
}

impl Handler<ConnectionEvent> for LogWriter {
    type Result = ();

    fn handle(&mut self, event: ConnectionEvent, _ctx: &mut Self::Context) {
        self.events.push(event);
    }
}

impl Handler<Flush> for LogWriter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Flush, ctx: &mut Self::Context) -> Self::Result {
        self.flush(ctx);
        // `flush` holds the actor with `wait`, so this runs after the write.
        Box::pin(async {}.into_actor(self))
    }
}

/// The producers' handle: hands records to the LogWriter without waiting.
#[derive(Clone)]
pub struct CallLog {
    addr: Addr<LogWriter>,
    dropped: Arc<AtomicU64>,
    /// Successful records seen, for sampling.
    successes: Arc<AtomicU64>,
    sample_rate: f64,
    keep_payloads: bool,
    stats: Addr<Stats>,
    metrics: Arc<Metrics>,
}

impl CallLog {
    /// Counts `record` in the statistics and metrics, and queues it for
    /// the database: failures always, successes at the configured sample
    /// rate. When the writer's queue is full the record is dropped and
    /// counted.
    pub fn record(&self, record: CallRecord) {
        self.observe(observed(&record));
        if record.error_kind.is_none() && !self.sampled() {
            return;
        }
        if self.addr.try_send(record).is_err() {
            self.metrics.call_log_dropped();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "call log queue full; records dropped");
            }
        }
    }

    /// Queues a connection event; dropped and counted like a record when
    /// the writer's queue is full.
    pub fn connection_event(&self, event: ConnectionEvent) {
        if self.addr.try_send(event).is_err() {
            self.metrics.call_log_dropped();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a subscriber of `channel` on `front` (`websocket`, `sse`)
    /// dropped for `reason` (a slow consumer), as a failed delivery.
    pub fn subscriber_dropped(
        &self,
        channel: &crate::catalog::ChannelEntry,
        front: &'static str,
        reason: String,
    ) {
        let record = CallRecord::failure(channel, front, "failed", "slow_consumer", reason);
        self.record(record);
    }

    /// Counts what happened to a message in the statistics and metrics.
    pub fn observe(&self, seen: Observed) {
        self.metrics.observe(&seen);
        self.stats.do_send(seen);
    }

    /// Whether the next successful record is written: exactly
    /// `sample_rate` of them are, spread evenly.
    fn sampled(&self) -> bool {
        if self.sample_rate >= 1.0 {
            return true;
        }
        let n = self.successes.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample_rate).floor() > (n * self.sample_rate).floor()
    }

    /// Whether records keep payloads.
    pub fn keeps_payloads(&self) -> bool {
        self.keep_payloads
    }

    /// The Stats actor.
    pub fn stats(&self) -> &Addr<Stats> {
        &self.stats
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far and waits for it.
    pub async fn flush(&self) {
        // A writer that has stopped has already flushed.
        let _ = self.addr.send(Flush).await;
    }
}

/// What a call record tells the statistics.
fn observed(record: &CallRecord) -> Observed {
    let reason = record.error_kind.unwrap_or("unknown");
    let kind = match (record.direction, record.status) {
        ("receive", _) => Kind::Received,
        ("webhook", "delivered") => Kind::Delivered("webhook"),
        ("webhook", _) => Kind::DeliveryFailed("webhook", reason),
        ("websocket", _) => Kind::DeliveryFailed("websocket", reason),
        ("sse", _) => Kind::DeliveryFailed("sse", reason),
        (_, "delivered") => Kind::Published,
        (_, status) => Kind::PublishFailed(status, reason),
    };
    Observed {
        kind,
        channel: record.channel_id.clone(),
        document: record.document_id.clone(),
        broker: record.broker_id.clone(),
        protocol: record.protocol,
        address: record.address.as_deref().map(Into::into),
        bytes: record.payload_bytes.max(0) as u64,
        payload: record.payload.clone(),
        latency_us: record.latency_us.map(|l| l.max(0) as u64),
    }
}
