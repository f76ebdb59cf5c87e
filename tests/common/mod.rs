//! Shared helpers of the wire-level tests: a gateway on port 0 with its own
//! database, HTTP and WebSocket clients, and a plain MQTT subscriber.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use awc::ws::Frame;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use stepflow_gateway::{Config, Gateway};

/// The machine's Mosquitto.
pub const MQTT_URL: &str = "mqtt://127.0.0.1:1883";

/// Where PostgreSQL tests create their databases.
pub fn postgres_admin_url() -> String {
    std::env::var("STEPFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A test fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The IoT document exactly as the user wrote it.
pub fn iot_document() -> String {
    fixture("iot-device-api.yaml")
}

/// A database for one test: a SQLite file in a temporary folder, or a
/// fresh PostgreSQL database that is dropped afterwards.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!(
            "sqlite://{}",
            dir.path().join("nested/gateway.db").display()
        );
        Self {
            url,
            _dir: Some(dir),
            postgres_name: None,
        }
    }

    pub async fn postgres() -> Self {
        use sea_orm::ConnectionTrait as _;
        let admin = sea_orm::Database::connect(postgres_admin_url())
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let name = format!("stepflow_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = postgres_admin_url();
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/').expect("URL has a database").0
        );
        Self {
            url,
            _dir: None,
            postgres_name: Some(name),
        }
    }

    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        let url = match self.url.starts_with("sqlite://") {
            true => format!("{}?mode=rw", self.url),
            false => self.url.clone(),
        };
        sea_orm::Database::connect(url)
            .await
            .expect("test database")
    }

    pub async fn drop_postgres(&self) {
        use sea_orm::ConnectionTrait as _;
        let Some(name) = &self.postgres_name else {
            return;
        };
        let admin = sea_orm::Database::connect(postgres_admin_url())
            .await
            .expect("PostgreSQL");
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop test database");
    }
}

/// A configuration for tests: port 0, the given database, fast flushes.
pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.server.workers = 2;
    config.server.publish_timeout_ms = 3_000;
    config.database.url = db_url.into();
    config.call_log.flush_interval_ms = 50;
    config.brokers.connect_timeout_ms = 2_000;
    config
}

/// A running gateway and a client for it.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub base: String,
    pub client: awc::Client,
}

impl TestGateway {
    /// Starts a gateway; one that has not started within a minute fails
    /// the test rather than hanging it.
    pub async fn start(config: Config) -> Self {
        let started = tokio::time::timeout(Duration::from_secs(60), Gateway::start(config));
        let gateway = started
            .await
            .expect("gateway started within a minute")
            .expect("gateway starts");
        let base = format!("http://{}", gateway.local_addr());
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        Self {
            gateway: Some(gateway),
            base,
            client,
        }
    }

