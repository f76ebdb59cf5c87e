//! Sustained call-log writes: how many records a second the LogWriter
//! puts into SQLite and PostgreSQL, each record going through the same
//! handle the publish path uses (`CallLog::record`), with the default
//! batch size and queue. The producer keeps the queue full without
//! overflowing it (it waits for a flush every queue-full of records), so
//! the figure is the writer's rate, and any drop is reported.
//!
//! Run with `cargo bench --bench call_log`; PostgreSQL is the one the
//! tests use (`STEPFLOW_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), in a database made for the
//! run and dropped after it.

use std::time::Instant;

use chrono::Utc;
use sea_orm::{ConnectionTrait, Database};
use stepflow_gateway::actors::{CallRecord, LogWriter};
use stepflow_gateway::config::CallLogConfig;
use stepflow_gateway::ids::CallLogId;

const RECORDS: usize = 100_000;

fn record(i: usize) -> CallRecord {
    CallRecord {
        id: CallLogId::generate(),
        document_id: Some("8c3a4e0e-4c7e-4e8f-9d55-2b4b1d0b9a10".into()),
        channel_id: Some("0b6f1c1e-3f61-4b6a-8a57-3e0f3bba6a21".into()),
        message_id: Some("5d2e9f4a-7c1b-4d8e-b3a6-1f0e2d3c4b5a".into()),
        broker_id: Some("f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b".into()),
        protocol: "mqtt",
        direction: "publish",
        address: Some(format!("device/sensor-{}/data", i % 100)),
        status: "delivered",
        error_kind: None,
        error: None,
        latency_us: Some(450),
        payload_bytes: 48,
        payload: None,
        headers: None,
        created_at: Utc::now(),
    }
}

async fn measure(name: &str, url: &str) {
    let db = stepflow_gateway::store::connect(url, 8)
        .await
        .expect("database opens");
    let settings = CallLogConfig::default();
    let chunk = settings.queue_capacity / 2;
    let call_log = LogWriter::new(db, settings).spawn(0);
    let started = Instant::now();
    let mut sent = 0;
    while sent < RECORDS {
        let upto = (sent + chunk).min(RECORDS);
        for i in sent..upto {
            call_log.record(record(i));
        }
        sent = upto;
        call_log.flush().await;
    }
    let took = started.elapsed();
    let dropped = call_log.dropped();
    let rate = (RECORDS as u64 - dropped) as f64 / took.as_secs_f64();
    println!(
        "call_log_write_{name}: {rate:.0} records/s ({RECORDS} records in {:.2} s, {dropped} dropped)",
        took.as_secs_f64()
    );
}

fn main() {
    let system = actix::System::new();
    system.block_on(async {
        let dir = tempfile::tempdir().expect("folder");
        let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
        measure("sqlite", &sqlite).await;

        let admin = std::env::var("STEPFLOW_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("stepflow_bench_{}", uuid::Uuid::new_v4().simple());
        let server = Database::connect(&admin).await.expect("PostgreSQL answers");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        server
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("bench database created");
        measure("postgres", &format!("{base}/{name}")).await;
        let _ = server
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await;
    });
}
