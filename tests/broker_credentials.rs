//! Broker credentials, from server URLs and from `brokers.credentials`
//! matched to servers and their security schemes: a private Mosquitto that
//! requires a password, one that requires a TLS client certificate, a
//! RabbitMQ user logging in with PLAIN and AMQPLAIN, a private RabbitMQ node
//! that takes only EXTERNAL logins over TLS, NATS servers that want
//! a user or a token, and WebSocket servers
//! that want a bearer token or an API key. Refusals show in the connection
//! status, and no secret shows anywhere.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use stepflow_gateway::config::{BrokerCredentials, SaslMechanism};

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "device-gateway";
const PASSWORD: &str = "s3cret pass/word";

const DOCUMENT: &str = "asyncapi: 3.0.0\ninfo: {title: Locked, version: '1'}\nchannels:\n  data:\n    address: locked/{id}/data\n    messages:\n      reading:\n        payload: {type: object}\n";

/// Mosquitto on `port` that takes only `USER` with `PASSWORD`.
fn mosquitto_with_password(port: u16) -> Child {
    let dir = std::env::temp_dir().join(format!("stepflow-mosquitto-auth-{port}"));
    std::fs::create_dir_all(&dir).expect("folder");
    let passwords = dir.join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args([USER, PASSWORD])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let settings = format!(
        "allow_anonymous false\npassword_file {}\n",
        passwords.display()
    );
    mosquitto_with(port, &settings)
}

fn url(port: u16, password: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    format!(
        "mqtt://{USER}:{}@127.0.0.1:{port}",
        encoded.replace('+', "%20")
    )
}

async fn status_of(gw: &TestGateway, broker_id: &str) -> Value {
    let (_, status) = gw.get("/connections/status").await;
    let brokers = status["brokers"].as_array().cloned().unwrap_or_default();
    brokers
        .into_iter()
        .find(|b| b["broker_id"] == broker_id)
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn mqtt_user_and_password_come_from_the_server_url() {
    let broker = Private::new(mosquitto_with_password);
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;

    let good = gw
        .register("Locked", DOCUMENT, Some(&url(broker.port, PASSWORD)))
        .await;
    let channel = channel_id(&good, "data");
    let mut ws = gw.subscribe(&channel, "?id=a").await;
    let body = json!({"channel_id": channel, "message_data": {"v": 1}, "parameters": {"id": "a"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 200, "{outcome}");
    ws.next_message_where(WAIT, |p| p["v"] == 1)
        .await
        .expect("delivered through the password-protected broker");

    let bad = gw
        .register("Refused", DOCUMENT, Some(&url(broker.port, "wrong")))
        .await;
    let broker_id = bad["brokers"][0]["id"]
        .as_str()
        .expect("broker id")
        .to_owned();
    let refused = eventually(WAIT, || async {
        let status = status_of(&gw, &broker_id).await;
        status["last_error"].is_string().then_some(status)
    })
    .await
    .expect("the refusal shows in the status");
    assert_ne!(refused["state"], "connected", "{refused}");
    let error = refused["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("authori") || error.contains("password"),
        "{error}"
    );
    let channel = channel_id(&bad, "data");
    let body = json!({"channel_id": channel, "message_data": {"v": 2}, "parameters": {"id": "a"}});
    let (status, problem, _) = gw.post("/messages/publish", &body).await;
    assert_eq!(status, 503, "{problem}");

    let (_, everything) = gw.get("/connections/status").await;
    let (_, documents) = gw.get("/asyncapis").await;
    let path = format!("/asyncapis/{}", bad["id"].as_str().expect("id"));
    let (_, one) = gw.get(&path).await;
    assert!(one["spec"].is_object(), "{one}");
    for text in [
        everything.to_string(),
        documents.to_string(),
        one.to_string(),
        problem.to_string(),
    ] {
        assert!(
            !text.contains("s3cret") && !text.contains("wrong@"),
            "{text}"
        );
    }
    gw.stop().await;
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("stepflow-mosquitto-auth-{}", broker.port)),
    );
}

/// A 3.0 document named `title` whose one server, at `url`, requires the
/// security schemes `schemes` (YAML of `components.securitySchemes`).
fn secured(title: &str, protocol: &str, host: &str, schemes: &str) -> String {
    let names: Vec<&str> = schemes
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        .map(|l| l.trim_end_matches(':'))
        .collect();
    let security: String = names
        .iter()
        .map(|n| format!("      - $ref: '#/components/securitySchemes/{n}'\n"))
        .collect();
    let schemes: String = schemes.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "asyncapi: 3.0.0\ninfo: {{title: '{title}', version: '1'}}\n\
         servers:\n  main:\n    host: '{host}'\n    protocol: {protocol}\n    security:\n{security}\
         channels:\n  data:\n    address: creds/{{id}}/data\n    messages:\n      reading:\n        payload: {{type: object}}\n\
         components:\n  securitySchemes:\n{schemes}"
    )
}

