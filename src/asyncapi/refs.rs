//! Local `$ref` resolution over one parsed document.
//!
//! References to other files or over the network are refused with a
//! diagnostic; only `#/...` pointers into the same document are followed.

use serde_json::{Map, Value};

use super::diagnostics::{child_pointer, Diagnostic};

/// Most nested levels a resolved value may have.
/// Most nested levels a resolved value may have. Stored documents are read
/// back with a JSON parser that stops at 128 levels, and deep recursion
/// costs stack, so this stays well below both.
const MAX_DEPTH: usize = 100;
/// Most values a fully resolved document may hold, so that a small document
/// whose references fan out cannot exhaust memory.
const MAX_NODES: usize = 250_000;
/// Most hops a chain of references may take before it counts as a loop.
const MAX_CHAIN: usize = 64;

/// Resolves references against `root`, collecting problems as it goes.
pub struct Refs<'a> {
    root: &'a Value,
    diagnostics: Vec<Diagnostic>,
    nodes_left: usize,
    depth: usize,
}

impl<'a> Refs<'a> {
    /// A resolver over the raw document `root`.
    pub fn new(root: &'a Value) -> Self {
        Self {
            root,
            diagnostics: Vec::new(),
            nodes_left: MAX_NODES,
            depth: 0,
        }
    }

    /// The raw document.
    pub fn root(&self) -> &'a Value {
        self.root
    }

    /// Records a problem found by the caller.
    /// The same problem found twice (a reference followed from two places)
    /// is kept once.
    pub fn report(&mut self, diagnostic: Diagnostic) {
        if self.diagnostics.contains(&diagnostic) {
            return;
        }
        self.diagnostics.push(diagnostic);
    }

    /// The problems found so far.
    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diagnostics
    }

    /// Follows a chain of `$ref`s at the top of `value`.
    ///
    /// Returns the target with its pointer (the input's own pointer when it
    /// is no reference), or `None` after reporting why it cannot be followed.
    pub fn follow(&mut self, value: &'a Value, at: &str) -> Option<(&'a Value, String)> {
        let mut current = value;
        let mut pointer = at.to_owned();
        for _ in 0..MAX_CHAIN {
            let Some(reference) = ref_of(current) else {
                return Some((current, pointer));
            };
            current = self.target(reference, &pointer)?;
            pointer = reference.trim_start_matches('#').to_owned();
        }
        self.report(Diagnostic::new(
            "ref-cycle",
            at,
            "a chain of references is longer than 64 links or never ends",
        ));
        None
    }

    /// Like [`Refs::follow`], also returning the last segment of the last
    /// reference followed (a component's key), if any.
    pub fn follow_named(
        &mut self,
        value: &'a Value,
        at: &str,
    ) -> Option<(&'a Value, Option<String>)> {
        let name = ref_of(value).and_then(last_segment);
        let (target, _) = self.follow(value, at)?;
        Some((target, name))
    }

    /// Returns `value` with every reference inside it replaced by its target.
    ///
    /// A reference back to a definition that is being expanded is kept as
    /// `{"$ref": ...}`, so cycles end.
    pub fn resolve(&mut self, value: &Value, at: &str) -> Value {
        let mut stack = Vec::new();
        self.resolve_inner(value, at, &mut stack)
    }

    fn resolve_inner(&mut self, value: &Value, at: &str, stack: &mut Vec<String>) -> Value {
        if self.nodes_left == 0 {
            return Value::Null;
        }
        self.nodes_left -= 1;
        if self.nodes_left == 0 {
            self.report(Diagnostic::new(
                "too-large",
                at,
                "the resolved document is too large",
            ));
        }
        if self.depth >= MAX_DEPTH {
            let message = format!("the resolved document nests deeper than {MAX_DEPTH} levels");
            self.report(Diagnostic::new("too-deep", at, message));
            return Value::Null;
        }
        self.depth += 1;
        let resolved = self.resolve_node(value, at, stack);
        self.depth -= 1;
        resolved
    }

    fn resolve_node(&mut self, value: &Value, at: &str, stack: &mut Vec<String>) -> Value {
        match value {
            Value::Object(map) => match ref_of(value) {
                Some(reference) => self.expand(reference, at, stack),
                None => Value::Object(self.resolve_map(map, at, stack)),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.resolve_inner(item, &format!("{at}/{i}"), stack))
                    .collect(),
            ),
            scalar => scalar.clone(),
        }
    }

    fn resolve_map(
        &mut self,
        map: &Map<String, Value>,
        at: &str,
        stack: &mut Vec<String>,
    ) -> Map<String, Value> {
        map.iter()
            .map(|(key, item)| {
                let resolved = self.resolve_inner(item, &child_pointer(at, key), stack);
                (key.clone(), resolved)
            })
            .collect()
    }

    fn expand(&mut self, reference: &str, at: &str, stack: &mut Vec<String>) -> Value {
        let keep = || serde_json::json!({ "$ref": reference });
        if stack.iter().any(|open| open == reference) {
            return keep();
        }
        let Some(target) = self.target(reference, at) else {
            return keep();
        };
        stack.push(reference.to_owned());
        let resolved = self.resolve_inner(target, reference.trim_start_matches('#'), stack);
        stack.pop();
        resolved
    }

    fn target(&mut self, reference: &str, at: &str) -> Option<&'a Value> {
        // References to other files were inlined or reported when the
        // document was bundled; what is left of them is not followed again.
        let fragment = reference.strip_prefix('#')?;
        let decoded = percent_encoding::percent_decode_str(fragment).decode_utf8_lossy();
        let found = self.root.pointer(&decoded);
        if found.is_none() {
            let message = format!("reference `{reference}` points to nothing in the document");
            self.report(Diagnostic::new(
                "unresolved-ref",
                child_pointer(at, "$ref"),
                message,
            ));
        }
        found
    }
}

/// The `$ref` string of `value`, if it is a reference object.
pub fn ref_of(value: &Value) -> Option<&str> {
    value.as_object()?.get("$ref")?.as_str()
}

/// The last segment of a reference's pointer, unescaped.
pub fn last_segment(reference: &str) -> Option<String> {
    let segment = reference.rsplit('/').next()?;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    Some(decoded.replace("~1", "/").replace("~0", "~"))
}