    /// Stops the gateway gracefully; a stop that takes over a minute
    /// fails the test.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(60), gateway.shutdown());
            stopped.await.expect("gateway stopped within a minute");
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value, String) {
        let mut response = self
            .client
            .post(format!("{}{path}", self.base))
            .send_json(body)
            .await
            .expect("request sent");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .expect("body read");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (response.status().as_u16(), value, content_type)
    }

    /// GETs `path`: the status, content type and body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String, String) {
        let mut response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("answered");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.body().limit(1 << 24).await.expect("body");
        let text = String::from_utf8_lossy(&body).into_owned();
        (response.status().as_u16(), content_type, text)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers a document and returns the response body, asserting 201.
    pub async fn register(&self, name: &str, content: &str, base_url: Option<&str>) -> Value {
        let mut body = json!({ "name": name, "asyncapi_content": content });
        if let Some(url) = base_url {
            body["base_url"] = json!(url);
        }
        let (status, value, _) = self.post("/asyncapis/register", &body).await;
        assert_eq!(status, 201, "registration of {name} failed: {value}");
        value
    }

    /// Opens a WebSocket subscription and waits for its `subscribed` frame.
    pub async fn subscribe(&self, channel_id: &str, query: &str) -> WsClient {
        self.subscribe_after(channel_id, query, None).await
    }

    /// [`TestGateway::subscribe`], resuming after `last_event_id` when
    /// given (the `Last-Event-ID` header).
    pub async fn subscribe_after(
        &self,
        channel_id: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> WsClient {
        let url = format!(
            "{}/ws/{channel_id}{query}",
            self.base.replace("http://", "ws://")
        );
        let mut request = self.client.ws(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let (_response, framed) = request.connect().await.expect("websocket upgrade");
        let mut ws = WsClient { framed };
        let first = ws
            .next_json(Duration::from_secs(10))
            .await
            .expect("a first frame");
        assert_eq!(first["type"], "subscribed", "{first}");
        ws
    }
}

/// Channel id of the channel named `name` in a registration response.
pub fn channel_id(registered: &Value, name: &str) -> String {
    registered["channels"]
        .as_array()
        .expect("channels listed")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no channel {name} in {registered}"))["id"]
        .as_str()
        .expect("channel id")
        .to_owned()
}

/// A WebSocket client of the gateway.
pub struct WsClient {
    pub framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl WsClient {
    /// The next JSON text frame, or `None` after `wait`.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .ok()??;
            match frame.expect("websocket frame") {
                Frame::Text(bytes) => {
                    return Some(serde_json::from_slice(&bytes).expect("JSON frame"))
                }
                Frame::Close(reason) => panic!("websocket closed: {reason:?}"),
                _ => continue,
            }
        }
    }

    /// The next `message` frame whose payload satisfies `wanted`.
    pub async fn next_message_where(
        &mut self,
        wait: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_json(left).await?;
            if frame["type"] == "message" && wanted(&frame["payload"]) {
                return Some(frame);
            }
        }
    }

    /// The reason of the close frame that ends the session, skipping
    /// other frames.
    pub async fn next_close(&mut self, wait: Duration) -> Option<awc::ws::CloseReason> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .ok()??;
            if let Ok(Frame::Close(reason)) = frame {
                return reason;
            }
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.framed
            .send(awc::ws::Message::Text(text.into()))
            .await
            .expect("frame sent");
    }
}

/// A plain MQTT subscriber on the machine's Mosquitto.
pub struct MqttProbe {
    client: paho_mqtt::AsyncClient,
    stream: paho_mqtt::AsyncReceiver<Option<paho_mqtt::Message>>,
}

impl MqttProbe {
    pub async fn subscribe(filter: &str) -> Self {
        Self::subscribe_at(1883, filter).await
    }

    /// The next message as (topic, JSON payload) within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let message = tokio::time::timeout(wait, self.stream.recv())
            .await
            .ok()?
            .ok()??;
        let payload = serde_json::from_slice(message.payload()).expect("JSON payload");
        Some((message.topic().to_owned(), payload))
    }

    /// Subscribes at QoS 1 on the Mosquitto at `port`.
    pub async fn subscribe_at(port: u16, filter: &str) -> Self {
        let options = paho_mqtt::CreateOptionsBuilder::new()
            .server_uri(format!("tcp://127.0.0.1:{port}"))
            .client_id(format!("probe-{}", uuid::Uuid::new_v4().simple()))
            .persistence(paho_mqtt::PersistenceType::None)
            .finalize();
        let mut client = paho_mqtt::AsyncClient::new(options).expect("MQTT client");
        let stream = client.get_stream(100_000);
        client.connect(None).await.expect("Mosquitto");
        client.subscribe(filter, 1).await.expect("MQTT subscribe");
        Self { client, stream }
    }

    /// Publishes `payload` on `topic` at QoS 1, as a device would.
    pub async fn publish(&self, topic: &str, payload: &Value) {
        let message = paho_mqtt::Message::new(topic, payload.to_string(), 1);
        self.client.publish(message).await.expect("MQTT publish");
    }

    pub async fn close(self) {
        let _ = self.client.disconnect(None).await;
    }
}

/// Polls `query` until it returns `Some`, for rows the LogWriter writes in
/// the background.
pub async fn eventually<T, F, Fut>(wait: Duration, mut query: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Some(found) = query().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Path of the test binary of the gateway.
pub fn gateway_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stepflow-gateway"))
}

/// The tansu binary (a Kafka-compatible broker): `STEPFLOW_TANSU`, else
/// `tansu` on the PATH. `scripts/test.sh` installs one.
pub fn tansu_binary() -> PathBuf {
    std::env::var_os("STEPFLOW_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tansu"))
}

/// A WebSocket server that acts as a broker: every text frame received on
/// a path is sent to every socket open on that path, the sender included.
pub struct WsBrokerServer {
    pub port: u16,
    /// The accepting task and every connection's tasks.
    tasks: Tasks,
    tls: bool,
}

