//! One conformance suite that every protocol adapter runs against a real
//! broker on this machine: publish and receive, wildcard subscribe, one
//! broker-side subscription shared by two consumers, unsubscribe when the
//! last consumer leaves, reconnect and resubscribe after the broker
//! restarts (on a private instance, where the protocol allows one), and
//! clean shutdown.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

const DOCUMENT: &str = "asyncapi: 3.0.0
info: {title: Conformance, version: '1'}
channels:
  reading:
    address: 'conf/{run}/{sensor}/reading'
    parameters: {run: {}, sensor: {}}
    messages:
      reading:
        payload: {type: object, required: [n], properties: {n: {type: integer}}}
operations:
  report:
    action: receive
    channel: {$ref: '#/channels/reading'}
";

/// A gateway with the conformance document registered on `url`.
struct Setup {
    gw: TestGateway,
    _db: TestDb,
    channel: String,
    /// Keeps parallel runs on a shared broker apart.
    run: String,
}

impl Setup {
    async fn new(url: &str) -> Self {
        let db = TestDb::sqlite();
        let mut config = test_config(&db.url);
        config.brokers.reconnect_initial_ms = 100;
        config.brokers.reconnect_max_ms = 500;
        let gw = TestGateway::start(config).await;
        let registered = gw.register("conformance", DOCUMENT, Some(url)).await;
        let channel = channel_id(&registered, "reading");
        Self {
            gw,
            _db: db,
            channel,
            run: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn publish(&self, sensor: &str, n: i64) {
        let body = json!({
            "channel_id": self.channel,
            "message_data": {"n": n},
            "parameters": {"run": self.run, "sensor": sensor},
        });
        let (status, outcome, _) = self.gw.post("/messages/publish", &body).await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(
            outcome["address"],
            format!("conf/{}/{sensor}/reading", self.run)
        );
    }

    async fn subscribe(&self, sensor: Option<&str>) -> WsClient {
        let query = match sensor {
            Some(sensor) => format!("?run={}&sensor={sensor}", self.run),
            None => format!("?run={}", self.run),
        };
        self.gw.subscribe(&self.channel, &query).await
    }

    async fn broker_status(&self) -> Value {
        let (_, status) = self.gw.get("/connections/status").await;
        status["brokers"][0].clone()
    }

    async fn wait_for_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, || async {
            let status = self.broker_status().await;
            check(&status).then_some(status)
        })
        .await
        .unwrap_or_else(|| panic!("broker status never showed {what}"))
    }
}

async fn receive(ws: &mut WsClient, n: i64) -> Value {
    ws.next_message_where(WAIT, |p| p["n"] == n)
        .await
        .unwrap_or_else(|| panic!("message {n} never arrived"))
}

async fn publish_and_receive(url: &str) {
    let setup = Setup::new(url).await;
    let mut ws = setup.subscribe(Some("s1")).await;
    setup.publish("s1", 1).await;
    let frame = receive(&mut ws, 1).await;
    assert_eq!(frame["parameters"]["sensor"], "s1");
    assert_eq!(frame["address"], format!("conf/{}/s1/reading", setup.run));
    setup.gw.stop().await;
}

async fn wildcard_subscribe(url: &str) {
    let setup = Setup::new(url).await;
    let mut ws = setup.subscribe(None).await;
    setup.publish("a", 10).await;
    setup.publish("b", 11).await;
    // Two addresses may arrive in either order (two Kafka topics do).
    let mut sensors = std::collections::BTreeMap::new();
    while sensors.len() < 2 {
        let frame = ws
            .next_message_where(WAIT, |p| p["n"] == 10 || p["n"] == 11)
            .await
            .expect("both messages");
        sensors.insert(
            frame["payload"]["n"].as_i64().expect("n"),
            frame["parameters"]["sensor"].clone(),
        );
    }
    assert_eq!(sensors[&10], "a");
    assert_eq!(sensors[&11], "b");
    setup.gw.stop().await;
}

