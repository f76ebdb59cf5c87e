//! Problems found in a document, each with a rule name and a location.

use serde::Serialize;

/// How much a problem matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The document is refused.
    Error,
    /// The document is accepted; the problem is reported with it.
    Warning,
}

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Short name of the rule that was broken, such as `unresolved-ref`.
    pub rule: &'static str,
    /// Whether the problem refuses the document.
    pub severity: Severity,
    /// JSON pointer to the offending value in its file.
    pub pointer: String,
    /// The file the value is in, when the document has a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// Line in the source text, where the text parser knew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column in the source text, where the text parser knew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Diagnostic {
    /// A warning at `pointer`: reported, but the document is accepted.
    pub fn warning(
        rule: &'static str,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::new(rule, pointer, message)
        }
    }

    /// A problem at `pointer` with no text position.
    pub fn new(rule: &'static str, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule,
            severity: Severity::Error,
            pointer: pointer.into(),
            file: None,
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// Why a document was refused: every problem found, never only the first.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a valid AsyncAPI document: {}", summary(.diagnostics))]
pub struct LoadError {
    /// The problems, in document order.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    /// A refusal for a single problem.
    pub fn single(diagnostic: Diagnostic) -> Self {
        Self {
            diagnostics: vec![diagnostic],
        }
    }
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    let Some(first) = diagnostics.first() else {
        return "no diagnostics".into();
    };
    let more = diagnostics.len() - 1;
    let at = if first.pointer.is_empty() {
        "/"
    } else {
        &first.pointer
    };
    match more {
        0 => format!("{} at {at}", first.message),
        _ => format!("{} at {at} (and {more} more)", first.message),
    }
}

/// Appends `key` to the JSON pointer `base`, escaping `~` and `/`.
pub fn child_pointer(base: &str, key: &str) -> String {
    let escaped = key.replace('~', "~0").replace('/', "~1");
    format!("{base}/{escaped}")
}
