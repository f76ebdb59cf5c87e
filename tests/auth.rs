//! Client authentication and access rules on every front: REST publish,
//! WebSocket, SSE and webhook subscriptions, and the management API. Each
//! front is tried with no token, a bad token, an expired token, the wrong
//! channel, the wrong direction, and an allowed request.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use stepflow_gateway::auth::Action;
use stepflow_gateway::config::AclRule;
use stepflow_gateway::Config;

const SECRET: &str = "an-hs256-secret-for-tests-only";
const WAIT: Duration = Duration::from_secs(10);

const CHAT: &str = "asyncapi: 3.0.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  room:\n    address: rooms/{roomId}\n    messages:\n      said:\n        payload: {type: object, required: [n], properties: {n: {type: integer}}}\n";

/// Devices publish to the room named by their `sub`; readers subscribe to
/// any room of the Chat document.
fn auth_config(db: &TestDb) -> Config {
    let mut config = test_config(&db.url);
    config.webhooks.allow_private_targets = true;
    config.auth.enabled = true;
    config.auth.jwt.hs256_secret = Some(SECRET.into());
    config.auth.jwt.leeway_secs = 0;
    config.auth.rules = vec![
        AclRule {
            role: Some("device".into()),
            channel: Some("rooms/{roomId}".into()),
            bind: [("roomId".to_owned(), "sub".to_owned())].into(),
            actions: vec![Action::Publish],
            ..Default::default()
        },
        AclRule {
            role: Some("reader".into()),
            document: Some("Chat".into()),
            actions: vec![Action::Subscribe],
            ..Default::default()
        },
    ];
    config
}

