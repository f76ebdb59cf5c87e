//! Monitoring against real brokers: after N publishes and M failures on
//! the IoT and streetlights documents the statistics and the Prometheus
//! metrics (parsed with a Prometheus text parser) show exactly N and M;
//! a broker outage shows in `/connections/status` within a second, and the
//! reconnection after it; call-log sampling writes the share it is told.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            buckets.last().map_or(0.0, |b| b.count)
        }
        _ => 0.0,
    }
}

#[actix_rt::test]
async fn statistics_and_metrics_count_exactly_what_happened() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let iot = gw
        .register("IoT Device API", &iot_document(), Some(MQTT_URL))
        .await;
    let device_channel = channel_id(&iot, "device/{deviceId}/data");
    let lights_text = fixture("asyncapi/examples/v2/spec-2.6.0/streetlights-mqtt.yml");
    let lights = gw
        .register("Streetlights", &lights_text, Some(MQTT_URL))
        .await;
    let measured = channel_id(
        &lights,
        "smartylighting/streetlights/1/0/event/{streetlightId}/lighting/measured",
    );
    let device = format!("mon-{}", uuid::Uuid::new_v4().simple());
    let mut ws = gw
        .subscribe(&device_channel, &format!("?deviceId={device}"))
        .await;

    // N good readings, M1 that fail their schema and M2 without their
    // parameter, on the IoT channel; L measurements on streetlights.
    let (n, m1, m2, l) = (200, 30, 10, 50);
    // The good readings go out eight at a time.
    let mut bytes = 0;
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            let data = json!({"temperature": 20.0 + f64::from(i) / 10.0, "humidity": 40});
            bytes += serde_json::to_vec(&data).expect("JSON").len();
            json!({"channel_id": device_channel, "message_data": data, "parameters": {"deviceId": device}})
        })
        .collect();
    for batch in bodies.chunks(8) {
        let sent = batch.iter().map(|body| gw.post("/messages/publish", body));
        for (status, outcome, _) in futures_util::future::join_all(sent).await {
            assert_eq!(status, 200, "{outcome}");
        }
    }
    for _ in 0..m1 {
        let body = json!({"channel_id": device_channel, "message_data": {"temperature": "hot"}, "parameters": {"deviceId": device}});
        let (status, _, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 422);
    }
    for _ in 0..m2 {
        let body = json!({"channel_id": device_channel, "message_data": {"temperature": 1}});
        let (status, _, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 400);
    }
    for i in 0..l {
        let data = json!({"lumens": i, "sentAt": "2026-12-04T10:00:00Z"});
        let body = json!({"channel_id": measured, "message_data": data, "parameters": {"streetlightId": "7"}});
        let (status, outcome, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 200, "{outcome}");
    }
    for _ in 0..n {
        ws.next_message_where(WAIT, |_| true)
            .await
            .expect("every reading reaches the subscriber");
    }

    let path = format!("/messages/statistics?channel_id={device_channel}");
    let stats = eventually(WAIT, || async {
        let (_, stats) = gw.get(&path).await;
        let channel = stats["channels"][&device_channel].clone();
        (channel["received"] == n && channel["delivered"] == n).then_some(stats)
    })
    .await
    .expect("receipts and deliveries are counted");
    let channel = &stats["channels"][&device_channel];
    println!("IoT channel statistics: {channel}");
    assert_eq!(channel["published"], n);
    assert_eq!(channel["failed"], m1 + m2);
    assert_eq!(channel["failed_by_reason"]["validation"], m1);
    assert_eq!(channel["failed_by_reason"]["parameter"], m2);
    assert_eq!(channel["bytes_published"], bytes);
    assert_eq!(channel["publish_latency"]["count"], n);
    assert_eq!(channel["delivery_latency"]["count"], n);
    let error_rate = channel["error_rate"].as_f64().expect("error rate");
    let expected = f64::from(m1 + m2) / f64::from(n + m1 + m2);
    assert!((error_rate - expected).abs() < 1e-9, "{error_rate}");
    let per_minute = channel["throughput_per_second"]["published"]["1m"]
        .as_f64()
        .expect("rate");
    assert!(
        (per_minute - f64::from(n) / 60.0).abs() < 1e-9,
        "all {n} publishes fell in the last minute: {per_minute}"
    );
    assert_eq!(
        stats["channels"].as_object().map(|c| c.len()),
        Some(1),
        "the channel filter keeps one channel"
    );
    let lights_id = lights["id"].as_str().expect("document id");
    let (_, by_document) = gw
        .get(&format!(
            "/messages/statistics?asyncapi_document_id={lights_id}"
        ))
        .await;
    assert_eq!(by_document["channels"][&measured]["published"], l);
    assert!(by_document["channels"][&device_channel].is_null());

    let (status, content_type, text) = gw.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let delivered = [("protocol", "mqtt"), ("outcome", "delivered")];
    assert_eq!(
        sample(&scrape, "stepflow_publishes_total", &delivered),
        f64::from(n + l)
    );
    let refused = [("outcome", "rejected"), ("reason", "validation")];
    assert_eq!(
        sample(&scrape, "stepflow_publishes_total", &refused),
        f64::from(m1)
    );
    let missing = [("outcome", "rejected"), ("reason", "parameter")];
    assert_eq!(
        sample(&scrape, "stepflow_publishes_total", &missing),
        f64::from(m2)
    );
    assert_eq!(
        sample(
            &scrape,
            "stepflow_messages_received_total",
            &[("protocol", "mqtt")]
        ),
        f64::from(n)
    );
    let to_ws = [("front", "websocket"), ("outcome", "delivered")];
    assert_eq!(
        sample(&scrape, "stepflow_deliveries_total", &to_ws),
        f64::from(n)
    );
    assert_eq!(
        sample(
            &scrape,
            "stepflow_publish_latency_seconds",
            &[("protocol", "mqtt")]
        ),
        f64::from(n + l)
    );
    assert_eq!(
        sample(&scrape, "stepflow_sessions", &[("front", "websocket")]),
        1.0
    );
    let connected = [("protocol", "mqtt"), ("state", "connected")];
    assert_eq!(
        sample(&scrape, "stepflow_broker_connections", &connected),
        2.0
    );
    // Labels stay bounded: no series names a topic or a client.
    assert!(!text.contains(&device), "a topic leaked into a label");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_broker_outage_shows_in_the_status_within_a_second() {
    let mut broker = Private::new(mosquitto);
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.reconnect_initial_ms = 100;
    config.brokers.reconnect_max_ms = 300;
    let gw = TestGateway::start(config).await;
    let registered = gw
        .register("IoT Device API", &iot_document(), Some(&broker.url("mqtt")))
        .await;
    let broker_id = registered["brokers"][0]["id"]
        .as_str()
        .expect("broker id")
        .to_owned();
    let state = |status: &Value| {
        status["brokers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["broker_id"] == broker_id.as_str())
            .cloned()
            .unwrap_or(Value::Null)
    };
    let up = eventually(WAIT, || async {
        let (_, status) = gw.get("/connections/status").await;
        (state(&status)["state"] == "connected").then_some(())
    })
    .await;
    assert!(up.is_some(), "connected first");

    broker.down();
    let stopped = Instant::now();
    let noticed = eventually(Duration::from_secs(5), || async {
        let (_, status) = gw.get("/connections/status").await;
        let broker = state(&status);
        (broker["state"] != "connected").then_some(broker)
    })
    .await
    .expect("the outage shows");
    let took = stopped.elapsed();
    println!("outage shown after {took:?}: {noticed}");
    assert!(took < Duration::from_secs(1), "shown after {took:?}");
    assert!(noticed["last_error"].is_string(), "{noticed}");

    broker.up_async().await;
    let back = eventually(WAIT, || async {
        let (_, status) = gw.get("/connections/status").await;
        let broker = state(&status);
        (broker["state"] == "connected").then_some(broker)
    })
    .await
    .expect("the reconnection shows");
    assert!(back["reconnects"].as_u64() >= Some(1), "{back}");

    // The connection events tell the same story, oldest last.
    let path = format!("/logs/connections?broker_id={broker_id}");
    let story = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        let events: Vec<String> = logs["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event"].as_str().map(str::to_owned))
            .collect();
        (events.first().map(String::as_str) == Some("connected") && events.len() >= 3)
            .then_some(events)
    })
    .await
    .expect("connection events written");
    assert_eq!(
        story.last().map(String::as_str),
        Some("connected"),
        "{story:?}"
    );
    assert!(story.contains(&"disconnected".to_owned()), "{story:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn refused_logins_are_logged_and_the_logs_are_filtered_and_bounded() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.call_log.max_rows = 20;
    config.call_log.prune_interval_ms = 200;
    config.call_log.flush_interval_ms = 50;
    let gw = TestGateway::start(config).await;
    let amqp = "asyncapi: 2.6.0\ninfo: {title: Orders, version: '1'}\nservers:\n  rabbit: {url: 'amqp://guest:not-the-password@127.0.0.1:5672', protocol: amqp}\nchannels:\n  orders:\n    publish: {message: {payload: {type: object}}}\n";
    let orders = gw.register("orders", amqp, None).await;
    let broker_id = orders["brokers"][0]["id"]
        .as_str()
        .expect("broker")
        .to_owned();
    let path = format!("/logs/connections?broker_id={broker_id}");
    let refused = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        logs["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["event"] == "auth_failed")
            .cloned()
    })
    .await
    .expect("the refused login is logged");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("ACCESS_REFUSED"), "{refused}");
    assert!(
        !refused.to_string().contains("not-the-password"),
        "{refused}"
    );
    let (_, again) = gw.get(&path).await;
    assert_eq!(
        again["events"].as_array().map(Vec::len),
        Some(1),
        "a login refused again and again is logged once: {again}"
    );

    let document = "asyncapi: 2.6.0\ninfo: {title: Kept, version: '1'}\nchannels:\n  k:\n    publish: {message: {payload: {type: object}}}\n";
    let kept = gw.register("kept", document, None).await;
    let channel = channel_id(&kept, "k");
    for i in 0..60 {
        let body = json!({"channel_id": channel, "message_data": {"i": i}});
        assert_eq!(gw.post("/messages/publish", &body).await.0, 200);
    }
    for _ in 0..3 {
        let body = json!({"channel_id": channel, "message_data": []});
        assert_eq!(gw.post("/messages/publish", &body).await.0, 422);
    }
    let all = format!("/logs/recent?channel_id={channel}&limit=1000");
    let bounded = eventually(WAIT, || async {
        let (_, logs) = gw.get(&all).await;
        let count = logs["logs"].as_array().map_or(0, Vec::len);
        (count > 0 && count <= 20).then_some(count)
    })
    .await;
    assert!(bounded.is_some(), "at most max_rows records stay");
    // The refusals are the newest records: written last, pruned last.
    let path = format!("/logs/recent?channel_id={channel}&status=rejected");
    let rejected = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        let logs = logs["logs"].as_array().cloned().unwrap_or_default();
        (logs.len() == 3).then_some(logs)
    })
    .await
    .expect("the three refusals are kept");
    assert!(rejected.iter().all(|r| r["error_kind"] == "validation"));
    let (_, later) = gw
        .get(&format!(
            "/logs/recent?channel_id={channel}&since=2999-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(later["logs"].as_array().map(Vec::len), Some(0));
    let (status, problem) = gw.get("/logs/recent?since=yesterday").await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = gw.get("/logs/recent?direction=sideways").await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("`direction`"));
    gw.stop().await;
}

