//! WsSession: one actor per client WebSocket. It consumes a channel's
//! deliveries through a bounded queue and accepts publishes as text frames.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connection::{BrokerConnection, Subscribe, Unsubscribe};
use super::frames::message_frame;
use super::stats::Observed;
use super::subscription::{ChannelTag, ConsumerAddr, Delivery, MissedEvents, SubscriptionEnded};
use crate::broker::TopicFilter;
use crate::catalog::ChannelEntry;
use crate::publish::{PublishRequest, Publisher};

static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(1);

/// A fresh consumer key, unique within the process.
pub fn next_consumer_id() -> u64 {
    NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed)
}

/// A frame on its way to the client.
enum Outgoing {
    Text(String),
    Pong(bytes::Bytes),
    Close(CloseReason),
}

/// What a session needs to start.
pub struct WsSessionParts {
    /// The channel subscribed to.
    pub channel: Arc<ChannelEntry>,
    /// Parameter values given by the client; others match any value.
    pub fixed: BTreeMap<String, String>,
    /// The filter those values give.
    pub filter: TopicFilter,
    /// The connection of the channel's broker.
    pub connection: Addr<BrokerConnection>,
    /// Publishes the client's text frames.
    pub publisher: Publisher,
    /// Who the client is; its publishes are checked as this principal, and
    /// the session closes when its token expires.
    pub principal: crate::auth::Principal,
    /// Frames queued for the client at most.
    pub queue_capacity: usize,
    /// The largest message the client may send; a larger one closes the
    /// session with 1009.
    pub max_frame_bytes: usize,
    /// Turns true when the gateway shuts down; the gateway holds the sender.
    pub shutdown_rx: tokio::sync::watch::Receiver<bool>,
    /// The `Last-Event-ID` the client resumes after (the `id` of the last
    /// message frame it had), if it does.
    pub resume_after: Option<String>,
}

/// One client WebSocket.
pub struct WsSession {
    parts: WsSessionParts,
    consumer_id: u64,
    /// Frames for the client; the writer task spawned at start holds the
    /// receiver and owns the socket's sending half.
    outgoing_tx: mpsc::Sender<Outgoing>,
    closing: bool,
}

impl WsSession {
    /// Starts a session over an upgraded socket.
    pub fn start(
        parts: WsSessionParts,
        session: actix_ws::Session,
        stream: AggregatedMessageStream,
    ) -> Addr<Self> {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(parts.queue_capacity.max(1));
        actix_web::rt::spawn(write_frames(session, outgoing_rx));
        let shutdown = tokio_stream::wrappers::WatchStream::from_changes(parts.shutdown_rx.clone());
        WsSession::create(|ctx| {
            ctx.add_stream(stream);
            ctx.add_stream(shutdown);
            WsSession {
                parts,
                consumer_id: next_consumer_id(),
                outgoing_tx,
                closing: false,
            }
        })
    }

    fn send_json(&mut self, frame: &Value, ctx: &mut Context<Self>) {
        match self.outgoing_tx.try_send(Outgoing::Text(frame.to_string())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let reason = format!(
                    "consumer too slow: {} frames queued",
                    self.parts.queue_capacity
                );
                tracing::warn!(channel = %self.parts.channel.id, "websocket consumer too slow; closing");
                let call_log = self.parts.publisher.call_log();
                call_log.subscriber_dropped(&self.parts.channel, "websocket", reason.clone());
                self.close(CloseCode::Policy, reason, ctx);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn close(&mut self, code: CloseCode, description: String, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        let reason = CloseReason {
            code,
            description: Some(description),
        };
        let outgoing_tx = self.outgoing_tx.clone();
        // The close frame must not be lost behind a full queue.
        actix_web::rt::spawn(async move {
            let _ = outgoing_tx.send(Outgoing::Close(reason)).await;
        });
        ctx.stop();
    }

    fn delivery_frame(&self, delivery: &Delivery) -> Option<Value> {
        message_frame(&self.parts.channel, &self.parts.fixed, delivery)
    }

    fn publish_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let request: PublishRequest = match crate::http::body::parse::<PublishFrame>(
            text.as_bytes(),
        ) {
            Ok(frame) => frame.into_request(self.parts.channel.id.to_string()),
            Err(error) => {
                let mut frame = json!({"type": "error", "status": 400, "title": "malformed publish frame", "detail": error.to_string()});
                if let crate::http::problem::ApiError::MalformedField { pointer, message } = error {
                    frame["errors"] = json!([{ "pointer": pointer, "message": message }]);
                }
                self.send_json(&frame, ctx);
                return;
            }
        };
        let (publisher, principal) = (self.parts.publisher.clone(), self.parts.principal.clone());
        let reply = async move {
            match publisher.publish(request, &principal).await {
                Ok(outcome) => json!({"type": "published", "outcome": outcome}),
                Err(failure) => {
                    let problem = crate::http::problem::Problem::from_publish(&failure);
                    json!({"type": "error", "problem": problem})
                }
            }
        };
        ctx.spawn(
            reply
                .into_actor(self)
                .map(|frame, act, ctx| act.send_json(&frame, ctx)),
        );
    }
}

/// A publish sent as a text frame: the body of `POST /messages/publish`
/// without the channel, which the session fixes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFrame {
    message_data: Value,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, Value>>,
}

