//! Static routes from the config: documents loaded from files, device data
//! published straight to Mosquitto and routed into Kafka (tansu) in order,
//! a payload the target's schema refuses counted and never forwarded,
//! routes that would feed themselves refused at start, and routes held to
//! the access rules like any client.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use stepflow_gateway::auth::Action;
use stepflow_gateway::config::{AclRule, DocumentFile, RouteConfig, RouteEnd};
use stepflow_gateway::{Config, Gateway};

const WAIT: Duration = Duration::from_secs(20);

fn iot(prefix: &str) -> String {
    format!(
        "asyncapi: 3.0.0\ninfo: {{title: IoT, version: '1'}}\n\
         servers:\n  plant: {{host: '127.0.0.1:1883', protocol: mqtt}}\n\
         channels:\n  data:\n    address: '{prefix}/{{deviceId}}/data'\n    messages:\n      reading:\n\
         \x20       payload: {{type: object}}\n"
    )
}

fn telemetry(host: &str, topic: &str) -> String {
    format!(
        "asyncapi: 3.0.0\ninfo: {{title: Telemetry, version: '1'}}\n\
         servers:\n  stream: {{host: '{host}', protocol: kafka}}\n\
         channels:\n  telemetry:\n    address: '{topic}'\n    messages:\n      reading:\n\
         \x20       payload: {{type: object, required: [seq], properties: {{seq: {{type: integer}}}}}}\n"
    )
}

/// A config with the documents written into `dir` and loaded from there.
fn with_documents(db: &TestDb, dir: &std::path::Path, documents: &[(&str, String)]) -> Config {
    let mut config = test_config(&db.url);
    for (name, text) in documents {
        let path = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&path, text).expect("document written");
        config.documents.push(DocumentFile {
            name: (*name).into(),
            path,
            base_url: None,
            server_urls: BTreeMap::new(),
        });
    }
    config
}

fn route(name: &str, from: (&str, &str), to: (&str, &str)) -> RouteConfig {
    let end = |(document, channel): (&str, &str)| RouteEnd {
        document: document.into(),
        channel: Some(channel.into()),
        ..RouteEnd::default()
    };
    RouteConfig {
        name: name.into(),
        from: end(from),
        to: end(to),
        principal: None,
        roles: Vec::new(),
        validate: true,
        max_pending: 100_000,
    }
}

