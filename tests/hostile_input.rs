//! Input built to hurt the gateway: each case gets a clear refusal, and the
//! gateway keeps serving (and can restart) afterwards.

mod common;

use std::time::Duration;

use actix_http::ws::Item;
use awc::ws::Message;
use common::*;
use futures_util::SinkExt as _;
use serde_json::{json, Value};

/// A schema `levels` deep whose innermost value is `leaf`.
fn nested(levels: usize, leaf: Value) -> Value {
    (0..levels).fold(leaf, |inner, _| json!({ "type": "array", "items": inner }))
}

fn document_with_schemas(schemas: Value, payload: Value) -> String {
    json!({
        "asyncapi": "2.6.0",
        "info": {"title": "Hostile", "version": "1"},
        "channels": {"c": {"publish": {"message": {"payload": payload}}}},
        "components": {"schemas": schemas}
    })
    .to_string()
}

async fn assert_alive(gw: &TestGateway) {
    let (status, body) = gw.get("/health").await;
    assert_eq!(status, 200, "{body}");
}

async fn refused_with(gw: &TestGateway, name: &str, document: String, rule: &str) {
    let body = json!({"name": name, "asyncapi_content": document});
    let (status, problem, _) = gw.post("/asyncapis/register", &body).await;
    assert_eq!(status, 400, "{problem}");
    let rules: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["rule"].as_str())
        .collect();
    assert!(rules.contains(&rule), "expected {rule} in {rules:?}");
}

