//! In-process costs of the AsyncAPI path: loading and validating a document
//! (the largest valid one of the corpus and a typical one), refusing the
//! largest document of all (an invalid one), and checking one payload
//! against its compiled schema. The test command runs this with `--quick`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use stepflow_gateway::asyncapi::schema::compile_payload;
use stepflow_gateway::asyncapi::sources::Folder;
use stepflow_gateway::asyncapi::{load_with, LoadOptions};

fn corpus(file: &str) -> (String, Folder, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asyncapi/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    (
        text,
        Folder(path.parent().expect("folder").to_path_buf()),
        name,
    )
}

fn load(c: &mut Criterion) {
    for (label, file) in [
        (
            "load_largest_deepgram_101KB",
            "v3/realworld/deepgram/asyncapi-3.0.0.yml",
        ),
        (
            "load_typical_streetlights_mqtt_6KB",
            "v2/spec-2.6.0/streetlights-mqtt.yml",
        ),
    ] {
        let (text, folder, name) = corpus(file);
        let options = LoadOptions {
            path: name,
            loader: &folder,
            remote: None,
        };
        load_with(&text, &options).expect("a valid corpus document");
        c.bench_function(label, |b| {
            b.iter(|| load_with(&text, &options).expect("valid"))
        });
    }
}

/// The largest document of the corpus is invalid (122 problems): the cost
/// of finding and reporting every one, as a refused registration does.
fn refuse(c: &mut Criterion) {
    let (text, folder, name) = corpus("invalid/jasyncapi/kitchen-sink-2.6.0.json");
    let options = LoadOptions {
        path: name,
        loader: &folder,
        remote: None,
    };
    load_with(&text, &options).expect_err("an invalid corpus document");
    c.bench_function("refuse_largest_kitchen_sink_105KB", |b| {
        b.iter(|| load_with(&text, &options).expect_err("invalid"))
    });
}

fn validate_payload(c: &mut Criterion) {
    let schema = json!({
        "type": "object",
        "properties": {
            "lumens": {"type": "integer", "minimum": 0},
            "sentAt": {"type": "string", "format": "date-time"}
        }
    });
    let validator = compile_payload(&schema, &json!({})).expect("schema compiles");
    let payload = json!({"lumens": 720, "sentAt": "2026-12-03T10:00:00Z"});
    assert!(validator.is_valid(&payload));
    c.bench_function("validate_payload_streetlight", |b| {
        b.iter(|| validator.is_valid(&payload))
    });
}

criterion_group!(benches, load, refuse, validate_payload);
criterion_main!(benches);