/// A header, and its value, that a handshake must carry.
type Required = Option<(String, String)>;

type Tasks = std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;
type Peers = std::sync::Arc<
    std::sync::Mutex<
        std::collections::HashMap<String, Vec<tokio::sync::mpsc::UnboundedSender<String>>>,
    >,
>;

/// Serves one WebSocket connection of a [`WsBrokerServer`].
// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve_socket<S>(stream: S, peers: Peers, tasks: Tasks, required: Required)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio_tungstenite::tungstenite::handshake::server::ErrorResponse;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let mut path = String::new();
    let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                    response| {
        path = request.uri().path().to_owned();
        if let Some((name, value)) = required.as_ref() {
            let sent = request
                .headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok());
            if sent != Some(value.as_str()) {
                let mut refusal = ErrorResponse::new(Some("credentials required".into()));
                *refusal.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                return Err(refusal);
            }
        }
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut writer, mut reader) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    peers
        .lock()
        .expect("peers")
        .entry(path.clone())
        .or_default()
        .push(tx);
    let writing = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if writer.send(Frame::text(text)).await.is_err() {
                return;
            }
        }
    });
    tasks.lock().expect("tasks").push(writing);
    while let Some(Ok(frame)) = reader.next().await {
        if let Frame::Text(text) = frame {
            let targets = peers
                .lock()
                .expect("peers")
                .get(&path)
                .cloned()
                .unwrap_or_default();
            for target in targets {
                let _ = target.send(text.to_string());
            }
        }
    }
}

impl WsBrokerServer {
    /// Starts on a free loopback port, or on `port` when given.
    pub async fn start(port: Option<u16>) -> Self {
        Self::start_with(port, None, None).await
    }

    /// Starts a `wss` server with `tls` on a free loopback port.
    pub async fn start_tls(tls: std::sync::Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(None, Some(tls), None).await
    }

    /// Starts a server that refuses handshakes without `header: value`.
    pub async fn start_requiring(header: &str, value: &str) -> Self {
        Self::start_with(None, None, Some((header.into(), value.into()))).await
    }

    async fn start_with(
        port: Option<u16>,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        required: Required,
    ) -> Self {
        use std::sync::Arc;

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .expect("loopback port");
        let port = listener.local_addr().expect("addr").port();
        let peers: Peers = Arc::default();
        let tasks: Tasks = Arc::default();
        let registry = tasks.clone();
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (peers, inner) = (peers.clone(), registry.clone());
                let (acceptor, required) = (acceptor.clone(), required.clone());
                let connection = tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_socket(stream, peers, inner, required).await;
                            }
                        }
                        None => serve_socket(stream, peers, inner, required).await,
                    }
                });
                registry.lock().expect("tasks").push(connection);
            }
        });
        tasks.lock().expect("tasks").push(accepting);
        Self {
            port,
            tasks,
            tls: tls.is_some(),
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops accepting and drops every socket.
    pub fn stop(self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

/// One parsed event: its id, type and data; comments have the type `:`.
#[derive(Debug)]
pub struct Event {
    pub id: Option<String>,
    pub kind: String,
    pub data: Value,
}

pub type Body =
    futures_util::stream::LocalBoxStream<'static, Result<bytes::Bytes, awc::error::PayloadError>>;

pub struct SseClient {
    body: Body,
    buffer: String,
}

impl SseClient {
    pub async fn open(gw: &TestGateway, channel: &str, last_event_id: Option<&str>) -> Self {
        Self::open_path(gw, &format!("/sse/{channel}"), last_event_id).await
    }

    /// Opens the event stream at `path`.
    pub async fn open_path(gw: &TestGateway, path: &str, last_event_id: Option<&str>) -> Self {
        let mut request = gw
            .client
            .get(format!("{}{path}", gw.base))
            .timeout(Duration::from_secs(60));
        if let Some(id) = last_event_id {
            request = request.insert_header(("last-event-id", id));
        }
        let response = request.send().await.expect("stream opened");
        assert_eq!(response.status().as_u16(), 200);
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(kind, "text/event-stream");
        Self {
            body: response.boxed_local(),
            buffer: String::new(),
        }
    }

    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return parse(&block);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event in time");
            let bytes = chunk.expect("stream open").expect("chunk");
            self.buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// The next event that is not a heartbeat comment.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if event.kind != ":" {
                return event;
            }
        }
    }
}

