//! Kafka on a private tansu broker: a consumer group makes subscriptions
//! resume where the gateway left off, and a `kafka` binding's `topic`
//! carries every address of its channel.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::{json, Value};
use stepflow_gateway::broker::kafka::topic_name;

const WAIT: Duration = Duration::from_secs(15);

const SENSORS: &str = "asyncapi: 3.0.0
info: {title: Sensors, version: '1'}
channels:
  reading:
    address: 'sensors/{sensor}/reading'
    parameters: {sensor: {}}
    messages:
      reading:
        payload: {type: object, required: [n], properties: {n: {type: integer}}}
";

/// Writes one record straight to the broker, as another producer would.
fn produce(port: u16, topic: &str, payload: &Value) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .create()
        .expect("producer");
    let payload = payload.to_string();
    producer
        .send(BaseRecord::<str, str>::to(topic).payload(&payload))
        .expect("queued");
    producer.flush(WAIT).expect("flushed");
}

async fn publish(gw: &TestGateway, channel: &str, parameter: (&str, &str), n: i64) {
    let body = json!({"channel_id": channel, "message_data": {"n": n},
                      "parameters": {parameter.0: parameter.1}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
}

#[actix_rt::test]
async fn a_consumer_group_resumes_where_the_gateway_left_off() {
    let broker = Private::new(tansu);
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.kafka_group_id = Some(format!("stepflow-test-{}", uuid::Uuid::new_v4()));
    let url = broker.url("kafka");

    let gw = TestGateway::start(config.clone()).await;
    let channel = channel_id(
        &gw.register("Sensors", SENSORS, Some(&url)).await,
        "reading",
    );
    let mut ws = gw.subscribe(&channel, "?sensor=a").await;
    publish(&gw, &channel, ("sensor", "a"), 1).await;
    ws.next_message_where(WAIT, |p| p["n"] == 1)
        .await
        .expect("message 1");
    gw.stop().await;

    // Published while no gateway reads the topic.
    let port = broker.port;
    tokio::task::spawn_blocking(move || {
        produce(port, &topic_name("sensors/a/reading"), &json!({"n": 2}))
    })
    .await
    .expect("join");

    let gw = TestGateway::start(config).await;
    let mut ws = gw.subscribe(&channel, "?sensor=a").await;
    let missed = ws
        .next_message_where(WAIT, |p| p["n"].is_i64())
        .await
        .expect("the message published while away");
    assert_eq!(
        missed["payload"]["n"], 2,
        "resumed after message 1: {missed}"
    );
    publish(&gw, &channel, ("sensor", "a"), 3).await;
    ws.next_message_where(WAIT, |p| p["n"] == 3)
        .await
        .expect("message 3");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_bound_topic_carries_every_address_of_its_channel() {
    let broker = Private::new(tansu);
    let topic = format!("telemetry-{}", uuid::Uuid::new_v4().simple());
    let document = format!(
        "asyncapi: 2.6.0\ninfo: {{title: Telemetry, version: '1'}}\nchannels:\n  \
         device/{{deviceId}}/data:\n    bindings: {{kafka: {{topic: {topic}, partitions: 2}}}}\n    \
         publish:\n      message: {{payload: {{type: object, required: [n]}}}}\n"
    );
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("Telemetry", &document, Some(&broker.url("kafka")))
        .await;
    let channel = channel_id(&registered, "device/{deviceId}/data");
    let (_, shown) = gw.get(&format!("/channels/{channel}")).await;
    assert_eq!(shown["mapping"]["topic"], topic.as_str(), "{shown}");

    let mut every = gw.subscribe(&channel, "").await;
    let mut one = gw.subscribe(&channel, "?deviceId=d1").await;
    publish(&gw, &channel, ("deviceId", "d1"), 1).await;
    publish(&gw, &channel, ("deviceId", "d2"), 2).await;
    let mut devices = std::collections::BTreeMap::new();
    while devices.len() < 2 {
        let frame = every
            .next_message_where(WAIT, |p| p["n"] == 1 || p["n"] == 2)
            .await
            .expect("both devices");
        devices.insert(
            frame["payload"]["n"].as_i64().expect("n"),
            frame["parameters"]["deviceId"].clone(),
        );
    }
    assert_eq!(devices[&1], "d1");
    assert_eq!(devices[&2], "d2");

    // The d1 subscriber gets d1's messages only, and a record of another
    // producer (no address header) as its own address's.
    let port = broker.port;
    let bound = topic.clone();
    tokio::task::spawn_blocking(move || produce(port, &bound, &json!({"n": 3})))
        .await
        .expect("join");
    let mut seen = Vec::new();
    while !seen.contains(&3) {
        let frame = one.next_json(WAIT).await.expect("a frame for d1");
        if frame["type"] == "message" {
            assert_eq!(frame["address"], "device/d1/data", "{frame}");
            let carried = frame["headers"].get("stepflow-address");
            assert!(
                carried.is_none(),
                "the address header is not shown: {frame}"
            );
            seen.extend(frame["payload"]["n"].as_i64());
        }
    }
    assert_eq!(seen, [1, 3]);

    let partitions = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .create()
            .expect("client");
        let metadata = client.fetch_metadata(Some(&topic), WAIT).expect("metadata");
        metadata.topics()[0].partitions().len()
    })
    .await
    .expect("join");
    assert_eq!(partitions, 2, "created with the binding's partitions");
    gw.stop().await;
}
