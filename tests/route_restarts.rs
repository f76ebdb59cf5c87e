//! A static route through broker restarts: 10,000 device readings
//! published by an MQTT client at QoS 1 on a private Mosquitto are routed
//! into Kafka (a private tansu) while the test stops and restarts the
//! Kafka broker, then the MQTT broker. Every reading Mosquitto
//! acknowledged to the device is in Kafka, in order per device; duplicates
//! (MQTT and Kafka publishes are at-least-once) are counted and printed.
//! The route acknowledges each reading to Mosquitto only once Kafka has
//! it, so readings the route held when Mosquitto restarted come again,
//! and a gateway killed with readings in hand gets them again when it
//! restarts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stepflow_gateway::config::{DocumentFile, RouteConfig, RouteEnd};

const DEVICES: i64 = 10;
const TOTAL: i64 = 10_000;
/// Readings published before the Kafka broker stops, and before the MQTT
/// broker stops.
const KAFKA_STOP_AT: i64 = 3_000;
const MQTT_STOP_AT: i64 = 8_000;

fn iot(port: u16, prefix: &str) -> String {
    format!(
        "asyncapi: 2.6.0\ninfo: {{title: IoT Device API, version: '1'}}\n\
         servers:\n  plant: {{url: 'mqtt://127.0.0.1:{port}', protocol: mqtt}}\n\
         channels:\n  '{prefix}/{{deviceId}}/data':\n    parameters:\n      deviceId: {{schema: {{type: string}}}}\n\
         \x20   publish:\n      bindings: {{mqtt: {{qos: 1}}}}\n\
         \x20     message:\n        payload: {{type: object, required: [seq]}}\n"
    )
}

fn telemetry(port: u16, topic: &str) -> String {
    format!(
        "asyncapi: 2.6.0\ninfo: {{title: Telemetry Stream, version: '1'}}\n\
         servers:\n  stream: {{url: '127.0.0.1:{port}', protocol: kafka}}\n\
         channels:\n  '{topic}':\n    subscribe:\n      message:\n\
         \x20       payload:\n          type: object\n          required: [seq, device]\n\
         \x20         properties: {{seq: {{type: integer}}, device: {{type: string}}}}\n"
    )
}

/// Mosquitto on `port` that keeps sessions and their queued messages on
/// disk across a restart, with no limit on what it queues.
fn persistent_mosquitto(port: u16) -> std::process::Child {
    let folder = std::env::temp_dir().join(format!("stepflow-mosquitto-db-{port}"));
    std::fs::create_dir_all(&folder).expect("persistence folder");
    // Started as root, Mosquitto drops to its own user before it writes.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777))
        .expect("persistence folder opened to Mosquitto's user");
    let settings = format!(
        "allow_anonymous true\npersistence true\npersistence_location {}/\n\
         max_queued_messages 0\nmax_inflight_messages 0\n",
        folder.display()
    );
    mosquitto_with(port, &settings)
}

/// Every record of `topic` on the Kafka broker at `port`, read from the
/// beginning by a consumer of the test's own until `stop` is set.
fn read_kafka(
    port: u16,
    topic: String,
    seen: Arc<Mutex<Vec<Value>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::Message as _;
    std::thread::spawn(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("group.id", "stepflow-route-restarts")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("Kafka consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assigned");
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let payload = record.payload().unwrap_or_default();
            if let Ok(value) = serde_json::from_slice::<Value>(payload) {
                seen.lock().expect("seen").push(value);
            }
        }
    })
}

/// The test's own Kafka reader, started and stopped with each life of the
/// Kafka broker.
struct Reader {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    fn start(port: u16, topic: &str, seen: &Arc<Mutex<Vec<Value>>>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = read_kafka(port, topic.to_owned(), seen.clone(), stop.clone());
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("reader thread");
    }
}

/// An MQTT device client that publishes at QoS 1 and, when the broker is
/// away, reconnects and tries the same reading again.
struct Device {
    client: paho_mqtt::AsyncClient,
}

