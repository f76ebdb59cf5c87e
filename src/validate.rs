//! `stepflow-gateway validate`: checks AsyncAPI files the way registration
//! does and prints what it finds.

use std::path::{Path, PathBuf};

use serde_json::json;
use stepflow_gateway::asyncapi::sources::Folder;
use stepflow_gateway::asyncapi::{load_with, Diagnostic, LoadOptions, Severity};

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One line per problem: `file:line:col rule pointer message`.
    Text,
    /// One JSON document listing every file with its verdict.
    Json,
}

/// Checks every file and prints the result; true when none has errors.
pub fn run(files: &[PathBuf], format: Format) -> bool {
    let results: Vec<(PathBuf, Vec<Diagnostic>)> =
        files.iter().map(|f| (f.clone(), check(f))).collect();
    let valid =
        |diagnostics: &[Diagnostic]| diagnostics.iter().all(|d| d.severity == Severity::Warning);
    match format {
        Format::Text => {
            for (file, diagnostics) in &results {
                for diagnostic in diagnostics {
                    println!("{}", line(file, diagnostic));
                }
                let verdict = if valid(diagnostics) {
                    "valid"
                } else {
                    "invalid"
                };
                let count = match diagnostics.len() {
                    1 => "1 problem".to_owned(),
                    n => format!("{n} problems"),
                };
                eprintln!("{}: {verdict} ({count})", file.display());
            }
        }
        Format::Json => {
            let report: Vec<_> = results
                .iter()
                .map(|(file, diagnostics)| json!({"file": file, "valid": valid(diagnostics), "diagnostics": diagnostics}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
    }
    results.iter().all(|(_, diagnostics)| valid(diagnostics))
}

/// Every diagnostic of one file, warnings included.
fn check(file: &Path) -> Vec<Diagnostic> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            return vec![Diagnostic::new(
                "read",
                "",
                format!("cannot read the file: {error}"),
            )]
        }
    };
    let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let options = LoadOptions {
        path: name,
        loader: &Folder(folder),
        remote: None,
    };
    match load_with(&text, &options) {
        Ok((document, _)) => document.warnings,
        Err(error) => error.diagnostics,
    }
}

/// `file:line:col rule pointer message`, the file relative to the checked
/// file's folder as the diagnostic names it.
fn line(file: &Path, diagnostic: &Diagnostic) -> String {
    let folder = file.parent().unwrap_or(Path::new(""));
    let shown = match &diagnostic.file {
        Some(name) => folder.join(name).display().to_string(),
        None => file.display().to_string(),
    };
    let pointer = if diagnostic.pointer.is_empty() {
        "/"
    } else {
        &diagnostic.pointer
    };
    let severity = match diagnostic.severity {
        Severity::Error => "",
        Severity::Warning => "warning: ",
    };
    format!(
        "{shown}:{}:{} {} {pointer} {severity}{}",
        diagnostic.line.unwrap_or(0),
        diagnostic.column.unwrap_or(0),
        diagnostic.rule,
        diagnostic.message
    )
}
