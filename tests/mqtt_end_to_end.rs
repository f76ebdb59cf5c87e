//! End to end over the machine's Mosquitto: REST publish to MQTT, to plain
//! MQTT subscribers and to WebSocket sessions, with schema checks and the
//! call log.

mod common;

use std::time::Duration;

use common::*;
use entity::message_call_logs;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn call_log(db: &TestDb, id: &str) -> message_call_logs::Model {
    let conn = db.connect().await;
    eventually(WAIT, || async {
        message_call_logs::Entity::find_by_id(id.to_owned())
            .one(&conn)
            .await
            .ok()
            .flatten()
    })
    .await
    .unwrap_or_else(|| panic!("call log {id} was never written"))
}

#[actix_rt::test]
async fn iot_publish_reaches_mqtt_and_websocket_subscribers() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("IoT Device API", &iot_document(), Some(MQTT_URL))
        .await;
    let channel = channel_id(&registered, "device/{deviceId}/data");
    assert_eq!(registered["brokers"][0]["protocol"], "mqtt");
    assert_eq!(registered["brokers"][0]["url"], MQTT_URL);

    // A unique device keeps parallel runs on the shared broker apart.
    let device = format!("sensor-001-{}", uuid::Uuid::new_v4().simple());
    let topic = format!("device/{device}/data");
    let mut mqtt = MqttProbe::subscribe(&topic).await;
    let mut all_devices = gw.subscribe(&channel, "").await;
    let mut one_device = gw.subscribe(&channel, &format!("?deviceId={device}")).await;

    let data = json!({"deviceId": device, "temperature": 25.5, "humidity": 60.2});
    let (status, outcome, _) = gw
        .post(
            "/messages/publish",
            &json!({"channel_id": channel, "message_data": data}),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "delivered");
    assert_eq!(outcome["address"], topic);
    assert_eq!(outcome["protocol"], "mqtt");
    assert_eq!(outcome["validated"], true);
    assert!(outcome["latency_ms"].as_f64().expect("latency") > 0.0);

    let (got_topic, got_payload) = mqtt
        .next(WAIT)
        .await
        .expect("plain MQTT subscriber receives it");
    assert_eq!(got_topic, topic);
    assert_eq!(got_payload, data);
    for ws in [&mut all_devices, &mut one_device] {
        let frame = ws
            .next_message_where(WAIT, |p| p["deviceId"] == device.as_str())
            .await
            .expect("WebSocket frame");
        assert_eq!(frame["payload"], data);
        assert_eq!(frame["address"], topic);
        assert_eq!(frame["parameters"]["deviceId"], device.as_str());
        assert_eq!(frame["channel_id"], channel.as_str());
    }

    let row = call_log(&db, outcome["call_log_id"].as_str().expect("call log id")).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.direction, "publish");
    assert_eq!(row.address.as_deref(), Some(topic.as_str()));
    assert_eq!(row.channel_id.as_deref(), Some(channel.as_str()));
    assert!(row.latency_us.expect("latency recorded") > 0);
    mqtt.close().await;
    gw.stop().await;
}

/// Publishes a lighting measurement for streetlight 7 on a streetlights
/// document and checks the topic, the QoS from the operation trait, and both
/// kinds of subscriber.
async fn streetlight_measurement(gw: &TestGateway, registered: &Value, channel_name: &str) {
    let channel = channel_id(registered, channel_name);
    let topic = "smartylighting/streetlights/1/0/event/7/lighting/measured";
    let mut mqtt = MqttProbe::subscribe(topic).await;
    let mut ws = gw.subscribe(&channel, "?streetlightId=7").await;
    let lumens = rand_lumens();
    let data = json!({"lumens": lumens, "sentAt": "2026-12-03T10:00:00Z"});
    let body =
        json!({"channel_id": channel, "message_data": data, "parameters": {"streetlightId": "7"}});

    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["address"], topic);
    assert_eq!(
        outcome["qos"], 1,
        "QoS 1 comes from the operation trait's mqtt binding"
    );
    assert_eq!(outcome["message_name"], "lightMeasured");

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (got_topic, payload) = mqtt
            .next(left)
            .await
            .expect("measurement on the MQTT topic");
        if payload["lumens"] == lumens {
            assert_eq!(got_topic, topic);
            break;
        }
    }
    let frame = ws
        .next_message_where(WAIT, |p| p["lumens"] == lumens)
        .await
        .expect("WebSocket frame");
    assert_eq!(frame["parameters"]["streetlightId"], "7");
    mqtt.close().await;
}

fn rand_lumens() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_fields().0 % 1_000_000)
}

