//! The Stats actor: message counts, bytes, throughput over the last 1, 5
//! and 15 minutes and latency histograms, per channel and per broker, as
//! `GET /messages/statistics` shows them, and the live event stream of
//! `GET /messages/stream` with a bounded ring for resuming. Every figure is
//! fed from what the call log is told (publishes, receipts, webhook
//! failures) and from deliveries to subscribers, so the statistics and the
//! call log agree.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::ids::{BrokerId, ChannelId, DocumentId};

/// Width of one throughput bucket.
const BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept: 15 minutes.
const BUCKETS: usize = 90;
/// Largest latency recorded exactly, in microseconds (one minute);
/// longer ones count as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one observation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A publish the broker took.
    Published,
    /// A publish that did not reach the broker: `rejected` or `failed`,
    /// and the reason.
    PublishFailed(&'static str, &'static str),
    /// A message received from a broker on a channel.
    Received,
    /// A message handed to a subscriber (`websocket`, `sse`, `webhook`).
    Delivered(&'static str),
    /// A message that could not be handed to a subscriber of a front,
    /// with the reason.
    DeliveryFailed(&'static str, &'static str),
}

/// One thing that happened to a message.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Observed {
    /// What happened.
    pub kind: Kind,
    /// The channel, when known.
    pub channel: Option<ChannelId>,
    /// Its document.
    pub document: Option<DocumentId>,
    /// The broker, when known.
    pub broker: Option<BrokerId>,
    /// The broker's protocol, as a metrics label (`other` when unknown).
    pub protocol: &'static str,
    /// The concrete address, when known.
    pub address: Option<Arc<str>>,
    /// Payload size.
    pub bytes: u64,
    /// The payload, only when the config keeps payloads.
    pub payload: Option<Value>,
    /// Publish to broker acknowledgement, or receipt to delivery.
    pub latency_us: Option<u64>,
}

impl Observed {
    /// `delivery` handed to a subscriber of `channel` through `front`,
    /// with the time since its receipt from the broker.
    pub fn delivered(
        channel: &crate::catalog::ChannelEntry,
        front: &'static str,
        delivery: &crate::actors::Delivery,
    ) -> Self {
        let waited = chrono::Utc::now() - delivery.received_at;
        Self {
            kind: Kind::Delivered(front),
            channel: Some(channel.id.clone()),
            document: Some(DocumentId::from(channel.row.document_id.clone())),
            broker: channel
                .broker
                .as_ref()
                .map(|b| BrokerId::from(b.id.clone())),
            protocol: channel.protocol_label(),
            address: Some(delivery.topic.clone()),
            bytes: delivery.payload_bytes as u64,
            payload: None,
            latency_us: Some(waited.num_microseconds().unwrap_or(0).max(0) as u64),
        }
    }
}

/// One event of the live stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamEvent {
    /// Its number, for `Last-Event-ID`.
    pub id: u64,
    /// `published`, `rejected`, `failed`, `received`, `delivered` or
    /// `delivery_failed`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Why, for a refusal or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The subscriber front of a delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front: Option<&'static str>,
    /// The channel.
    pub channel_id: Option<ChannelId>,
    /// Its document.
    pub document_id: Option<DocumentId>,
    /// The broker.
    pub broker_id: Option<BrokerId>,
    /// The concrete address.
    pub address: Option<Arc<str>>,
    /// Publish to acknowledgement, or receipt to delivery.
    pub latency_ms: Option<f64>,
    /// Payload size.
    pub payload_bytes: u64,
    /// The payload, when the config keeps payloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl StreamEvent {
    fn of(id: u64, seen: Observed) -> Self {
        let (kind, reason, front) = match seen.kind {
            Kind::Published => ("published", None, None),
            Kind::PublishFailed(outcome, reason) => (outcome, Some(reason), None),
            Kind::Received => ("received", None, None),
            Kind::Delivered(front) => ("delivered", None, Some(front)),
            Kind::DeliveryFailed(front, reason) => ("delivery_failed", Some(reason), Some(front)),
        };
        Self {
            id,
            kind,
            reason,
            front,
            channel_id: seen.channel,
            document_id: seen.document,
            broker_id: seen.broker,
            address: seen.address,
            latency_ms: seen.latency_us.map(|us| us as f64 / 1_000.0),
            payload_bytes: seen.bytes,
            payload: seen.payload,
            at: Utc::now(),
        }
    }

    /// The event as Server-Sent Events text; its SSE id names the
    /// gateway's run (`epoch`), so that an id of an earlier run is known
    /// as such.
    fn text(&self, epoch: &str) -> String {
        let data = serde_json::to_string(self).unwrap_or_default();
        format!(
            "id: {epoch}-{}\nevent: {}\ndata: {data}\n\n",
            self.id, self.kind
        )
    }
}