#[actix_rt::test]
async fn log_rows_past_their_age_are_deleted_on_sqlite() {
    rows_past_their_age_are_deleted(&TestDb::sqlite()).await;
}

#[actix_rt::test]
async fn log_rows_past_their_age_are_deleted_on_postgres() {
    let db = TestDb::postgres().await;
    rows_past_their_age_are_deleted(&db).await;
    db.drop_postgres().await;
}

async fn rows_past_their_age_are_deleted(db: &TestDb) {
    let mut config = test_config(&db.url);
    config.call_log.retention_secs = 1;
    config.call_log.prune_interval_ms = 200;
    config.call_log.flush_interval_ms = 50;
    let gw = TestGateway::start(config).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: Aged, version: '1'}\nchannels:\n  a:\n    publish: {message: {payload: {type: object}}}\n";
    let aged = gw.register("aged", document, None).await;
    let channel = channel_id(&aged, "a");
    for i in 0..5 {
        let body = json!({"channel_id": channel, "message_data": {"i": i}});
        assert_eq!(gw.post("/messages/publish", &body).await.0, 200);
    }
    let path = format!("/logs/recent?channel_id={channel}");
    let written = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        (logs["logs"].as_array().map(Vec::len) == Some(5)).then_some(())
    })
    .await;
    assert!(written.is_some(), "written first");
    let gone = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        (logs["logs"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "deleted once older than retention_secs");
    gw.stop().await;
}

