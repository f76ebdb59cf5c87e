//! The IoT document on Mosquitto with one WebSocket, one SSE and one
//! webhook subscriber on `device/{deviceId}/data`: 1,000 messages reach
//! each of them, in order per device, even though the webhook endpoint
//! fails its first calls and the SSE client drops out at message 400.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOTAL: usize = 1_000;
const SSE_DROP_AT: usize = 400;
const WAIT: Duration = Duration::from_secs(30);

/// (device, sequence number) of a delivered message frame, when it is one
/// of this test's devices.
fn reading(frame: &Value, devices: &[String]) -> Option<(String, i64)> {
    let device = frame["parameters"]["deviceId"].as_str()?;
    let device = devices.iter().find(|d| *d == device)?;
    Some((device.clone(), frame["payload"]["temperature"].as_i64()?))
}

/// Checks that every device's readings arrived once each and in order.
fn assert_complete(front: &str, readings: &[(String, i64)], devices: &[String]) {
    assert_eq!(readings.len(), TOTAL, "{front} received {}", readings.len());
    let mut by_device: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (device, n) in readings {
        by_device.entry(device).or_default().push(*n);
    }
    for (i, device) in devices.iter().enumerate() {
        let expected: Vec<i64> = (0..TOTAL as i64).filter(|n| n % 4 == i as i64).collect();
        assert_eq!(
            by_device.get(device.as_str()),
            Some(&expected),
            "{front}, {device}"
        );
    }
}

async fn publish(
    gw: &TestGateway,
    channel: &str,
    devices: &[String],
    range: std::ops::Range<usize>,
) {
    for n in range {
        let device = &devices[n % devices.len()];
        let body = json!({
            "channel_id": channel,
            "message_data": {"temperature": n, "humidity": 40},
            "parameters": {"deviceId": device},
        });
        let (status, outcome, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 200, "message {n}: {outcome}");
    }
}

/// Reads SSE message events until `n` of this test's readings arrived;
/// returns them and the id of the last event read.
async fn read_sse(
    sse: &mut SseClient,
    n: usize,
    devices: &[String],
) -> (Vec<(String, i64)>, String) {
    let mut readings = Vec::new();
    let mut last_id = String::new();
    while readings.len() < n {
        let event = tokio::time::timeout(WAIT, sse.next_event())
            .await
            .expect("SSE event");
        assert_ne!(event.kind, "missed", "{:?}", event.data);
        if let Some(reading) = reading(&event.data, devices) {
            assert_eq!(event.kind, "DeviceData");
            readings.push(reading);
            last_id = event.id.expect("message events have ids");
        }
    }
    (readings, last_id)
}

#[actix_rt::test]
async fn websocket_sse_and_webhook_each_receive_all_1000_messages() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.webhooks.allow_private_targets = true;
    config.webhooks.retry_initial_ms = 20;
    config.webhooks.retry_max_ms = 200;
    let gw = TestGateway::start(config).await;
    let registered = gw
        .register("IoT Device API", &iot_document(), Some(MQTT_URL))
        .await;
    let channel = channel_id(&registered, "device/{deviceId}/data");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let devices: Vec<String> = (0..4).map(|i| format!("d{i}-{}", &run[..8])).collect();

    let mut ws = gw.subscribe(&channel, "").await;
    let mut sse = SseClient::open(&gw, &channel, None).await;
    assert_eq!(sse.next_event().await.kind, "subscribed");
    let receiver = WebhookReceiver::start(Script {
        first: vec![500, 500, 500],
        then: 200,
        delay: Duration::ZERO,
    })
    .await;
    let (status, created, _) = gw
        .post(
            "/messages/subscribe",
            &json!({"channel_id": channel, "callback_url": receiver.url, "secret": "k"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    publish(&gw, &channel, &devices, 0..SSE_DROP_AT).await;
    let (mut sse_readings, last_id) = read_sse(&mut sse, SSE_DROP_AT, &devices).await;
    drop(sse);
    publish(&gw, &channel, &devices, SSE_DROP_AT..TOTAL).await;
    let mut sse = SseClient::open(&gw, &channel, Some(&last_id)).await;
    assert_eq!(sse.next_event().await.kind, "subscribed");
    let (rest, _) = read_sse(&mut sse, TOTAL - SSE_DROP_AT, &devices).await;
    sse_readings.extend(rest);
    assert_complete("SSE", &sse_readings, &devices);

    let mut ws_readings = Vec::new();
    while ws_readings.len() < TOTAL {
        let frame = ws.next_json(WAIT).await.expect("WebSocket frame");
        if frame["type"] == "message" {
            ws_readings.extend(reading(&frame, &devices));
        }
    }
    assert_complete("WebSocket", &ws_readings, &devices);

    let accepted = eventually(WAIT, || async {
        let accepted = receiver.accepted();
        (accepted.len() >= TOTAL).then_some(accepted)
    })
    .await
    .unwrap_or_else(|| panic!("webhook took {} of {TOTAL}", receiver.accepted().len()));
    let keys: BTreeSet<String> = accepted
        .iter()
        .map(|r| r.header("idempotency-key").to_owned())
        .collect();
    let duplicates = accepted.len() - keys.len();
    assert_eq!(
        (keys.len(), duplicates),
        (TOTAL, 0),
        "unique deliveries, duplicates"
    );
    let webhook_readings: Vec<(String, i64)> = accepted
        .iter()
        .filter_map(|r| reading(&r.json(), &devices))
        .collect();
    assert_complete("webhook", &webhook_readings, &devices);
    assert_eq!(
        receiver.received().len(),
        TOTAL + 3,
        "three failed attempts, retried"
    );

    let id = created["id"].as_str().expect("id");
    let view = eventually(WAIT, || async {
        let (_, view) = gw.get(&format!("/messages/subscribe/{id}")).await;
        (view["delivered"] == 1_000).then_some(view)
    })
    .await
    .expect("1,000 deliveries counted");
    assert_eq!(view["failed"], 0);
    assert_eq!(view["retries"], 3);
    gw.stop().await;
    receiver.stop().await;
}
