//! From source text to the normalized model: parse, check the version,
//! resolve references, and hand the document to its version's builder.

use serde_json::{Map, Value};

use super::diagnostics::{child_pointer, Diagnostic, LoadError, Severity};
use super::model::{Document, Message};
use super::positions::Positions;
use super::refs::Refs;
use super::sources::{self, NoFiles, SourceLoader};
use super::traits::{self, Precedence};
use super::{rules, schema, v2, v3};

/// The AsyncAPI versions the gateway accepts.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0", "3.0.0",
];

/// The syntax a document was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// JSON text.
    Json,
    /// YAML text.
    Yaml,
}

impl SourceFormat {
    /// The lowercase name stored with the template.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Json => "json",
            SourceFormat::Yaml => "yaml",
        }
    }
}

/// Where a document comes from: its name for diagnostics, and where the
/// files it refers to are read.
pub struct LoadOptions<'l> {
    /// The main document's path, relative to the loader's folder.
    pub path: String,
    /// Reads the files the document refers to.
    pub loader: &'l dyn SourceLoader,
    /// Fetches `http(s)://` references; `None` refuses them.
    pub remote: Option<&'l dyn SourceLoader>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            path: "asyncapi".into(),
            loader: &NoFiles,
            remote: None,
        }
    }
}

/// Parses a single-file AsyncAPI text (JSON or YAML) into the model.
pub fn load(text: &str) -> Result<(Document, SourceFormat), LoadError> {
    load_with(text, &LoadOptions::default())
}

/// Parses an AsyncAPI text whose references may reach other files.
pub fn load_with(text: &str, options: &LoadOptions) -> Result<(Document, SourceFormat), LoadError> {
    let (root, format) = parse_text(text).map_err(|mut e| {
        place(&mut e.diagnostics, None, &options.path);
        e
    })?;
    let positions = Positions::of(text);
    match load_value(root, options) {
        Ok(mut document) => {
            place(&mut document.warnings, Some(&positions), &options.path);
            Ok((document, format))
        }
        Err(mut error) => {
            place(&mut error.diagnostics, Some(&positions), &options.path);
            Err(error)
        }
    }
}

/// Builds the model from an already parsed document.
pub fn load_value(mut root: Value, options: &LoadOptions) -> Result<Document, LoadError> {
    if !root.is_object() {
        let message = "an AsyncAPI document must be an object at its root";
        return Err(LoadError::single(Diagnostic::new(
            "document-type",
            "",
            message,
        )));
    }
    let version = check_version(&root)?.to_owned();
    let external = sources::bundle(&mut root, &options.path, options.loader, options.remote);
    let mut refs = Refs::new(&root);
    for diagnostic in external {
        refs.report(diagnostic);
    }
    let document = match version.starts_with('2') {
        true => v2::build(&mut refs, &version),
        false => v3::build(&mut refs, &version),
    };
    let mut diagnostics = refs.into_diagnostics();
    // A document cut short for its size is not checked further: the cut
    // parts would only add noise, and checking them costs the most.
    if !diagnostics
        .iter()
        .any(|d| matches!(d.rule, "too-deep" | "too-large"))
    {
        let checked = match version.starts_with('2') {
            true => schema::check(&version, &document.resolved),
            false => schema::check(&version, &v3::schema_view(&root, &document.resolved)),
        };
        diagnostics.extend(checked);
        rules::check(&document.resolved, &version, &mut diagnostics);
    }
    let mut document = document;
    match diagnostics.iter().any(|d| d.severity == Severity::Error) {
        true => Err(LoadError { diagnostics }),
        false => {
            document.warnings = diagnostics;
            Ok(document)
        }
    }
}

/// Parses JSON or YAML text.
pub(super) fn parse_text(text: &str) -> Result<(Value, SourceFormat), LoadError> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .map(|v| (v, SourceFormat::Json))
            .map_err(|e| syntax_error(format!("invalid JSON: {e}"), Some((e.line(), e.column()))));
    }
    yaml_serde::from_str(text)
        .map(|v| (v, SourceFormat::Yaml))
        .map_err(|e| {
            let position = e.location().map(|l| (l.line(), l.column()));
            syntax_error(format!("invalid YAML: {e}"), position)
        })
}

/// Names the main file in diagnostics that have none, and adds the line
/// and column of those in the main file.
fn place(diagnostics: &mut [Diagnostic], positions: Option<&Positions>, path: &str) {
    for diagnostic in diagnostics {
        let file = diagnostic.file.get_or_insert_with(|| path.to_owned());
        if file != path || diagnostic.line.is_some() {
            continue;
        }
        if let Some((line, column)) = positions.and_then(|p| p.locate(&diagnostic.pointer)) {
            diagnostic.line = Some(line);
            diagnostic.column = Some(column);
        }
    }
}

fn syntax_error(message: String, position: Option<(usize, usize)>) -> LoadError {
    let mut diagnostic = Diagnostic::new("syntax", "", message);
    diagnostic.line = position.map(|p| p.0);
    diagnostic.column = position.map(|p| p.1);
    LoadError::single(diagnostic)
}