impl PublishFrame {
    fn into_request(self, channel_id: String) -> PublishRequest {
        PublishRequest {
            channel_id,
            message_data: self.message_data,
            parameters: self.parameters,
            message_id: self.message_id,
            headers: self.headers,
        }
    }
}

async fn write_frames(mut session: actix_ws::Session, mut outgoing_rx: mpsc::Receiver<Outgoing>) {
    while let Some(frame) = outgoing_rx.recv().await {
        let sent = match frame {
            Outgoing::Text(text) => session.text(text).await,
            Outgoing::Pong(bytes) => session.pong(&bytes).await,
            Outgoing::Close(reason) => {
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.parts
            .publisher
            .call_log()
            .metrics()
            .session("websocket", 1);
        if let Some(expires_at) = self.parts.principal.expires_at {
            let left = (expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
            ctx.run_later(Duration::from_secs(left), |act, ctx| {
                act.close(
                    CloseCode::Policy,
                    "the access token has expired".into(),
                    ctx,
                );
            });
        }
        let consumer = ConsumerAddr {
            deliveries: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            missed: Some(ctx.address().recipient()),
            settles: false,
            channel: ChannelTag::of(&self.parts.channel),
        };
        let filter = self.parts.filter.clone();
        let subscribe = Subscribe::to_channel(
            &self.parts.channel,
            filter,
            self.consumer_id,
            consumer,
            self.parts.resume_after.clone(),
        );
        let request = self.parts.connection.send(subscribe);
        ctx.wait(
            request
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(Ok(())) => {
                        let frame = json!({
                            "type": "subscribed",
                            "channel_id": act.parts.channel.id,
                            "filter": act.parts.filter.as_str(),
                        });
                        act.send_json(&frame, ctx);
                    }
                    Ok(Err(error)) => act.close(CloseCode::Error, error.to_string(), ctx),
                    Err(_) => act.close(CloseCode::Error, "broker connection is gone".into(), ctx),
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.parts
            .publisher
            .call_log()
            .metrics()
            .session("websocket", -1);
        let filter = self.parts.filter.clone();
        self.parts.connection.do_send(Unsubscribe {
            filter,
            consumer_id: self.consumer_id,
        });
    }
}

impl Handler<Delivery> for WsSession {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        if let Some(frame) = self.delivery_frame(&delivery) {
            self.send_json(&frame, ctx);
            let seen = Observed::delivered(&self.parts.channel, "websocket", &delivery);
            self.parts.publisher.call_log().observe(seen);
        }
    }
}

impl Handler<MissedEvents> for WsSession {
    type Result = ();

    /// Tells a resuming client that messages after its last one are no
    /// longer buffered.
    fn handle(&mut self, missed: MissedEvents, ctx: &mut Self::Context) {
        let frame = json!({
            "type": "missed",
            "last_event_id": missed.last_event_id,
            "reason": "some messages after this event are no longer buffered",
        });
        self.send_json(&frame, ctx);
    }
}

impl Handler<SubscriptionEnded> for WsSession {
    type Result = ();

    fn handle(&mut self, ended: SubscriptionEnded, ctx: &mut Self::Context) {
        self.close(CloseCode::Away, ended.reason, ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(AggregatedMessage::Text(text)) => self.publish_text(&text, ctx),
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.outgoing_tx.try_send(Outgoing::Pong(bytes));
            }
            Ok(AggregatedMessage::Close(_)) => {
                self.close(CloseCode::Normal, "closed by client".into(), ctx)
            }
            Ok(AggregatedMessage::Binary(_)) => self.close(
                CloseCode::Unsupported,
                "binary frames are not accepted; send JSON text".into(),
                ctx,
            ),
            Ok(_) => {}
            Err(ProtocolError::Overflow) => {
                let limit = self.parts.max_frame_bytes;
                let reason = format!("message exceeds the limit of {limit} bytes");
                self.close(CloseCode::Size, reason, ctx)
            }
            // A fragmented message over the limit is reported as an I/O
            // error by the codec; it is too big all the same.
            Err(error) if error.to_string().contains("maximum continuation size") => {
                let limit = self.parts.max_frame_bytes;
                let reason = format!("message exceeds the limit of {limit} bytes");
                self.close(CloseCode::Size, reason, ctx)
            }
            Err(error) => self.close(CloseCode::Protocol, error.to_string(), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The gateway's shutdown signal.
impl StreamHandler<bool> for WsSession {
    fn handle(&mut self, shutting_down: bool, ctx: &mut Self::Context) {
        if shutting_down {
            self.close(CloseCode::Away, "gateway is shutting down".into(), ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}