/// Publishes `{"v": n}` with `id=a` on the document's one channel.
async fn publish(gw: &TestGateway, registered: &Value, n: i64) -> (u16, Value) {
    let channel = channel_id(registered, "data");
    let body = json!({"channel_id": channel, "message_data": {"v": n}, "parameters": {"id": "a"}});
    let (status, outcome, _) = gw.post("/messages/publish", &body).await;
    (status, outcome)
}

/// Subscribes over WebSocket, publishes, and waits for the message back.
async fn round_trip(gw: &TestGateway, registered: &Value, n: i64) {
    let channel = channel_id(registered, "data");
    let mut ws = gw.subscribe(&channel, "?id=a").await;
    let (status, outcome) = publish(gw, registered, n).await;
    assert_eq!(status, 200, "{outcome}");
    ws.next_message_where(WAIT, |p| p["v"] == n)
        .await
        .unwrap_or_else(|| panic!("message {n} came back through {}", registered["name"]));
}

/// The broker's status once it has an error to show.
async fn refusal(gw: &TestGateway, registered: &Value) -> Value {
    let broker_id = registered["brokers"][0]["id"].as_str().expect("broker id");
    eventually(WAIT, || async {
        let status = status_of(gw, broker_id).await;
        status["last_error"].is_string().then_some(status)
    })
    .await
    .expect("the refusal shows in the status")
}

fn answered(registered: &Value) -> &str {
    registered["brokers"][0]["security"][0]["credentials"]
        .as_str()
        .unwrap_or_default()
}

#[actix_rt::test]
async fn mqtt_logins_come_from_the_config_matched_by_scheme() {
    let broker = Private::new(mosquitto_with_password);
    std::env::set_var("STEPFLOW_TEST_MQTT_PASSWORD", PASSWORD);
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.credentials = vec![
        BrokerCredentials {
            scheme: Some("login".into()),
            username: Some(USER.into()),
            password_env: Some("STEPFLOW_TEST_MQTT_PASSWORD".into()),
            ..Default::default()
        },
        BrokerCredentials {
            scheme: Some("unset".into()),
            username: Some(USER.into()),
            password_env: Some("STEPFLOW_TEST_NEVER_SET".into()),
            ..Default::default()
        },
    ];
    let gw = TestGateway::start(config).await;
    let host = format!("127.0.0.1:{}", broker.port);

    let login = secured("Login", "mqtt", &host, "login:\n  type: userPassword");
    let registered = gw.register("Login", &login, None).await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 1).await;

    // A server that names another scheme gets no entry and is refused.
    let other = secured("Other", "mqtt", &host, "other:\n  type: userPassword");
    let registered = gw.register("Other", &other, None).await;
    assert_eq!(answered(&registered), "missing", "{registered}");
    let status = refusal(&gw, &registered).await;
    let error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("authori"), "{error}");

    // An entry whose variable is unset fails the broker, naming both.
    let unset = secured("Unset", "mqtt", &host, "unset:\n  type: userPassword");
    let registered = gw.register("Unset", &unset, None).await;
    assert_eq!(answered(&registered), "missing", "{registered}");
    let status = refusal(&gw, &registered).await;
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("STEPFLOW_TEST_NEVER_SET") && error.contains("brokers.credentials[1]"),
        "{error}"
    );

    let (_, everything) = gw.get("/connections/status").await;
    let (_, documents) = gw.get("/asyncapis").await;
    for text in [everything.to_string(), documents.to_string()] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    gw.stop().await;
}

/// Mosquitto on `port` with a TLS listener that requires a client
/// certificate signed by the test CA, whose files are in
/// [`tls_folder`]`(port)`.
fn mosquitto_with_tls(port: u16) -> Child {
    let pki = TestPki::write(&tls_folder(port), "gateway-client");
    let settings = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous true\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    mosquitto_with(port, &settings)
}

fn tls_folder(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("stepflow-mosquitto-tls-{port}"))
}