#[actix_rt::test]
async fn streetlights_2_6_publishes_on_the_topic_the_document_defines() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = fixture("asyncapi/examples/v2/spec-2.6.0/streetlights-mqtt.yml");
    let registered = gw.register("Streetlights 2.6", &text, Some(MQTT_URL)).await;
    assert_eq!(registered["asyncapi_version"], "2.6.0");
    streetlight_measurement(
        &gw,
        &registered,
        "smartylighting/streetlights/1/0/event/{streetlightId}/lighting/measured",
    )
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn streetlights_3_0_publishes_on_the_topic_the_document_defines() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = fixture("asyncapi/examples/v3/spec-3.0.0/streetlights-mqtt-asyncapi.yml");
    let registered = gw.register("Streetlights 3.0", &text, Some(MQTT_URL)).await;
    assert_eq!(registered["asyncapi_version"], "3.0.0");
    let channels = registered["channels"].as_array().expect("channels");
    let measured = channels
        .iter()
        .find(|c| c["name"] == "lightingMeasured")
        .expect("lightingMeasured");
    assert_eq!(
        measured["client_publish"], true,
        "3.0 `receive` means clients send"
    );
    let turn_on = channels
        .iter()
        .find(|c| c["name"] == "lightTurnOn")
        .expect("lightTurnOn");
    assert_eq!(
        turn_on["client_subscribe"], true,
        "3.0 `send` means clients receive"
    );
    streetlight_measurement(&gw, &registered, "lightingMeasured").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn bad_input_is_refused_with_a_clear_problem_and_logged() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register("IoT Device API", &iot_document(), Some(MQTT_URL))
        .await;
    let channel = channel_id(&registered, "device/{deviceId}/data");

    let bad =
        json!({"channel_id": channel, "message_data": {"deviceId": "d1", "temperature": "hot"}});
    let (status, problem, content_type) = gw.post("/messages/publish", &bad).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["errors"][0]["pointer"], "/temperature");
    assert_eq!(problem["errors"][0]["rule"], "type");
    let rejected = call_log(&db, problem["call_log_id"].as_str().expect("call log id")).await;
    assert_eq!(rejected.status, "rejected");
    assert_eq!(rejected.error_kind.as_deref(), Some("validation"));

    let missing = json!({"channel_id": channel, "message_data": {"temperature": 20}});
    let (status, problem, _) = gw.post("/messages/publish", &missing).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["parameter"], "deviceId");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("deviceId"));
    let rejected = call_log(&db, problem["call_log_id"].as_str().expect("call log id")).await;
    assert_eq!(rejected.error_kind.as_deref(), Some("parameter"));

    let injected = json!({"channel_id": channel, "message_data": {"temperature": 1}, "parameters": {"deviceId": "a/#"}});
    let (status, problem, _) = gw.post("/messages/publish", &injected).await;
    assert_eq!(status, 400, "a value may not widen the topic: {problem}");
    assert_eq!(problem["parameter"], "deviceId");

    let unknown = json!({"channel_id": "no-such-channel", "message_data": {}});
    let (status, problem, _) = gw.post("/messages/publish", &unknown).await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("no-such-channel"));

    let (status, problem, _) = gw
        .post("/messages/publish", &json!({"channel_id": channel}))
        .await;
    assert_eq!(
        status, 400,
        "a body without message_data is malformed: {problem}"
    );
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("message_data"));

    gw.stop().await;
}

#[actix_rt::test]
async fn a_rejected_registration_stores_nothing() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let cases = [
        ("openapi: 3.0.0\ninfo: {title: x, version: '1'}\npaths: {}\n", "asyncapi-version", "/asyncapi"),
        ("asyncapi: 1.2.0\ninfo: {title: x, version: '1'}\n", "asyncapi-version", "/asyncapi"),
        ("asyncapi: [unclosed\n", "syntax", ""),
        (
            "asyncapi: 2.6.0\ninfo: {title: x, version: '1'}\nchannels:\n  a:\n    publish:\n      message: {$ref: '#/components/messages/Nope'}\n",
            "unresolved-ref",
            "/channels/a/publish/message/$ref",
        ),
    ];
    for (text, rule, pointer) in cases {
        let (status, problem, content_type) = gw
            .post(
                "/asyncapis/register",
                &json!({"name": "bad", "asyncapi_content": text}),
            )
            .await;
        assert_eq!(status, 400, "{text}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["errors"][0]["rule"], rule, "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let (status, problem, _) = gw
        .post(
            "/asyncapis/register",
            &json!({"name": "bad", "asyncapi_content": 42}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");

    let (_, listed) = gw.get("/asyncapis").await;
    assert_eq!(listed["documents"], json!([]));
    let conn = db.connect().await;
    let templates = entity::asyncapi_templates::Entity::find()
        .all(&conn)
        .await
        .expect("query");
    let channels = entity::message_channels::Entity::find()
        .all(&conn)
        .await
        .expect("query");
    assert!(
        templates.is_empty() && channels.is_empty(),
        "nothing stored for rejected registrations"
    );

    gw.register("IoT Device API", &iot_document(), Some(MQTT_URL))
        .await;
    let body = json!({"name": "IoT Device API", "asyncapi_content": iot_document()});
    let (status, problem, _) = gw.post("/asyncapis/register", &body).await;
    assert_eq!(status, 409, "{problem}");
    let documents = entity::asyncapi_documents::Entity::find()
        .filter(entity::asyncapi_documents::Column::Name.eq("IoT Device API"))
        .all(&conn)
        .await
        .expect("query");
    assert_eq!(documents.len(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_multi_file_registration_names_a_missing_neighbour() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let main = "asyncapi: 2.6.0\ninfo: {title: Split, version: '1'}\nchannels:\n  a:\n    publish:\n      message: {$ref: './messages.yaml#/Hello'}\n";
    let body = json!({"name": "Split", "asyncapi_content": main, "path": "api.yaml"});
    let (status, problem, _) = gw.post("/asyncapis/register", &body).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["rule"], "unresolved-ref");
    assert_eq!(problem["errors"][0]["file"], "api.yaml");
    assert_eq!(problem["errors"][0]["line"], 6);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .expect("message")
        .contains("messages.yaml"));

    let files = json!({"messages.yaml": "Hello:\n  payload: {type: object, required: [text]}\n"});
    let body =
        json!({"name": "Split", "asyncapi_content": main, "path": "api.yaml", "files": files});
    let registered = gw.post("/asyncapis/register", &body).await;
    assert_eq!(registered.0, 201, "{}", registered.1);
    let channel = channel_id(&registered.1, "a");
    let (status, problem, _) = gw
        .post(
            "/messages/publish",
            &json!({"channel_id": channel, "message_data": {"x": 1}}),
        )
        .await;
    assert_eq!(status, 422, "the neighbour's schema applies: {problem}");
    assert_eq!(problem["errors"][0]["rule"], "required");
    gw.stop().await;
}
