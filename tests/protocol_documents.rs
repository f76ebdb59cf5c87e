//! Real AsyncAPI documents on the brokers they describe: NATS documents on
//! the machine's NATS, and the order-flow document on its RabbitMQ.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn nats_config_proxy_routes_over_nats() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = fixture("asyncapi/examples/v2/realworld/nats-config-proxy/asyncapi.json");
    let registered = gw
        .register("nats-config-proxy", &text, Some("nats://127.0.0.1:4222"))
        .await;
    let channel = channel_id(&registered, "accounts.v1.auth.idents.{name}.update");
    let mut ws = gw.subscribe(&channel, "").await;

    let name = format!("ident-{}", uuid::Uuid::new_v4().simple());
    let body = json!({"channel_id": channel, "message_data": {"username": name, "password": "s3cret"}, "parameters": {"name": name}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["protocol"], "nats");
    let frame = ws
        .next_message_where(WAIT, |p| p["username"] == name.as_str())
        .await
        .expect("delivered over NATS");
    assert_eq!(frame["parameters"]["name"], name.as_str());
    assert_eq!(
        frame["address"],
        format!("accounts.v1.auth.idents.{name}.update")
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn ts_nats_template_routes_over_nats() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = fixture("asyncapi/examples/v2/ts-nats-template/simple-request-asyncapi.json");
    let registered = gw
        .register("simple-request", &text, Some("nats://127.0.0.1:4222"))
        .await;
    let channel = channel_id(&registered, "streetlight/{streetlight_id}/event/turnon");
    let id = format!("light{}", uuid::Uuid::new_v4().simple());
    let mut ws = gw
        .subscribe(&channel, &format!("?streetlight_id={id}"))
        .await;
    let body = json!({
        "channel_id": channel,
        "message_data": {"lumen": 3},
        "parameters": {"streetlight_id": id},
    });
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    let frame = ws
        .next_message_where(WAIT, |_| true)
        .await
        .expect("delivered over NATS");
    assert_eq!(frame["parameters"]["streetlight_id"], id.as_str());
    gw.stop().await;
}

#[actix_rt::test]
async fn the_order_flow_runs_over_rabbitmq() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("Order flow", &fixture("order-flow-amqp.yaml"), None)
        .await;
    assert_eq!(registered["brokers"][0]["protocol"], "amqp");
    let order = format!("o{}", uuid::Uuid::new_v4().simple());
    let steps = [
        (
            "orderPlaced",
            json!({"orderId": order, "items": [{"sku": "A-1", "quantity": 2}]}),
        ),
        ("stockReserved", json!({"orderId": order})),
        (
            "orderConfirmed",
            json!({"orderId": order, "confirmedAt": "2026-12-03T12:00:00Z"}),
        ),
    ];
    let mut sessions = Vec::new();
    for (name, _) in &steps {
        sessions.push(
            gw.subscribe(&channel_id(&registered, name), &format!("?orderId={order}"))
                .await,
        );
    }
    for (name, data) in &steps {
        let body = json!({"channel_id": channel_id(&registered, name), "message_data": data});
        let (status, outcome, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 200, "{name}: {outcome}");
    }
    for ((name, data), ws) in steps.iter().zip(sessions.iter_mut()) {
        let frame = ws
            .next_message_where(WAIT, |p| p == data)
            .await
            .unwrap_or_else(|| panic!("{name} not delivered"));
        assert_eq!(frame["parameters"]["orderId"], order.as_str());
    }

    let empty = json!({"channel_id": channel_id(&registered, "orderPlaced"), "message_data": {"orderId": order, "items": []}});
    let (status, problem, _) = gw.post("/messages/publish", &empty).await;
    assert_eq!(status, 422, "an order needs items: {problem}");
    gw.stop().await;
}