#[actix_rt::test]
async fn deeply_chained_references_are_refused_not_overflowed() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let schemas: serde_json::Map<String, Value> = (0..10)
        .map(|i| {
            (
                format!("S{i}"),
                nested(
                    100,
                    json!({"$ref": format!("#/components/schemas/S{}", i + 1)}),
                ),
            )
        })
        .chain([("S10".to_owned(), json!({"type": "string"}))])
        .collect();
    let document = document_with_schemas(
        Value::Object(schemas),
        json!({"$ref": "#/components/schemas/S0"}),
    );
    refused_with(&gw, "deep", document, "too-deep").await;
    assert_alive(&gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn fanned_out_references_are_refused_as_too_large() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    // Six levels of ten references each expand to a million nodes.
    let mut schemas = serde_json::Map::new();
    schemas.insert("L6".into(), json!({"type": "string"}));
    for level in (0..6).rev() {
        let refs: Vec<Value> = (0..10)
            .map(|_| json!({"$ref": format!("#/components/schemas/L{}", level + 1)}))
            .collect();
        schemas.insert(format!("L{level}"), json!({ "allOf": refs }));
    }
    let document = document_with_schemas(
        Value::Object(schemas),
        json!({"$ref": "#/components/schemas/L0"}),
    );
    refused_with(&gw, "wide", document, "too-large").await;
    assert_alive(&gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn an_accepted_deep_document_still_lets_the_gateway_restart() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let schemas = json!({"A": nested(40, json!({"$ref": "#/components/schemas/B"})), "B": nested(40, json!({"type": "integer"}))});
    let document = document_with_schemas(schemas, json!({"$ref": "#/components/schemas/A"}));
    let registered = gw.register("deep but fine", &document, None).await;
    let channel = channel_id(&registered, "c");
    gw.stop().await;

    let gw = TestGateway::start(test_config(&db.url)).await;
    let (status, _) = gw.get(&format!("/channels/{channel}")).await;
    assert_eq!(status, 200, "the document is restored");
    gw.stop().await;
}

#[actix_rt::test]
async fn recursive_parameter_schemas_compile() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let document = json!({
        "asyncapi": "2.6.0",
        "info": {"title": "R", "version": "1"},
        "channels": {"m/{id}": {
            "parameters": {"id": {"schema": {"$ref": "#/components/schemas/P"}}},
            "publish": {"message": {"payload": {"type": "object"}}}
        }},
        "components": {"schemas": {"P": {"anyOf": [{"type": "string", "maxLength": 8}, {"$ref": "#/components/schemas/P"}]}}}
    })
    .to_string();
    let registered = gw.register("recursive", &document, None).await;
    let channel = channel_id(&registered, "m/{id}");
    let body = json!({"channel_id": channel, "message_data": {}, "parameters": {"id": "short"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    gw.stop().await;
}

#[actix_rt::test]
async fn addresses_that_no_broker_takes_are_refused() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: A, version: '1'}\nchannels:\n  m/{id}:\n    parameters: {id: {schema: {type: string}}}\n    publish: {message: {payload: {type: object}}}\n  w/+/data:\n    publish: {message: {payload: {type: object}}}\n";
    let registered = gw.register("addresses", document, Some(MQTT_URL)).await;
    let long = json!({"channel_id": channel_id(&registered, "m/{id}"), "message_data": {}, "parameters": {"id": "y".repeat(70_000)}});
    let (status, problem, _) = gw.post("/messages/publish", &long).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("65535"));
    let wildcard = json!({"channel_id": channel_id(&registered, "w/+/data"), "message_data": {}});
    let (status, problem, _) = gw.post("/messages/publish", &wildcard).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("wildcard"));
    let (_, status_body) = gw.get("/connections/status").await;
    assert_eq!(
        status_body["brokers"][0]["reconnects"], 0,
        "the broker connection was never hurt"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn patterns_run_in_linear_time_or_are_refused() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    // Look-around and back-references need a backtracking engine, which a
    // crafted payload can stall; such a pattern is refused up front.
    let stalling = json!({"type": "string", "pattern": "(?=(a+))\\1*b"});
    refused_with(
        &gw,
        "regex",
        document_with_schemas(json!({}), stalling),
        "schema-compile",
    )
    .await;

    let plain = json!({"type": "string", "pattern": "^(a+)+$"});
    let registered = gw
        .register("plain", &document_with_schemas(json!({}), plain), None)
        .await;
    let body = json!({"channel_id": channel_id(&registered, "c"), "message_data": format!("{}b", "a".repeat(30_000))});
    let (status, problem, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["rule"], "pattern");
    assert_alive(&gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn deleting_a_document_closes_its_websockets_with_a_reason() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("gone", "asyncapi: 2.6.0\ninfo: {title: G, version: '1'}\nchannels:\n  g:\n    subscribe: {message: {payload: {type: object}}}\n", None).await;
    let mut ws = gw.subscribe(&channel_id(&registered, "g"), "").await;
    let id = registered["id"].as_str().expect("id");
    let response = gw
        .client
        .delete(format!("{}/asyncapis/{id}", gw.base))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 204);
    let reason = ws
        .next_close(Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(reason.code, awc::ws::CloseCode::Away);
    assert!(reason.description.unwrap_or_default().contains("deleted"));
    gw.stop().await;
}

#[actix_rt::test]
async fn fragmented_text_frames_are_joined() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("frag", "asyncapi: 2.6.0\ninfo: {title: F, version: '1'}\nchannels:\n  f:\n    publish: {message: {payload: {type: object}}}\n", None).await;
    let mut ws = gw.subscribe(&channel_id(&registered, "f"), "").await;
    let text = json!({"message_data": {"joined": true}}).to_string();
    let (first, last) = text.split_at(10);
    ws.framed
        .send(Message::Continuation(Item::FirstText(
            first.to_owned().into(),
        )))
        .await
        .expect("first");
    ws.framed
        .send(Message::Continuation(Item::Last(last.to_owned().into())))
        .await
        .expect("last");
    let frame = ws.next_json(Duration::from_secs(5)).await.expect("a reply");
    assert!(
        frame["type"] == "published" || frame["type"] == "message",
        "{frame}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn unsupported_methods_get_a_problem_document() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let mut response = gw
        .client
        .post(format!("{}/health", gw.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET")
    );
    let body: Value = response.json().await.expect("problem document");
    assert_eq!(body["status"], 405);
    gw.stop().await;
}

#[actix_rt::test]
async fn broker_passwords_never_appear_in_responses() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw
        .register(
            "secret",
            "asyncapi: 2.6.0\ninfo: {title: S, version: '1'}\nchannels: {}\n",
            Some("mqtt://user:hunter2@127.0.0.1:1"),
        )
        .await;
    let (_, listed) = gw.get("/asyncapis").await;
    let (_, status) = gw.get("/connections/status").await;
    for body in [registered, listed, status] {
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn dotted_protocols_refuse_values_that_would_reach_another_address() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: D, version: '1'}\nchannels:\n  a/{x}:\n    publish: {message: {payload: {type: object}}}\n";
    let registered = gw
        .register("dotted", document, Some("nats://127.0.0.1:4222"))
        .await;
    let channel = channel_id(&registered, "a/{x}");
    for value in ["b.c", "with space"] {
        let body = json!({"channel_id": channel, "message_data": {}, "parameters": {"x": value}});
        let (status, problem, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 400, "{value}: {problem}");
        assert_eq!(problem["parameter"], "x");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn an_amqp_routing_key_too_long_is_refused_and_the_connection_lives() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: L, version: '1'}\nchannels:\n  t/{x}:\n    publish: {message: {payload: {type: object}}}\n";
    let registered = gw
        .register("long", document, Some("amqp://127.0.0.1:5672"))
        .await;
    let channel = channel_id(&registered, "t/{x}");
    let long =
        json!({"channel_id": channel, "message_data": {}, "parameters": {"x": "k".repeat(300)}});
    let (status, problem, _) = gw.post("/messages/publish", &long).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("255"),
        "{problem}"
    );
    let fine = json!({"channel_id": channel, "message_data": {}, "parameters": {"x": "k"}});
    let (status, outcome, _) = gw.post("/messages/publish", &fine).await;
    assert_eq!(status, 200, "the connection still serves: {outcome}");
    gw.stop().await;
}

