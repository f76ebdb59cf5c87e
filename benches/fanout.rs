//! Fan-out benchmark: messages published over REST reach many WebSocket
//! and Server-Sent Events subscribers of one channel, through the
//! gateway's release binary and this machine's Mosquitto (127.0.0.1:1883).
//!
//! Runs: 100 and then 1,000 WebSocket subscribers, then 100 SSE
//! subscribers (on a second gateway), all of `device/{deviceId}/data` with
//! one deviceId; each run publishes 1,000 messages open loop at 100 per
//! second. Figures per run: delivered share, p50 and p99 delivery latency
//! (arrival minus the due time the publisher put in `ts`), and CPU time
//! per delivery of the gateway and of this process. For 1,000 WebSocket
//! and 100 SSE sessions, resident memory per idle session: the gateway's
//! VmRSS with the sessions subscribed, a second before publishing, minus
//! its VmRSS with none of them, over their number (a warm-up session stays
//! open in both readings); at 100 SSE sessions the difference is of the
//! size of the allocator's own swings, so compare several runs.
//! Latency and CPU are printed only once every message reached every
//! subscriber; a run that lost any prints `LOST:` instead, and the bench
//! exits non-zero.
//! Targets (p99 at most 10 ms at 100 subscribers, at most 16 KiB per idle
//! WebSocket session) are printed as met or not and fail nothing.
//!
//! Run with `cargo bench --bench fanout`: about 40 seconds after the
//! release build. The subscribers run in this process and share the cores
//! with the gateway, so latency at 1,000 subscribers measures the whole
//! machine, not the gateway alone.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod support;
use support::*;

/// Messages published per second.
const RATE: u64 = 100;
/// How long one run publishes.
const SECONDS: u64 = 10;
/// Subscribers connecting at the same time at most.
const CONNECT_AT_ONCE: usize = 50;
/// Attempts to connect and subscribe one subscriber.
const ATTEMPTS: u32 = 3;
/// How long one attempt may take until the gateway says "subscribed".
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Quiet after which the deliveries still missing count as lost.
const QUIET: Duration = Duration::from_secs(5);
/// Pause before reading the gateway's resident memory.
const SETTLE: Duration = Duration::from_secs(1);
/// How long closed sessions may take to leave the gateway.
const SESSIONS_GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// Target p99 delivery latency at 100 subscribers.
const P99_TARGET_MS: f64 = 10.0;
/// Target resident memory per idle WebSocket session.
const WS_SESSION_TARGET_KIB: f64 = 16.0;

/// The IoT document of the end-to-end bench: one MQTT channel with a
/// `deviceId` parameter and a payload of `seq`, `ts` and `temperature`.
const IOT_DOCUMENT: &str = "asyncapi: 2.6.0\ninfo: {title: IoT Device API, version: '1'}\n\
    servers:\n  plant: {url: 'mqtt://127.0.0.1:1883', protocol: mqtt}\n\
    channels:\n  device/{deviceId}/data:\n    parameters:\n      \
    deviceId: {schema: {type: string}}\n\
    \x20   publish:\n      message:\n        payload:\n          type: object\n          \
    required: [seq, ts]\n\
    \x20         properties: {seq: {type: integer}, ts: {type: integer}, \
    temperature: {type: number}}\n";

/// The front the subscribers of a run use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Front {
    WebSocket,
    Sse,
}

impl Front {
    /// The first segment of its path.
    fn path(self) -> &'static str {
        match self {
            Front::WebSocket => "ws",
            Front::Sse => "sse",
        }
    }

    /// Its label in `stepflow_sessions` and in the figures.
    fn label(self) -> &'static str {
        match self {
            Front::WebSocket => "websocket",
            Front::Sse => "sse",
        }
    }
}

/// One measured run.
struct Plan {
    front: Front,
    subscribers: usize,
    /// Whether the run reports resident memory per idle session.
    memory: bool,
}

impl Plan {
    const fn of(front: Front, subscribers: usize, memory: bool) -> Self {
        Self {
            front,
            subscribers,
            memory,
        }
    }
}