async fn two_consumers_share_one_subscription(url: &str) {
    let setup = Setup::new(url).await;
    let mut first = setup.subscribe(Some("x")).await;
    let mut second = setup.subscribe(Some("x")).await;
    assert_eq!(
        setup.broker_status().await["subscriptions"],
        1,
        "one broker-side subscription"
    );
    setup.publish("x", 20).await;
    receive(&mut first, 20).await;
    receive(&mut second, 20).await;

    drop(first);
    drop(second);
    setup
        .wait_for_status("no subscription left", |s| s["subscriptions"] == 0)
        .await;
    if url.starts_with("amqp") {
        let gone = eventually(WAIT, || async {
            (!rabbitmq_binds(&setup.run)).then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "the AMQP queue of the subscription was left behind"
        );
    }
    setup.gw.stop().await;
}

/// Whether RabbitMQ still has a binding for a routing key of this run.
fn rabbitmq_binds(run: &str) -> bool {
    let output = Command::new("rabbitmqctl")
        .args(["list_bindings", "routing_key", "--quiet"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).contains(run)
}

/// A wildcard and a concrete subscription that both match a message each
/// deliver it once, though they are two subscriptions at the broker.
async fn overlapping_filters_deliver_once_each(url: &str) {
    let setup = Setup::new(url).await;
    let mut every = setup.subscribe(None).await;
    let mut one = setup.subscribe(Some("o")).await;
    setup.publish("o", 50).await;
    setup.publish("o", 51).await;
    for ws in [&mut every, &mut one] {
        let mut seen = Vec::new();
        while !seen.contains(&51) {
            let frame = ws.next_json(WAIT).await.expect("a frame");
            if frame["type"] == "message" {
                seen.extend(frame["payload"]["n"].as_i64());
            }
        }
        assert_eq!(seen, [50, 51], "each message once, in order");
    }
    setup.gw.stop().await;
}

async fn clean_shutdown(url: &str) {
    let setup = Setup::new(url).await;
    let mut ws = setup.subscribe(Some("z")).await;
    let Setup { gw, .. } = setup;
    gw.stop().await;
    let reason = ws.next_close(WAIT).await.expect("a close frame");
    assert_eq!(reason.code, awc::ws::CloseCode::Away);
}

async fn reconnects_after_restart(scheme: &str, start: fn(u16) -> Child) {
    let mut broker = Private::new(start);
    let setup = Setup::new(&broker.url(scheme)).await;
    let mut ws = setup.subscribe(Some("r")).await;
    setup.publish("r", 30).await;
    receive(&mut ws, 30).await;

    broker.down();
    let outage = setup
        .wait_for_status("the outage", |s| s["state"] != "connected")
        .await;
    assert!(outage["last_error"].is_string(), "{outage}");
    broker.up_async().await;
    let back = setup
        .wait_for_status("the reconnection", |s| s["state"] == "connected")
        .await;
    assert!(back["reconnects"].as_u64().unwrap_or(0) >= 1, "{back}");

    // The subscription was re-established: a message after the restart
    // reaches the same session.
    setup.publish("r", 31).await;
    receive(&mut ws, 31).await;
    setup.gw.stop().await;
}

macro_rules! conformance {
    ($name:ident, $url:expr) => {
        mod $name {
            #[actix_rt::test]
            async fn publish_and_receive() {
                super::publish_and_receive($url).await;
            }

            #[actix_rt::test]
            async fn wildcard_subscribe() {
                super::wildcard_subscribe($url).await;
            }

            #[actix_rt::test]
            async fn two_consumers_share_one_subscription() {
                super::two_consumers_share_one_subscription($url).await;
            }

            #[actix_rt::test]
            async fn clean_shutdown() {
                super::clean_shutdown($url).await;
            }

            #[actix_rt::test]
            async fn overlapping_filters_deliver_once_each() {
                super::overlapping_filters_deliver_once_each($url).await;
            }
        }
    };
}

conformance!(memory, "memory://conformance");
conformance!(mqtt, "mqtt://127.0.0.1:1883");
conformance!(nats, "nats://127.0.0.1:4222");
conformance!(amqp, "amqp://127.0.0.1:5672");

#[actix_rt::test]
async fn mqtt_reconnects_after_its_broker_restarts() {
    reconnects_after_restart("mqtt", mosquitto).await;
}

#[actix_rt::test]
async fn nats_reconnects_after_its_broker_restarts() {
    reconnects_after_restart("nats", nats_server).await;
}

#[actix_rt::test]
async fn amqp_reconnects_after_its_broker_restarts() {
    reconnects_after_restart("amqp", rabbitmq).await;
}

/// The broker closing the gateway's connection (found by its client name)
/// is recovered from as well.
#[actix_rt::test]
async fn amqp_reconnects_after_the_broker_drops_the_connection() {
    let setup = Setup::new("amqp://127.0.0.1:5672").await;
    let mut ws = setup.subscribe(Some("r")).await;
    setup.publish("r", 40).await;
    receive(&mut ws, 40).await;

    let broker = setup.broker_status().await["broker_id"]
        .as_str()
        .expect("broker id")
        .to_owned();
    let name = format!("stepflow-gateway broker {broker}");
    let listed = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties"])
        .args(["--quiet", "--no-table-headers"])
        .output()
        .expect("rabbitmqctl runs");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let pid = listed
        .lines()
        .filter(|line| line.contains(&name))
        .find_map(|line| line.split_once('\t'))
        .map(|(pid, _)| pid.trim().to_owned())
        .unwrap_or_else(|| panic!("no connection named {name} in {listed}"));
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "closed by the conformance test"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );

    let back = setup
        .wait_for_status("the reconnection", |s| {
            s["state"] == "connected" && s["reconnects"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    let error = back["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("closed by the conformance test"), "{back}");
    setup.publish("r", 41).await;
    receive(&mut ws, 41).await;
    setup.gw.stop().await;
}

#[actix_rt::test]
async fn kafka_reconnects_after_its_broker_restarts() {
    reconnects_after_restart("kafka", tansu).await;
}

/// Kafka runs the suite on a private tansu per test.
mod kafka {
    use super::*;

    #[actix_rt::test]
    async fn publish_and_receive() {
        let broker = Private::new(tansu);
        super::publish_and_receive(&broker.url("kafka")).await;
    }

    #[actix_rt::test]
    async fn wildcard_subscribe() {
        let broker = Private::new(tansu);
        super::wildcard_subscribe(&broker.url("kafka")).await;
    }

    #[actix_rt::test]
    async fn two_consumers_share_one_subscription() {
        let broker = Private::new(tansu);
        super::two_consumers_share_one_subscription(&broker.url("kafka")).await;
    }

    #[actix_rt::test]
    async fn clean_shutdown() {
        let broker = Private::new(tansu);
        super::clean_shutdown(&broker.url("kafka")).await;
    }

    #[actix_rt::test]
    async fn overlapping_filters_deliver_once_each() {
        let broker = Private::new(tansu);
        super::overlapping_filters_deliver_once_each(&broker.url("kafka")).await;
    }
}

/// A broker that refuses the connection shows in the status with the
/// reason, and a publish to it fails at once with 503, never hangs.
#[actix_rt::test]
async fn unreachable_brokers_answer_503_and_show_why() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    for scheme in ["mqtt", "nats", "amqp", "kafka"] {
        let setup = Setup::new(&format!("{scheme}://127.0.0.1:{closed}")).await;
        let status = setup
            .wait_for_status("the failure", |s| s["last_error"].is_string())
            .await;
        assert_ne!(status["state"], "connected", "{scheme}: {status}");
        let started = std::time::Instant::now();
        let body = json!({"channel_id": setup.channel, "message_data": {"n": 1}, "parameters": {"run": "r", "sensor": "s"}});
        let (code, problem, _) = setup.gw.post("/messages/publish", &body).await;
        assert_eq!(code, 503, "{scheme}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("unavailable"),
            "{scheme}: {problem}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{scheme}: answered in {:?}",
            started.elapsed()
        );
        setup.gw.stop().await;
    }
}

/// WebSocket servers as brokers run the suite against a server the test
/// starts. A path cannot be a wildcard, so the wildcard case checks the
/// clear refusal instead.
mod websocket {
    use super::*;

    #[actix_rt::test]
    async fn publish_and_receive() {
        let server = WsBrokerServer::start(None).await;
        super::publish_and_receive(&server.url()).await;
        server.stop();
    }

    #[actix_rt::test]
    async fn wildcard_subscribe_is_refused_with_the_reason() {
        let server = WsBrokerServer::start(None).await;
        let setup = Setup::new(&server.url()).await;
        let url = format!(
            "{}/ws/{}?run={}",
            setup.gw.base.replace("http://", "ws://"),
            setup.channel,
            setup.run
        );
        let (_response, framed) = setup
            .gw
            .client
            .ws(url)
            .connect()
            .await
            .expect("websocket upgrade");
        let mut ws = WsClient { framed };
        let reason = ws.next_close(WAIT).await.expect("a close frame");
        assert!(reason.description.unwrap_or_default().contains("wildcard"));
        setup.gw.stop().await;
        server.stop();
    }

    #[actix_rt::test]
    async fn two_consumers_share_one_subscription() {
        let server = WsBrokerServer::start(None).await;
        super::two_consumers_share_one_subscription(&server.url()).await;
        server.stop();
    }

    #[actix_rt::test]
    async fn clean_shutdown() {
        let server = WsBrokerServer::start(None).await;
        super::clean_shutdown(&server.url()).await;
        server.stop();
    }

    #[actix_rt::test]
    async fn reconnects_after_the_server_restarts() {
        let server = WsBrokerServer::start(None).await;
        let port = server.port;
        let setup = Setup::new(&server.url()).await;
        let mut ws = setup.subscribe(Some("r")).await;
        setup.publish("r", 30).await;
        receive(&mut ws, 30).await;

        server.stop();
        setup
            .wait_for_status("the outage", |s| s["state"] != "connected")
            .await;
        let server = WsBrokerServer::start(Some(port)).await;
        setup
            .wait_for_status("the reconnection", |s| s["state"] == "connected")
            .await;
        setup.publish("r", 31).await;
        receive(&mut ws, 31).await;
        setup.gw.stop().await;
        server.stop();
    }
}

/// A broker that refuses the credentials: the status says so, a publish
/// answers 503, and the password shows nowhere.
#[actix_rt::test]
async fn refused_credentials_show_in_the_status() {
    let setup = Setup::new("amqp://guest:not-the-password@127.0.0.1:5672").await;
    let status = setup
        .wait_for_status("the refusal", |s| s["last_error"].is_string())
        .await;
    assert_ne!(status["state"], "connected", "{status}");
    let error = status["last_error"].as_str().expect("last error");
    assert!(
        error.contains("ACCESS_REFUSED") || error.to_lowercase().contains("auth"),
        "{error}"
    );
    assert!(!status.to_string().contains("not-the-password"), "{status}");
    let body = json!({"channel_id": setup.channel, "message_data": {"n": 1}, "parameters": {"run": "r", "sensor": "s"}});
    let (code, problem, _) = setup.gw.post("/messages/publish", &body).await;
    assert_eq!(code, 503, "{problem}");
    assert!(
        !problem.to_string().contains("not-the-password"),
        "{problem}"
    );
    setup.gw.stop().await;
}