fn parse(block: &str) -> Event {
    let mut event = Event {
        id: None,
        kind: "message".into(),
        data: Value::Null,
    };
    for line in block.lines() {
        if line.starts_with(':') {
            event.kind = ":".into();
        } else if let Some(id) = line.strip_prefix("id: ") {
            event.id = Some(id.to_owned());
        } else if let Some(kind) = line.strip_prefix("event: ") {
            event.kind = kind.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            event.data = serde_json::from_str(data).expect("JSON data");
        }
    }
    event
}

/// One request a [`WebhookReceiver`] took.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: bytes::Bytes,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON webhook body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// How a [`WebhookReceiver`] answers: the statuses of its first calls in
/// order, then `then`; each answer after `delay`.
#[derive(Debug, Clone)]
pub struct Script {
    pub first: Vec<u16>,
    pub then: u16,
    pub delay: Duration,
}

impl Script {
    pub fn ok() -> Self {
        Self {
            first: Vec::new(),
            then: 200,
            delay: Duration::ZERO,
        }
    }
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

/// An HTTP endpoint on a free loopback port that records every request
/// and answers as scripted.
pub struct WebhookReceiver {
    pub url: String,
    received: Shared<Vec<Received>>,
    script: Shared<Script>,
    server: actix_web::dev::ServerHandle,
}

impl WebhookReceiver {
    pub async fn start(script: Script) -> Self {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let received: Shared<Vec<Received>> = Default::default();
        let script = std::sync::Arc::new(std::sync::Mutex::new(script));
        let (r, s) = (received.clone(), script.clone());
        let handler = move |req: HttpRequest, body: bytes::Bytes| {
            let (received, script) = (r.clone(), s.clone());
            async move {
                let (status, delay) = {
                    let mut script = script.lock().expect("script");
                    let status = if script.first.is_empty() {
                        script.then
                    } else {
                        script.first.remove(0)
                    };
                    (status, script.delay)
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                received.lock().expect("received").push(Received {
                    headers,
                    body,
                    status,
                });
                let status = actix_web::http::StatusCode::from_u16(status).expect("status");
                HttpResponse::build(status).finish()
            }
        };
        let server = HttpServer::new(move || App::new().default_service(web::to(handler.clone())))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .expect("receiver binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            url: format!("http://{addr}/hook"),
            received,
            script,
            server: handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// Requests answered with a 2xx status.
    pub fn accepted(&self) -> Vec<Received> {
        let all = self.received();
        all.into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().expect("script") = script;
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// A private broker on a free loopback port, stopped on drop.
pub struct Private {
    pub port: u16,
    start: fn(u16) -> Child,
    child: Option<Child>,
}

impl Private {
    pub fn new(start: fn(u16) -> Child) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut private = Self {
            port,
            start,
            child: None,
        };
        private.up();
        private
    }

    /// Starts the broker and waits until its port takes connections
    /// (RabbitMQ needs several seconds).
    pub fn up(&mut self) {
        self.child = Some((self.start)(self.port));
        let ready = (0..1200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(ready, "private broker did not start on port {}", self.port);
    }

    /// [`Private::up`] without blocking the test's runtime, whose gateway
    /// and clients go on meanwhile.
    pub async fn up_async(&mut self) {
        self.child = Some((self.start)(self.port));
        let port = self.port;
        let ready = eventually(Duration::from_secs(60), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(
            ready.is_some(),
            "private broker did not start on port {port}"
        );
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the broker with SIGTERM and waits for it, so that it writes
    /// what it keeps on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Kills the broker and, where it runs in a group of its own (a
    /// start script and its runtime), the whole group.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.down();
        let scratch = std::env::temp_dir().join(format!("stepflow-rabbitmq-{}", self.port));
        let _ = std::fs::remove_dir_all(scratch);
    }
}

/// A RabbitMQ node of its own on `port`: its own node name, distribution
/// port, data folder and cookie, so the machine's node is not disturbed.
/// The start script and the Erlang runtime it starts share a process group.
pub fn rabbitmq(port: u16) -> Child {
    rabbitmq_with(port, "[].", None)
}

/// A private RabbitMQ node on `port` with the `plugins` (an Erlang list)
/// and, when given, a `rabbitmq.conf`.
pub fn rabbitmq_with(port: u16, plugins: &str, conf: Option<&str>) -> Child {
    use std::os::unix::process::CommandExt as _;
    let base = rabbitmq_folder(port);
    std::fs::create_dir_all(&base).expect("RabbitMQ folder");
    std::fs::write(base.join("plugins"), plugins).expect("plugins file");
    let config_file = match conf {
        Some(text) => {
            let path = base.join("rabbitmq.conf");
            std::fs::write(&path, text).expect("rabbitmq.conf");
            path
        }
        None => base.join("none"),
    };
    let distribution = TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
        .env("HOME", &base)
        .env("RABBITMQ_NODENAME", format!("stepflow{port}@localhost"))
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", distribution.to_string())
        .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", base.join("log"))
        .env("RABBITMQ_CONFIG_FILE", config_file)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("plugins"))
        .env("RABBITMQ_PID_FILE", base.join("pid"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rabbitmq-server (the RabbitMQ package)")
}

/// Where the private node on `port` keeps its files.
pub fn rabbitmq_folder(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("stepflow-rabbitmq-{port}"))
}

pub fn mosquitto(port: u16) -> Child {
    mosquitto_with(port, "allow_anonymous true\n")
}

/// Mosquitto on `port` with `settings` added to its listener's config.
pub fn mosquitto_with(port: u16, settings: &str) -> Child {
    let conf = std::env::temp_dir().join(format!("stepflow-mosquitto-{port}.conf"));
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}"))
        .expect("config written");
    Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto")
}

pub fn nats_server(port: u16) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server")
}

pub fn tansu(port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    Command::new(tansu_binary())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu (set STEPFLOW_TANSU or run scripts/test.sh, which installs it)")
}

/// A private CA and a server certificate it signed for 127.0.0.1 and
/// localhost: the CA in PEM, and the server's TLS settings.
pub fn test_tls() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let server = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], key)
        .expect("server TLS settings");
    (ca.pem(), std::sync::Arc::new(config))
}

/// A private CA, a server certificate for 127.0.0.1 and localhost, and a
/// client certificate, as PEM files.
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Writes the files into `dir`; the client certificate's common name is
    /// `client`.
    pub fn write(dir: &std::path::Path, client: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        std::fs::create_dir_all(dir).expect("folder");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "StepFlow test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let sign = |names: Vec<String>, common_name: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let server = sign(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1");
        let client_pair = sign(Vec::new(), client);
        let put = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("PEM written");
            path
        };
        Self {
            ca: put("ca.pem", &ca.pem()),
            server_cert: put("server.pem", &server.0),
            server_key: put("server.key", &server.1),
            client_cert: put("client.pem", &client_pair.0),
            client_key: put("client.key", &client_pair.1),
        }
    }
}

