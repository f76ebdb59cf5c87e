//! Registrations survive a restart, on SQLite and on PostgreSQL alike: the
//! same migrations, the same rows, the same channel ids.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

async fn survives_restart(db: &TestDb) {
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    let document = registered["id"].as_str().expect("document id").to_owned();
    gw.stop().await;

    let gw = TestGateway::start(test_config(&db.url)).await;
    let (status, listed) = gw
        .get(&format!("/channels?asyncapi_document_id={document}"))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["channels"][0]["id"], channel.as_str());
    assert_eq!(listed["channels"][0]["address"], "rooms/{roomId}");
    let mut ws = gw.subscribe(&channel, "").await;
    let body = json!({"channel_id": channel, "message_data": {"text": "again"}, "parameters": {"roomId": "lobby"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    ws.next_message_where(Duration::from_secs(5), |p| p["text"] == "again")
        .await
        .expect("delivered after restart");

    let (status, _) = gw.get(&format!("/asyncapis/{document}")).await;
    assert_eq!(status, 200);
    let response = gw
        .client
        .delete(format!("{}/asyncapis/{document}", gw.base))
        .send()
        .await
        .expect("delete sent");
    assert_eq!(response.status().as_u16(), 204);
    let (status, problem) = gw.get(&format!("/channels/{channel}")).await;
    assert_eq!(status, 404, "{problem}");
    gw.stop().await;

    let gw = TestGateway::start(test_config(&db.url)).await;
    let (_, listed) = gw.get("/asyncapis").await;
    assert_eq!(
        listed["documents"],
        json!([]),
        "a deleted document stays deleted"
    );
    gw.stop().await;
}

const CHAT: &str = "asyncapi: 3.0.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    messages:\n      said:\n        payload: {type: object, properties: {text: {type: string}}}\n";

#[actix_rt::test]
async fn sqlite_registrations_survive_a_restart() {
    let db = TestDb::sqlite();
    survives_restart(&db).await;
}

#[actix_rt::test]
async fn postgres_registrations_survive_a_restart() {
    let db = TestDb::postgres().await;
    survives_restart(&db).await;
    db.drop_postgres().await;
}