#[actix_rt::test]
async fn mqtt_over_tls_with_a_client_certificate() {
    let broker = Private::new(mosquitto_with_tls);
    let folder = tls_folder(broker.port);
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.credentials = vec![
        BrokerCredentials {
            document: Some("Certified".into()),
            ca_file: Some(folder.join("ca.pem")),
            cert_file: Some(folder.join("client.pem")),
            key_file: Some(folder.join("client.key")),
            ..Default::default()
        },
        BrokerCredentials {
            document: Some("Uncertified".into()),
            ca_file: Some(folder.join("ca.pem")),
            ..Default::default()
        },
    ];
    let gw = TestGateway::start(config).await;
    let host = format!("127.0.0.1:{}", broker.port);

    let certified = secured("Certified", "mqtt", &host, "cert:\n  type: X509");
    let registered = gw.register("Certified", &certified, None).await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 7).await;

    // Without a client certificate the TLS handshake is refused.
    let uncertified = secured("Uncertified", "mqtt", &host, "cert:\n  type: X509");
    let registered = gw.register("Uncertified", &uncertified, None).await;
    assert_eq!(answered(&registered), "missing", "{registered}");
    let status = refusal(&gw, &registered).await;
    assert_ne!(status["state"], "connected", "{status}");
    let (code, problem) = publish(&gw, &registered, 8).await;
    assert_eq!(code, 503, "{problem}");
    gw.stop().await;
    let _ = std::fs::remove_dir_all(folder);
}

#[actix_rt::test]
async fn amqp_users_log_in_with_plain_and_amqplain() {
    let run = uuid::Uuid::new_v4().simple();
    let user = RabbitUser::create(&format!("stepflow-{run}"), &format!("pw {run}"));
    let entry = |document: &str, password: &str, mechanism| BrokerCredentials {
        document: Some(document.into()),
        username: Some(user.name.clone()),
        password: Some(password.into()),
        mechanism: Some(mechanism),
        ..Default::default()
    };
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.credentials = vec![
        entry("Plain", &user.password, SaslMechanism::Plain),
        entry("Amqplain", &user.password, SaslMechanism::Amqplain),
        entry("Wrong", "not the password", SaslMechanism::Plain),
    ];
    let gw = TestGateway::start(config).await;
    let scheme = "login:\n  type: userPassword";

    for (title, mechanism) in [("Plain", "PLAIN"), ("Amqplain", "AMQPLAIN")] {
        let document = secured(title, "amqp", "127.0.0.1:5672", scheme);
        let registered = gw.register(title, &document, None).await;
        assert_eq!(answered(&registered), "config", "{registered}");
        round_trip(&gw, &registered, 3).await;
        // RabbitMQ shows which user logged in, and how: each document
        // has its own connection.
        let connections = rabbitmqctl(&["list_connections", "user", "auth_mechanism", "--silent"]);
        let used: Vec<&str> = connections
            .lines()
            .filter(|l| l.contains(&user.name))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        assert!(used.contains(&mechanism), "{mechanism} in {connections}");
    }

    let document = secured("Wrong", "amqp", "127.0.0.1:5672", scheme);
    let registered = gw.register("Wrong", &document, None).await;
    let status = refusal(&gw, &registered).await;
    assert_ne!(status["state"], "connected", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(!error.contains("not the password"), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    let (_, everything) = gw.get("/connections/status").await;
    assert!(!everything.to_string().contains(&user.password));
    gw.stop().await;
}

#[actix_rt::test]
async fn websocket_brokers_get_a_bearer_token_or_an_api_key() {
    let bearer = WsBrokerServer::start_requiring("authorization", "Bearer tok-123").await;
    let keyed = WsBrokerServer::start_requiring("x-device-key", "k-456").await;
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.credentials = vec![
        BrokerCredentials {
            scheme: Some("bearer".into()),
            token: Some("tok-123".into()),
            ..Default::default()
        },
        BrokerCredentials {
            scheme: Some("key".into()),
            api_key: Some("k-456".into()),
            ..Default::default()
        },
    ];
    let gw = TestGateway::start(config).await;
    let bearer_host = format!("127.0.0.1:{}", bearer.port);
    let keyed_host = format!("127.0.0.1:{}", keyed.port);

    let schemes = "bearer:\n  type: http\n  scheme: bearer";
    let registered = gw
        .register(
            "Bearer",
            &secured("Bearer", "ws", &bearer_host, schemes),
            None,
        )
        .await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 5).await;

    // The API key goes in the header the scheme names.
    let schemes = "key:\n  type: httpApiKey\n  in: header\n  name: X-Device-Key";
    let registered = gw
        .register("Keyed", &secured("Keyed", "ws", &keyed_host, schemes), None)
        .await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 6).await;

    // Without credentials the server's 401 is the publish's reason.
    let schemes = "none:\n  type: http\n  scheme: bearer";
    let registered = gw
        .register(
            "Tokenless",
            &secured("Tokenless", "ws", &bearer_host, schemes),
            None,
        )
        .await;
    assert_eq!(answered(&registered), "missing", "{registered}");
    let (status, problem) = publish(&gw, &registered, 9).await;
    assert_eq!(status, 503, "{problem}");
    assert!(problem["detail"].to_string().contains("401"), "{problem}");
    assert!(!problem.to_string().contains("tok-123"));
    gw.stop().await;
    bearer.stop();
    keyed.stop();
}