/// Runs `rabbitmqctl` against the machine's RabbitMQ; its output.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A RabbitMQ user with every right on `/`, deleted when the value goes.
pub struct RabbitUser {
    pub name: String,
    pub password: String,
}

impl RabbitUser {
    pub fn create(name: &str, password: &str) -> Self {
        rabbitmqctl(&["add_user", name, password]);
        rabbitmqctl(&["set_permissions", "-p", "/", name, ".*", ".*", ".*"]);
        Self {
            name: name.to_owned(),
            password: password.to_owned(),
        }
    }
}

impl Drop for RabbitUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

/// A TCP proxy on a loopback port of its own to `target`: taking it down
/// drops every connection through it and refuses new ones, as an outage
/// of the broker behind it looks to the gateway, while clients that talk
/// to the broker directly go on undisturbed.
pub struct TcpProxy {
    pub port: u16,
    target: u16,
    tasks: Tasks,
}

impl TcpProxy {
    pub async fn start(target: u16) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut proxy = Self {
            port,
            target,
            tasks: Default::default(),
        };
        proxy.up().await;
        proxy
    }

    /// Accepts again on the same port.
    pub async fn up(&mut self) {
        let listener = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpListener::bind(("127.0.0.1", self.port))
                .await
                .ok()
        })
        .await
        .expect("the proxy port can be bound again");
        let (target, tasks) = (self.target, self.tasks.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("tasks").push(connection);
            }
        });
        self.tasks.lock().expect("tasks").push(accepting);
    }

    /// Drops every connection and stops accepting.
    pub fn down(&mut self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}