/// Posts `body` as it is to `/messages/publish`; answers the status and
/// the problem document.
async fn post_raw(gw: &TestGateway, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let mut response = gw
        .client
        .post(format!("{}/messages/publish", gw.base))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("answered");
    let problem: Value = response.json().limit(1 << 20).await.unwrap_or(Value::Null);
    (response.status().as_u16(), problem)
}

/// Publish bodies that are too large, broken, too deep, not UTF-8 or of the
/// wrong shape are each refused with a status that fits and a problem
/// document that says what and where; the gateway serves on.
#[actix_rt::test]
async fn publish_bodies_that_hurt_get_clear_refusals() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.server.max_body_bytes = 16 * 1024;
    config.websocket.max_frame_bytes = 16 * 1024;
    let gw = TestGateway::start(config).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: Bodies, version: '1'}\nchannels:\n  b:\n    publish: {message: {payload: {type: object}}}\n";
    let registered = gw.register("bodies", document, None).await;
    let channel = channel_id(&registered, "b");
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "oversized",
            "application/json",
            json!({"channel_id": channel, "message_data": {"pad": "x".repeat(20_000)}})
                .to_string()
                .into_bytes(),
            413,
            "exceeds the limit of 16384 bytes",
        ),
        (
            "truncated",
            "application/json",
            format!(r#"{{"channel_id": "{channel}", "message_data": {{"#).into_bytes(),
            400,
            "EOF while parsing",
        ),
        (
            "deeply nested",
            "application/json",
            format!(r#"{{"channel_id": "{channel}", "message_data": {deep}}}"#).into_bytes(),
            400,
            "recursion limit exceeded",
        ),
        (
            "invalid UTF-8",
            "application/json",
            [
                br#"{"channel_id": ""#.as_slice(),
                &[0xff, 0xfe],
                br#"", "message_data": {}}"#,
            ]
            .concat(),
            400,
            "invalid",
        ),
        (
            "wrong type",
            "application/json",
            json!({"channel_id": channel, "message_data": {}, "headers": ["x"]})
                .to_string()
                .into_bytes(),
            400,
            "/headers",
        ),
        (
            "missing field",
            "application/json",
            json!({"message_data": {}}).to_string().into_bytes(),
            400,
            "/channel_id",
        ),
        (
            "array",
            "application/json",
            json!([channel, {"deviceId": "arr"}]).to_string().into_bytes(),
            400,
            "must be a JSON object",
        ),
        (
            "reserved header",
            "application/json",
            json!({"channel_id": channel, "message_data": {}, "headers": {"stepflow-address": "x"}})
                .to_string()
                .into_bytes(),
            400,
            "/headers/stepflow-address",
        ),
        (
            "unknown parameter",
            "application/json",
            json!({"channel_id": channel, "message_data": {}, "parameters": {"nope": "x"}})
                .to_string()
                .into_bytes(),
            400,
            "has no such parameter",
        ),
        (
            "not JSON",
            "text/plain",
            b"temperature=21".to_vec(),
            415,
            "Content-Type: application/json",
        ),
    ];
    for (case, content_type, body, status, says) in cases {
        let (got, problem) = post_raw(&gw, content_type, body).await;
        assert_eq!(got, status, "{case}: {problem}");
        assert_eq!(problem["status"], status, "{case}: a problem document");
        assert!(
            problem.to_string().contains(says),
            "{case}: expected `{says}` in {problem}"
        );
    }

    // Over a WebSocket: a broken frame and a deep one are answered and the
    // session lives; one over the size limit closes it with 1009.
    let mut ws = gw.subscribe(&channel, "").await;
    for (text, says) in [
        ("{\"message_data\": ".to_owned(), "EOF while parsing"),
        (format!("{{\"message_data\": {deep}}}"), "recursion limit"),
        (
            r#"{"message_data": {}, "parameters": 7}"#.to_owned(),
            "/parameters",
        ),
    ] {
        ws.send_text(text).await;
        let frame = ws.next_json(Duration::from_secs(5)).await.expect("a reply");
        assert_eq!(frame["type"], "error", "{frame}");
        assert!(
            frame.to_string().contains(says),
            "expected `{says}` in {frame}"
        );
    }
    ws.send_text(format!(
        r#"{{"message_data": {{"pad": "{}"}}}}"#,
        "x".repeat(20_000)
    ))
    .await;
    let reason = ws.next_close(Duration::from_secs(5)).await.expect("closed");
    assert_eq!(reason.code, awc::ws::CloseCode::Size);
    assert!(
        reason.description.unwrap_or_default().contains("16384"),
        "the close names the limit"
    );

    let body = json!({"channel_id": channel, "message_data": {"ok": true}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_alive(&gw).await;
    gw.stop().await;
}