/// nats-server on `port` that takes only the user `gateway` with
/// `nats-pass`.
fn nats_with_user(port: u16) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--user", "gateway", "--pass", "nats-pass"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server")
}

/// nats-server on `port` that takes only the token `nats-token`.
fn nats_with_token(port: u16) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--auth", "nats-token"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server")
}

#[actix_rt::test]
async fn nats_logins_with_a_user_or_a_token() {
    let with_user = Private::new(nats_with_user);
    let with_token = Private::new(nats_with_token);
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.credentials = vec![
        BrokerCredentials {
            document: Some("User".into()),
            username: Some("gateway".into()),
            password: Some("nats-pass".into()),
            ..Default::default()
        },
        BrokerCredentials {
            document: Some("Token".into()),
            token: Some("nats-token".into()),
            ..Default::default()
        },
    ];
    let gw = TestGateway::start(config).await;
    let login = "login:\n  type: userPassword";
    let user_host = format!("127.0.0.1:{}", with_user.port);
    let registered = gw
        .register("User", &secured("User", "nats", &user_host, login), None)
        .await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 11).await;
    let token_host = format!("127.0.0.1:{}", with_token.port);
    let registered = gw
        .register("Token", &secured("Token", "nats", &token_host, login), None)
        .await;
    round_trip(&gw, &registered, 12).await;

    // Without credentials the server refuses the connection.
    let registered = gw
        .register(
            "Nobody",
            &secured("Nobody", "nats", &user_host, login),
            None,
        )
        .await;
    let status = refusal(&gw, &registered).await;
    assert_ne!(status["state"], "connected", "{status}");
    let error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("authori"), "{error}");
    let (_, everything) = gw.get("/connections/status").await;
    assert!(!everything.to_string().contains("nats-pass"));
    gw.stop().await;
}

/// A private RabbitMQ node whose only listener is TLS on `port`, requiring
/// a client certificate signed by the test CA, and whose only login is
/// EXTERNAL: the certificate's common name is the user (`guest`).
fn rabbitmq_external(port: u16) -> Child {
    let pki = TestPki::write(&rabbitmq_folder(port).join("tls"), "guest");
    let conf = format!(
        "listeners.tcp = none\nlisteners.ssl.1 = 127.0.0.1:{port}\n\
         ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n\
         auth_mechanisms.1 = EXTERNAL\nssl_cert_login_from = common_name\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    rabbitmq_with(port, "[rabbitmq_auth_mechanism_ssl].", Some(&conf))
}

#[actix_rt::test]
async fn amqp_external_login_with_a_client_certificate() {
    let mut node = Private::new(rabbitmq_external);
    let tls = rabbitmq_folder(node.port).join("tls");
    let entry = |document: &str, certified: bool| BrokerCredentials {
        document: Some(document.into()),
        mechanism: Some(SaslMechanism::External),
        ca_file: Some(tls.join("ca.pem")),
        cert_file: certified.then(|| tls.join("client.pem")),
        key_file: certified.then(|| tls.join("client.key")),
        ..Default::default()
    };
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.brokers.connect_timeout_ms = 10_000;
    config.brokers.credentials = vec![entry("External", true), entry("Anonymous", false)];
    let gw = TestGateway::start(config).await;
    let host = format!("127.0.0.1:{}", node.port);
    let scheme = "cert:\n  type: X509";

    let registered = gw
        .register(
            "External",
            &secured("External", "amqp", &host, scheme),
            None,
        )
        .await;
    assert_eq!(answered(&registered), "config", "{registered}");
    round_trip(&gw, &registered, 21).await;

    // Without a client certificate the node ends the handshake.
    let registered = gw
        .register(
            "Anonymous",
            &secured("Anonymous", "amqp", &host, scheme),
            None,
        )
        .await;
    let status = refusal(&gw, &registered).await;
    assert_ne!(status["state"], "connected", "{status}");
    gw.stop().await;
    node.down();
}
