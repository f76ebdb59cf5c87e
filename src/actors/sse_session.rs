//! SseSession: one actor per Server-Sent Events stream. It consumes a
//! channel's deliveries like a WebSocket session, writes each as an event
//! with its id, keeps idle proxies awake with heartbeats, and resumes after
//! `Last-Event-ID` from what the channel subscription still holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::connection::{BrokerConnection, Subscribe, Unsubscribe};
use super::frames::message_frame;
use super::log_writer::CallLog;
use super::stats::Observed;
use super::subscription::{ChannelTag, ConsumerAddr, Delivery, MissedEvents, SubscriptionEnded};
use super::ws_session::next_consumer_id;
use crate::broker::TopicFilter;
use crate::catalog::ChannelEntry;

/// Chunks of the event stream; the HTTP response body holds the receiver.
pub type ChunksTx = mpsc::Sender<Result<Bytes, actix_web::Error>>;

/// What a stream needs to start.
pub struct SseSessionParts {
    /// The channel subscribed to.
    pub channel: Arc<ChannelEntry>,
    /// Parameter values given by the client; others match any value.
    pub fixed: BTreeMap<String, String>,
    /// The filter those values give.
    pub filter: TopicFilter,
    /// The connection of the channel's broker.
    pub connection: Addr<BrokerConnection>,
    /// The `Last-Event-ID` the client resumes after, if it does.
    pub resume_after: Option<String>,
    /// How often a comment is sent on an idle stream.
    pub heartbeat: Duration,
    /// Turns true when the gateway shuts down; the gateway holds the sender.
    pub shutdown_rx: tokio::sync::watch::Receiver<bool>,
    /// When the client's token expires (Unix seconds): the stream ends
    /// then.
    pub expires_at: Option<i64>,
    /// Where deliveries are counted.
    pub call_log: CallLog,
}

/// One Server-Sent Events stream. A client that went away is noticed when
/// the server drops the response body, which it does once a write to the
/// socket fails: the first event or heartbeat after the client left is
/// still taken by the kernel, the next fails, so the subscription is
/// released within two heartbeat intervals of an idle stream.
pub struct SseSession {
    parts: SseSessionParts,
    consumer_id: u64,
    /// The response body's chunks; the body stream holds the receiver.
    chunks_tx: ChunksTx,
}

impl SseSession {
    /// Starts a stream writing into `chunks_tx`.
    pub fn start(parts: SseSessionParts, chunks_tx: ChunksTx) -> Addr<Self> {
        let shutdown = tokio_stream::wrappers::WatchStream::from_changes(parts.shutdown_rx.clone());
        SseSession::create(|ctx| {
            ctx.add_stream(shutdown);
            SseSession {
                parts,
                consumer_id: next_consumer_id(),
                chunks_tx,
            }
        })
    }

    /// Queues one event; a client that does not keep up, or has gone, ends
    /// the stream.
    fn send(&mut self, event: String, ctx: &mut Context<Self>) {
        match self.chunks_tx.try_send(Ok(Bytes::from(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let capacity = self.chunks_tx.max_capacity();
                let reason = format!("consumer too slow: {capacity} events queued");
                tracing::warn!(channel = %self.parts.channel.id, "SSE client too slow; stream ended");
                let call_log = &self.parts.call_log;
                call_log.subscriber_dropped(&self.parts.channel, "sse", reason);
                ctx.stop();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    /// Writes a last event, then ends the stream.
    fn end(&mut self, event: &str, reason: &str, ctx: &mut Context<Self>) {
        let data = json!({ "reason": reason });
        self.send(format!("event: {event}\ndata: {data}\n\n"), ctx);
        ctx.stop();
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.parts.call_log.metrics().session("sse", 1);
        let consumer = ConsumerAddr {
            deliveries: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            missed: Some(ctx.address().recipient()),
            settles: false,
            channel: ChannelTag::of(&self.parts.channel),
        };
        let (filter, resume) = (self.parts.filter.clone(), self.parts.resume_after.clone());
        let subscribe = Subscribe::to_channel(
            &self.parts.channel,
            filter,
            self.consumer_id,
            consumer,
            resume,
        );
        let request = self.parts.connection.send(subscribe);
        ctx.wait(request.into_actor(self).map(|result, act, ctx| match result {
            Ok(Ok(())) => {
                let data = json!({ "channel_id": act.parts.channel.id, "filter": act.parts.filter.as_str() });
                act.send(format!("event: subscribed\ndata: {data}\n\n"), ctx);
            }
            Ok(Err(error)) => act.end("error", &error.to_string(), ctx),
            Err(_) => act.end("error", "broker connection is gone", ctx),
        }));
        if let Some(expires_at) = self.parts.expires_at {
            let left = (expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
            ctx.run_later(Duration::from_secs(left), |act, ctx| {
                act.end("end", "the access token has expired", ctx);
            });
        }
        ctx.run_interval(self.parts.heartbeat, |act, ctx| {
            act.send(": heartbeat\n\n".into(), ctx)
        });
        let body = self.chunks_tx.clone();
        let gone = async move { body.closed().await };
        ctx.spawn(gone.into_actor(self).map(|(), _, ctx| ctx.stop()));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.parts.call_log.metrics().session("sse", -1);
        let filter = self.parts.filter.clone();
        self.parts.connection.do_send(Unsubscribe {
            filter,
            consumer_id: self.consumer_id,
        });
    }
}

impl Handler<Delivery> for SseSession {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        let Some(frame) = message_frame(&self.parts.channel, &self.parts.fixed, &delivery) else {
            return;
        };
        let id = delivery.event_id.as_deref().unwrap_or_default();
        // A line break in a message name would end the field and let the
        // name forge fields of its own.
        let name: String = frame["message"]
            .as_str()
            .unwrap_or("message")
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        self.send(format!("id: {id}\nevent: {name}\ndata: {frame}\n\n"), ctx);
        let seen = Observed::delivered(&self.parts.channel, "sse", &delivery);
        self.parts.call_log.observe(seen);
    }
}

impl Handler<MissedEvents> for SseSession {
    type Result = ();

    fn handle(&mut self, missed: MissedEvents, ctx: &mut Self::Context) {
        let data = json!({
            "last_event_id": missed.last_event_id,
            "reason": "some messages after this event are no longer buffered",
        });
        self.send(format!("event: missed\ndata: {data}\n\n"), ctx);
    }
}

impl Handler<SubscriptionEnded> for SseSession {
    type Result = ();

    fn handle(&mut self, ended: SubscriptionEnded, ctx: &mut Self::Context) {
        self.end("end", &ended.reason, ctx);
    }
}

/// The gateway's shutdown signal.
impl StreamHandler<bool> for SseSession {
    fn handle(&mut self, shutting_down: bool, ctx: &mut Self::Context) {
        if shutting_down {
            self.end("end", "the gateway is shutting down", ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}