fn token(sub: &str, roles: &[&str], expires_in: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in;
    let claims = json!({"sub": sub, "roles": roles, "exp": exp});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// The credentials tried on every front, with the status each must get.
fn refusals() -> Vec<(&'static str, Option<String>, u16)> {
    let forged = encode(
        &Header::default(),
        &json!({"sub": "lobby", "roles": ["device", "reader"], "exp": chrono::Utc::now().timestamp() + 60}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .expect("token");
    vec![
        ("no token", None, 401),
        ("garbage", Some("not-a-token".into()), 401),
        ("forged", Some(forged), 401),
        (
            "expired",
            Some(token("lobby", &["device", "reader"], -60)),
            401,
        ),
    ]
}

struct Setup {
    gw: TestGateway,
    channel: String,
    admin: String,
    _db: TestDb,
}

/// A gateway with auth on, an admin key issued by the command line, and
/// the Chat document registered with it.
async fn setup() -> Setup {
    let db = TestDb::sqlite();
    let config = auth_config(&db);
    let gw = TestGateway::start(config).await;
    let admin = issue_key(&db, "root", "admin");
    let body = json!({"name": "Chat", "asyncapi_content": CHAT});
    let (status, registered) = send(
        &gw,
        "POST",
        "/asyncapis/register",
        Some(&admin),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let channel = channel_id(&registered, "room");
    Setup {
        gw,
        channel,
        admin,
        _db: db,
    }
}

/// `stepflow-gateway issue-key`, as an operator runs it.
fn issue_key(db: &TestDb, name: &str, role: &str) -> String {
    let dir = tempfile::tempdir().expect("folder");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).expect("config");
    let output = std::process::Command::new(gateway_binary())
        .args(["issue-key", "--config"])
        .arg(&config)
        .args(["--name", name, "--role", role])
        .output()
        .expect("issue-key runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = gw.client.request(method, format!("{}{path}", gw.base));
    if let Some(token) = token {
        request = request.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut response = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    }
    .expect("request sent");
    let status = response.status().as_u16();
    if status == 401 {
        let challenge = response.headers().get("www-authenticate");
        assert_eq!(challenge.and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    let bytes = response.body().limit(1 << 20).await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn status_of(gw: &TestGateway, method: &str, path: &str, token: &str, body: &Value) -> u16 {
    send(gw, method, path, Some(token), Some(body)).await.0
}

fn publish_body(channel: &str, room: &str) -> Value {
    json!({"channel_id": channel, "message_data": {"n": 1}, "parameters": {"roomId": room}})
}

#[actix_rt::test]
async fn rest_publish_is_checked_per_channel_and_direction() {
    let s = setup().await;
    let body = publish_body(&s.channel, "lobby");
    for (case, token, expected) in refusals() {
        let (status, problem) = send(
            &s.gw,
            "POST",
            "/messages/publish",
            token.as_deref(),
            Some(&body),
        )
        .await;
        assert_eq!(status, expected, "{case}: {problem}");
        assert_eq!(
            problem["type"], "urn:stepflow:problem:unauthenticated",
            "{case}"
        );
    }
    let device = token("lobby", &["device"], 60);
    let other_room = publish_body(&s.channel, "kitchen");
    let (status, problem) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&device),
        Some(&other_room),
    )
    .await;
    assert_eq!(status, 403, "wrong channel: {problem}");
    assert_eq!(problem["type"], "urn:stepflow:problem:forbidden");
    let reader = token("lobby", &["reader"], 60);
    let (status, _) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&reader),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403, "wrong direction");
    let (status, outcome) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&device),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "allowed: {outcome}");

    // The refusals are in the call log.
    let logged = eventually(WAIT, || async {
        let (_, logs) = send(&s.gw, "GET", "/logs/recent", Some(&s.admin), None).await;
        let forbidden = logs["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["error_kind"] == "forbidden" && l["status"] == "rejected")
            .count();
        (forbidden == 2).then_some(())
    })
    .await;
    assert!(logged.is_some(), "two forbidden publishes logged");
    s.gw.stop().await;
}

#[actix_rt::test]
async fn websocket_and_sse_subscriptions_are_checked_before_they_open() {
    let s = setup().await;
    let ws_url = |query: &str| {
        format!(
            "{}/ws/{}?roomId=lobby{query}",
            s.gw.base.replace("http://", "ws://"),
            s.channel
        )
    };
    let sse_url = format!("{}/sse/{}?roomId=lobby", s.gw.base, s.channel);
    let mut cases = refusals();
    cases.push((
        "wrong direction",
        Some(token("lobby", &["device"], 60)),
        403,
    ));
    for (case, token, expected) in cases {
        let mut ws = s.gw.client.ws(ws_url(""));
        let mut sse = s.gw.client.get(&sse_url);
        if let Some(token) = &token {
            ws = ws.bearer_auth(token);
            sse = sse.bearer_auth(token);
        }
        match ws.connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), expected, "WebSocket, {case}")
            }
            other => panic!(
                "WebSocket, {case}: refusal expected, got {:?}",
                other.map(|_| ())
            ),
        }
        let response = sse.send().await.expect("SSE request");
        assert_eq!(response.status().as_u16(), expected, "SSE, {case}");
    }

    // Allowed: the token in the query (browsers), and as a protocol.
    let reader = token("lobby", &["reader"], 60);
    let (_, mut by_query) =
        s.gw.client
            .ws(ws_url(&format!("&access_token={reader}")))
            .connect()
            .await
            .expect("query token");
    let (response, _by_protocol) =
        s.gw.client
            .ws(ws_url(""))
            .protocols(["stepflow", &format!("stepflow.bearer.{reader}")])
            .connect()
            .await
            .expect("protocol token");
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    assert_eq!(chosen, Some("stepflow"));
    let device = token("lobby", &["device"], 60);
    let (status, _) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&device),
        Some(&publish_body(&s.channel, "lobby")),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = WsClient { framed: by_query };
    client
        .next_message_where(WAIT, |p| p["n"] == 1)
        .await
        .expect("delivered to the reader");
    by_query = client.framed;
    drop(by_query);

    // A session ends when its token expires.
    let short = token("lobby", &["reader"], 2);
    let (_, framed) =
        s.gw.client
            .ws(ws_url(""))
            .bearer_auth(&short)
            .connect()
            .await
            .expect("short token");
    let mut session = WsClient { framed };
    let reason = session.next_close(WAIT).await.expect("closed at expiry");
    assert_eq!(reason.code, awc::ws::CloseCode::Policy);
    assert!(reason.description.unwrap_or_default().contains("expired"));
    s.gw.stop().await;
}

