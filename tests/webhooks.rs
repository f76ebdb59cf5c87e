//! Webhook subscriptions: stored and restored, signed, retried with
//! backoff, refused without retry on 4xx, paused when they keep failing,
//! checked when created, and never slowing other subscribers.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use stepflow_gateway::Config;

const WAIT: Duration = Duration::from_secs(10);

const CHAT: &str = "asyncapi: 3.0.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    messages:\n      said:\n        payload: {type: object, required: [n], properties: {n: {type: integer}}}\n";

fn webhook_config(db: &TestDb) -> Config {
    let mut config = test_config(&db.url);
    config.webhooks.allow_private_targets = true;
    config.webhooks.retry_initial_ms = 20;
    config.webhooks.retry_max_ms = 200;
    config
}

/// A gateway tuned by `tune`, the chat channel, and one webhook
/// subscription of it to `callback_url`.
struct Rig {
    gw: TestGateway,
    channel: String,
    id: String,
    config: Config,
    db: TestDb,
}

impl Rig {
    async fn start(callback_url: &str, tune: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::sqlite();
        let mut config = webhook_config(&db);
        tune(&mut config);
        let gw = TestGateway::start(config.clone()).await;
        let channel = channel_id(&gw.register("Chat", CHAT, None).await, "room");
        let body = json!({"channel_id": channel, "callback_url": callback_url});
        let created = create(&gw, body).await;
        let id = created["id"].as_str().expect("id").to_owned();
        Self {
            gw,
            channel,
            id,
            config,
            db,
        }
    }
}

