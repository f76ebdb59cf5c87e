//! End-to-end benchmarks: the gateway's release binary on a free port
//! against this machine's Mosquitto, measured beside two yardsticks in the
//! same run with the same load client, interleaved, three repetitions:
//!
//! - a no-op actix-web handler (this bench binary started again as a
//!   server), the HTTP ceiling;
//! - a native MQTT client publishing straight to Mosquitto, the broker's
//!   own limit.
//!
//! Figures: REST publish to MQTT QoS 0 with validation and call logging
//! on, closed loop with 32 connections (requests per second, gateway CPU
//! time per message from /proc/PID/stat); open-loop end-to-end latency
//! (publish to an MQTT subscriber) at 2,000 per second and the latency the
//! gateway adds over the direct path at the same rate; a run at 5,000 per
//! second whose p99 exceeds 5 ms fails. Every figure is printed only once
//! every message is accounted for at the subscriber; a run that lost
//! messages prints the loss instead.
//!
//! Run with `cargo bench --bench end_to_end` (about two minutes after the
//! release build); `STEPFLOW_BENCH_SECONDS` sets the length of one
//! closed-loop measurement (default 5).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;
use support::*;

const MQTT: &str = "tcp://127.0.0.1:1883";
const REPETITIONS: usize = 3;
/// Topics (and subscribers) the direct closed loop spreads over: one
/// subscriber reading 100,000 messages a second falls behind, and Mosquitto
/// drops QoS 0 messages for a subscriber 1,000 behind.
const DIRECT_TOPICS: u64 = 4;

fn main() {
    if std::env::var("STEPFLOW_BENCH_ROLE").as_deref() == Ok("noop") {
        noop_server();
        return;
    }
    let system = actix::System::new();
    let failed = system.block_on(run());
    if failed {
        std::process::exit(1);
    }
}

/// What the subscriber reads of a payload.
#[derive(serde::Deserialize)]
struct Stamp {
    seq: u64,
    ts: u64,
}

/// An MQTT subscriber that records the `seq` and send time of every
/// message of one run on `topic`.
struct Subscriber {
    client: paho_mqtt::AsyncClient,
    seen: Arc<Mutex<Vec<(u64, u64)>>>,
    /// When the latest message arrived.
    last: Arc<Mutex<Option<Instant>>>,
}

impl Subscriber {
    async fn start(topic: &str) -> Self {
        let options = paho_mqtt::CreateOptionsBuilder::new()
            .server_uri(MQTT)
            .client_id(format!("bench-sub-{}", uuid::Uuid::new_v4().simple()))
            .persistence(paho_mqtt::PersistenceType::None)
            .finalize();
        let client = paho_mqtt::AsyncClient::new(options).expect("MQTT client");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let last = Arc::new(Mutex::new(None));
        let (sink, latest) = (seen.clone(), last.clone());
        client.set_message_callback(move |_, message| {
            let Some(message) = message else { return };
            let received = now_ns();
            // Only the two fields, so that the subscriber keeps up with a
            // direct publisher: Mosquitto drops QoS 0 messages for a
            // subscriber that falls 1,000 behind.
            if let Ok(stamp) = serde_json::from_slice::<Stamp>(message.payload()) {
                let latency = received.saturating_sub(stamp.ts);
                sink.lock().expect("seen").push((stamp.seq, latency));
                *latest.lock().expect("last") = Some(Instant::now());
            }
        });
        client.connect(None).await.expect("Mosquitto");
        client.subscribe(topic, 0).await.expect("subscribed");
        Self { client, seen, last }
    }

    async fn start_owned(topic: String) -> Self {
        Self::start(&topic).await
    }

    /// When the latest message arrived.
    fn last_arrival(&self) -> Option<Instant> {
        *self.last.lock().expect("last")
    }