#[actix_rt::test]
async fn webhook_subscriptions_belong_to_who_may_subscribe() {
    let s = setup().await;
    let receiver = WebhookReceiver::start(Script::ok()).await;
    let body = json!({"channel_id": s.channel, "callback_url": receiver.url, "parameters": {"roomId": "lobby"}});
    let mut cases = refusals();
    cases.push((
        "wrong direction",
        Some(token("lobby", &["device"], 60)),
        403,
    ));
    for (case, token, expected) in cases {
        let (status, problem) = send(
            &s.gw,
            "POST",
            "/messages/subscribe",
            token.as_deref(),
            Some(&body),
        )
        .await;
        assert_eq!(status, expected, "{case}: {problem}");
    }
    let reader = token("lobby", &["reader"], 60);
    let (status, created) = send(
        &s.gw,
        "POST",
        "/messages/subscribe",
        Some(&reader),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], "lobby");
    let id = created["id"].as_str().expect("id");

    // Another reader neither sees nor removes it; an admin does both.
    let stranger = token("kitchen", &["reader"], 60);
    let path = format!("/messages/subscribe/{id}");
    let (status, _) = send(&s.gw, "DELETE", &path, Some(&stranger), None).await;
    assert_eq!(status, 404);
    let (_, listed) = send(
        &s.gw,
        "GET",
        "/messages/subscriptions",
        Some(&stranger),
        None,
    )
    .await;
    assert_eq!(listed["subscriptions"], json!([]));
    let (_, listed) = send(
        &s.gw,
        "GET",
        "/messages/subscriptions",
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(1));
    let (status, _) = send(&s.gw, "DELETE", &path, Some(&s.admin), None).await;
    assert_eq!(status, 204);
    s.gw.stop().await;
    receiver.stop().await;
}

/// Each webhook delivery is checked against the rules in force: once the
/// rule that let its owner subscribe is removed, messages are refused and
/// logged as forbidden instead of delivered.
#[actix_rt::test]
async fn webhook_deliveries_stop_when_the_owner_loses_the_right() {
    let s = setup().await;
    let receiver = WebhookReceiver::start(Script::ok()).await;
    let rule = json!({"role": "auditor", "document": "Chat", "actions": ["subscribe"]});
    let (status, created_rule) =
        send(&s.gw, "POST", "/auth/rules", Some(&s.admin), Some(&rule)).await;
    assert_eq!(status, 201, "{created_rule}");
    let auditor = token("audit", &["auditor"], 60);
    let body = json!({"channel_id": s.channel, "callback_url": receiver.url, "parameters": {"roomId": "lobby"}});
    let (status, created) = send(
        &s.gw,
        "POST",
        "/messages/subscribe",
        Some(&auditor),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let device = token("lobby", &["device"], 60);
    let publish = |n: i64| json!({"channel_id": s.channel, "message_data": {"n": n}, "parameters": {"roomId": "lobby"}});
    assert_eq!(
        status_of(&s.gw, "POST", "/messages/publish", &device, &publish(1)).await,
        200
    );
    let first = eventually(WAIT, || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    assert!(first.is_some(), "delivered while the rule stands");

    let path = format!("/auth/rules/{}", created_rule["id"].as_str().expect("id"));
    let (status, _) = send(&s.gw, "DELETE", &path, Some(&s.admin), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        status_of(&s.gw, "POST", "/messages/publish", &device, &publish(2)).await,
        200
    );
    let refused = eventually(WAIT, || async {
        let (_, logs) = send(&s.gw, "GET", "/logs/recent", Some(&s.admin), None).await;
        let logs = logs["logs"].as_array().cloned().unwrap_or_default();
        logs.into_iter()
            .find(|l| l["error_kind"] == "forbidden" && l["direction"] != "publish")
    })
    .await
    .expect("the refused delivery is logged");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("audit"),
        "{refused}"
    );
    let delivered: Vec<i64> = receiver
        .received()
        .iter()
        .filter_map(|r| r.json()["payload"]["n"].as_i64())
        .collect();
    assert_eq!(delivered, [1], "nothing after the rule went");
    s.gw.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn the_management_api_needs_the_admin_role_and_keys_are_shown_once() {
    let s = setup().await;
    let reader = token("lobby", &["reader"], 60);
    let body = json!({"name": "Other", "asyncapi_content": CHAT});
    let (status, _) = send(
        &s.gw,
        "POST",
        "/asyncapis/register",
        Some(&reader),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&s.gw, "POST", "/asyncapis/register", None, Some(&body)).await;
    assert_eq!(status, 401);
    let (status, _) = send(&s.gw, "GET", "/channels", Some(&reader), None).await;
    assert_eq!(status, 200, "reading needs only a principal");
    let (status, _) = send(&s.gw, "GET", "/logs/recent", Some(&reader), None).await;
    assert_eq!(status, 403, "the call log is for admins");
    // A credential in the query counts only where browsers need it.
    let path = format!("/auth/keys?access_token={}", s.admin);
    let (status, _) = send(&s.gw, "GET", &path, None, None).await;
    assert_eq!(status, 401, "no query credentials on the REST API");
    let (status, health) = send(&s.gw, "GET", "/health", None, None).await;
    assert_eq!(status, 200, "{health}");

    // An admin issues a key over the API; it works at once, is listed
    // without its secret, and stops working when revoked.
    let new_key = json!({"name": "lobby", "roles": ["device"]});
    let (status, issued) = send(&s.gw, "POST", "/auth/keys", Some(&s.admin), Some(&new_key)).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().expect("key").to_owned();
    let (status, _) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&key),
        Some(&publish_body(&s.channel, "lobby")),
    )
    .await;
    assert_eq!(status, 200, "a device key publishes to its own room");
    let (status, _) = send(&s.gw, "POST", "/auth/keys", Some(&key), Some(&new_key)).await;
    assert_eq!(status, 403, "only admins issue keys");
    let (_, listed) = send(&s.gw, "GET", "/auth/keys", Some(&s.admin), None).await;
    let secret = key.rsplit('_').next().expect("secret");
    let admin_secret = s.admin.rsplit('_').next().expect("secret");
    assert!(!listed.to_string().contains(secret) && !listed.to_string().contains(admin_secret));
    assert!(!listed.to_string().contains(SECRET));
    let path = format!("/auth/keys/{}", issued["id"].as_str().expect("id"));
    let (status, _) = send(&s.gw, "DELETE", &path, Some(&s.admin), None).await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &s.gw,
        "POST",
        "/messages/publish",
        Some(&key),
        Some(&publish_body(&s.channel, "lobby")),
    )
    .await;
    assert_eq!(status, 401, "a revoked key no longer authenticates");
    s.gw.stop().await;
}