async fn publish(gw: &TestGateway, channel: &str, room: &str, n: i64) {
    let body =
        json!({"channel_id": channel, "message_data": {"n": n}, "parameters": {"roomId": room}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
}

async fn create(gw: &TestGateway, body: Value) -> Value {
    let (status, view, _) = gw.post("/messages/subscribe", &body).await;
    assert_eq!(status, 201, "{view}");
    view
}

async fn view(gw: &TestGateway, id: &str) -> Value {
    let (status, view) = gw.get(&format!("/messages/subscribe/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// Waits until the receiver has accepted `n` requests.
async fn accepted(receiver: &WebhookReceiver, n: usize) -> Vec<Received> {
    let got = eventually(WAIT, || async {
        let accepted = receiver.accepted();
        (accepted.len() >= n).then_some(accepted)
    })
    .await;
    got.unwrap_or_else(|| {
        panic!(
            "{n} accepted deliveries; got {:?}",
            receiver.accepted().len()
        )
    })
}

fn numbers(received: &[Received]) -> Vec<i64> {
    received
        .iter()
        .map(|r| r.json()["payload"]["n"].as_i64().expect("n"))
        .collect()
}

fn verify(secret: &str, received: &Received) {
    let timestamp = received.header("stepflow-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&received.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(received.header("stepflow-signature"), expected);
}

async fn lifecycle_survives_a_restart(db: &TestDb) {
    let receiver = WebhookReceiver::start(Script::ok()).await;
    let gw = TestGateway::start(webhook_config(db)).await;
    let registered = gw.register("Chat", CHAT, None).await;
    let channel = channel_id(&registered, "room");

    let created = create(
        &gw,
        json!({"channel_id": channel, "callback_url": receiver.url,
               "parameters": {"roomId": "lobby"}, "secret": "s3cret"}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["state"], "active");
    assert_eq!(created["signed"], true);
    assert_eq!(created["parameters"], json!({"roomId": "lobby"}));
    assert!(!created.to_string().contains("s3cret"), "{created}");

    publish(&gw, &channel, "lobby", 1).await;
    publish(&gw, &channel, "kitchen", 99).await;
    publish(&gw, &channel, "lobby", 2).await;
    let got = accepted(&receiver, 2).await;
    assert_eq!(numbers(&got), [1, 2]);
    let first = &got[0];
    verify("s3cret", first);
    let body = first.json();
    assert_eq!(body["channel_id"], channel.as_str());
    assert_eq!(body["channel"], "room");
    assert_eq!(body["address"], "rooms/lobby");
    assert_eq!(body["message"], "said");
    assert_eq!(body["subscription_id"], id.as_str());
    assert_eq!(body["id"], first.header("idempotency-key"));
    assert_eq!(first.header("stepflow-attempt"), "1");
    assert!(body["received_at"].is_string(), "{body}");
    let keys: BTreeSet<&str> = got.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys.len(), 2);

    let listed = eventually(WAIT, || async {
        let (_, list) = gw.get("/messages/subscriptions").await;
        (list["subscriptions"][0]["delivered"] == 2).then_some(list)
    })
    .await
    .expect("two deliveries counted");
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(1));
    gw.stop().await;

    // After a restart the subscription is there and delivering.
    let gw = TestGateway::start(webhook_config(db)).await;
    assert_eq!(view(&gw, &id).await["state"], "active");
    publish(&gw, &channel, "lobby", 3).await;
    assert_eq!(numbers(&accepted(&receiver, 3).await), [1, 2, 3]);

    let (status, _) = gw
        .get(&format!("/messages/subscriptions?channel_id={channel}"))
        .await;
    assert_eq!(status, 200);
    let deleted = gw
        .client
        .delete(format!("{}/messages/subscribe/{id}", gw.base))
        .send()
        .await
        .expect("delete sent");
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _) = gw.get(&format!("/messages/subscribe/{id}")).await;
    assert_eq!(status, 404);
    // It was the only consumer: the broker-side subscription is gone.
    let idle = eventually(WAIT, || async {
        let (_, status) = gw.get("/connections/status").await;
        let held = status["brokers"][0]["subscriptions"].as_u64();
        (held == Some(0)).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the channel subscription ended");
    publish(&gw, &channel, "lobby", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
    gw.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_subscription_is_stored_signed_restored_and_deleted_on_sqlite() {
    lifecycle_survives_a_restart(&TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn a_subscription_is_stored_signed_restored_and_deleted_on_postgres() {
    let db = TestDb::postgres().await;
    lifecycle_survives_a_restart(&db).await;
    db.drop_postgres().await;
}

#[actix_rt::test]
async fn client_errors_are_not_retried_and_busy_answers_are() {
    let receiver = WebhookReceiver::start(Script {
        first: vec![400, 429, 503],
        then: 204,
        delay: Duration::ZERO,
    })
    .await;
    let Rig {
        gw,
        channel,
        id,
        config: _,
        db: _db,
    } = Rig::start(&receiver.url, |_| {}).await;

    publish(&gw, &channel, "a", 1).await;
    publish(&gw, &channel, "a", 2).await;
    let got = accepted(&receiver, 1).await;
    assert_eq!(numbers(&got), [2]);
    let all = receiver.received();
    // 400 for message 1, once; 429 then 503 then 204 for message 2.
    assert_eq!(numbers(&all), [1, 2, 2, 2]);
    let attempts: Vec<&str> = all.iter().map(|r| r.header("stepflow-attempt")).collect();
    assert_eq!(attempts, ["1", "1", "2", "3"]);
    assert_eq!(
        all[1].header("idempotency-key"),
        all[3].header("idempotency-key")
    );
    assert!(all
        .iter()
        .all(|r| r.header("stepflow-signature").is_empty()));

    let seen = view(&gw, &id).await;
    assert_eq!(seen["delivered"], 1);
    assert_eq!(seen["failed"], 1);
    assert_eq!(seen["retries"], 2);
    assert_eq!(seen["state"], "active");
    let failed = eventually(WAIT, || async {
        let (_, logs) = gw.get(&format!("/logs/recent?channel_id={channel}")).await;
        let logs = logs["logs"].as_array().cloned().unwrap_or_default();
        logs.into_iter().find(|l| l["direction"] == "webhook")
    })
    .await
    .expect("the refused message is in the call log");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["address"], "rooms/a");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("answered 400") && error.contains("after 1 attempt"),
        "{error}"
    );
    gw.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_failing_endpoint_is_paused_visibly_and_resumes() {
    let receiver = WebhookReceiver::start(Script {
        first: Vec::new(),
        then: 500,
        delay: Duration::ZERO,
    })
    .await;
    let Rig {
        gw,
        channel,
        id,
        config,
        db: _db,
    } = Rig::start(&receiver.url, |c| {
        c.webhooks.max_attempts = 3;
        c.webhooks.pause_after_failures = 2;
    })
    .await;
    // Keeps the channel's subscription, and its replay buffer, alive.
    let _keeper = gw.subscribe(&channel, "").await;

    publish(&gw, &channel, "a", 1).await;
    publish(&gw, &channel, "a", 2).await;
    let paused = eventually(WAIT, || async {
        let seen = view(&gw, &id).await;
        (seen["state"] == "paused").then_some(seen)
    })
    .await
    .expect("paused after two failed messages");
    assert_eq!(paused["failed"], 2);
    let reason = paused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("2 messages in a row failed") && reason.contains("500"),
        "{reason}"
    );
    assert_eq!(receiver.received().len(), 6, "three attempts per message");

    // Published while paused: not attempted, but still buffered.
    publish(&gw, &channel, "a", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 6);
    gw.stop().await;

    // The pause is stored.
    let gw = TestGateway::start(config).await;
    let seen = view(&gw, &id).await;
    assert_eq!(seen["state"], "paused");
    assert!(seen["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("in a row"));
    let _keeper = gw.subscribe(&channel, "").await;
    receiver.set_script(Script::ok());
    let (status, resumed, _) = gw
        .post(&format!("/messages/subscribe/{id}/resume"), &json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "active");
    assert_eq!(resumed["reason"], Value::Null);
    publish(&gw, &channel, "a", 4).await;
    assert_eq!(numbers(&accepted(&receiver, 1).await), [4]);
    let (status, _, _) = gw.post("/messages/subscribe/nope/resume", &json!({})).await;
    assert_eq!(status, 404);
    gw.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn messages_published_while_paused_are_delivered_on_resume() {
    let receiver = WebhookReceiver::start(Script {
        first: vec![500],
        then: 200,
        delay: Duration::ZERO,
    })
    .await;
    let Rig {
        gw,
        channel,
        id,
        config: _,
        db: _db,
    } = Rig::start(&receiver.url, |c| {
        c.webhooks.max_attempts = 1;
        c.webhooks.pause_after_failures = 1;
    })
    .await;
    let _keeper = gw.subscribe(&channel, "").await;
    publish(&gw, &channel, "a", 1).await;
    eventually(WAIT, || async {
        (view(&gw, &id).await["state"] == "paused").then_some(())
    })
    .await
    .expect("paused");
    publish(&gw, &channel, "a", 2).await;
    publish(&gw, &channel, "a", 3).await;
    let (status, _, _) = gw
        .post(&format!("/messages/subscribe/{id}/resume"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(numbers(&accepted(&receiver, 2).await), [2, 3]);
    gw.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_slow_endpoint_does_not_delay_other_subscribers() {
    let slow = WebhookReceiver::start(Script {
        first: Vec::new(),
        then: 200,
        delay: Duration::from_secs(2),
    })
    .await;
    let fast = WebhookReceiver::start(Script::ok()).await;
    let db = TestDb::sqlite();
    let gw = TestGateway::start(webhook_config(&db)).await;
    let channel = channel_id(&gw.register("Chat", CHAT, None).await, "room");
    create(
        &gw,
        json!({"channel_id": channel, "callback_url": slow.url}),
    )
    .await;
    create(
        &gw,
        json!({"channel_id": channel, "callback_url": fast.url}),
    )
    .await;
    let mut ws = gw.subscribe(&channel, "").await;
    for n in 1..=5 {
        publish(&gw, &channel, "a", n).await;
    }
    let got = accepted(&fast, 5).await;
    assert_eq!(numbers(&got), [1, 2, 3, 4, 5]);
    ws.next_message_where(WAIT, |p| p["n"] == 5).await;
    assert!(
        slow.received().len() <= 1,
        "the slow endpoint is still on its first message"
    );
    gw.stop().await;
    fast.stop().await;
    slow.stop().await;
}

#[actix_rt::test]
async fn bad_subscriptions_are_refused_with_what_is_wrong() {
    let db = TestDb::sqlite();
    // The default policy: no private or loopback callbacks.
    let gw = TestGateway::start(test_config(&db.url)).await;
    let channel = channel_id(&gw.register("Chat", CHAT, None).await, "room");
    let refused = |body: Value| {
        let gw = &gw;
        async move {
            let (status, problem, kind) = gw.post("/messages/subscribe", &body).await;
            assert_eq!(kind, "application/problem+json", "{problem}");
            (status, problem)
        }
    };

    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/",
    ] {
        let (status, problem) = refused(json!({"channel_id": channel, "callback_url": url})).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/callback_url");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("loopback") && detail.contains("allow_private_targets"),
            "{detail}"
        );
    }
    let (status, problem) =
        refused(json!({"channel_id": channel, "callback_url": "ftp://example.com/x"})).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].clone()),
        (422, json!("/callback_url"))
    );
    let (status, problem) =
        refused(json!({"channel_id": channel, "callback_url": "http://10.0.0.1/x"})).await;
    assert_eq!(status, 422);
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("private"));

    let good = "http://example.com/hook";
    let (status, problem) = refused(json!({"channel_id": "nope", "callback_url": good})).await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) =
        refused(json!({"channel_id": channel, "callback_url": good, "parameters": {"room": "x"}}))
            .await;
    assert_eq!(status, 400);
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("`room`"));
    let (status, problem) = refused(
        json!({"channel_id": channel, "callback_url": good, "parameters": {"roomId": {"a": 1}}}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/parameters/roomId");
    let (status, problem) =
        refused(json!({"channel_id": channel, "callback_url": good, "secret": ""})).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].clone()),
        (422, json!("/secret"))
    );
    let (status, _) = refused(json!({"channel_id": channel, "callback_url": good, "x": 1})).await;
    assert_eq!(status, 400);
    let (status, _) = refused(json!({"channel_id": channel})).await;
    assert_eq!(status, 400);

    let (_, list) = gw.get("/messages/subscriptions").await;
    assert_eq!(list["subscriptions"], json!([]), "nothing was stored");

    // Deleting a document deletes its channels' subscriptions.
    let config = webhook_config(&db);
    gw.stop().await;
    let gw = TestGateway::start(config.clone()).await;
    let receiver = WebhookReceiver::start(Script::ok()).await;
    create(
        &gw,
        json!({"channel_id": channel, "callback_url": receiver.url}),
    )
    .await;
    let (_, documents) = gw.get("/asyncapis").await;
    let document = documents["documents"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = gw
        .client
        .delete(format!("{}/asyncapis/{document}", gw.base))
        .send()
        .await
        .expect("delete sent");
    assert_eq!(deleted.status().as_u16(), 204);
    let emptied = eventually(WAIT, || async {
        let (_, list) = gw.get("/messages/subscriptions").await;
        (list["subscriptions"] == json!([])).then_some(())
    })
    .await;
    assert!(
        emptied.is_some(),
        "the subscription ended with its document"
    );
    gw.stop().await;
    let gw = TestGateway::start(config).await;
    let (_, list) = gw.get("/messages/subscriptions").await;
    assert_eq!(
        list["subscriptions"],
        json!([]),
        "deleted in the database too"
    );
    receiver.stop().await;
    let deleted = gw
        .client
        .delete(format!("{}/messages/subscribe/unknown", gw.base))
        .send()
        .await
        .expect("delete sent");
    assert_eq!(deleted.status().as_u16(), 404);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_full_queue_records_what_it_cannot_take_and_timeouts_are_retried() {
    let receiver = WebhookReceiver::start(Script {
        first: Vec::new(),
        then: 200,
        delay: Duration::from_millis(700),
    })
    .await;
    let Rig {
        gw,
        channel,
        id,
        config: _,
        db: _db,
    } = Rig::start(&receiver.url, |c| {
        c.webhooks.queue_capacity = 2;
        c.webhooks.timeout_ms = 400;
        c.webhooks.max_attempts = 2;
        c.webhooks.pause_after_failures = 100;
    })
    .await;
    for n in 1..=5 {
        publish(&gw, &channel, "a", n).await;
    }
    // Two fit in the queue; both time out twice and fail; three are refused.
    let seen = eventually(WAIT, || async {
        let seen = view(&gw, &id).await;
        (seen["failed"] == 5 && seen["queued"] == 0).then_some(seen)
    })
    .await
    .expect("five failures");
    assert_eq!(seen["delivered"], 0);
    assert_eq!(seen["retries"], 2);
    assert!(seen["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("request failed"));
    let logs = eventually(WAIT, || async {
        let (_, logs) = gw.get(&format!("/logs/recent?channel_id={channel}")).await;
        let logs: Vec<Value> = logs["logs"].as_array().cloned().unwrap_or_default();
        let webhook: Vec<Value> = logs
            .into_iter()
            .filter(|l| l["direction"] == "webhook")
            .collect();
        (webhook.len() == 5).then_some(webhook)
    })
    .await
    .expect("five failure records");
    let kinds: Vec<&str> = logs
        .iter()
        .filter_map(|l| l["error_kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "queue-full").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "webhook").count(),
        2,
        "{kinds:?}"
    );
    gw.stop().await;
    receiver.stop().await;
}

/// An endpoint that answers every request with an interim 103 and, a
/// moment later, a 200 on the same connection: the gateway must not take
/// that late 200 as the answer to a later message.
async fn interim_answering_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<usize>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let requests = std::sync::Arc::new(std::sync::Mutex::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 64 * 1024];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    *counted.lock().expect("count") += 1;
                    let _ = socket.write_all(b"HTTP/1.1 103 Early Hints\r\n\r\n").await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, requests)
}

#[actix_rt::test]
async fn an_interim_answer_is_not_taken_for_a_delivery() {
    let (url, requests) = interim_answering_endpoint().await;
    let Rig {
        gw,
        channel,
        id,
        config: _,
        db: _db,
    } = Rig::start(&url, |c| {
        c.webhooks.max_attempts = 2;
        c.webhooks.pause_after_failures = 100;
    })
    .await;
    for n in 1..=3 {
        publish(&gw, &channel, "a", n).await;
    }
    let seen = eventually(WAIT, || async {
        let seen = view(&gw, &id).await;
        (seen["failed"] == 3).then_some(seen)
    })
    .await
    .expect("three messages failed");
    assert_eq!(seen["delivered"], 0, "{seen}");
    assert!(*requests.lock().expect("count") >= 6, "two attempts each");
    gw.stop().await;
}

#[actix_rt::test]
async fn stored_subscriptions_follow_the_current_policy_and_their_document() {
    let receiver = WebhookReceiver::start(Script {
        first: Vec::new(),
        then: 500,
        delay: Duration::ZERO,
    })
    .await;
    let Rig {
        gw,
        channel,
        id,
        config,
        db,
    } = Rig::start(&receiver.url, |c| {
        c.webhooks.max_attempts = 1;
        c.webhooks.pause_after_failures = 1;
    })
    .await;
    gw.stop().await;

    // Loopback callbacks are no longer allowed: the stored one is shown,
    // not called.
    let gw = TestGateway::start(test_config(&db.url)).await;
    let seen = view(&gw, &id).await;
    assert_eq!(seen["state"], "unavailable", "{seen}");
    let reason = seen["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a public address"), "{reason}");
    publish(&gw, &channel, "a", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    gw.stop().await;

    // A paused subscription ends with its document too.
    let gw = TestGateway::start(config).await;
    publish(&gw, &channel, "a", 2).await;
    eventually(WAIT, || async {
        (view(&gw, &id).await["state"] == "paused").then_some(())
    })
    .await
    .expect("paused");
    let (_, documents) = gw.get("/asyncapis").await;
    let document = documents["documents"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = gw
        .client
        .delete(format!("{}/asyncapis/{document}", gw.base))
        .send()
        .await
        .expect("delete sent");
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = eventually(WAIT, || async {
        let (status, _) = gw.get(&format!("/messages/subscribe/{id}")).await;
        (status == 404).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the paused subscription ended with its document"
    );
    gw.stop().await;
    receiver.stop().await;
}