/// A channel that is a named AMQP queue (`is: queue`), published with the
/// operation binding's `cc`, priority and delivery mode, and headers.
#[actix_rt::test]
async fn an_amqp_queue_channel_uses_its_queue_and_operation_binding() {
    use futures_util::StreamExt as _;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};

    let run = uuid::Uuid::new_v4().simple().to_string();
    let (jobs, audit) = (
        format!("stepflow.test.jobs.{run}"),
        format!("stepflow.test.audit.{run}"),
    );
    let document = format!(
        "asyncapi: 2.6.0\ninfo: {{title: Jobs, version: '1'}}\n\
         servers:\n  rabbit: {{url: 'amqp://127.0.0.1:5672', protocol: amqp}}\n\
         channels:\n  jobs:\n    bindings:\n      amqp: {{is: queue, queue: {{name: '{jobs}', durable: false, autoDelete: false}}}}\n\
         \x20   publish:\n      bindings: {{amqp: {{cc: ['{audit}'], priority: 3, deliveryMode: 2}}}}\n\
         \x20     message: {{payload: {{type: object, required: [job]}}}}\n"
    );
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Jobs", &document, None).await;
    let channel = channel_id(&registered, "jobs");
    let (_, shown) = gw.get(&format!("/channels/{channel}")).await;
    assert_eq!(shown["mapping"]["queue"], jobs.as_str(), "{shown}");
    assert_eq!(shown["mapping"]["exchange"], "");

    let amqp = lapin::Connection::connect("amqp://127.0.0.1:5672", Default::default())
        .await
        .expect("RabbitMQ");
    let probe = amqp.create_channel().await.expect("channel");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    probe
        .queue_declare(audit.as_str().into(), exclusive, FieldTable::default())
        .await
        .expect("audit queue");
    let mut audit_consumer = probe
        .basic_consume(
            audit.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("audit consumer");

    let mut ws = gw.subscribe(&channel, "").await;
    let body =
        json!({"channel_id": channel, "message_data": {"job": 1}, "headers": {"traceId": "t-1"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    let frame = ws
        .next_message_where(WAIT, |p| p["job"] == 1)
        .await
        .expect("from the queue");
    assert_eq!(frame["headers"]["traceId"], "t-1", "{frame}");
    assert_eq!(frame["address"], "jobs");

    let copied = tokio::time::timeout(WAIT, audit_consumer.next())
        .await
        .expect("a copy through cc")
        .expect("delivery")
        .expect("delivery");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&copied.data).ok(),
        Some(json!({"job": 1}))
    );
    assert_eq!(copied.properties.priority(), &Some(3));
    assert_eq!(copied.properties.delivery_mode(), &Some(2));
    let headers = copied.properties.headers().clone().unwrap_or_default();
    assert!(
        matches!(headers.inner().get("traceId"), Some(AMQPValue::LongString(v)) if v.as_bytes() == b"t-1"),
        "{headers:?}"
    );

    // Another producer of the queue reaches the gateway's subscribers.
    probe
        .basic_publish(
            "".into(),
            jobs.as_str().into(),
            BasicPublishOptions::default(),
            br#"{"job": 2}"#,
            Default::default(),
        )
        .await
        .expect("direct publish");
    ws.next_message_where(WAIT, |p| p["job"] == 2)
        .await
        .expect("direct message");

    // The queue is the channel's, not the subscription's: it stays.
    drop(ws);
    gw.stop().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let check = amqp.create_channel().await.expect("channel");
    check
        .queue_declare(jobs.as_str().into(), passive, FieldTable::default())
        .await
        .expect("the jobs queue is still there");
    check
        .queue_delete(jobs.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("clean up");
}

#[actix_rt::test]
async fn streetlights_kafka_routes_over_a_kafka_broker() {
    let broker = Private::new(tansu);
    let port = broker.port;

    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = fixture("asyncapi/examples/v2/spec-2.6.0/streetlights-kafka.yml");
    let registered = gw
        .register(
            "streetlights-kafka",
            &text,
            Some(&format!("kafka://127.0.0.1:{port}")),
        )
        .await;
    let channel = channel_id(
        &registered,
        "smartylighting.streetlights.1.0.event.{streetlightId}.lighting.measured",
    );
    let mut ws = gw.subscribe(&channel, "?streetlightId=7").await;
    let body = json!({
        "channel_id": channel,
        "message_data": {"lumens": 420, "sentAt": "2026-12-03T10:00:00Z"},
        "parameters": {"streetlightId": "7"},
    });
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["protocol"], "kafka");
    assert_eq!(
        outcome["address"],
        "smartylighting.streetlights.1.0.event.7.lighting.measured"
    );
    let frame = ws
        .next_message_where(WAIT, |p| p["lumens"] == 420)
        .await
        .expect("delivered through Kafka");
    assert_eq!(frame["parameters"]["streetlightId"], "7");

    // The message is keyed by the channel's first parameter, so one
    // streetlight's messages keep their order in one partition.
    let key = tokio::task::spawn_blocking(move || {
        first_key(
            port,
            "smartylighting.streetlights.1.0.event.7.lighting.measured",
        )
    })
    .await
    .expect("join");
    assert_eq!(key.as_deref(), Some("7"));
    gw.stop().await;
}

/// Sends `text` on `path` of a WebSocket broker server, as a market feed
/// would.
async fn feed(server: &WsBrokerServer, path: &str, text: &str) {
    use futures_util::SinkExt as _;
    let url = format!("{}{path}", server.url());
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("feed connects");
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .expect("feed sends");
    let _ = socket.close(None).await;
}

/// The Gemini documents' own example of a market data update.
fn gemini_update() -> serde_json::Value {
    json!({
        "type": "update",
        "eventId": 36902233362_u64,
        "timestamp": 1619769673,
        "timestampms": 1619769673527_u64,
        "socket_sequence": 661,
        "events": [{"type": "change", "side": "bid", "price": 54350.40, "remaining": 0.002, "delta": 0.002, "reason": "place"}]
    })
}

async fn gemini_market_data(document: &str, channel_name: &str) {
    let server = WsBrokerServer::start(None).await;
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("gemini", &fixture(document), Some(&server.url()))
        .await;
    assert_eq!(registered["brokers"][0]["protocol"], "ws");
    let channel = channel_id(&registered, channel_name);
    let mut ws = gw.subscribe(&channel, "?symbol=btcusd").await;

    let update = gemini_update();
    feed(&server, "/v1/marketdata/btcusd", &update.to_string()).await;
    let frame = ws
        .next_message_where(WAIT, |p| p["eventId"] == 36902233362_u64)
        .await
        .expect("market data delivered");
    assert_eq!(frame["parameters"]["symbol"], "btcusd");
    assert_eq!(frame["address"], "/v1/marketdata/btcusd");

    let (status, problem, _) = gw
        .post("/messages/publish", &json!({"channel_id": channel, "message_data": update, "parameters": {"symbol": "notacoin"}}))
        .await;
    assert_eq!(status, 400, "the symbol enum applies: {problem}");
    gw.stop().await;
    server.stop();
}

/// A `wss` server whose certificate a private CA signed: trusted through
/// `brokers.tls_ca_file`, refused without it.
#[actix_rt::test]
async fn a_wss_server_is_reached_over_tls() {
    let (ca_pem, server_tls) = test_tls();
    let server = WsBrokerServer::start_tls(server_tls).await;
    assert!(server.url().starts_with("wss://"));
    let dir = tempfile::tempdir().expect("folder");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("CA written");
    let document = "asyncapi/examples/v2/spec-2.6.0/websocket-gemini.yml";
    let update = gemini_update();
    let publish = |channel: &str| json!({"channel_id": channel, "message_data": update, "parameters": {"symbol": "ethusd"}});

    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.tls_ca_file = Some(ca_file);
    let gw = TestGateway::start(config).await;
    let registered = gw
        .register("gemini", &fixture(document), Some(&server.url()))
        .await;
    assert_eq!(registered["brokers"][0]["url"], server.url().as_str());
    let channel = channel_id(&registered, "/v1/marketdata/{symbol}");
    let mut ws = gw.subscribe(&channel, "?symbol=ethusd").await;
    // The server echoes a frame to every socket on its path, the
    // gateway's own included: out and back in over TLS.
    let (status, outcome, _) = gw.post("/messages/publish", &publish(&channel)).await;
    assert_eq!(status, 200, "{outcome}");
    let frame = ws
        .next_message_where(WAIT, |p| p["eventId"] == 36902233362_u64)
        .await
        .expect("delivered over wss");
    assert_eq!(frame["address"], "/v1/marketdata/ethusd");
    gw.stop().await;

    // Without the CA the server's certificate is not trusted.
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("gemini", &fixture(document), Some(&server.url()))
        .await;
    let channel = channel_id(&registered, "/v1/marketdata/{symbol}");
    let (status, problem, _) = gw.post("/messages/publish", &publish(&channel)).await;
    assert_eq!(status, 503, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("certificate"), "{detail}");
    gw.stop().await;
    server.stop();
}

#[actix_rt::test]
async fn websocket_gemini_2_6_receives_market_data() {
    gemini_market_data(
        "asyncapi/examples/v2/spec-2.6.0/websocket-gemini.yml",
        "/v1/marketdata/{symbol}",
    )
    .await;
}

#[actix_rt::test]
async fn websocket_gemini_3_0_receives_market_data() {
    gemini_market_data(
        "asyncapi/examples/v3/spec-3.0.0/websocket-gemini-asyncapi.yml",
        "marketDataV1",
    )
    .await;
}

/// The key of the first message of a topic, read straight from the broker.
fn first_key(port: u16, topic: &str) -> Option<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::Message as _;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", "stepflow-test-reader")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    for _ in 0..50 {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            return message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned());
        }
    }
    None
}