/// Rules added through the admin API grant at once, outlast a restart,
/// and stop granting when removed; a rule that could never match is
/// refused with a pointer to what is wrong.
#[actix_rt::test]
async fn access_rules_are_managed_through_the_api_and_kept() {
    let s = setup().await;
    let writer = token("svc", &["writer"], 600);
    let body = publish_body(&s.channel, "kitchen");
    assert_eq!(
        status_of(&s.gw, "POST", "/messages/publish", &writer, &body).await,
        403,
        "no rule grants writers anything yet"
    );

    let rule = json!({"role": "writer", "channel": "rooms/{roomId}", "parameters": {"roomId": "kitchen"}, "actions": ["publish"]});
    let (status, _) = send(&s.gw, "POST", "/auth/rules", Some(&writer), Some(&rule)).await;
    assert_eq!(status, 403, "only admins add rules");
    let (status, created) = send(&s.gw, "POST", "/auth/rules", Some(&s.admin), Some(&rule)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["created_by"], "root");
    assert_eq!(
        status_of(&s.gw, "POST", "/messages/publish", &writer, &body).await,
        200,
        "the new rule grants at once"
    );

    let (_, listed) = send(&s.gw, "GET", "/auth/rules", Some(&s.admin), None).await;
    let sources: Vec<&str> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    assert_eq!(sources, ["config", "config", "api"]);
    assert_eq!(listed["rules"][2]["rule"], rule);

    // A rule that binds a parameter its channel lacks is refused.
    let dead = json!({"role": "writer", "channel": "rooms/{roomId}", "bind": {"room": "sub"}, "actions": ["publish"]});
    let (status, problem) = send(&s.gw, "POST", "/auth/rules", Some(&s.admin), Some(&dead)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/bind/room", "{problem}");
    let no_action = json!({"role": "writer", "actions": []});
    let (status, problem) = send(
        &s.gw,
        "POST",
        "/auth/rules",
        Some(&s.admin),
        Some(&no_action),
    )
    .await;
    let pointer = problem["errors"][0]["pointer"].as_str();
    assert_eq!((status, pointer), (422, Some("/actions")), "{problem}");
    let empty = json!({"role": " ", "actions": ["publish"]});
    let (status, problem) = send(&s.gw, "POST", "/auth/rules", Some(&s.admin), Some(&empty)).await;
    let pointer = problem["errors"][0]["pointer"].as_str();
    assert_eq!((status, pointer), (422, Some("/role")), "{problem}");
    let unknown = json!({"role": "writer", "action": ["publish"]});
    let (status, _) = send(&s.gw, "POST", "/auth/rules", Some(&s.admin), Some(&unknown)).await;
    assert_eq!(status, 400, "unknown fields are refused");

    // The rule is in the database: a restarted gateway still grants.
    s.gw.stop().await;
    let gw = TestGateway::start(auth_config(&s._db)).await;
    assert_eq!(
        status_of(&gw, "POST", "/messages/publish", &writer, &body).await,
        200,
        "the rule outlasts a restart"
    );
    let path = format!("/auth/rules/{}", created["id"].as_str().expect("id"));
    let (status, _) = send(&gw, "DELETE", &path, Some(&s.admin), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        status_of(&gw, "POST", "/messages/publish", &writer, &body).await,
        403,
        "a removed rule stops granting at once"
    );
    let (status, problem) = send(&gw, "DELETE", &path, Some(&s.admin), None).await;
    assert_eq!(status, 404, "{problem}");
    gw.stop().await;
}

/// Registration reports the security schemes of each server, whether the
/// gateway holds credentials for them, and who in the document uses each.
#[actix_rt::test]
async fn security_schemes_are_reported_at_registration() {
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let streetlights =
        fixture("asyncapi/examples/v2/spec-2.4.0/streetlights-operation-security.yml");
    let shown = gw
        .register("streetlights-security", &streetlights, None)
        .await;
    let server = |name: &str| {
        shown["brokers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["server_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("server {name} in {shown}"))
    };
    assert_eq!(
        server("test")["security"],
        json!([{"scheme": "saslScram", "type": "scramSha256", "credentials": "missing"}])
    );
    assert_eq!(
        server("test_oauth")["security"],
        json!([{"scheme": "streetlights_auth", "type": "oauth2", "credentials": "not supported"}])
    );
    let with_user = gw
        .register(
            "streetlights-user",
            &streetlights,
            Some("kafka://svc:pw@127.0.0.1:9"),
        )
        .await;
    let test = with_user["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["server_name"] == "test");
    assert_eq!(
        test.map(|b| b["security"][0]["credentials"].clone()),
        Some(json!("url"))
    );
    assert!(
        !with_user.to_string().contains(":pw@"),
        "the password is not shown"
    );

    let schemes = |doc: &Value| {
        doc["security_schemes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let used = schemes(&shown);
    let scram = used
        .iter()
        .find(|s| s["name"] == "saslScram")
        .expect("saslScram listed");
    assert_eq!(scram["used_by"], json!(["server test"]));

    let v26 = fixture("asyncapi/examples/v2/spec-2.6.0/operation-security.yml");
    let v26 = gw.register("operation-security-2.6", &v26, None).await;
    let petstore = schemes(&v26);
    assert_eq!(petstore[0]["name"], "petstore_auth");
    assert_eq!(petstore[0]["type"], "oauth2");
    let users = petstore[0]["used_by"].to_string();
    assert!(users.contains("AUTHORIZATION_REVOCATION"), "{users}");

    let v30 = fixture("asyncapi/examples/v3/spec-3.0.0/operation-security-asyncapi.yml");
    let v30 = gw.register("operation-security-3.0", &v30, None).await;
    let petstore = schemes(&v30);
    assert_eq!(petstore[0]["name"], "petstore_auth");
    assert_eq!(petstore[0]["used_by"], json!(["operation sendAuthRevoke"]));
    gw.stop().await;
}