impl Device {
    async fn connect(port: u16) -> Self {
        let options = paho_mqtt::CreateOptionsBuilder::new()
            .server_uri(format!("tcp://127.0.0.1:{port}"))
            .client_id(format!("device-{}", uuid::Uuid::new_v4().simple()))
            .persistence(paho_mqtt::PersistenceType::None)
            .finalize();
        let client = paho_mqtt::AsyncClient::new(options).expect("MQTT client");
        client.connect(None).await.expect("Mosquitto");
        Self { client }
    }

    /// Publishes until the broker acknowledges; answers how many tries
    /// failed first.
    async fn publish(&self, topic: &str, payload: &Value) -> u32 {
        let mut failures = 0;
        loop {
            let message = paho_mqtt::Message::new(topic, payload.to_string(), 1);
            if self.client.publish(message).await.is_ok() {
                return failures;
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !self.client.is_connected() {
                let _ = self.client.reconnect().await;
            }
        }
    }
}

fn route_config() -> RouteConfig {
    let end = |document: &str, channel: &str| RouteEnd {
        document: document.into(),
        channel: Some(channel.into()),
        ..RouteEnd::default()
    };
    RouteConfig {
        name: "telemetry-to-kafka".into(),
        from: end("IoT Device API", "data"),
        to: end("Telemetry Stream", "telemetry"),
        principal: None,
        roles: Vec::new(),
        validate: true,
        max_pending: 100_000,
    }
}

async fn route_status(gw: &TestGateway) -> Value {
    let (_, status) = gw.get("/connections/status").await;
    status["routes"][0].clone()
}

/// Waits until the route has forwarded `count` readings and the reader
/// has them all: the Kafka broker then holds nothing that only it knows.
async fn caught_up(gw: &TestGateway, seen: &Arc<Mutex<Vec<Value>>>, count: i64) {
    let settled = eventually(Duration::from_secs(60), || async {
        let forwarded = route_status(gw).await["forwarded"].as_i64().unwrap_or(0);
        let read = seen.lock().expect("seen").len() as i64;
        (forwarded >= count && read >= forwarded).then_some(())
    })
    .await;
    assert!(settled.is_some(), "{}", route_status(gw).await);
}

#[actix_rt::test]
async fn routed_readings_survive_kafka_and_mqtt_restarts() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("stepflow-restarts-{run}");
    let topic = format!("telemetry-{run}");
    let mut mqtt = Private::new(persistent_mosquitto);
    let mut kafka = Private::new(tansu);
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let mut config = test_config(&db.url);
    for (name, text) in [
        ("IoT Device API", iot(mqtt.port, &prefix)),
        ("Telemetry Stream", telemetry(kafka.port, &topic)),
    ] {
        let path = dir.path().join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&path, text).expect("document written");
        config.documents.push(DocumentFile {
            name: name.into(),
            path,
            base_url: None,
            server_urls: BTreeMap::new(),
        });
    }
    // The channel keys of 2.x documents are their addresses.
    let mut route = route_config();
    route.from.channel = Some(format!("{prefix}/{{deviceId}}/data"));
    route.to.channel = Some(topic.clone());
    config.routes = vec![route];
    config.brokers.reconnect_initial_ms = 100;
    config.brokers.reconnect_max_ms = 500;
    config.brokers.connect_timeout_ms = 2_000;
    // A publish gives up after three seconds, well within the Kafka
    // outage: the route has to try its message again.
    config.server.publish_timeout_ms = 3_000;
    config.brokers.buffer_timeout_ms = 1_000;
    let gw = TestGateway::start(config).await;
    let active = eventually(Duration::from_secs(20), || async {
        (route_status(&gw).await["state"] == "active").then_some(())
    })
    .await;
    assert!(active.is_some(), "{}", route_status(&gw).await);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reader = Some(Reader::start(kafka.port, &topic, &seen));
    let device = Device::connect(mqtt.port).await;
    let mut acknowledged: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut device_retries = 0;
    let mut held_in_outage = Value::Null;
    let begin = Instant::now();
    for n in 0..TOTAL {
        if n == KAFKA_STOP_AT {
            // The memory-only test broker forgets what it holds: stop it
            // once its reader has everything the route forwarded so far.
            caught_up(&gw, &seen, KAFKA_STOP_AT).await;
            reader.take().expect("reader").stop();
            kafka.down();
            println!("kafka stopped at reading {n}");
        }
        // Longer than a publish waits in the broker's buffer: the route
        // has to try again.
        if n == KAFKA_STOP_AT + 4_000 {
            kafka.up_async().await;
            reader = Some(Reader::start(kafka.port, &topic, &seen));
            println!("kafka started again at reading {n}");
        }
        if n == KAFKA_STOP_AT + 3_500 {
            held_in_outage = route_status(&gw).await;
        }
        if n == MQTT_STOP_AT {
            // Mosquitto writes its sessions and queued messages to disk
            // when it stops.
            mqtt.stop();
            println!("mosquitto stopped at reading {n}");
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            mqtt.up_async().await;
            println!("mosquitto started again");
        }
        let id = format!("d{}", n % DEVICES);
        let seq = n / DEVICES;
        let reading = json!({"device": id, "seq": seq});
        device_retries += device
            .publish(&format!("{prefix}/{id}/data"), &reading)
            .await;
        acknowledged.insert((id, seq));
        // About 1,000 readings a second.
        tokio::time::sleep_until((begin + Duration::from_millis(n as u64)).into()).await;
    }

    println!("published {TOTAL} readings in {:?}", begin.elapsed());
    let complete = eventually(Duration::from_secs(60), || async {
        let seen = seen.lock().expect("seen");
        let unique: BTreeSet<(String, i64)> = seen.iter().map(key).collect();
        acknowledged.is_subset(&unique).then_some(())
    })
    .await;
    let status = route_status(&gw).await;
    if let Some(reader) = reader.take() {
        reader.stop();
    }
    let seen = seen.lock().expect("seen").clone();
    let unique: BTreeSet<(String, i64)> = seen.iter().map(key).collect();
    let lost: Vec<_> = acknowledged.difference(&unique).collect();
    println!(
        "route through restarts: acknowledged by Mosquitto {}, held during the Kafka outage {}, \
         forwarded {}, still pending {}, retries {}, in Kafka {} ({} unique), lost {}, \
         duplicates {}, device retries {}",
        acknowledged.len(),
        held_in_outage["pending"],
        status["forwarded"],
        status["pending"],
        status["retries"],
        seen.len(),
        unique.len(),
        lost.len(),
        seen.len() - unique.len(),
        device_retries
    );
    assert!(
        complete.is_some(),
        "lost: {:?}",
        &lost[..lost.len().min(20)]
    );
    // Readings that came while Kafka was down waited in the route.
    let held = held_in_outage["pending"].as_u64().unwrap_or(0);
    assert!(held >= 3_000, "held during the outage: {held_in_outage}");
    assert_in_order(&seen);
    gw.stop().await;
}

