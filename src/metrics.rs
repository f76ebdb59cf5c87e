//! `GET /metrics`: the gateway's figures in the Prometheus text format.
//! Names follow `stepflow_<what>_<unit>[_total]`; labels are bounded
//! (protocol, outcome, reason, front, state), never addresses or client
//! ids, so that the series stay few whatever the traffic.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::actors::stats::{Kind, Observed};
use crate::actors::ConnectionStatus;

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The protocols a label may name.
const PROTOCOLS: &[&str] = &["mqtt", "kafka", "amqp", "nats", "ws", "wss", "memory"];

/// The label of `protocol`: one of a fixed set, `other` otherwise.
pub fn protocol_label(protocol: &str) -> &'static str {
    PROTOCOLS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(protocol))
        .copied()
        .unwrap_or("other")
}

/// Every series the gateway exports.
pub struct Metrics {
    registry: Registry,
    publishes: IntCounterVec,
    received: IntCounterVec,
    deliveries: IntCounterVec,
    bytes: IntCounterVec,
    publish_latency: HistogramVec,
    delivery_latency: HistogramVec,
    call_log_dropped: IntCounter,
    sessions: IntGaugeVec,
    brokers: IntGaugeVec,
    reconnects: IntGaugeVec,
}

impl Metrics {
    /// Registers every series at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid series");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique series");
            vec
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid series");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique series");
            vec
        };
        let histogram = |name: &str, help: &str, label: &str| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let vec = HistogramVec::new(opts, &[label]).expect("valid series");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique series");
            vec
        };
        let call_log_dropped = IntCounter::new(
            "stepflow_call_log_dropped_records_total",
            "Call-log records dropped because the writer could not keep up.",
        )
        .expect("valid series");
        registry
            .register(Box::new(call_log_dropped.clone()))
            .expect("unique series");
        Self {
            publishes: counter(
                "stepflow_publishes_total",
                "Publishes by outcome (delivered, rejected, failed) and reason.",
                &["protocol", "outcome", "reason"],
            ),
            received: counter(
                "stepflow_messages_received_total",
                "Messages received from brokers, once per channel that took them.",
                &["protocol"],
            ),
            deliveries: counter(
                "stepflow_deliveries_total",
                "Messages handed to subscribers, by front and outcome.",
                &["front", "outcome", "reason"],
            ),
            bytes: counter(
                "stepflow_message_bytes_total",
                "Payload bytes published and received.",
                &["direction", "protocol"],
            ),
            publish_latency: histogram(
                "stepflow_publish_latency_seconds",
                "From a publish request to the broker's acknowledgement.",
                "protocol",
            ),
            delivery_latency: histogram(
                "stepflow_delivery_latency_seconds",
                "From a message's receipt from the broker to its delivery.",
                "front",
            ),
            call_log_dropped,
            sessions: gauge(
                "stepflow_sessions",
                "Open subscriber sessions by front.",
                &["front"],
            ),
            brokers: gauge(
                "stepflow_broker_connections",
                "Broker connections by protocol and state.",
                &["protocol", "state"],
            ),
            reconnects: gauge(
                "stepflow_broker_reconnects",
                "Reconnections of the current broker connections, by protocol.",
                &["protocol"],
            ),
            registry,
        }
    }

    /// Counts one observation.
    pub fn observe(&self, seen: &Observed) {
        let protocol = seen.protocol;
        let seconds = |micros: u64| micros as f64 / 1_000_000.0;
        match seen.kind {
            Kind::Published => {
                self.publishes
                    .with_label_values(&[protocol, "delivered", "none"])
                    .inc();
                self.bytes
                    .with_label_values(&["published", protocol])
                    .inc_by(seen.bytes);
                if let Some(latency) = seen.latency_us {
                    self.publish_latency
                        .with_label_values(&[protocol])
                        .observe(seconds(latency));
                }
            }
            Kind::PublishFailed(outcome, reason) => {
                self.publishes
                    .with_label_values(&[protocol, outcome, reason])
                    .inc();
            }
            Kind::Received => {
                self.received.with_label_values(&[protocol]).inc();
                self.bytes
                    .with_label_values(&["received", protocol])
                    .inc_by(seen.bytes);
            }
            Kind::Delivered(front) => {
                self.deliveries
                    .with_label_values(&[front, "delivered", "none"])
                    .inc();
                if let Some(latency) = seen.latency_us {
                    self.delivery_latency
                        .with_label_values(&[front])
                        .observe(seconds(latency));
                }
            }
            Kind::DeliveryFailed(front, reason) => {
                self.deliveries
                    .with_label_values(&[front, "failed", reason])
                    .inc();
            }
        }
    }

    /// Counts a call-log record dropped.
    pub fn call_log_dropped(&self) {
        self.call_log_dropped.inc();
    }

    /// A subscriber session of `front` opened (`+1`) or closed (`-1`).
    pub fn session(&self, front: &'static str, change: i64) {
        self.sessions.with_label_values(&[front]).add(change);
    }

    /// Open sessions of `front`.
    pub fn sessions(&self, front: &'static str) -> i64 {
        self.sessions.with_label_values(&[front]).get()
    }

    /// The text exposition, with the broker gauges taken from `brokers`.
    pub fn render(&self, brokers: &[ConnectionStatus]) -> String {
        self.brokers.reset();
        self.reconnects.reset();
        for broker in brokers {
            let protocol = protocol_label(&broker.protocol);
            let state = serde_json::to_value(broker.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.brokers.with_label_values(&[protocol, &state]).inc();
            self.reconnects
                .with_label_values(&[protocol])
                .add(broker.reconnects as i64);
        }
        let mut out = Vec::new();
        // Encoding into memory fails only for series that cannot exist.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
