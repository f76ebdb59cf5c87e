//! `stepflow-gateway validate`: the verdicts and the line format users and
//! tools read.

mod common;

use std::path::Path;
use std::process::Command;

fn corpus(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asyncapi")
        .join(file)
        .display()
        .to_string()
}

fn validate(args: &[&str]) -> (i32, String) {
    let output = Command::new(common::gateway_binary())
        .arg("validate")
        .args(args)
        .output()
        .expect("binary runs");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_valid_multi_file_document_exits_zero() {
    let (code, out) = validate(&[&corpus(
        "examples/v2/spec-2.6.0/social-media/backend/asyncapi.yaml",
    )]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "", "no problems, nothing printed");
}

#[test]
fn problems_print_as_file_line_col_rule_pointer_message() {
    let file =
        corpus("examples/invalid/parser-js-v1/invalid-asyncapi-root-with-duplicate-tags.yaml");
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("tags-uniqueness"))
        .expect("a tags line");
    let (location, rest) = line.split_once(' ').expect("location first");
    let mut parts = location.rsplitn(3, ':');
    let column: usize = parts
        .next()
        .expect("column")
        .parse()
        .expect("numeric column");
    let row: usize = parts.next().expect("line").parse().expect("numeric line");
    assert!(parts
        .next()
        .expect("file")
        .ends_with("invalid-asyncapi-root-with-duplicate-tags.yaml"));
    assert!(row > 0 && column > 0, "{line}");
    let mut words = rest.splitn(3, ' ');
    assert_eq!(words.next(), Some("tags-uniqueness"));
    assert!(
        words.next().expect("pointer").starts_with("/tags/"),
        "{line}"
    );
}

#[test]
fn json_format_lists_every_file_with_its_verdict() {
    let good = corpus("examples/v3/spec-3.0.0/streetlights-mqtt-asyncapi.yml");
    let bad = corpus("examples/invalid/converter-js/streetlights-1.2.0.yml");
    let (code, out) = validate(&["--format", "json", &good, &bad]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report[0]["valid"], true);
    assert_eq!(report[1]["valid"], false);
    assert_eq!(report[1]["diagnostics"][0]["rule"], "asyncapi-version");
}