/// Follows the live stream: events of the filter after `after` that the
/// ring still holds first, then every new one, as SSE text on `tx`. A
/// watcher whose queue is full is let go (its stream ends) and may resume.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    /// Only events of this document.
    pub document: Option<DocumentId>,
    /// Only events of this channel.
    pub channel: Option<ChannelId>,
    /// The last event id the client has (`Last-Event-ID`).
    pub after: Option<String>,
    /// Where the text goes.
    pub tx: mpsc::Sender<String>,
}

impl Watch {
    fn wants(&self, event: &StreamEvent) -> bool {
        let document = self
            .document
            .as_ref()
            .is_none_or(|d| event.document_id.as_ref() == Some(d));
        let channel = self
            .channel
            .as_ref()
            .is_none_or(|c| event.channel_id.as_ref() == Some(c));
        document && channel
    }
}

/// Asks for the statistics, optionally of one document or channel.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "Value")]
pub struct GetStatistics {
    /// Only channels of this document (and the brokers they use).
    pub document: Option<DocumentId>,
    /// Only this channel.
    pub channel: Option<ChannelId>,
}

/// Counts per 10-second bucket over the last 15 minutes.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<u64>,
    /// Which bucket (since the actor started) the back one is.
    newest: u64,
}

impl Window {
    fn add(&mut self, bucket: u64) {
        self.advance(bucket);
        if let Some(last) = self.buckets.back_mut() {
            *last += 1;
        }
    }

    /// Moves the window so that its newest bucket is `bucket`.
    fn advance(&mut self, bucket: u64) {
        if self.buckets.is_empty() {
            self.buckets.push_back(0);
            self.newest = bucket;
        }
        while self.newest < bucket {
            self.buckets.push_back(0);
            self.newest += 1;
            if self.buckets.len() > BUCKETS {
                self.buckets.pop_front();
            }
        }
    }

    /// Messages per second over the last `minutes`.
    fn rate(&mut self, bucket: u64, minutes: usize) -> f64 {
        self.advance(bucket);
        let wanted = minutes * 60 / BUCKET.as_secs() as usize;
        let count: u64 = self.buckets.iter().rev().take(wanted).sum();
        count as f64 / (minutes * 60) as f64
    }
}

/// A latency histogram, made on first use so that idle channels cost
/// nothing; two significant digits bound its memory to a few KiB.
#[derive(Default)]
struct Latency(Option<Histogram<u32>>);

