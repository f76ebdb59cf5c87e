//! The zero-setup path: a document without servers runs on the embedded
//! in-memory broker.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn a_document_without_servers_routes_through_the_memory_broker() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = "asyncapi: 3.0.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    parameters:\n      roomId: {enum: [lobby, dev]}\n    messages:\n      said:\n        payload: {type: object, required: [text], properties: {text: {type: string}}}\n";
    let registered = gw.register("Chat", text, None).await;
    assert_eq!(registered["brokers"][0]["protocol"], "memory");
    let channel = channel_id(&registered, "room");
    let mut lobby = gw.subscribe(&channel, "?roomId=lobby").await;
    let mut any = gw.subscribe(&channel, "").await;

    let body = json!({"channel_id": channel, "message_data": {"text": "hi"}, "parameters": {"roomId": "lobby"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["address"], "rooms/lobby");
    for ws in [&mut lobby, &mut any] {
        let frame = ws
            .next_message_where(Duration::from_secs(5), |p| p["text"] == "hi")
            .await
            .expect("delivered");
        assert_eq!(frame["parameters"]["roomId"], "lobby");
    }

    let outside_enum = json!({"channel_id": channel, "message_data": {"text": "x"}, "parameters": {"roomId": "attic"}});
    let (status, problem, _) = gw.post("/messages/publish", &outside_enum).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["parameter"], "roomId");
    gw.stop().await;
}

#[actix_rt::test]
async fn websocket_clients_can_publish_with_a_text_frame() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let text = "asyncapi: 2.6.0\ninfo: {title: Echo, version: '1'}\nchannels:\n  echo:\n    publish:\n      message:\n        payload: {type: object, properties: {n: {type: integer}}}\n";
    let registered = gw.register("Echo", text, None).await;
    let channel = channel_id(&registered, "echo");
    let mut ws = gw.subscribe(&channel, "").await;

    ws.send_text(json!({"message_data": {"n": 1}}).to_string())
        .await;
    let mut saw_reply = false;
    let mut saw_message = false;
    while !(saw_reply && saw_message) {
        let frame = ws.next_json(Duration::from_secs(5)).await.expect("frame");
        match frame["type"].as_str() {
            Some("published") => saw_reply = frame["outcome"]["status"] == "delivered",
            Some("message") => saw_message = frame["payload"]["n"] == 1,
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
    }

    ws.send_text(json!({"message_data": {"n": "one"}}).to_string())
        .await;
    let frame = ws
        .next_json(Duration::from_secs(5))
        .await
        .expect("error frame");
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["problem"]["status"], 422);
    assert_eq!(frame["problem"]["errors"][0]["pointer"], "/n");
    gw.stop().await;
}

#[actix_rt::test]
async fn documents_named_in_the_config_are_ready_at_start() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    let backend = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asyncapi/examples/v2/spec-2.6.0/social-media/backend/asyncapi.yaml");
    config
        .documents
        .push(stepflow_gateway::config::DocumentFile {
            name: "Social backend".into(),
            path: backend,
            base_url: Some("memory://local".into()),
            server_urls: Default::default(),
        });
    let gw = TestGateway::start(config.clone()).await;
    let (_, listed) = gw.get("/asyncapis").await;
    let documents = listed["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 1, "{listed}");
    assert_eq!(documents[0]["name"], "Social backend");
    let channels = documents[0]["channels"].as_array().expect("channels");
    assert!(
        !channels.is_empty(),
        "the neighbour files were read: {listed}"
    );
    gw.stop().await;

    let gw = TestGateway::start(config).await;
    let (_, listed) = gw.get("/asyncapis").await;
    assert_eq!(
        listed["documents"].as_array().map(Vec::len),
        Some(1),
        "not registered twice"
    );
    gw.stop().await;
}
