//! The daemon as users run it: `stepflow-gateway serve`, stopped with
//! Ctrl-C (SIGINT) or SIGTERM, closes its WebSocket sessions with "going
//! away", flushes its call log and exits cleanly; with auth off (the
//! default) it warns so once at start.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sea_orm::EntityTrait as _;
use serde_json::json;

#[actix_rt::test]
async fn ctrl_c_flushes_the_call_log_and_exits_cleanly() {
    serve_then_stop_with("-INT").await;
}

#[actix_rt::test]
async fn sigterm_flushes_the_call_log_and_exits_cleanly() {
    serve_then_stop_with("-TERM").await;
}

async fn serve_then_stop_with(signal: &str) {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = dir.path().join("gateway.toml");
    // A flush interval far beyond the test means only the shutdown flush can
    // write the record.
    // JSON logs come from the config on SIGINT and from `--log-json` on
    // SIGTERM.
    let by_flag = signal == "-TERM";
    let logging = if by_flag {
        ""
    } else {
        "[logging]\nformat = \"json\"\n"
    };
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[database]\nurl = \"{}\"\n[call_log]\nflush_interval_ms = 600000\n{logging}",
        db.url
    );
    std::fs::write(&config, toml).expect("config written");
    let mut child = Command::new(gateway_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .args(by_flag.then_some("--log-json"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut auth_warnings = 0;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(addr) = event["fields"]["local_addr"].as_str() {
                let _ = addr_tx.send(addr.to_owned());
            }
            let message = event["fields"]["message"].as_str().unwrap_or_default();
            if event["level"] == "WARN" && message.starts_with("authentication is off") {
                auth_warnings += 1;
            }
        }
        auth_warnings
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway logs its address");

    let client = awc::Client::default();
    let base = format!("http://{addr}");
    let register = json!({"name": "Chat", "asyncapi_content": "asyncapi: 2.6.0\ninfo: {title: Chat, version: '1'}\nchannels:\n  lobby:\n    publish:\n      message: {payload: {type: object}}\n"});
    let mut response = client
        .post(format!("{base}/asyncapis/register"))
        .send_json(&register)
        .await
        .expect("register");
    assert_eq!(response.status().as_u16(), 201);
    let registered: serde_json::Value = response.json().await.expect("JSON");
    let channel = registered["channels"][0]["id"]
        .as_str()
        .expect("channel id")
        .to_owned();
    let (_, mut subscriber) = client
        .ws(format!("ws://{addr}/ws/{channel}"))
        .connect()
        .await
        .expect("WebSocket subscription");
    let publish = json!({"channel_id": channel, "message_data": {"hello": "world"}});
    let mut response = client
        .post(format!("{base}/messages/publish"))
        .send_json(&publish)
        .await
        .expect("publish");
    assert_eq!(response.status().as_u16(), 200);
    let outcome: serde_json::Value = response.json().await.expect("JSON");
    let call_log_id = outcome["call_log_id"]
        .as_str()
        .expect("call log id")
        .to_owned();

    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "{signal} delivered");
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt as _;
        while let Some(Ok(frame)) = subscriber.next().await {
            if let awc::ws::Frame::Close(reason) = frame {
                return reason;
            }
        }
        None
    })
    .await
    .expect("the session is closed in time")
    .expect("with a close frame");
    assert_eq!(close.code, awc::ws::CloseCode::Away, "{close:?}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "gateway exited with {status}");
    let auth_warnings = reader.join().expect("log reader");
    assert_eq!(
        auth_warnings, 1,
        "with auth off the gateway says so once, at start"
    );

    let conn = db.connect().await;
    let events: Vec<String> = entity::connection_events::Entity::find()
        .all(&conn)
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(
        events.contains(&"connected".to_owned()) && events.contains(&"disconnected".to_owned()),
        "the broker's connect and its close at shutdown are recorded: {events:?}"
    );
    let row = entity::message_call_logs::Entity::find_by_id(call_log_id)
        .one(&conn)
        .await
        .expect("query")
        .expect("the publish was flushed at shutdown");
    assert_eq!(row.status, "delivered");
}