fn key(value: &Value) -> (String, i64) {
    (
        value["device"].as_str().unwrap_or_default().to_owned(),
        value["seq"].as_i64().unwrap_or(-1),
    )
}

/// Per device, each reading first appears after the one before it; a
/// duplicate may repeat an earlier one.
fn assert_in_order(seen: &[Value]) {
    let mut first: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut counted = BTreeSet::new();
    for (device, seq) in seen.iter().map(key) {
        if counted.insert((device.clone(), seq)) {
            first.entry(device).or_default().push(seq);
        }
    }
    for (device, order) in first {
        let sorted = {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted
        };
        assert_eq!(order, sorted, "readings of {device} out of order");
    }
}

/// The gateway as users run it, a child process on `config`, with the
/// address it listens on.
fn serve(config: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(gateway_binary())
        .args(["serve", "--log-json", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gateway binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(addr) = event["fields"]["local_addr"].as_str() {
                let _ = addr_tx.send(addr.to_owned());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway logs its address");
    (child, format!("http://{addr}"))
}

/// The route's status, read from a gateway process.
async fn served_route(base: &str) -> Value {
    let client = awc::Client::default();
    let Ok(mut response) = client
        .get(format!("{base}/connections/status"))
        .send()
        .await
    else {
        return Value::Null;
    };
    let status: Value = response.json().await.unwrap_or_default();
    status["routes"][0].clone()
}

/// A gateway killed with readings in hand loses none of them: the route
/// acknowledges a reading to Mosquitto only once Kafka has it, and its
/// MQTT session outlives the process, so Mosquitto sends the readings
/// again to the restarted gateway.
#[actix_rt::test]
async fn readings_held_by_a_killed_gateway_reach_kafka_after_it_restarts() {
    const HELD: i64 = 1_000;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("stepflow-killed-{run}");
    let topic = format!("telemetry-{run}");
    let mqtt = Private::new(persistent_mosquitto);
    let mut kafka = Private::new(tansu);
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let mut toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\npublish_timeout_ms = 3000\n\
         [database]\nurl = \"{}\"\n\
         [brokers]\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n\
         connect_timeout_ms = 2000\nbuffer_timeout_ms = 1000\n",
        db.url
    );
    for (name, text) in [
        ("IoT Device API", iot(mqtt.port, &prefix)),
        ("Telemetry Stream", telemetry(kafka.port, &topic)),
    ] {
        let path = dir.path().join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&path, text).expect("document written");
        toml += &format!(
            "[[documents]]\nname = \"{name}\"\npath = \"{}\"\n",
            path.display()
        );
    }
    toml += &format!(
        "[[routes]]\nname = \"held-{run}\"\n\
         from = {{ document = \"IoT Device API\", channel = \"{prefix}/{{deviceId}}/data\" }}\n\
         to = {{ document = \"Telemetry Stream\", channel = \"{topic}\" }}\n"
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, toml).expect("config written");

    let (mut first, base) = serve(&config);
    let active = eventually(Duration::from_secs(20), || async {
        (served_route(&base).await["state"] == "active").then_some(())
    })
    .await;
    assert!(active.is_some(), "{}", served_route(&base).await);
    kafka.down();
    let device = Device::connect(mqtt.port).await;
    let mut acknowledged = BTreeSet::new();
    for n in 0..HELD {
        let id = format!("d{}", n % DEVICES);
        let reading = json!({"device": id, "seq": n / DEVICES});
        device
            .publish(&format!("{prefix}/{id}/data"), &reading)
            .await;
        acknowledged.insert((id, n / DEVICES));
    }
    let held = eventually(Duration::from_secs(30), || async {
        let pending = served_route(&base).await["pending"].as_i64().unwrap_or(0);
        (pending == HELD).then_some(pending)
    })
    .await;
    assert!(held.is_some(), "{}", served_route(&base).await);
    first.kill().expect("gateway killed");
    first.wait().expect("gateway gone");

    kafka.up_async().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = Reader::start(kafka.port, &topic, &seen);
    let (mut second, _) = serve(&config);
    let complete = eventually(Duration::from_secs(60), || async {
        let seen = seen.lock().expect("seen");
        let unique: BTreeSet<(String, i64)> = seen.iter().map(key).collect();
        acknowledged.is_subset(&unique).then_some(())
    })
    .await;
    let _ = second.kill();
    let _ = second.wait();
    reader.stop();
    let seen = seen.lock().expect("seen").clone();
    let unique: BTreeSet<(String, i64)> = seen.iter().map(key).collect();
    let lost = acknowledged.difference(&unique).count();
    println!(
        "killed gateway: acknowledged by Mosquitto {}, held by the route when killed {HELD}, \
         in Kafka after the restart {} ({} unique), lost {lost}, duplicates {}",
        acknowledged.len(),
        seen.len(),
        unique.len(),
        seen.len() - unique.len()
    );
    assert!(complete.is_some() && lost == 0, "lost {lost} readings");
    assert_in_order(&seen);
}