    /// Waits until `count` distinct messages arrived or two seconds pass
    /// with none; answers the latencies (ns) of those that did.
    async fn collect(&self, count: u64) -> (u64, Vec<u64>) {
        let mut last = 0;
        let mut quiet = Instant::now();
        loop {
            let got = self.seen.lock().expect("seen").len();
            if got as u64 >= count || quiet.elapsed() > Duration::from_secs(2) {
                break;
            }
            if got != last {
                last = got;
                quiet = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = std::mem::take(&mut *self.seen.lock().expect("seen"));
        let distinct: BTreeSet<u64> = seen.iter().map(|(seq, _)| *seq).collect();
        (
            distinct.len() as u64,
            seen.into_iter().map(|(_, l)| l).collect(),
        )
    }

    async fn stop(self) {
        let _ = self.client.disconnect(None).await;
    }
}

/// Publishes straight to Mosquitto at QoS 0 from 32 concurrent loops for
/// `length`.
async fn closed_loop_mqtt(topic: &str, length: Duration) -> Counted {
    let options = paho_mqtt::CreateOptionsBuilder::new()
        .server_uri(MQTT)
        .client_id(format!("bench-pub-{}", uuid::Uuid::new_v4().simple()))
        .persistence(paho_mqtt::PersistenceType::None)
        .max_buffered_messages(100_000)
        .finalize();
    let client = paho_mqtt::AsyncClient::new(options).expect("MQTT client");
    client.connect(None).await.expect("Mosquitto");
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let workers = (0..CONNECTIONS).map(|_| {
        let (client, topic) = (client.clone(), topic.to_owned());
        let (next, ok, errors) = (next.clone(), ok.clone(), errors.clone());
        async move {
            while Instant::now() < deadline {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let payload = json!({"seq": seq, "ts": now_ns(), "temperature": 21.5});
                let to = format!("{topic}/{}", seq % DIRECT_TOPICS);
                let message = paho_mqtt::Message::new(to, payload.to_string(), 0);
                match client.publish(message).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let _ = client.disconnect(None).await;
    Counted {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        took: started.elapsed(),
    }
}

/// Open loop straight to Mosquitto at QoS 0.
async fn open_loop_mqtt(topic: &str, rate: u64, length: Duration) -> Counted {
    let options = paho_mqtt::CreateOptionsBuilder::new()
        .server_uri(MQTT)
        .client_id(format!("bench-pub-{}", uuid::Uuid::new_v4().simple()))
        .persistence(paho_mqtt::PersistenceType::None)
        .finalize();
    let client = paho_mqtt::AsyncClient::new(options).expect("MQTT client");
    client.connect(None).await.expect("Mosquitto");
    let total = rate * length.as_secs();
    let started = Instant::now();
    let (jobs_tx, jobs) = async_channel::unbounded();
    let pacer = std::thread::spawn(move || pace(rate, total, |job| jobs_tx.send_blocking(job)));
    let mut ok = 0;
    let mut errors = 0;
    // Stamped with the due time, as the gateway's publishes are, so that
    // both paths count the pacer's lateness alike.
    while let Ok((seq, due)) = jobs.recv().await {
        let payload = json!({"seq": seq, "ts": due, "temperature": 21.5});
        let message = paho_mqtt::Message::new(topic, payload.to_string(), 0);
        match client.publish(message).await {
            Ok(()) => ok += 1,
            Err(_) => errors += 1,
        }
    }
    let _ = pacer.join();
    let _ = client.disconnect(None).await;
    Counted {
        ok,
        errors,
        took: started.elapsed(),
    }
}

/// Registers the IoT document on the gateway; answers its channel id.
async fn register(gateway: &Server) -> String {
    let document = "asyncapi: 2.6.0\ninfo: {title: IoT Device API, version: '1'}\n\
        servers:\n  plant: {url: 'mqtt://127.0.0.1:1883', protocol: mqtt}\n\
        channels:\n  device/{deviceId}/data:\n    parameters:\n      deviceId: {schema: {type: string}}\n\
        \x20   publish:\n      message:\n        payload:\n          type: object\n          required: [seq, ts]\n\
        \x20         properties: {seq: {type: integer}, ts: {type: integer}, temperature: {type: number}}\n";
    let body = json!({"name": "IoT Device API", "asyncapi_content": document});
    let mut response = awc::Client::default()
        .post(format!("http://{}/asyncapis/register", gateway.addr))
        .send_json(&body)
        .await
        .expect("registered");
    let registered: Value = response.json().limit(1 << 20).await.expect("JSON");
    registered["channels"][0]["id"]
        .as_str()
        .expect("channel id")
        .to_owned()
}

/// Every figure of one repetition: (rate, extra) per condition.
#[derive(Default)]
struct Figures {
    noop: Vec<f64>,
    gateway: Vec<f64>,
    mqtt: Vec<f64>,
    cpu_us: Vec<f64>,
    lost: Vec<String>,
}

async fn run() -> bool {
    let seconds = measurement_seconds();
    let length = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().expect("folder");
    let gateway = Server::gateway(dir.path(), "");
    let noop = Server::noop();
    let channel = register(&gateway).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let publish_url = format!("http://{}/messages/publish", gateway.addr);
    let noop_url = format!("http://{}/", noop.addr);
    println!(
        "end-to-end bench: gateway {} (pid {}), no-op handler {}, Mosquitto {MQTT}, {CONNECTIONS} connections, {seconds} s per measurement, {REPETITIONS} repetitions",
        gateway.addr,
        gateway.child.id(),
        noop.addr
    );

    let mut figures = Figures::default();
    for rep in 0..REPETITIONS {
        let body = |seq: u64| json!({"seq": seq, "ts": now_ns(), "temperature": 21.5});
        let counted = closed_loop_http(&noop_url, length, body).await;
        figures.noop.push(counted.rate());

        let device = format!("bench-{run}-{rep}");
        let topic = format!("device/{device}/data");
        let subscriber = Subscriber::start(&topic).await;
        let cpu_before = gateway.cpu();
        let began = Instant::now();
        let (channel, device) = (channel.clone(), device.clone());
        let body = move |seq: u64| {
            json!({"channel_id": channel, "parameters": {"deviceId": device},
                   "message_data": {"seq": seq, "ts": now_ns(), "temperature": 21.5}})
        };
        let counted = closed_loop_http(&publish_url, length, body).await;
        let (arrived, _) = subscriber.collect(counted.ok).await;
        let cpu = gateway.cpu().saturating_sub(cpu_before);
        let delivered_in = subscriber.last_arrival().map(|t| t - began);
        subscriber.stop().await;
        if arrived < counted.ok || counted.errors > 0 {
            figures.lost.push(format!(
                "rest_publish_mqtt_qos0 repetition {rep}: {} acknowledged, {} arrived, {} errors",
                counted.ok, arrived, counted.errors
            ));
        } else {
            // Acknowledged is not yet delivered: the rate counts until the
            // last message reached the subscriber.
            let took = delivered_in.unwrap_or(counted.took).max(counted.took);
            figures.gateway.push(counted.ok as f64 / took.as_secs_f64());
            figures
                .cpu_us
                .push(cpu.as_secs_f64() * 1e6 / counted.ok as f64);
        }

        let topic = format!("bench/{run}/direct/{rep}");
        let subscribers = futures_util::future::join_all(
            (0..DIRECT_TOPICS).map(|i| Subscriber::start_owned(format!("{topic}/{i}"))),
        )
        .await;
        let began = Instant::now();
        let counted = closed_loop_mqtt(&topic, length).await;
        let mut arrived = 0;
        let mut delivered_in = None;
        for (i, subscriber) in subscribers.into_iter().enumerate() {
            // Message `seq` went to topic `seq % DIRECT_TOPICS`.
            let share =
                counted.ok / DIRECT_TOPICS + u64::from((i as u64) < counted.ok % DIRECT_TOPICS);
            arrived += subscriber.collect(share).await.0;
            let last = subscriber.last_arrival().map(|t| t - began);
            delivered_in = delivered_in.max(last);
            subscriber.stop().await;
        }
        if arrived < counted.ok {
            figures.lost.push(format!(
                "mqtt_direct_qos0 repetition {rep}: {} published, {} arrived",
                counted.ok, arrived
            ));
        } else {
            let took = delivered_in.unwrap_or(counted.took).max(counted.took);
            figures.mqtt.push(counted.ok as f64 / took.as_secs_f64());
        }
    }
    report_throughput(&figures);
    let latency_failed = latency(&gateway, &channel, &run).await;
    drop(noop);
    drop(gateway);
    latency_failed || !figures.lost.is_empty()
}

fn report_throughput(figures: &Figures) {
    let line = |name: &str, unit: &str, values: &[f64]| {
        if values.is_empty() {
            println!("{name}: no complete run");
            return;
        }
        let (median, min, max) = spread(values);
        println!(
            "{name}: {median:.0} {unit} (min {min:.0}, max {max:.0}, {} runs)",
            values.len()
        );
    };
    line("noop_handler", "requests/s", &figures.noop);
    line("rest_publish_mqtt_qos0", "requests/s", &figures.gateway);
    line("mqtt_direct_qos0", "messages/s", &figures.mqtt);
    if !figures.cpu_us.is_empty() {
        let (median, min, max) = spread(&figures.cpu_us);
        println!("gateway_cpu_per_message: {median:.1} us (min {min:.1}, max {max:.1})");
    }
    if !figures.gateway.is_empty() && !figures.noop.is_empty() {
        let ratio = spread(&figures.gateway).0 / spread(&figures.noop).0;
        println!("ratio_to_noop_handler (REST publish with validation and logging / no-op handler): {ratio:.2}");
    }
    for loss in &figures.lost {
        println!("LOST: {loss}");
    }
}

/// Open-loop latency at 2,000 per second (and at 5,000, which must keep
/// p99 under 5 ms), through the gateway and straight to the broker.
async fn latency(gateway: &Server, channel: &str, run: &str) -> bool {
    let length = Duration::from_secs(5);
    let publish_url = format!("http://{}/messages/publish", gateway.addr);
    let mut failed = false;
    for rate in [2_000, 5_000] {
        let topic = format!("bench/{run}/direct-latency/{rate}");
        let subscriber = Subscriber::start(&topic).await;
        let direct = open_loop_mqtt(&topic, rate, length).await;
        let (arrived, mut direct_latency) = subscriber.collect(direct.ok).await;
        subscriber.stop().await;
        direct_latency.sort_unstable();
        if arrived < direct.ok {
            println!(
                "LOST: direct at {rate}/s: {} published, {arrived} arrived",
                direct.ok
            );
            failed = true;
            continue;
        }

        let device = format!("bench-{run}-latency-{rate}");
        let subscriber = Subscriber::start(&format!("device/{device}/data")).await;
        let (channel, device) = (channel.to_owned(), device.clone());
        let body = move |seq: u64, due: u64| {
            json!({"channel_id": channel, "parameters": {"deviceId": device},
                   "message_data": {"seq": seq, "ts": due, "temperature": 21.5}})
        };
        let through = open_loop_http(&publish_url, rate, length, body).await;
        let (arrived, mut latencies) = subscriber.collect(through.ok).await;
        subscriber.stop().await;
        latencies.sort_unstable();
        if arrived < through.ok || through.errors > 0 {
            println!(
                "LOST: gateway at {rate}/s: {} acknowledged, {arrived} arrived, {} errors",
                through.ok, through.errors
            );
            failed = true;
            continue;
        }
        let (p50, p99, p999) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
        );
        let (d50, d99) = (
            percentile(&direct_latency, 0.50),
            percentile(&direct_latency, 0.99),
        );
        println!(
            "latency_at_{rate}_per_s: gateway p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms; direct p50 {d50:.2} ms, p99 {d99:.2} ms; added p50 {:.2} ms, p99 {:.2} ms",
            p50 - d50,
            p99 - d99
        );
        if rate == 5_000 && p99 > 5.0 {
            println!("FAILED: p99 {p99:.2} ms at 5,000/s exceeds 5 ms (a socket with Nagle's algorithm on?)");
            failed = true;
        }
    }
    failed
}