async fn route_status(gw: &TestGateway, name: &str) -> Value {
    let (_, status) = gw.get("/connections/status").await;
    let routes = status["routes"].as_array().cloned().unwrap_or_default();
    routes
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn device_data_on_mosquitto_is_routed_into_kafka_in_order() {
    let kafka = Private::new(tansu);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("stepflow-route-{run}");
    let topic = format!("telemetry-{run}");
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let kafka_host = format!("127.0.0.1:{}", kafka.port);
    let documents = [
        ("IoT", iot(&prefix)),
        ("Telemetry", telemetry(&kafka_host, &topic)),
    ];
    let mut config = with_documents(&db, dir.path(), &documents);
    let address = format!("{prefix}/{{deviceId}}/data");
    config.routes = vec![route(
        "telemetry-to-kafka",
        ("IoT", &address),
        ("Telemetry", "telemetry"),
    )];
    let gw = TestGateway::start(config).await;

    // The gateway started ready: documents loaded, the route running.
    let (_, channels) = gw.get("/channels").await;
    let target = channels["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["address"] == topic.as_str())
        .and_then(|c| c["id"].as_str())
        .expect("the Kafka channel is loaded")
        .to_owned();
    let mut kafka_side = gw.subscribe(&target, "").await;
    let active = eventually(WAIT, || async {
        let status = route_status(&gw, "telemetry-to-kafka").await;
        (status["state"] == "active").then_some(status)
    })
    .await;
    assert!(active.is_some(), "the route is active");

    let device = MqttProbe::subscribe(&format!("{prefix}/none")).await;
    let per_device = 10;
    for seq in 0..per_device {
        for id in ["d1", "d2"] {
            let topic = format!("{prefix}/{id}/data");
            device
                .publish(&topic, &json!({"seq": seq, "device": id}))
                .await;
        }
    }
    // The target's schema wants an integer `seq`: this one is not forwarded.
    let bad = format!("{prefix}/d1/data");
    device
        .publish(&bad, &json!({"seq": "late", "device": "d1"}))
        .await;

    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    while seen.values().map(Vec::len).sum::<usize>() < 2 * per_device as usize {
        let frame = kafka_side
            .next_message_where(WAIT, |_| true)
            .await
            .expect("routed message arrives from Kafka");
        let frame = &frame["payload"];
        let device = frame["device"].as_str().expect("device").to_owned();
        seen.entry(device)
            .or_default()
            .push(frame["seq"].as_i64().expect("seq"));
    }
    let in_order: Vec<i64> = (0..per_device).collect();
    assert_eq!(seen["d1"], in_order);
    assert_eq!(seen["d2"], in_order);

    let status = eventually(WAIT, || async {
        let status = route_status(&gw, "telemetry-to-kafka").await;
        (status["failed"]["validation"] == 1).then_some(status)
    })
    .await
    .expect("the refused message is counted");
    assert_eq!(status["forwarded"], 2 * per_device, "{status}");
    let (_, stats) = gw
        .get(&format!("/messages/statistics?channel_id={target}"))
        .await;
    let target_figures = &stats["channels"][&target];
    assert_eq!(
        target_figures["failed"], 1,
        "counted once: {target_figures}"
    );
    assert_eq!(target_figures["published"], 2 * per_device);
    println!(
        "routed: forwarded {}, refused by schema {}",
        status["forwarded"], status["failed"]["validation"]
    );
    let extra = kafka_side
        .next_message_where(Duration::from_millis(500), |_| true)
        .await;
    assert!(extra.is_none(), "nothing else arrived: {extra:?}");
    device.close().await;
    gw.stop().await;
}

async fn start_error(config: Config) -> String {
    match Gateway::start(config).await {
        Ok(gateway) => {
            gateway.shutdown().await;
            panic!("the gateway started");
        }
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

fn memory_doc(title: &str, address: &str) -> String {
    format!(
        "asyncapi: 3.0.0\ninfo: {{title: '{title}', version: '1'}}\n\
         servers:\n  local: {{host: local, protocol: memory}}\n\
         channels:\n  c:\n    address: '{address}'\n    messages:\n      m:\n        payload: {{type: object}}\n"
    )
}

#[actix_rt::test]
async fn routes_that_cannot_run_are_refused_at_start() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let documents = [
        ("A", memory_doc("A", "loop/{x}/in")),
        ("B", memory_doc("B", "loop/{x}/out")),
        ("C", memory_doc("C", "site/{site}/out")),
    ];
    let base = with_documents(&db, dir.path(), &documents);

    let mut direct = base.clone();
    direct.routes = vec![route("echo", ("A", "c"), ("A", "c"))];
    let error = start_error(direct).await;
    assert!(
        error.contains("route `echo`") && error.contains("feed itself"),
        "{error}"
    );

    let mut cycle = base.clone();
    cycle.routes = vec![
        route("there", ("A", "loop/{x}/in"), ("B", "c")),
        route("back", ("B", "c"), ("A", "c")),
    ];
    let error = start_error(cycle).await;
    assert!(
        error.contains("there -> back -> there") || error.contains("back -> there -> back"),
        "{error}"
    );

    let mut missing = base.clone();
    missing.routes = vec![route("lost", ("Nowhere", "c"), ("A", "c"))];
    let error = start_error(missing).await;
    assert!(error.contains("no document named `Nowhere`"), "{error}");

    let mut unfilled = base.clone();
    unfilled.routes = vec![route("unfilled", ("A", "c"), ("C", "c"))];
    let error = start_error(unfilled).await;
    assert!(
        error.contains("parameter `site`") && error.contains("to.parameters"),
        "{error}"
    );

    // A target parameter filled from a captured one starts.
    let mut filled = base;
    let mut fill = route("filled", ("A", "c"), ("C", "c"));
    fill.to.parameters = [("site".to_owned(), "plant-{x}".to_owned())].into();
    filled.routes = vec![fill];
    let gw = TestGateway::start(filled).await;
    gw.stop().await;
}

/// Routes go through the access rules as their principal: the source must
/// be granted to it, and each message's publish on the target is checked
/// with its parameter values.
#[actix_rt::test]
async fn routes_are_held_to_the_access_rules() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let documents = [
        (
            "Readings",
            memory_doc("Readings", &format!("{run}/{{region}}/reading")),
        ),
        (
            "Archive",
            memory_doc("Archive", &format!("{run}/archive/{{region}}/kept")),
        ),
    ];
    let mut config = with_documents(&db, dir.path(), &documents);
    config.auth.enabled = true;
    config.auth.jwt.hs256_secret = Some(SECRET.into());
    config.auth.rules = vec![AclRule {
        role: Some("bridge".into()),
        document: Some("Readings".into()),
        actions: vec![Action::Subscribe],
        ..Default::default()
    }];
    let mut bridge = route("archiver", ("Readings", "c"), ("Archive", "c"));
    bridge.principal = Some("archiver-bot".into());
    let mut denied = config.clone();
    denied.routes = vec![bridge.clone()];
    let error = start_error(denied).await;
    assert!(
        error.contains("`archiver-bot` may not subscribe"),
        "{error}"
    );

    bridge.roles = vec!["bridge".into()];
    config.routes = vec![bridge];
    // The route may publish to the archive of region `eu` only.
    config.auth.rules.push(AclRule {
        principal: Some("archiver-bot".into()),
        document: Some("Archive".into()),
        parameters: [("region".to_owned(), "eu".to_owned())].into(),
        actions: vec![Action::Publish],
        ..Default::default()
    });
    config.auth.rules.push(AclRule {
        role: Some("sensor".into()),
        document: Some("Readings".into()),
        actions: vec![Action::Publish],
        ..Default::default()
    });
    let gw = TestGateway::start(config).await;
    let sensor = token("sensor-1", &["sensor"]);
    let admin = token("ops", &["admin"]);
    let (_, channels) = call(&gw, "GET", "/channels", &admin, None).await;
    let source = channels["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["address"] == format!("{run}/{{region}}/reading").as_str())
        .and_then(|c| c["id"].as_str())
        .expect("source channel")
        .to_owned();
    for region in ["eu", "us"] {
        let body = json!({"channel_id": source, "message_data": {"r": region}, "parameters": {"region": region}});
        let (status, outcome) = call(&gw, "POST", "/messages/publish", &sensor, Some(&body)).await;
        assert_eq!(status, 200, "{outcome}");
    }
    let status = eventually(WAIT, || async {
        let (_, status) = call(&gw, "GET", "/connections/status", &admin, None).await;
        let route = status["routes"][0].clone();
        (route["forwarded"] == 1 && route["failed"]["forbidden"] == 1).then_some(route)
    })
    .await
    .expect("eu forwarded, us refused");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("`archiver-bot` may not publish"),
        "{status}"
    );
    let logged = eventually(WAIT, || async {
        let (_, logs) = call(&gw, "GET", "/logs/recent", &admin, None).await;
        let logs = logs["logs"].as_array().cloned().unwrap_or_default();
        logs.into_iter().find(|l| {
            l["error_kind"] == "forbidden"
                && l["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("archiver-bot")
        })
    })
    .await;
    assert!(
        logged.is_some(),
        "the refused route publish is in the call log"
    );
    gw.stop().await;
}

const SECRET: &str = "route-test-secret";

fn token(sub: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": sub, "roles": roles, "exp": chrono::Utc::now().timestamp() + 300});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

async fn call(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let request = gw
        .client
        .request(method, format!("{}{path}", gw.base))
        .insert_header(("authorization", format!("Bearer {token}")));
    let mut response = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    }
    .expect("request sent");
    let bytes = response.body().limit(1 << 20).await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (response.status().as_u16(), value)
}

fn raw_end(document: &str, address: &str) -> RouteEnd {
    RouteEnd {
        document: document.into(),
        address: Some(address.into()),
        ..RouteEnd::default()
    }
}

/// Route ends may be raw addresses on a document's broker: readings
/// arriving on an undeclared topic are validated on their way into a
/// declared channel, and copied from it to another undeclared topic.
#[actix_rt::test]
async fn raw_addresses_on_a_documents_broker_are_routed() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("stepflow-raw-{run}");
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let plant = format!(
        "asyncapi: 3.0.0\ninfo: {{title: Plant, version: '1'}}\n\
         servers:\n  plant: {{host: '127.0.0.1:1883', protocol: mqtt}}\n\
         channels:\n  data:\n    address: '{prefix}/{{deviceId}}/data'\n    messages:\n      reading:\n\
         \x20       payload: {{type: object, required: [seq], properties: {{seq: {{type: integer}}}}}}\n"
    );
    let base = with_documents(&db, dir.path(), &[("Plant", plant)]);
    let mut ingest = route("ingest", ("Plant", "data"), ("Plant", "data"));
    ingest.from = raw_end("Plant", &format!("{prefix}/raw/{{deviceId}}/reading"));
    let mut copy = route("copy", ("Plant", "data"), ("Plant", "data"));
    copy.to = raw_end("Plant", &format!("{prefix}/copy/{{deviceId}}/out"));

    for (end, says) in [
        (raw_end("Plant", &format!("{prefix}/+/x")), "wildcard `+`"),
        (
            RouteEnd {
                server: Some("elsewhere".into()),
                ..raw_end("Plant", "a/b")
            },
            "no server `elsewhere`",
        ),
        (
            RouteEnd {
                channel: Some("data".into()),
                ..raw_end("Plant", "a/b")
            },
            "either `channel` or `address`",
        ),
    ] {
        let mut wrong = base.clone();
        let mut bad = copy.clone();
        bad.to = end;
        wrong.routes = vec![bad];
        let error = start_error(wrong).await;
        assert!(
            error.contains("route `copy`: to:") && error.contains(says),
            "{error}"
        );
    }

    let mut config = base;
    config.routes = vec![ingest, copy];
    let gw = TestGateway::start(config).await;
    let active = eventually(WAIT, || async {
        let (a, b) = (
            route_status(&gw, "ingest").await,
            route_status(&gw, "copy").await,
        );
        (a["state"] == "active" && b["state"] == "active").then_some(())
    })
    .await;
    assert!(active.is_some(), "both routes are active");
    let mut copies = MqttProbe::subscribe(&format!("{prefix}/copy/#")).await;
    let raw = format!("{prefix}/raw/d1/reading");
    for reading in [json!({"seq": 1}), json!({"seq": "late"}), json!({"seq": 2})] {
        copies.publish(&raw, &reading).await;
    }
    for seq in [1, 2] {
        let (topic, payload) = copies.next(WAIT).await.expect("a copy arrives");
        assert_eq!(topic, format!("{prefix}/copy/d1/out"));
        assert_eq!(payload["seq"], seq);
    }
    let ingest = eventually(WAIT, || async {
        let status = route_status(&gw, "ingest").await;
        (status["failed"]["validation"] == 1).then_some(status)
    })
    .await
    .expect("the reading the channel's schema refuses is counted");
    assert_eq!(ingest["forwarded"], 2, "{ingest}");
    assert_eq!(route_status(&gw, "copy").await["forwarded"], 2);
    let extra = copies.next(Duration::from_millis(500)).await;
    assert!(extra.is_none(), "nothing else arrived: {extra:?}");
    copies.close().await;
    gw.stop().await;
}

/// Two documents naming the same broker (even as `localhost` and
/// `127.0.0.1`) are one broker: a route between their equal addresses
/// would feed itself.
#[actix_rt::test]
async fn a_route_between_documents_on_one_broker_cannot_feed_itself() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let doc = |title: &str, host: &str| {
        format!(
            "asyncapi: 3.0.0\ninfo: {{title: '{title}', version: '1'}}\n\
             servers:\n  plant: {{host: '{host}', protocol: mqtt}}\n\
             channels:\n  c:\n    address: 'device/{{deviceId}}/data'\n    messages:\n      m:\n        payload: {{type: object}}\n"
        )
    };
    let documents = [
        ("First", doc("First", "127.0.0.1:1883")),
        ("Second", doc("Second", "localhost:1883")),
    ];
    let mut config = with_documents(&db, dir.path(), &documents);
    config.routes = vec![route("cross", ("First", "c"), ("Second", "c"))];
    let error = start_error(config).await;
    assert!(
        error.contains("route `cross`") && error.contains("feed itself"),
        "{error}"
    );
}

/// Dotted addresses (AMQP routing keys) are compared token by token: a
/// chain of routes whose addresses differ in their first token is no
/// loop, and starts; the same chain closed on itself is refused.
#[actix_rt::test]
async fn dotted_addresses_that_differ_are_no_loop() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let doc = |title: &str, input: &str, output: &str| {
        format!(
            "asyncapi: 3.0.0\ninfo: {{title: '{title}', version: '1'}}\n\
             servers:\n  rabbit: {{host: '127.0.0.1:5672', protocol: amqp}}\n\
             channels:\n  \
             in:\n    address: '{input}.{{orderId}}.in'\n    messages:\n      m:\n        payload: {{type: object}}\n  \
             out:\n    address: '{output}.{{orderId}}.out'\n    messages:\n      m:\n        payload: {{type: object}}\n"
        )
    };
    let documents = [
        ("Orders", doc("Orders", "orders", "orders")),
        ("Stock", doc("Stock", "stock", "stock")),
    ];
    let mut config = with_documents(&db, dir.path(), &documents);
    config.routes = vec![
        route("placed", ("Orders", "out"), ("Stock", "in")),
        route("reserved", ("Stock", "out"), ("Orders", "in")),
    ];
    let gw = TestGateway::start(config.clone()).await;
    let (_, status) = gw.get("/connections/status").await;
    assert_eq!(
        status["routes"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    gw.stop().await;

    config.routes = vec![
        route("placed", ("Orders", "out"), ("Stock", "in")),
        route("back", ("Stock", "in"), ("Orders", "out")),
    ];
    let error = start_error(config).await;
    assert!(error.contains("feed itself"), "{error}");
}

/// A route whose source broker cannot be reached says so in its status
/// instead of looking active; a name no broker would take as a client id
/// stops the start.
#[actix_rt::test]
async fn a_route_waiting_for_its_source_says_why_and_names_are_checked() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let doc = |title: &str, host: &str| {
        format!(
            "asyncapi: 3.0.0\ninfo: {{title: '{title}', version: '1'}}\n\
             servers:\n  plant: {{host: '{host}', protocol: mqtt}}\n\
             channels:\n  c:\n    address: '{title}/{{deviceId}}'\n    messages:\n      m:\n        payload: {{type: object}}\n"
        )
    };
    let documents = [
        ("Away", doc("Away", "127.0.0.1:1")),
        ("Here", doc("Here", "127.0.0.1:1883")),
    ];
    let mut config = with_documents(&db, dir.path(), &documents);
    config.routes = vec![route("from-away", ("Away", "c"), ("Here", "c"))];
    let gw = TestGateway::start(config.clone()).await;
    let waiting = eventually(Duration::from_secs(10), || async {
        let (_, status) = gw.get("/connections/status").await;
        let route = status["routes"][0].clone();
        (route["state"] == "waiting").then_some(route)
    })
    .await
    .expect("the route waits for its source");
    let reason = waiting["last_error"].as_str().unwrap_or_default();
    assert!(reason.starts_with("source broker: "), "{waiting}");
    gw.stop().await;

    for (name, why) in [("a\u{0}b", "control character"), ("", "needs a name")] {
        config.routes = vec![route(name, ("Away", "c"), ("Here", "c"))];
        let error = start_error(config.clone()).await;
        assert!(error.contains(why), "{error}");
    }
    config.routes = vec![route(&"r".repeat(201), ("Away", "c"), ("Here", "c"))];
    assert!(start_error(config).await.contains("longer than 200 bytes"));
}
