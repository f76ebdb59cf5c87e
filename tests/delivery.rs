//! Delivery through a broker outage: REST publishes to an MQTT broker that
//! goes away behind a proxy wait in the broker's bounded buffer, go out in
//! order when it is back, and fail with 503 and the reason when they wait
//! too long or the buffer is full. Every 2xx reply is in the broker. A
//! WebSocket subscriber that never reads is dropped alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt as _;
use serde_json::json;

fn events(host: &str, address: &str) -> String {
    format!(
        "asyncapi: 2.6.0\ninfo: {{title: Events, version: '1'}}\n\
         servers:\n  plant: {{url: '{host}', protocol: mqtt}}\n\
         channels:\n  '{address}':\n    publish:\n      bindings: {{mqtt: {{qos: 1}}}}\n\
         \x20     message:\n        payload: {{type: object, required: [seq]}}\n"
    )
}

#[actix_rt::test]
async fn rest_publishes_wait_out_a_broker_outage_and_every_2xx_arrives() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let address = format!("stepflow-outage-{run}/events");
    let mut proxy = TcpProxy::start(1883).await;
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.server.publish_timeout_ms = 5_000;
    config.brokers.buffer_timeout_ms = 2_000;
    config.brokers.buffer_capacity = 6;
    config.brokers.reconnect_initial_ms = 100;
    config.brokers.reconnect_max_ms = 200;
    let gw = TestGateway::start(config).await;
    let host = format!("127.0.0.1:{}", proxy.port);
    let registered = gw.register("Events", &events(&host, &address), None).await;
    let channel = channel_id(&registered, &address);
    let mut probe = MqttProbe::subscribe_at(1883, &address).await;

    // 200 publishes a second for five seconds, eight at a time at most.
    let total = 1_000;
    let begin = tokio::time::Instant::now();
    let publishing = futures_util::stream::iter(0..total)
        .map(|seq| {
            let (gw, channel) = (&gw, channel.clone());
            async move {
                tokio::time::sleep_until(begin + Duration::from_millis(5 * seq as u64)).await;
                let started = Instant::now();
                let body = json!({"channel_id": channel, "message_data": {"seq": seq}});
                let (status, outcome, _) = gw.post("/messages/publish", &body).await;
                (
                    seq,
                    status,
                    outcome["detail"].as_str().map(str::to_owned),
                    started.elapsed(),
                )
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    // Publishes held early in the outage run out of time; those held in
    // its last second go out when it ends.
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        proxy.down();
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        proxy.up().await;
    };
    let (results, ()) = futures_util::join!(publishing, outage);

    let acknowledged: BTreeSet<i64> = results
        .iter()
        .filter(|(_, status, _, _)| *status == 200)
        .map(|(seq, ..)| *seq)
        .collect();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (seq, status, detail, _) in results.iter().filter(|(_, s, _, _)| *s != 200) {
        assert_eq!(*status, 503, "publish {seq}: {detail:?}");
        let detail = detail.as_deref().unwrap_or_default();
        let reason = if detail.contains("stayed unavailable for 2000 ms") {
            "waited too long"
        } else if detail.contains("publishes already wait") {
            "buffer full"
        } else if detail.contains("lost before it acknowledged") {
            "in flight when the connection dropped"
        } else {
            panic!("publish {seq} failed without a known reason: {detail}")
        };
        *reasons.entry(reason).or_default() += 1;
    }
    let waited = results
        .iter()
        .filter(|(_, status, _, took)| *status == 200 && *took > Duration::from_millis(500))
        .count();

    let mut received: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acknowledged.iter().all(|seq| received.contains(seq)) && Instant::now() < deadline {
        if let Some((_, payload)) = probe.next(Duration::from_secs(1)).await {
            received.push(payload["seq"].as_i64().expect("seq"));
        }
    }
    let unique: BTreeSet<i64> = received.iter().copied().collect();
    let lost: Vec<&i64> = acknowledged.difference(&unique).collect();
    println!(
        "outage: published {total}, acknowledged {}, waited out the outage {waited}, failed {reasons:?}, \
         delivered {} (of them answered 503 after all: {}), lost {}, duplicates {}",
        acknowledged.len(),
        unique.len(),
        unique.difference(&acknowledged).count(),
        lost.len(),
        received.len() - unique.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but not in the broker: {lost:?}"
    );
    assert!(
        waited > 0,
        "some publishes waited out the outage and went through"
    );
    assert!(reasons.contains_key("waited too long"), "{reasons:?}");
    assert!(reasons.contains_key("buffer full"), "{reasons:?}");
    probe.close().await;
    gw.stop().await;
    proxy.down();
}

/// One WebSocket subscriber that never reads among three that do: it is
/// closed with 1008 and the reason once its queue is full, and the others
/// get every message.
#[actix_rt::test]
async fn a_websocket_subscriber_that_never_reads_is_dropped_alone() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.websocket.queue_capacity = 32;
    let gw = TestGateway::start(config).await;
    let document = "asyncapi: 3.0.0\ninfo: {title: Feed, version: '1'}\nchannels:\n  feed:\n    address: feed\n    messages:\n      item:\n        payload: {type: object}\n";
    let registered = gw.register("Feed", document, Some("memory://local")).await;
    let channel = channel_id(&registered, "feed");
    let mut slow = gw.subscribe(&channel, "").await;
    let mut fast = Vec::new();
    for _ in 0..3 {
        fast.push(gw.subscribe(&channel, "").await);
    }

    // Large messages fill the socket buffers of the one that never reads.
    let total: i64 = 400;
    let filler = "x".repeat(32 * 1024);
    let readers = fast.iter_mut().map(|ws| async move {
        let mut seen = Vec::new();
        let mut latencies = Vec::new();
        while (seen.len() as i64) < total {
            let Some(frame) = ws
                .next_message_where(Duration::from_secs(20), |_| true)
                .await
            else {
                break;
            };
            let sent_at = frame["payload"]["sent_at"].as_u64().unwrap_or_default();
            latencies.push(now_micros().saturating_sub(sent_at));
            seen.push(frame["payload"]["seq"].as_i64().expect("seq"));
        }
        (seen, latencies)
    });
    let publishing = async {
        for seq in 0..total {
            let body = json!({"channel_id": channel, "message_data": {"seq": seq, "sent_at": now_micros(), "filler": filler}});
            let (status, outcome, _) = gw.post("/messages/publish", &body).await;
            assert_eq!(status, 200, "{outcome}");
        }
    };
    let (received, ()) = futures_util::join!(futures_util::future::join_all(readers), publishing);
    let in_order: Vec<i64> = (0..total).collect();
    for (seen, latencies) in &received {
        assert_eq!(
            seen, &in_order,
            "a reading subscriber got every message in order"
        );
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        println!(
            "fast subscriber: {} messages, p99 delivery {p99} µs",
            seen.len()
        );
    }
    let reason = slow
        .next_close(Duration::from_secs(20))
        .await
        .expect("the subscriber that never reads is closed");
    assert_eq!(reason.code, awc::ws::CloseCode::Policy, "{reason:?}");
    let description = reason.description.unwrap_or_default();
    assert!(description.contains("too slow"), "{description}");
    // Operators see the drop: a failed delivery in the call log and the
    // statistics.
    let path = format!("/logs/recent?channel_id={channel}&direction=websocket&status=failed");
    let logged = eventually(Duration::from_secs(10), || async {
        let (_, logs) = gw.get(&path).await;
        logs["logs"].as_array().and_then(|l| l.first().cloned())
    })
    .await
    .expect("the drop is in the call log");
    assert_eq!(logged["error_kind"], "slow_consumer", "{logged}");
    let (_, stats) = gw
        .get(&format!("/messages/statistics?channel_id={channel}"))
        .await;
    let failed = &stats["channels"][&channel]["delivery_failed_by_reason"];
    assert_eq!(failed["slow_consumer"], 1, "{stats}");
    gw.stop().await;
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Stopping the gateway while a publish waits for a broker that is down
/// answers the publish and does not wait out the buffer's limit.
#[actix_rt::test]
async fn stopping_answers_a_publish_that_waits_for_its_broker() {
    let mut proxy = TcpProxy::start(1883).await;
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.server.publish_timeout_ms = 20_000;
    config.brokers.buffer_timeout_ms = 15_000;
    let gw = TestGateway::start(config).await;
    let host = format!("127.0.0.1:{}", proxy.port);
    let address = format!("stepflow-stop-{}", uuid::Uuid::new_v4().simple());
    let registered = gw.register("Events", &events(&host, &address), None).await;
    let channel = channel_id(&registered, &address);
    proxy.down();
    let waiting = {
        let (client, base) = (gw.client.clone(), gw.base.clone());
        let body = json!({"channel_id": channel, "message_data": {"seq": 1}});
        actix_rt::spawn(async move {
            let mut response = client
                .post(format!("{base}/messages/publish"))
                .send_json(&body)
                .await
                .expect("answered");
            let body = response.body().await.unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    gw.stop().await;
    let (status, body) = waiting.await.expect("publish task");
    println!(
        "stopped in {:?}; the waiting publish got {status}",
        started.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "stopping did not wait out the buffer"
    );
}