#[actix_rt::test]
async fn call_log_sampling_writes_its_share_and_every_failure() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.call_log.sample_rate = 0.25;
    config.call_log.flush_interval_ms = 50;
    let gw = TestGateway::start(config).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: Sampled, version: '1'}\nchannels:\n  s:\n    publish: {message: {payload: {type: object}}}\n";
    let registered = gw.register("sampled", document, None).await;
    let channel = channel_id(&registered, "s");
    for i in 0..100 {
        let body = json!({"channel_id": channel, "message_data": {"i": i}});
        let (status, _, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 200);
    }
    for _ in 0..7 {
        let body = json!({"channel_id": channel, "message_data": "not an object"});
        let (status, _, _) = gw.post("/messages/publish", &body).await;
        assert_eq!(status, 422);
    }
    let path = format!("/logs/recent?channel_id={channel}&limit=1000");
    let counts = eventually(WAIT, || async {
        let (_, logs) = gw.get(&path).await;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for record in logs["logs"].as_array().into_iter().flatten() {
            let status = record["status"].as_str().unwrap_or_default().to_owned();
            *counts.entry(status).or_default() += 1;
        }
        (counts.get("delivered") == Some(&25) && counts.get("rejected") == Some(&7))
            .then_some(counts)
    })
    .await;
    assert!(
        counts.is_some(),
        "25 of 100 successes and all 7 failures written"
    );
    let (_, stats) = gw
        .get(&format!("/messages/statistics?channel_id={channel}"))
        .await;
    assert_eq!(stats["channels"][&channel]["published"], 100);
    assert_eq!(stats["channels"][&channel]["failed"], 7);
    gw.stop().await;
}

