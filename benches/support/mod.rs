//! What the end-to-end benches share: the gateway and a no-op handler as
//! child processes, a thin HTTP/1.1 load client (closed and open loop),
//! CPU time from /proc, and percentiles.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The length of one closed-loop measurement in seconds:
/// `STEPFLOW_BENCH_SECONDS`, else 5.
pub fn measurement_seconds() -> u64 {
    std::env::var("STEPFLOW_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// Connections of a closed-loop HTTP load.
pub const CONNECTIONS: usize = 32;

/// The no-op handler: takes the body and answers every POST with 200 and
/// a small JSON body. A handler that left the body unread would have its
/// keep-alive connections closed under the load client.
pub fn noop_server() {
    actix_web::rt::System::new().block_on(async {
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().default_service(actix_web::web::to(
                |_body: actix_web::web::Bytes| async {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{}")
                },
            ))
        })
        .bind("127.0.0.1:0")
        .expect("free port");
        println!("{}", server.addrs()[0]);
        server.run().await.expect("serves");
    });
}

/// A child process and the address it listens on.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn noop() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .env("STEPFLOW_BENCH_ROLE", "noop")
            .stdout(Stdio::piped())
            .spawn()
            .expect("no-op server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("address");
        Self {
            child,
            addr: line.trim().to_owned(),
        }
    }

    /// The release gateway on a free port, with SQLite under `dir` and
    /// `extra` appended to its config.
    pub fn gateway(dir: &std::path::Path, extra: &str) -> Self {
        let config = dir.join("gateway.toml");
        let toml = format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}\"\n\
             [logging]\nformat = \"json\"\nfilter = \"warn,stepflow_gateway::gateway=info\"\n",
            dir.join("gateway.db").display()
        ) + extra;
        std::fs::write(&config, toml).expect("config written");
        let mut child = Command::new(env!("CARGO_BIN_EXE_stepflow-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gateway starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(addr) = event["fields"]["local_addr"].as_str() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("gateway reports its address");
        Self { child, addr }
    }

    /// User plus system CPU time of the process so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// Resident memory of the process (VmRSS of /proc/PID/status), in KiB;
    /// 0 when it cannot be read.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time so far of the process `pid` (`self` for
/// this one), from /proc; zero when it cannot be read.
pub fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last `)`.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line.
    let total = ticks(11) + ticks(12);
    let per_second = clock_ticks();
    Duration::from_nanos(total * 1_000_000_000 / per_second)
}

pub fn clock_ticks() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One keep-alive HTTP/1.1 connection with Nagle's algorithm off: the
/// load client, thin enough that a no-op handler is not limited by it.
pub struct Connection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    host: String,
    path: String,
}

impl Connection {
    pub async fn open(url: &str) -> std::io::Result<Self> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: tokio::io::BufStream::new(stream),
            host: host.to_owned(),
            path: format!("/{path}"),
        })
    }

    /// POSTs `body` and reads the answer; answers whether it was 2xx.
    pub async fn post(&mut self, body: &str) -> std::io::Result<bool> {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.path,
            self.host,
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body.as_bytes()).await?;
        self.stream.flush().await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let ok = line
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('2'));
        let mut length = 0;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut answer = vec![0; length];
        self.stream.read_exact(&mut answer).await?;
        Ok(ok)
    }
}

/// Runs `load` on a runtime of its own with two threads, apart from the
/// bench's actix system, so that the load client has both cores to use.
pub fn on_load_runtime<T: Send + 'static>(
    load: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("load runtime");
    runtime.block_on(load)
}

/// What one closed-loop measurement counted.
pub struct Counted {
    pub ok: u64,
    pub errors: u64,
    pub took: Duration,
}

impl Counted {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.took.as_secs_f64()
    }
}

/// Posts `body(seq)` to `url` from 32 connections, each waiting for its
/// answer before the next, for `length`.
pub async fn closed_loop_http(
    url: &str,
    length: Duration,
    body: impl Fn(u64) -> Value + Clone + Send + Sync + 'static,
) -> Counted {
    let url = url.to_owned();
    let load = async move {
        let next = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + length;
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (url, body) = (url.clone(), body.clone());
                let (next, ok, errors) = (next.clone(), ok.clone(), errors.clone());
                tokio::spawn(async move {
                    let Ok(mut connection) = Connection::open(&url).await else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    while Instant::now() < deadline {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        match connection.post(&body(seq).to_string()).await {
                            Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(false) => errors.fetch_add(1, Ordering::Relaxed),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        };
                    }
                })
            })
            .collect();
        futures_util::future::join_all(workers).await;
        Counted {
            ok: ok.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            took: started.elapsed(),
        }
    };
    on_load(load).await
}