const PLANS: [Plan; 3] = [
    Plan::of(Front::WebSocket, 100, false),
    Plan::of(Front::WebSocket, 1_000, true),
    Plan::of(Front::Sse, 100, true),
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let started = Instant::now();
    let failed = runtime.block_on(run());
    println!("fanout bench took {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}

/// Runs the plans of each front on a gateway of its own, so that memory
/// freed by one front's sessions does not hide the other's; answers
/// whether a run lost messages.
async fn run() -> bool {
    println!(
        "fan-out bench: Mosquitto 127.0.0.1:1883, {RATE} messages/s for {SECONDS} s per run, \
         {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let mut failed = false;
    for front in [Front::WebSocket, Front::Sse] {
        let dir = tempfile::tempdir().expect("folder");
        let gateway = Server::gateway(dir.path(), "");
        let addr = gateway.addr.clone();
        let channel = blocking(move || register(&addr)).await;
        println!(
            "{} gateway {} (pid {}), channel {channel}",
            front.label(),
            gateway.addr,
            gateway.child.id()
        );
        let warm = warm_up(front, &gateway, &channel).await;
        for plan in PLANS.iter().filter(|plan| plan.front == front) {
            failed |= !fan_out(plan, &gateway, &channel, warm.connected()).await;
        }
        warm.stop().await;
    }
    failed
}

/// Opens one session, of another device, that stays open while the front
/// is measured, and publishes to it for a second. The measured sessions
/// then do not pay for code and buffers the gateway touches once, the
/// allocator has returned what starting and registering freed, and no run
/// waits for the session to close (a closed SSE client is noticed only at
/// a heartbeat).
async fn warm_up(front: Front, gateway: &Server, channel: &str) -> Crowd {
    let device = unique_device();
    let path = subscription_path(front, channel, &device);
    let crowd = Crowd::connect(front, &gateway.addr, &path, 1, RATE).await;
    if let Some(error) = crowd.refused.first() {
        println!("warm-up {} session refused: {error}", front.label());
    }
    publish(gateway, channel, &device, 1).await;
    crowd
}

/// One run, beside `others` sessions that stay open: subscribe, read the
/// idle memory, publish, collect, report; answers whether every message
/// reached every subscriber.
async fn fan_out(plan: &Plan, gateway: &Server, channel: &str, others: usize) -> bool {
    let name = format!("{}_fanout_{}", plan.front.label(), plan.subscribers);
    let device = unique_device();
    let path = subscription_path(plan.front, channel, &device);
    let total = RATE * SECONDS;

    wait_for_sessions(plan.front, &gateway.addr, others).await;
    tokio::time::sleep(SETTLE).await;
    let rss_none = gateway.rss_kib();
    let crowd = Crowd::connect(plan.front, &gateway.addr, &path, plan.subscribers, total).await;
    tokio::time::sleep(SETTLE).await;
    let rss_idle = gateway.rss_kib();

    let (cpu_before, client_cpu_before) = (gateway.cpu(), cpu_of("self"));
    let counted = publish(gateway, channel, &device, SECONDS).await;
    let expected = crowd.connected() as u64 * counted.ok;
    crowd.wait_for(expected).await;
    let cpu = gateway.cpu().saturating_sub(cpu_before);
    let client_cpu = cpu_of("self").saturating_sub(client_cpu_before);
    let (refused, connected) = (crowd.refused.clone(), crowd.connected());
    let tallies = crowd.stop().await;

    let outcome = Outcome {
        name,
        subscribers: plan.subscribers,
        refused,
        counted,
        tallies,
        cpu,
        client_cpu,
    };
    let complete = outcome.report();
    if plan.memory {
        report_memory(plan.front, connected, rss_none, rss_idle);
    }
    complete
}

/// Publishes `RATE` messages a second for `seconds` over REST, each
/// carrying its due time as `ts`.
async fn publish(gateway: &Server, channel: &str, device: &str, seconds: u64) -> Counted {
    let url = format!("http://{}/messages/publish", gateway.addr);
    let (channel, device) = (channel.to_owned(), device.to_owned());
    let body = move |seq: u64, due: u64| {
        json!({"channel_id": channel, "parameters": {"deviceId": device},
               "message_data": {"seq": seq, "ts": due, "temperature": 21.5}})
    };
    open_loop_http(&url, RATE, Duration::from_secs(seconds), body).await
}

/// Registers the IoT document on the gateway at `addr`; answers its
/// channel id.
fn register(addr: &str) -> String {
    let body = json!({"name": "IoT Device API", "asyncapi_content": IOT_DOCUMENT});
    let mut response = ureq::post(format!("http://{addr}/asyncapis/register"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("registered");
    let text = response.body_mut().read_to_string().expect("answer");
    let registered: Value = serde_json::from_str(&text).expect("JSON");
    registered["channels"][0]["id"]
        .as_str()
        .expect("channel id")
        .to_owned()
}

/// Waits until the gateway counts `count` open sessions of `front`, or
/// `SESSIONS_GONE_TIMEOUT` passes; says so when others are left.
async fn wait_for_sessions(front: Front, addr: &str, count: usize) {
    let began = Instant::now();
    loop {
        let addr = addr.to_owned();
        let open = blocking(move || open_sessions(&addr, front)).await;
        if open == Some(count as i64) {
            return;
        }
        if began.elapsed() > SESSIONS_GONE_TIMEOUT {
            let label = front.label();
            println!("note: {open:?} {label} sessions open where {count} were expected");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The open sessions of `front` in the gateway's metrics; a gauge that
/// was never set counts as none.
fn open_sessions(addr: &str, front: Front) -> Option<i64> {
    let mut response = ureq::get(format!("http://{addr}/metrics")).call().ok()?;
    let text = response.body_mut().read_to_string().ok()?;
    let prefix = format!("stepflow_sessions{{front=\"{}\"}} ", front.label());
    let Some(value) = text.lines().find_map(|line| line.strip_prefix(&prefix)) else {
        return Some(0);
    };
    value.trim().parse::<f64>().ok().map(|v| v as i64)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task")
}

fn unique_device() -> String {
    format!("fanout-{}", uuid::Uuid::new_v4().simple())
}

/// The path and query of a subscription to `device`'s messages.
fn subscription_path(front: Front, channel: &str, device: &str) -> String {
    format!("/{}/{channel}?deviceId={device}", front.path())
}

/// What a run counted, for its report.
struct Outcome {
    name: String,
    subscribers: usize,
    /// Why the subscribers that never subscribed failed.
    refused: Vec<String>,
    counted: Counted,
    tallies: Vec<Tally>,
    /// The gateway's CPU time over the run.
    cpu: Duration,
    /// This process's CPU time over the run: subscribers and publisher.
    client_cpu: Duration,
}

impl Outcome {
    /// Prints the delivered share, and latency and CPU per delivery when
    /// nothing was lost (a `LOST:` line otherwise); answers whether nothing
    /// was.
    fn report(&self) -> bool {
        let name = &self.name;
        let expected = self.subscribers as u64 * self.counted.ok;
        let delivered: u64 = self
            .tallies
            .iter()
            .map(|t| t.latencies_ns.len() as u64)
            .sum();
        let duplicates: u64 = self.tallies.iter().map(|t| t.duplicates).sum();
        let share = 100.0 * delivered as f64 / expected.max(1) as f64;
        println!(
            "{name}_delivered: {share:.2}% ({delivered} deliveries of {} acknowledged messages \
             x {} subscribers; {duplicates} duplicates)",
            self.counted.ok, self.subscribers
        );
        let ended: Vec<&str> = self
            .tallies
            .iter()
            .filter_map(|t| t.ended.as_deref())
            .collect();
        if delivered < expected || self.counted.errors > 0 || !self.refused.is_empty() {
            println!(
                "LOST: {name}: {delivered} of {expected} deliveries; {} publish errors; \
                 {} subscribers refused (first: {:?}); {} ended by the gateway (first: {:?})",
                self.counted.errors,
                self.refused.len(),
                self.refused.first(),
                ended.len(),
                ended.first()
            );
            return false;
        }
        self.report_latency();
        let per_delivery = |cpu: Duration| cpu.as_secs_f64() * 1e6 / delivered as f64;
        println!(
            "{name}_gateway_cpu_per_delivery: {:.2} us (bench process, subscribers and \
             publisher: {:.2} us)",
            per_delivery(self.cpu),
            per_delivery(self.client_cpu)
        );
        true
    }

    fn report_latency(&self) {
        let mut latencies: Vec<u64> = self
            .tallies
            .iter()
            .flat_map(|t| t.latencies_ns.iter().copied())
            .collect();
        latencies.sort_unstable();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        let target = if self.subscribers == 100 {
            let met = met(p99 <= P99_TARGET_MS);
            format!(" (target p99 <= {P99_TARGET_MS} ms: {met})")
        } else {
            String::new()
        };
        println!(
            "{}_latency: p50 {p50:.2} ms, p99 {p99:.2} ms{target}",
            self.name
        );
    }
}

/// Prints the resident memory per idle session of `front`, `sessions` of
/// which took the gateway's VmRSS from `rss_none` to `rss_idle`. It can
/// come out negative: the allocator may return memory freed earlier to the
/// system while the sessions connect, which at 100 sessions weighs as much
/// as they do.
fn report_memory(front: Front, sessions: usize, rss_none: u64, rss_idle: u64) {
    let per_session = (rss_idle as f64 - rss_none as f64) / sessions.max(1) as f64;
    let fell = if rss_idle < rss_none {
        "; VmRSS fell: the allocator returned more than the sessions took"
    } else {
        ""
    };
    let target = if front == Front::WebSocket {
        let met = met(per_session <= WS_SESSION_TARGET_KIB);
        format!("; target <= {WS_SESSION_TARGET_KIB} KiB: {met}")
    } else {
        String::new()
    };
    println!(
        "{}_idle_session_memory: {per_session:.1} KiB per session (VmRSS {rss_idle} KiB with {} \
         idle sessions, {rss_none} KiB with none{fell}{target})",
        front.label(),
        sessions
    );
}

fn met(target_met: bool) -> &'static str {
    if target_met {
        "met"
    } else {
        "not met"
    }
}

/// The subscribers of one run, each reading on a task of its own.
struct Crowd {
    readers: Vec<JoinHandle<Tally>>,
    /// Why each subscriber that could not subscribe failed.
    refused: Vec<String>,
    /// Distinct messages received, over all subscribers.
    delivered: Arc<AtomicU64>,
    /// Tells the readers to stop; each reader holds a receiver.
    stop_tx: watch::Sender<bool>,
}

impl Crowd {
    /// Connects `count` subscribers to `path`, `CONNECT_AT_ONCE` at a
    /// time, each confirmed subscribed, expecting `total` messages.
    async fn connect(front: Front, addr: &str, path: &str, count: usize, total: u64) -> Self {
        let delivered = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let results: Vec<_> = futures_util::stream::iter(0..count)
            .map(|_| {
                let reading = Reading {
                    tally: Tally::new(total),
                    delivered: delivered.clone(),
                    stop_rx: stop_rx.clone(),
                };
                subscribe(front, addr, path, reading)
            })
            .buffer_unordered(CONNECT_AT_ONCE)
            .collect()
            .await;
        let mut crowd = Self {
            readers: Vec::new(),
            refused: Vec::new(),
            delivered,
            stop_tx,
        };
        for result in results {
            match result {
                Ok(reader) => crowd.readers.push(reader),
                Err(error) => crowd.refused.push(error),
            }
        }
        crowd
    }

    fn connected(&self) -> usize {
        self.readers.len()
    }

    /// Waits until `expected` deliveries arrived or `QUIET` passes with
    /// none.
    async fn wait_for(&self, expected: u64) {
        let mut last = self.delivered.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while last < expected && quiet_since.elapsed() < QUIET {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.delivered.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    }

    /// Stops and closes every subscriber; answers what each received.
    async fn stop(self) -> Vec<Tally> {
        let _ = self.stop_tx.send(true);
        let mut tallies = Vec::with_capacity(self.readers.len());
        for reader in self.readers {
            tallies.push(reader.await.expect("reader task"));
        }
        tallies
    }
}

/// What one subscriber received.
struct Tally {
    /// Whether message `seq` arrived, by `seq`.
    seen: Vec<bool>,
    /// Arrival minus `ts`, in ns, of each distinct message.
    latencies_ns: Vec<u64>,
    /// Messages that arrived again, or whose `seq` was not published.
    duplicates: u64,
    /// Why the stream ended before the run did, if it did.
    ended: Option<String>,
}

impl Tally {
    fn new(total: u64) -> Self {
        Self {
            seen: vec![false; total as usize],
            latencies_ns: Vec::with_capacity(total as usize),
            duplicates: 0,
            ended: None,
        }
    }

    /// Counts a message frame received at `received` (ns since the epoch);
    /// other frames are ignored.
    fn record(&mut self, text: &str, received: u64, delivered: &AtomicU64) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        let (true, Some(payload)) = (frame.kind == "message", frame.payload) else {
            return;
        };
        let Some(seen) = self.seen.get_mut(payload.seq as usize) else {
            self.duplicates += 1;
            return;
        };
        if *seen {
            self.duplicates += 1;
            return;
        }
        *seen = true;
        self.latencies_ns.push(received.saturating_sub(payload.ts));
        delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The fields of a delivered frame the bench reads: `type`, and `seq` and
/// `ts` of the payload.
#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(serde::Deserialize)]
struct Payload {
    seq: u64,
    ts: u64,
}

/// What a reader task owns besides its socket.
struct Reading {
    tally: Tally,
    /// The crowd's count of distinct deliveries.
    delivered: Arc<AtomicU64>,
    /// Turns true when the run is over; the crowd holds the sender.
    stop_rx: watch::Receiver<bool>,
}

/// Connects one subscriber, retrying a refused or slow attempt, and
/// starts its reader once the gateway confirmed the subscription.
async fn subscribe(
    front: Front,
    addr: &str,
    path: &str,
    reading: Reading,
) -> Result<JoinHandle<Tally>, String> {
    let mut error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
        }
        let opened = match front {
            Front::WebSocket => tokio::time::timeout(SUBSCRIBE_TIMEOUT, open_ws(addr, path))
                .await
                .map(|ws| ws.map(Subscriber::WebSocket)),
            Front::Sse => tokio::time::timeout(SUBSCRIBE_TIMEOUT, SseStream::open(addr, path))
                .await
                .map(|sse| sse.map(Subscriber::Sse)),
        };
        match opened {
            Ok(Ok(subscriber)) => return Ok(tokio::spawn(subscriber.read(reading))),
            Ok(Err(reason)) => error = reason.to_string(),
            Err(_) => error = "not subscribed in time".into(),
        }
    }
    Err(error)
}

/// A subscribed client of either front.
enum Subscriber {
    WebSocket(WebSocketStream<TcpStream>),
    Sse(SseStream),
}

impl Subscriber {
    /// Reads until the run is over or the stream ends; answers what
    /// arrived.
    async fn read(self, reading: Reading) -> Tally {
        match self {
            Subscriber::WebSocket(ws) => read_ws(ws, reading).await,
            Subscriber::Sse(sse) => read_sse(sse, reading).await,
        }
    }
}

/// A WebSocket to `path` with Nagle's algorithm off, once its
/// `subscribed` frame arrived.
async fn open_ws(addr: &str, path: &str) -> io::Result<WebSocketStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream)
        .await
        .map_err(io::Error::other)?;
    while let Some(message) = ws.next().await {
        match message.map_err(io::Error::other)? {
            Message::Text(text) if is_subscribed(text.as_str()) => return Ok(ws),
            Message::Close(frame) => return Err(io::Error::other(close_reason(frame))),
            _ => {}
        }
    }
    Err(io::ErrorKind::UnexpectedEof.into())
}

/// Whether a WebSocket frame is the gateway's `subscribed` frame.
fn is_subscribed(text: &str) -> bool {
    serde_json::from_str::<Frame>(text).is_ok_and(|frame| frame.kind == "subscribed")
}

fn close_reason(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    frame.map_or("closed without a reason".into(), |frame| {
        format!("closed {}: {}", u16::from(frame.code), frame.reason)
    })
}

async fn read_ws(mut ws: WebSocketStream<TcpStream>, mut reading: Reading) -> Tally {
    loop {
        let message = tokio::select! {
            _ = reading.stop_rx.changed() => break,
            message = ws.next() => message,
        };
        let received = now_ns();
        let tally = &mut reading.tally;
        match message {
            Some(Ok(Message::Text(text))) => {
                tally.record(text.as_str(), received, &reading.delivered)
            }
            Some(Ok(Message::Close(frame))) => {
                tally.ended = Some(close_reason(frame));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tally.ended = Some(error.to_string());
                break;
            }
            None => {
                tally.ended = Some("connection closed".into());
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    reading.tally
}

async fn read_sse(mut sse: SseStream, mut reading: Reading) -> Tally {
    let mut event = String::new();
    loop {
        let line = tokio::select! {
            _ = reading.stop_rx.changed() => break,
            line = sse.next_line() => line,
        };
        let received = now_ns();
        let tally = &mut reading.tally;
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                tally.ended = Some("connection closed".into());
                break;
            }
            Err(error) => {
                tally.ended = Some(error.to_string());
                break;
            }
        };
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
        } else if line.is_empty() {
            event.clear();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if event == "end" || event == "error" {
                tally.ended = Some(format!("{event}: {data}"));
                break;
            }
            tally.record(data, received, &reading.delivered);
        }
    }
    reading.tally
}

/// A Server-Sent Events stream read over plain HTTP/1.1, chunked or not.
struct SseStream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Body bytes received and not yet split into lines.
    body: Vec<u8>,
}

impl SseStream {
    /// Opens the stream at `path` with Nagle's algorithm off; answers it
    /// once its `subscribed` event arrived.
    async fn open(addr: &str, path: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream);
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n");
        reader.get_mut().write_all(request.as_bytes()).await?;
        let chunked = read_head(&mut reader).await?;
        let mut sse = Self {
            reader,
            chunked,
            body: Vec::new(),
        };
        loop {
            match sse.next_line().await? {
                Some(line) if line == "event: subscribed" => return Ok(sse),
                Some(line) if line.starts_with("data: ") || line.starts_with("event: ") => {
                    return Err(io::Error::other(format!("not subscribed: {line}")))
                }
                Some(_) => {}
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// The next line of the body without its line break; `None` at its
    /// end.
    async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]);
                return Ok(Some(text.trim_end_matches('\r').to_owned()));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Appends the next chunk (or whatever arrived) to `body`; answers
    /// false at the end of the body.
    async fn fill(&mut self) -> io::Result<bool> {
        if !self.chunked {
            return Ok(self.reader.read_buf(&mut self.body).await? > 0);
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).await? == 0 {
            return Ok(false);
        }
        let hex = size.trim().split(';').next().unwrap_or_default();
        let length = usize::from_str_radix(hex, 16).map_err(io::Error::other)?;
        if length == 0 {
            return Ok(false);
        }
        let start = self.body.len();
        self.body.resize(start + length, 0);
        self.reader.read_exact(&mut self.body[start..]).await?;
        size.clear();
        self.reader.read_line(&mut size).await?;
        Ok(true)
    }
}

/// Reads a response head; fails unless it is 200, and answers whether the
/// body is chunked.
async fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<bool> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("answered {}", line.trim())));
    }
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(chunked);
        }
        if let Some((name, value)) = header.split_once(':') {
            chunked |= name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked");
        }
    }
}