/// The next `count` events of `stream` that are not comments.
async fn events(stream: &mut SseClient, count: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < count {
        out.push(stream.next_event().await);
    }
    out
}

#[actix_rt::test]
async fn the_message_stream_resumes_after_last_event_id() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.sse.stream_buffer = 30;
    config.sse.heartbeat_secs = 1;
    let gw = TestGateway::start(config).await;
    let doc = |title: &str, address: &str| {
        format!("asyncapi: 2.6.0\ninfo: {{title: {title}, version: '1'}}\nchannels:\n  {address}:\n    publish: {{message: {{payload: {{type: object}}}}}}\n")
    };
    let streamed = gw.register("streamed", &doc("S", "s"), None).await;
    let other = gw.register("other", &doc("O", "o"), None).await;
    let channel = channel_id(&streamed, "s");
    let elsewhere = channel_id(&other, "o");
    let path = format!("/messages/stream?channel_id={channel}");
    let publish = |channel: String, data: Value| {
        let gw = &gw;
        async move {
            let body = json!({"channel_id": channel, "message_data": data});
            gw.post("/messages/publish", &body).await.0
        }
    };

    let mut stream = SseClient::open_path(&gw, &path, None).await;
    for i in 0..5 {
        assert_eq!(publish(channel.clone(), json!({"i": i})).await, 200);
    }
    assert_eq!(publish(elsewhere.clone(), json!({"i": 0})).await, 200);
    assert_eq!(publish(channel.clone(), json!("not an object")).await, 422);
    let first = events(&mut stream, 6).await;
    let kinds: Vec<&str> = first.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "published",
            "published",
            "published",
            "published",
            "published",
            "rejected"
        ]
    );
    assert_eq!(first[0].data["address"], "s");
    assert_eq!(first[0].data["payload_bytes"], 7);
    assert!(first[0].data["latency_ms"].as_f64().is_some());
    assert_eq!(first[5].data["reason"], "validation");
    assert!(first
        .iter()
        .all(|e| e.data["channel_id"] == channel.as_str()));
    let heartbeat = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if stream.next().await.kind == ":" {
                return;
            }
        }
    })
    .await;
    assert!(heartbeat.is_ok(), "an idle stream gets heartbeats");
    drop(stream);

    // Four more while the client is away; it resumes after the third.
    for i in 5..9 {
        assert_eq!(publish(channel.clone(), json!({"i": i})).await, 200);
    }
    let last = first[2].id.clone().expect("event id");
    let mut resumed = SseClient::open_path(&gw, &path, Some(&last)).await;
    let again = events(&mut resumed, 7).await;
    let seen: Vec<Value> = again.iter().map(|e| e.data["id"].clone()).collect();
    let expected: Vec<Value> = first[3..].iter().map(|e| e.data["id"].clone()).collect();
    assert_eq!(
        seen[..3],
        expected[..],
        "the three it had not seen, in order"
    );
    assert!(again[3..].iter().all(|e| e.kind == "published"));
    drop(resumed);

    // Once the ring has moved past an id, resuming says what is gone.
    for i in 0..40 {
        assert_eq!(publish(channel.clone(), json!({"i": i})).await, 200);
    }
    let oldest = first[0].id.clone().expect("event id");
    let mut late = SseClient::open_path(&gw, &path, Some(&oldest)).await;
    let missed = late.next_event().await;
    assert_eq!(missed.kind, "missed", "{missed:?}");
    assert_eq!(missed.data["last_event_id"], oldest.as_str());
    gw.stop().await;
}

