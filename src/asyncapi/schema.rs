//! Validation of a resolved document against the official JSON Schema of
//! its exact AsyncAPI version (vendored in `schemas/`, see its NOTICE).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use super::diagnostics::Diagnostic;

/// Most schema problems reported for one document; beyond it the rest are
/// summarised in one diagnostic.
const MAX_SCHEMA_DIAGNOSTICS: usize = 100;

fn schema_text(version: &str) -> Option<&'static str> {
    Some(match version {
        "2.0.0" => include_str!("schemas/2.0.0.json"),
        "2.1.0" => include_str!("schemas/2.1.0.json"),
        "2.2.0" => include_str!("schemas/2.2.0.json"),
        "2.3.0" => include_str!("schemas/2.3.0.json"),
        "2.4.0" => include_str!("schemas/2.4.0.json"),
        "2.5.0" => include_str!("schemas/2.5.0.json"),
        "2.6.0" => include_str!("schemas/2.6.0.json"),
        "3.0.0" => include_str!("schemas/3.0.0.json"),
        _ => return None,
    })
}

/// The compiled official schema of `version`, built once per process.
fn validator(version: &str) -> Option<Arc<Validator>> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut compiled = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = compiled.get(version) {
        return Some(found.clone());
    }
    let schema: Value =
        serde_json::from_str(schema_text(version)?).expect("vendored schema is JSON");
    let built = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .with_format("uri-reference", lenient_uri_reference)
        .build(&schema)
        .expect("vendored schema compiles");
    let built = Arc::new(built);
    compiled.insert(version.to_owned(), built.clone());
    Some(built)
}

/// References such as `#/channels/a~1{id}` are not strict URI references
/// (braces), yet every AsyncAPI tool accepts them; only white space is
/// refused.
fn lenient_uri_reference(value: &str) -> bool {
    !value.chars().any(char::is_whitespace)
}

/// Checks `resolved` against the schema of `version`, one diagnostic per
/// violation, each at the pointer of the offending value.
pub fn check(version: &str, resolved: &Value) -> Vec<Diagnostic> {
    let Some(validator) = validator(version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (count, error) in validator.iter_errors(resolved).enumerate() {
        if count == MAX_SCHEMA_DIAGNOSTICS {
            let message = "more violations of the AsyncAPI schema were found and not listed";
            out.push(Diagnostic::new("schema", "", message));
            break;
        }
        let pointer = error.instance_path().as_str().to_owned();
        let text = super::rules::short(&error.to_string());
        let message = format!("{text} (schema keyword `{}`)", error.kind().keyword());
        out.push(Diagnostic::new("schema", pointer, message));
    }
    out
}

/// Compiles a payload or headers schema (JSON Schema draft 07, as AsyncAPI
/// Schema is). `pattern`s run on a linear-time engine, so no payload can
/// stall a worker; a pattern that needs look-around or back-references is
/// refused at registration. References left in it by cycles resolve against the
/// `components` of `document`, the resolved document it came from.
pub fn compile_payload(schema: &Value, document: &Value) -> Result<Validator, String> {
    let has_refs = schema.to_string().contains("\"$ref\"");
    let wrapped;
    let target = match (has_refs, document) {
        // The document becomes the root the references resolve against, and
        // its own keys are no schema keywords, so only `allOf` applies.
        (true, Value::Object(root)) => {
            let mut root = root.clone();
            root.retain(|key, _| !matches!(key.as_str(), "$schema" | "$id" | "id" | "allOf"));
            root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
            if let Some(draft) = schema.get("$schema") {
                root.insert("$schema".into(), draft.clone());
            }
            wrapped = Value::Object(root);
            &wrapped
        }
        _ => schema,
    };
    let mut options = jsonschema::options();
    // A schema that names its draft with `$schema` is read as that draft, and
    // AsyncAPI Schema, and any schema that names none, is draft 07.
    if schema.get("$schema").is_none() {
        options = options.with_draft(jsonschema::Draft::Draft7);
    }
    options
        .should_validate_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .build(target)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests;
