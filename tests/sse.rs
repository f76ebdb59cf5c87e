//! `GET /sse/{channel_id}`: events with ids and message names, heartbeats,
//! and resume with `Last-Event-ID` from what is still buffered.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

const CHAT: &str = "asyncapi: 3.0.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    messages:\n      said:\n        payload: {type: object, required: [n], properties: {n: {type: integer}}}\n";

async fn publish(gw: &TestGateway, channel: &str, n: i64) {
    let body =
        json!({"channel_id": channel, "message_data": {"n": n}, "parameters": {"roomId": "lobby"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
}

#[actix_rt::test]
async fn events_carry_ids_and_names_and_resume_after_last_event_id() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.sse.heartbeat_secs = 1;
    let gw = TestGateway::start(config).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    // A WebSocket subscriber keeps the channel's subscription alive while
    // the SSE client is away.
    let mut keeper = gw.subscribe(&channel, "").await;

    let mut sse = SseClient::open(&gw, &channel, None).await;
    assert_eq!(sse.next_event().await.kind, "subscribed");
    for n in 1..=3 {
        publish(&gw, &channel, n).await;
    }
    let mut ids = Vec::new();
    for n in 1..=3 {
        let event = sse.next_event().await;
        assert_eq!(event.kind, "said", "the message name is the event type");
        assert_eq!(event.data["payload"]["n"], n);
        assert_eq!(event.data["parameters"]["roomId"], "lobby");
        ids.push(event.id.expect("an event id"));
    }
    let heartbeat = loop {
        let event = sse.next().await;
        if event.kind == ":" {
            break event;
        }
    };
    assert!(heartbeat.id.is_none());
    drop(sse);

    for n in 4..=5 {
        publish(&gw, &channel, n).await;
    }
    keeper
        .next_message_where(WAIT, |p| p["n"] == 5)
        .await
        .expect("the keeper saw 5");
    let mut resumed = SseClient::open(&gw, &channel, Some(&ids[1])).await;
    assert_eq!(resumed.next_event().await.kind, "subscribed");
    for n in 3..=5 {
        assert_eq!(
            resumed.next_event().await.data["payload"]["n"],
            n,
            "resumed after event 2"
        );
    }
    publish(&gw, &channel, 6).await;
    assert_eq!(resumed.next_event().await.data["payload"]["n"], 6);
    gw.stop().await;
}

/// A WebSocket client resumes the same way, with the `id` of the last
/// message frame it had in `Last-Event-ID`; one whose messages are gone
/// gets a `missed` frame.
#[actix_rt::test]
async fn a_websocket_resumes_after_last_event_id_too() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    let mut keeper = gw.subscribe(&channel, "").await;
    let mut first = gw.subscribe(&channel, "").await;
    publish(&gw, &channel, 1).await;
    let frame = first.next_message_where(WAIT, |p| p["n"] == 1).await;
    let id = frame.expect("message 1")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    drop(first);
    for n in 2..=3 {
        publish(&gw, &channel, n).await;
    }
    keeper
        .next_message_where(WAIT, |p| p["n"] == 3)
        .await
        .expect("the keeper saw 3");
    let mut resumed = gw.subscribe_after(&channel, "", Some(&id)).await;
    for n in 2..=3 {
        let frame = resumed.next_json(WAIT).await.expect("a resumed frame");
        assert_eq!(frame["payload"]["n"], n, "{frame}");
    }
    let mut unknown = gw.subscribe_after(&channel, "", Some("0badc0de-41")).await;
    let missed = unknown.next_json(WAIT).await.expect("a missed frame");
    assert_eq!(missed["type"], "missed", "{missed}");
    assert_eq!(missed["last_event_id"], "0badc0de-41");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_resume_from_an_unknown_event_says_what_may_be_missing() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    let mut sse = SseClient::open(&gw, &channel, Some("0badc0de-41")).await;
    let first = sse.next_event().await;
    let second = sse.next_event().await;
    let kinds = [first.kind.as_str(), second.kind.as_str()];
    assert!(
        kinds.contains(&"missed") && kinds.contains(&"subscribed"),
        "{kinds:?}"
    );
    let missed = if first.kind == "missed" {
        first
    } else {
        second
    };
    assert_eq!(missed.data["last_event_id"], "0badc0de-41");

    let (status, problem) = gw.get("/sse/no-such-channel").await;
    assert_eq!(status, 404, "{problem}");
    gw.stop().await;
}

#[actix_rt::test]
async fn an_out_of_range_last_event_id_is_reported_as_missed() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    let mut first = SseClient::open(&gw, &channel, None).await;
    assert_eq!(first.next_event().await.kind, "subscribed");
    publish(&gw, &channel, 1).await;
    let id = first.next_event().await.id.expect("an id");
    let epoch = id.split('-').next().expect("epoch");

    let huge = format!("{epoch}-18446744073709551615");
    let mut resumed = SseClient::open(&gw, &channel, Some(&huge)).await;
    let kinds = [
        resumed.next_event().await.kind,
        resumed.next_event().await.kind,
    ];
    assert!(kinds.contains(&"missed".to_owned()), "{kinds:?}");
    publish(&gw, &channel, 2).await;
    assert_eq!(
        first.next_event().await.data["payload"]["n"],
        2,
        "the subscription still serves"
    );
    assert_eq!(resumed.next_event().await.data["payload"]["n"], 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_message_name_cannot_forge_event_fields() {
    let document = "asyncapi: 3.0.0\ninfo: {title: Forge, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    messages:\n      said:\n        name: \"Data\\ndata: injected\\nevent: evil\"\n        payload: {type: object}\n";
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let channel = channel_id(&gw.register("Forge", document, None).await, "room");
    let mut sse = SseClient::open(&gw, &channel, None).await;
    assert_eq!(sse.next_event().await.kind, "subscribed");
    publish(&gw, &channel, 1).await;
    let event = sse.next_event().await;
    assert_eq!(event.kind, "Data_data: injected_event: evil");
    assert_eq!(event.data["payload"]["n"], 1, "the data is the message");
    gw.stop().await;
}

/// A subscription's parameter errors name the parameter, on SSE and on
/// WebSocket, as a publish's do.
#[actix_rt::test]
async fn subscription_parameter_errors_name_the_parameter() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    for front in ["sse", "ws"] {
        for (query, parameter) in [("roomId=a%2Fb", "roomId"), ("floor=3", "floor")] {
            let (status, problem) = gw.get(&format!("/{front}/{channel}?{query}")).await;
            assert_eq!(status, 400, "{front} {query}: {problem}");
            assert_eq!(problem["type"], "urn:stepflow:problem:invalid-parameter");
            assert_eq!(
                problem["parameter"], parameter,
                "{front} {query}: {problem}"
            );
        }
    }
    gw.stop().await;
}

/// A client that went away is let go within two heartbeats: its session
/// ends and no longer counts as open.
#[actix_rt::test]
async fn a_client_that_went_away_is_let_go_within_two_heartbeats() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.sse.heartbeat_secs = 1;
    let gw = TestGateway::start(config).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");
    let open_sessions = || async {
        let (_, _, metrics) = gw.get_text("/metrics").await;
        metrics
            .lines()
            .find(|line| line.starts_with("stepflow_sessions{front=\"sse\"}"))
            .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    let mut sse = SseClient::open(&gw, &channel, None).await;
    assert_eq!(sse.next_event().await.kind, "subscribed");
    assert_eq!(open_sessions().await.as_deref(), Some("1"));
    drop(sse);
    let gone = eventually(Duration::from_millis(2_600), || async {
        (open_sessions().await.as_deref() == Some("0")).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the session still counts as open");
    gw.stop().await;
}