impl Latency {
    fn record(&mut self, micros: u64) {
        let histogram = self.0.get_or_insert_with(|| {
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("bounds")
        });
        histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    fn summary(&self) -> Value {
        let Some(h) = &self.0 else {
            return json!({"count": 0});
        };
        let ms = |micros: u64| micros as f64 / 1_000.0;
        json!({
            "count": h.len(),
            "p50_ms": ms(h.value_at_quantile(0.50)),
            "p95_ms": ms(h.value_at_quantile(0.95)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "max_ms": ms(h.max()),
        })
    }
}

/// The figures of one channel or broker.
#[derive(Default)]
struct Figures {
    published: u64,
    received: u64,
    delivered: u64,
    failed: BTreeMap<&'static str, u64>,
    delivery_failed: BTreeMap<&'static str, u64>,
    bytes_published: u64,
    bytes_received: u64,
    publish_window: Window,
    receive_window: Window,
    publish_latency: Latency,
    delivery_latency: Latency,
}

impl Figures {
    fn observe(&mut self, seen: &Observed, bucket: u64) {
        match seen.kind {
            Kind::Published => {
                self.published += 1;
                self.bytes_published += seen.bytes;
                self.publish_window.add(bucket);
                if let Some(latency) = seen.latency_us {
                    self.publish_latency.record(latency);
                }
            }
            Kind::PublishFailed(_, reason) => *self.failed.entry(reason).or_default() += 1,
            Kind::Received => {
                self.received += 1;
                self.bytes_received += seen.bytes;
                self.receive_window.add(bucket);
            }
            Kind::Delivered(_) => {
                self.delivered += 1;
                if let Some(latency) = seen.latency_us {
                    self.delivery_latency.record(latency);
                }
            }
            Kind::DeliveryFailed(_, reason) => {
                *self.delivery_failed.entry(reason).or_default() += 1;
            }
        }
    }

    fn report(&mut self, bucket: u64) -> Value {
        let failed: u64 = self.failed.values().sum();
        let attempts = self.published + failed;
        let rates = |window: &mut Window| {
            json!({
                "1m": window.rate(bucket, 1),
                "5m": window.rate(bucket, 5),
                "15m": window.rate(bucket, 15),
            })
        };
        let (published_rate, received_rate) = (
            rates(&mut self.publish_window),
            rates(&mut self.receive_window),
        );
        json!({
            "published": self.published,
            "received": self.received,
            "delivered": self.delivered,
            "failed": failed,
            "failed_by_reason": self.failed,
            "delivery_failed_by_reason": self.delivery_failed,
            "bytes_published": self.bytes_published,
            "bytes_received": self.bytes_received,
            "throughput_per_second": {
                "published": published_rate,
                "received": received_rate,
            },
            "error_rate": if attempts == 0 { 0.0 } else { failed as f64 / attempts as f64 },
            "publish_latency": self.publish_latency.summary(),
            "delivery_latency": self.delivery_latency.summary(),
        })
    }
}

/// A channel's figures and the document it belongs to.
struct ChannelFigures {
    document: Option<DocumentId>,
    brokers: Vec<BrokerId>,
    figures: Figures,
}

/// The actor.
pub struct Stats {
    started: Instant,
    channels: HashMap<ChannelId, ChannelFigures>,
    brokers: HashMap<BrokerId, Figures>,
    /// The latest stream events, for resuming.
    ring: VecDeque<StreamEvent>,
    ring_capacity: usize,
    next_id: u64,
    watchers: Vec<Watch>,
    /// Names this run in event ids.
    epoch: String,
}

impl Stats {
    /// Statistics with a stream ring of `ring_capacity` events.
    pub fn new(ring_capacity: usize) -> Self {
        Self {
            started: Instant::now(),
            channels: HashMap::new(),
            brokers: HashMap::new(),
            ring: VecDeque::new(),
            ring_capacity,
            next_id: 0,
            watchers: Vec::new(),
            epoch: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        }
    }

    /// Keeps `event` in the ring and hands it to every watcher that wants
    /// it; watchers that are gone or too slow are let go.
    fn publish(&mut self, event: StreamEvent) {
        let mut text: Option<String> = None;
        self.watchers.retain(|watch| {
            if !watch.wants(&event) {
                return !watch.tx.is_closed();
            }
            let text = text.get_or_insert_with(|| event.text(&self.epoch)).clone();
            watch.tx.try_send(text).is_ok()
        });
        if self.ring_capacity > 0 {
            if self.ring.len() >= self.ring_capacity {
                self.ring.pop_front();
            }
            self.ring.push_back(event);
        }
    }

    fn bucket(&self) -> u64 {
        self.started.elapsed().as_secs() / BUCKET.as_secs()
    }
}

impl Actor for Stats {
    type Context = Context<Self>;
}

impl Handler<Observed> for Stats {
    type Result = ();

    fn handle(&mut self, seen: Observed, _ctx: &mut Self::Context) {
        let bucket = self.bucket();
        if let Some(channel) = &seen.channel {
            let entry = self
                .channels
                .entry(channel.clone())
                .or_insert_with(|| ChannelFigures {
                    document: seen.document.clone(),
                    brokers: Vec::new(),
                    figures: Figures::default(),
                });
            if let Some(broker) = &seen.broker {
                if !entry.brokers.contains(broker) {
                    entry.brokers.push(broker.clone());
                }
            }
            entry.figures.observe(&seen, bucket);
        }
        if let Some(broker) = &seen.broker {
            let figures = self.brokers.entry(broker.clone()).or_default();
            figures.observe(&seen, bucket);
        }
        self.next_id += 1;
        let event = StreamEvent::of(self.next_id, seen);
        self.publish(event);
    }
}

impl Handler<Watch> for Stats {
    type Result = ();

    fn handle(&mut self, watch: Watch, _ctx: &mut Self::Context) {
        if let Some(last) = &watch.after {
            // An id of this run resumes after it; one of an earlier run, or
            // one that does not parse, gets all the ring holds.
            let known = last
                .split_once('-')
                .filter(|(epoch, _)| *epoch == self.epoch)
                .and_then(|(_, n)| n.parse::<u64>().ok());
            let after = known.unwrap_or(0);
            let oldest = self.ring.front().map_or(self.next_id + 1, |e| e.id);
            if known.is_none() || after.saturating_add(1) < oldest {
                let missed = json!({"last_event_id": last, "first_kept": format!("{}-{oldest}", self.epoch)});
                let text = format!("event: missed\ndata: {missed}\n\n");
                if watch.tx.try_send(text).is_err() {
                    return;
                }
            }
            for event in self.ring.iter().filter(|e| e.id > after && watch.wants(e)) {
                if watch.tx.try_send(event.text(&self.epoch)).is_err() {
                    return;
                }
            }
        }
        self.watchers.push(watch);
    }
}

impl Handler<GetStatistics> for Stats {
    type Result = MessageResult<GetStatistics>;

    fn handle(&mut self, filter: GetStatistics, _ctx: &mut Self::Context) -> Self::Result {
        let bucket = self.bucket();
        let mut channels = serde_json::Map::new();
        let mut brokers_used: Vec<BrokerId> = Vec::new();
        for (id, entry) in &mut self.channels {
            let wanted_document = filter
                .document
                .as_ref()
                .is_none_or(|d| entry.document.as_ref() == Some(d));
            let wanted_channel = filter.channel.as_ref().is_none_or(|c| c == id);
            if !(wanted_document && wanted_channel) {
                continue;
            }
            brokers_used.extend(entry.brokers.iter().cloned());
            let mut report = entry.figures.report(bucket);
            report["document_id"] = json!(entry.document);
            channels.insert(id.to_string(), report);
        }
        let filtered = filter.document.is_some() || filter.channel.is_some();
        let mut brokers = serde_json::Map::new();
        for (id, figures) in &mut self.brokers {
            if filtered && !brokers_used.contains(id) {
                continue;
            }
            brokers.insert(id.to_string(), figures.report(bucket));
        }
        MessageResult(json!({
            "uptime_seconds": self.started.elapsed().as_secs(),
            "channels": channels,
            "brokers": brokers,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_the_last_minutes_only() {
        let mut window = Window::default();
        for _ in 0..60 {
            window.add(0);
        }
        window.add(7);
        // 61 messages in the last minute and a half: 60 fall out of the
        // one-minute window once it has moved six buckets on.
        assert_eq!(window.rate(7, 1), 1.0 / 60.0);
        assert_eq!(window.rate(7, 5), 61.0 / 300.0);
        assert_eq!(window.rate(200, 15), 0.0);
    }

    #[actix_rt::test]
    async fn a_resume_after_the_largest_id_does_not_stop_the_actor() {
        let stats = Stats::new(10).start();
        let epoch = {
            let (tx, mut rx) = mpsc::channel(4);
            let after = Some("x".to_owned());
            let watch = Watch {
                document: None,
                channel: None,
                after,
                tx,
            };
            stats.send(watch).await.expect("watching");
            let missed = rx.recv().await.expect("a missed event");
            let data: Value =
                serde_json::from_str(missed.split("data: ").nth(1).unwrap_or("{}").trim())
                    .unwrap_or_default();
            let first = data["first_kept"].as_str().unwrap_or_default().to_owned();
            first.split('-').next().unwrap_or_default().to_owned()
        };
        let (tx, _rx) = mpsc::channel(4);
        let after = Some(format!("{epoch}-{}", u64::MAX));
        stats
            .send(Watch {
                document: None,
                channel: None,
                after,
                tx,
            })
            .await
            .expect("the actor takes the watch");
        let figures = stats.send(GetStatistics::default()).await;
        assert!(figures.is_ok(), "the actor still answers");
    }

    #[test]
    fn latency_summaries_come_from_the_histogram() {
        let mut latency = Latency::default();
        for micros in 1..=1_000 {
            latency.record(micros);
        }
        let summary = latency.summary();
        assert_eq!(summary["count"], 1_000);
        let p50 = summary["p50_ms"].as_f64().unwrap_or_default();
        assert!((0.49..=0.51).contains(&p50), "{summary}");
        let max = summary["max_ms"].as_f64().unwrap_or_default();
        assert!((0.99..=1.01).contains(&max), "{summary}");
    }
}