fn check_version(root: &Value) -> Result<&str, LoadError> {
    let Some(field) = root.get("asyncapi") else {
        let message = "missing the `asyncapi` field that names the specification version";
        return Err(LoadError::single(Diagnostic::new(
            "asyncapi-version",
            "/asyncapi",
            message,
        )));
    };
    let Some(version) = field.as_str() else {
        let message =
            format!("`asyncapi` must be a version string such as \"2.6.0\", found {field}");
        return Err(LoadError::single(Diagnostic::new(
            "asyncapi-version",
            "/asyncapi",
            message,
        )));
    };
    if !SUPPORTED_VERSIONS.contains(&version) {
        let message = format!(
            "AsyncAPI version {version} is not supported; supported: {}",
            SUPPORTED_VERSIONS.join(", ")
        );
        return Err(LoadError::single(Diagnostic::new(
            "asyncapi-version",
            "/asyncapi",
            message,
        )));
    }
    Ok(version)
}

/// The string field `key` of `object`, if present.
pub(super) fn text(object: &Value, key: &str) -> Option<String> {
    object.get(key)?.as_str().map(str::to_owned)
}

/// The string field `key`, reporting a `required` problem when it is absent.
pub(super) fn required_text(refs: &mut Refs, object: &Value, at: &str, key: &str) -> String {
    if let Some(value) = text(object, key) {
        return value;
    }
    let message = format!("`{key}` is required and must be a string");
    refs.report(Diagnostic::new("required", child_pointer(at, key), message));
    String::new()
}

/// The object field `key` as a map, empty when absent.
pub(super) fn entries<'a>(object: &'a Value, key: &str) -> Vec<(&'a String, &'a Value)> {
    object
        .get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

/// `info.title` and `info.version`.
pub(super) fn info(refs: &mut Refs) -> (String, String) {
    let root = refs.root();
    let Some(info) = root.get("info") else {
        refs.report(Diagnostic::new("required", "/info", "`info` is required"));
        return (String::new(), String::new());
    };
    let title = required_text(refs, info, "/info", "title");
    let version = required_text(refs, info, "/info", "version");
    (title, version)
}

/// Replaces each `{variable}` of a server URL with the variable's default.
pub(super) fn substitute_variables<'a>(
    refs: &mut Refs<'a>,
    url: &str,
    server: &'a Value,
    at: &str,
) -> String {
    let variables = server.get("variables");
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        let var_at = child_pointer(&format!("{at}/variables"), name);
        let Some(declared) = variables.and_then(|v| v.get(name)) else {
            let message = format!("server variable `{name}` is used in the URL but not declared");
            refs.report(Diagnostic::new("server-variables", var_at, message));
            rest = &rest[open + close + 1..];
            continue;
        };
        // Without a default the first allowed value serves; without either
        // the placeholder stays, and connecting reports the URL as invalid.
        let value = refs.follow(declared, &var_at).and_then(|(v, _)| {
            text(v, "default").or_else(|| {
                v.get("enum")?
                    .as_array()?
                    .first()?
                    .as_str()
                    .map(str::to_owned)
            })
        });
        match value {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The objects of a `traits` list, each reference followed.
pub(super) fn trait_list<'a>(refs: &mut Refs<'a>, object: &'a Value, at: &str) -> Vec<Value> {
    let Some(list) = object.get("traits").and_then(Value::as_array) else {
        return Vec::new();
    };
    let traits_at = format!("{at}/traits");
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item_at = format!("{traits_at}/{i}");
        // A 3.0 trait may be given as [trait, extra] pairs in 2.x; take the first.
        let item = item
            .as_array()
            .and_then(|pair| pair.first())
            .unwrap_or(item);
        if let Some((target, _)) = refs.follow(item, &item_at) {
            out.push(target.clone());
        }
    }
    out
}

/// Applies traits and resolves references, giving the object to read from.
pub(super) fn with_traits<'a>(
    refs: &mut Refs<'a>,
    object: &'a Value,
    at: &str,
    precedence: Precedence,
) -> Value {
    let traits = trait_list(refs, object, at);
    let merged = traits::apply(object, &traits, precedence);
    refs.resolve(&merged, at)
}

/// Builds a message from its resolved object.
pub(super) fn message(
    resolved: &Value,
    key: String,
    default_content_type: Option<&str>,
) -> Message {
    let name = text(resolved, "name")
        .or_else(|| text(resolved, "messageId"))
        .unwrap_or_else(|| key.clone());
    Message {
        key,
        name,
        title: text(resolved, "title"),
        content_type: text(resolved, "contentType")
            .or_else(|| default_content_type.map(str::to_owned)),
        schema_format: text(resolved, "schemaFormat").or_else(|| {
            resolved
                .get("payload")
                .and_then(|p| text(p, "schemaFormat"))
        }),
        payload: payload_schema(resolved.get("payload")),
        headers: resolved.get("headers").cloned(),
        bindings: object_or_empty(resolved.get("bindings")),
        client_publish: false,
        client_subscribe: false,
    }
}

/// A 3.0 payload may be a multi-format wrapper `{schemaFormat, schema}`.
fn payload_schema(payload: Option<&Value>) -> Option<Value> {
    let payload = payload?;
    match (payload.get("schemaFormat"), payload.get("schema")) {
        (Some(_), Some(schema)) => Some(schema.clone()),
        _ => Some(payload.clone()),
    }
}

/// `value` when it is an object, else an empty object.
pub(super) fn object_or_empty(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => Value::Object(Map::new()),
    }
}
