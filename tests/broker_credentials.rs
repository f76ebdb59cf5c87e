//! Broker credentials from server URLs: a private Mosquitto that requires a
//! password, reached with the right one and refused with a wrong one, with
//! the refusal in the connection status and the password nowhere in it.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

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
    for text in [
        everything.to_string(),
        documents.to_string(),
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