/// Open loop: `rate` requests a second for `length`, each due at its own
/// time whatever the answers do, from a pool of 64 connections; each body
/// carries its due time as `ts`, so a request that waited for a free
/// connection counts that wait in its latency.
pub async fn open_loop_http(
    url: &str,
    rate: u64,
    length: Duration,
    body: impl Fn(u64, u64) -> Value + Clone + Send + Sync + 'static,
) -> Counted {
    let url = url.to_owned();
    let load = async move {
        let total = rate * length.as_secs();
        let (jobs_tx, jobs_rx) = async_channel::bounded::<(u64, u64)>(total as usize);
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (url, body, jobs) = (url.clone(), body.clone(), jobs_rx.clone());
                let (ok, errors) = (ok.clone(), errors.clone());
                tokio::spawn(async move {
                    let Ok(mut connection) = Connection::open(&url).await else {
                        return;
                    };
                    while let Ok((seq, due)) = jobs.recv().await {
                        match connection.post(&body(seq, due).to_string()).await {
                            Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let pacer = std::thread::spawn(move || pace(rate, total, |job| jobs_tx.send_blocking(job)));
        futures_util::future::join_all(workers).await;
        let _ = pacer.join();
        Counted {
            ok: ok.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            took: started.elapsed(),
        }
    };
    on_load(load).await
}

/// Hands out `total` jobs `(seq, due)` at `rate` a second from the
/// calling thread, `due` being the time (ns since the epoch) each was due;
/// a thread's sleep wakes within tens of microseconds, where a tokio timer
/// rounds up to the next millisecond. A job handed out late still carries
/// its due time, so a latency measured from it counts the wait.
pub fn pace<E>(rate: u64, total: u64, mut send: impl FnMut((u64, u64)) -> Result<(), E>) {
    let started = Instant::now();
    let epoch = now_ns();
    for seq in 0..total {
        let offset = Duration::from_nanos(seq * 1_000_000_000 / rate);
        if let Some(wait) = offset.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        if send((seq, epoch + offset.as_nanos() as u64)).is_err() {
            return;
        }
    }
}

/// Median, min and max.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    (median, sorted[0], sorted[sorted.len() - 1])
}

pub fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index] as f64 / 1_000_000.0
}

/// Runs `load` on a runtime of its own (see [`on_load_runtime`]) from an
/// async caller, whose runtime goes on meanwhile.
pub async fn on_load<T: Send + 'static>(
    load: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || on_load_runtime(load))
        .await
        .expect("load thread")
}

/// Runs `publish(worker, seq)` from `CONNECTIONS` loops on the current
/// runtime for `length`, each loop waiting for its answer (whether the
/// message was acknowledged) before the next: the closed loop of
/// [`closed_loop_http`] for any client.
pub async fn closed_loop<F, Fut>(length: Duration, publish: F) -> Counted
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let (publish, next) = (publish.clone(), next.clone());
            let (ok, errors) = (ok.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    match publish(worker, seq).await {
                        true => ok.fetch_add(1, Ordering::Relaxed),
                        false => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    futures_util::future::join_all(workers).await;
    Counted {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        took: started.elapsed(),
    }
}

/// Distinct `seq` values (a top-level field of a JSON payload) that a
/// consumer received, and when the latest came; clones share them.
#[derive(Clone, Default)]
pub struct Seen(Arc<std::sync::Mutex<Arrivals>>);

#[derive(Default)]
struct Arrivals {
    seqs: std::collections::HashSet<u64>,
    last: Option<Instant>,
}

impl Seen {
    /// Notes the `seq` of a payload; one without is ignored.
    pub fn record(&self, payload: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        let Some(seq) = value["seq"].as_u64() else {
            return;
        };
        let mut arrivals = self.0.lock().expect("arrivals");
        arrivals.seqs.insert(seq);
        arrivals.last = Some(Instant::now());
    }

    /// Waits until `count` distinct messages arrived or `quiet` passes
    /// with none; answers how many of `0..count` arrived, and when the
    /// latest message did.
    pub async fn wait_for(&self, count: u64, quiet: Duration) -> (u64, Option<Instant>) {
        let waiting = Instant::now();
        loop {
            let (got, last) = {
                let arrivals = self.0.lock().expect("arrivals");
                (arrivals.seqs.len() as u64, arrivals.last)
            };
            let quiet_since = last.map_or(waiting, |last| last.max(waiting));
            if got >= count || quiet_since.elapsed() > quiet {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let arrivals = self.0.lock().expect("arrivals");
        let arrived = arrivals.seqs.iter().filter(|&&seq| seq < count).count();
        (arrived as u64, arrivals.last)
    }
}