#[actix_rt::test]
async fn records_the_writer_cannot_take_are_dropped_and_counted_everywhere() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    // A queue of two and a writer that commits every record on its own:
    // fifty publishes at once find the queue full while it writes.
    config.call_log.queue_capacity = 2;
    config.call_log.batch_size = 1;
    let gw = TestGateway::start(config).await;
    let document = "asyncapi: 2.6.0\ninfo: {title: Busy, version: '1'}\nchannels:\n  b:\n    publish: {message: {payload: {type: object}}}\n";
    let busy = gw.register("busy", document, None).await;
    let channel = channel_id(&busy, "b");
    let bodies: Vec<Value> = (0..50)
        .map(|i| json!({"channel_id": channel, "message_data": {"i": i}}))
        .collect();
    let sent = bodies.iter().map(|body| gw.post("/messages/publish", body));
    for (status, outcome, _) in futures_util::future::join_all(sent).await {
        assert_eq!(
            status, 200,
            "publishing is not slowed or refused: {outcome}"
        );
    }
    let (_, logs) = gw.get("/logs/recent?limit=1000").await;
    let dropped = logs["dropped"].as_u64().expect("dropped");
    let written = logs["logs"].as_array().map_or(0, Vec::len) as u64;
    println!("call log under overload: {written} written, {dropped} dropped");
    assert!(dropped > 0, "some records were dropped");
    let (_, stats) = gw.get("/messages/statistics").await;
    assert_eq!(stats["call_log"]["dropped"], dropped);
    assert_eq!(
        stats["channels"][&channel]["published"], 50,
        "statistics count them all"
    );
    let (_, _, text) = gw.get_text("/metrics").await;
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    assert_eq!(
        sample(&scrape, "stepflow_call_log_dropped_records_total", &[]),
        dropped as f64
    );
    gw.stop().await;
}
