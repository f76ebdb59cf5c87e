//! Secrets stay secret: the gateway binary, run with debug logs, is given a
//! JWT secret, an API key, a broker password (for a RabbitMQ user the test
//! creates) and a webhook secret; after publishing, subscribing, failing
//! and listing everything, none of them appears in its logs or in any API
//! answer.

mod common;

use std::io::Read as _;
use std::process::Command;
use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

#[actix_rt::test]
async fn no_secret_reaches_the_logs_or_the_api() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let jwt_secret = format!("jwt-secret-{run}");
    let broker_password = format!("broker-pw-{run}");
    let config_password = format!("config-pw-{run}");
    let env_password = format!("env-pw-{run}");
    let webhook_secret = format!("webhook-secret-{run}");
    let user = RabbitUser::create(&format!("stepflow-{run}"), &broker_password);

    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("folder");
    let config = dir.path().join("gateway.toml");
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[database]\nurl = \"{}\"\n[logging]\nformat = \"json\"\n\
         [webhooks]\nallow_private_targets = true\n[auth]\nenabled = true\n[auth.jwt]\nhs256_secret = \"{jwt_secret}\"\n\
         [[auth.rules]]\nrole = \"app\"\nactions = [\"publish\", \"subscribe\"]\n\
         [[brokers.credentials]]\ndocument = \"From env\"\nusername = \"{user}\"\npassword_env = \"STEPFLOW_SECRETS_TEST_PW\"\n\
         [[brokers.credentials]]\ndocument = \"From config\"\nusername = \"{user}\"\npassword = \"{config_password}\"\n",
        db.url,
        user = user.name,
    );
    std::fs::write(&config, toml).expect("config written");
    let issued = Command::new(gateway_binary())
        .args(["issue-key", "--config"])
        .arg(&config)
        .args(["--name", "root", "--role", "admin"])
        .output()
        .expect("issue-key runs");
    let admin = String::from_utf8(issued.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    let log_path = dir.path().join("gateway.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(gateway_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("STEPFLOW_SECRETS_TEST_PW", &env_password)
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("gateway binary starts");
    let addr = eventually(WAIT, || async {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|e| e["fields"]["local_addr"].as_str().map(str::to_owned))
    })
    .await
    .expect("the gateway logs its address");

    let client = awc::Client::builder().timeout(WAIT).finish();
    let base = format!("http://{addr}");
    let mut answers = String::new();
    let call = |method: &'static str, path: String, token: Option<String>, body: Option<Value>| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = client.request(method, url);
            if let Some(token) = token {
                request = request.insert_header(("authorization", format!("Bearer {token}")));
            }
            let mut response = match body {
                Some(body) => request.send_json(&body).await,
                None => request.send().await,
            }
            .expect("request sent");
            let status = response.status().as_u16();
            let bytes = response.body().limit(1 << 22).await.expect("body");
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (status, text)
        }
    };

    let url = format!("amqp://{}:{broker_password}@127.0.0.1:5672", user.name);
    let document = "asyncapi: 3.0.0\ninfo: {title: Vault, version: '1'}\nchannels:\n  box:\n    address: vault.box\n    messages:\n      item:\n        payload: {type: object}\n";
    let body = json!({"name": "Vault", "asyncapi_content": document, "base_url": url});
    let (status, registered) = call(
        "POST",
        "/asyncapis/register".into(),
        Some(admin.clone()),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    answers.push_str(&registered);
    let registered: Value = serde_json::from_str(&registered).expect("JSON");
    let channel = channel_id(&registered, "box");

    let claims =
        json!({"sub": "app-1", "roles": ["app"], "exp": chrono::Utc::now().timestamp() + 300});
    let app = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(jwt_secret.as_bytes()),
    )
    .expect("token");
    let receiver = WebhookReceiver::start(Script::ok()).await;
    let hook =
        json!({"channel_id": channel, "callback_url": receiver.url, "secret": webhook_secret});
    let (status, created) = call(
        "POST",
        "/messages/subscribe".into(),
        Some(app.clone()),
        Some(hook),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    answers.push_str(&created);
    let publish = json!({"channel_id": channel, "message_data": {"k": 1}});
    let (status, outcome) = call(
        "POST",
        "/messages/publish".into(),
        Some(app.clone()),
        Some(publish.clone()),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    answers.push_str(&outcome);
    eventually(WAIT, || async {
        (!receiver.accepted().is_empty()).then_some(())
    })
    .await
    .expect("the webhook got the message");

    // Failures too: a bad token, a wrong key, a broker refusing a password.
    for token in ["bad-token".to_owned(), format!("{admin}x")] {
        let (status, refused) = call(
            "POST",
            "/messages/publish".into(),
            Some(token),
            Some(publish.clone()),
        )
        .await;
        assert_eq!(status, 401);
        answers.push_str(&refused);
    }
    let wrong = format!(
        "amqp://{}:{broker_password}-wrong@127.0.0.1:5672",
        user.name
    );
    let body = json!({"name": "Locked", "asyncapi_content": document, "base_url": wrong});
    let (status, locked) = call(
        "POST",
        "/asyncapis/register".into(),
        Some(admin.clone()),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{locked}");
    answers.push_str(&locked);
    // Credentials from the config, both refused: neither password is the
    // user's.
    for name in ["From env", "From config"] {
        let plain = "amqp://127.0.0.1:5672";
        let body = json!({"name": name, "asyncapi_content": document, "base_url": plain});
        let (status, view) = call(
            "POST",
            "/asyncapis/register".into(),
            Some(admin.clone()),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{view}");
        answers.push_str(&view);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let document_id = registered["id"].as_str().expect("id");
    for path in [
        "/asyncapis".to_owned(),
        format!("/asyncapis/{document_id}"),
        "/channels".into(),
        "/connections/status".into(),
        "/messages/subscriptions".into(),
        "/auth/keys".into(),
        "/logs/recent?limit=1000".into(),
        "/health".into(),
    ] {
        let (status, text) = call("GET", path.clone(), Some(admin.clone()), None).await;
        assert_eq!(status, 200, "{path}: {text}");
        answers.push_str(&text);
    }
    let (_, status) = call(
        "GET",
        "/connections/status".into(),
        Some(admin.clone()),
        None,
    )
    .await;
    assert!(
        status.contains("ACCESS_REFUSED") || status.contains("refused"),
        "the wrong password shows: {status}"
    );

    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    receiver.stop().await;
    let mut logs = String::new();
    std::fs::File::open(&log_path)
        .expect("log")
        .read_to_string(&mut logs)
        .expect("log read");
    assert!(logs.contains("DEBUG") || logs.contains("\"debug\"") || logs.lines().count() > 10);

    let key_secret = admin.rsplit('_').next().expect("key secret").to_owned();
    for (what, secret) in [
        ("JWT secret", jwt_secret.as_str()),
        ("broker password", broker_password.as_str()),
        ("configured broker password", config_password.as_str()),
        (
            "broker password from the environment",
            env_password.as_str(),
        ),
        ("webhook secret", webhook_secret.as_str()),
        ("API key", key_secret.as_str()),
        ("bearer token", app.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} is in the logs");
        assert!(!answers.contains(secret), "the {what} is in an API answer");
    }
}
