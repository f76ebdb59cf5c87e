//! Documents split across files: every reference to another file is
//! replaced by its target before the document is read, so the rest of the
//! loader only ever sees one document with local references.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::diagnostics::{child_pointer, Diagnostic};
use super::load::parse_text;
use super::refs::ref_of;

/// Where the files a document refers to come from.
pub trait SourceLoader {
    /// The text of the file at `path` (normalised, relative to the main
    /// document's folder), or why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// No files besides the main document.
pub struct NoFiles;

impl SourceLoader for NoFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        Err(format!("file `{path}` was not supplied with the document"))
    }
}

/// Files supplied with the document, by relative path.
pub struct FileMap(pub BTreeMap<String, String>);

impl SourceLoader for FileMap {
    fn read(&self, path: &str) -> Result<String, String> {
        let wanted = normalise(Path::new(path));
        self.0
            .iter()
            .find(|(name, _)| normalise(Path::new(name)) == wanted)
            .map(|(_, text)| text.clone())
            .ok_or_else(|| format!("file `{path}` was not supplied with the document"))
    }
}

/// Files fetched over HTTP(S), for `$ref`s to URLs when the config allows
/// fetching them.
pub struct Remote {
    agent: ureq::Agent,
    max_bytes: u64,
}

impl Remote {
    /// A fetcher that gives up after `timeout` or beyond `max_bytes`.
    pub fn new(timeout: std::time::Duration, max_bytes: u64) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build();
        Self {
            agent: config.into(),
            max_bytes,
        }
    }
}

impl SourceLoader for Remote {
    fn read(&self, url: &str) -> Result<String, String> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| format!("cannot fetch `{url}`: {e}"))?;
        let body = response.body_mut().with_config().limit(self.max_bytes);
        body.read_to_string()
            .map_err(|e| format!("cannot read `{url}`: {e}"))
    }
}

/// Files on disk, relative to the main document's folder.
pub struct Folder(pub PathBuf);

impl SourceLoader for Folder {
    fn read(&self, path: &str) -> Result<String, String> {
        let full = self.0.join(path);
        std::fs::read_to_string(&full).map_err(|e| format!("cannot read `{}`: {e}", full.display()))
    }
}

/// Replaces every reference to another file inside `root` by its target,
/// recursively; problems are returned, with the file they are in.
pub fn bundle<'l>(
    root: &mut Value,
    main: &str,
    loader: &'l dyn SourceLoader,
    remote: Option<&'l dyn SourceLoader>,
) -> Vec<Diagnostic> {
    let mut bundler = Bundler {
        loader,
        remote,
        files: HashMap::new(),
        diagnostics: Vec::new(),
        open: Vec::new(),
        depth: 0,
    };
    bundler.walk(root, "", main, "");
    bundler.diagnostics
}

/// Most nested external references followed from one place.
const MAX_OPEN: usize = 64;
/// Most nested levels of a bundled document.
const MAX_DEPTH: usize = 100;

struct Bundler<'l> {
    loader: &'l dyn SourceLoader,
    /// Fetches `http(s)://` files, when fetching them is allowed.
    remote: Option<&'l dyn SourceLoader>,
    /// Parsed files by normalised path; `None` when the file failed.
    files: HashMap<String, Option<Value>>,
    diagnostics: Vec<Diagnostic>,
    /// The (file, pointer) targets being expanded, to stop cycles.
    open: Vec<(String, String)>,
    depth: usize,
}

impl Bundler<'_> {
    /// Walks `value`, which sits at `at` in `file`; `base` is the main
    /// document's folder-relative path of `file`.
    fn walk(&mut self, value: &mut Value, at: &str, file: &str, local_of: &str) {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let message = format!("the bundled document nests deeper than {MAX_DEPTH} levels");
            self.report(Diagnostic::new("too-deep", at, message), file);
        } else {
            self.walk_node(value, at, file, local_of);
        }
        self.depth -= 1;
    }

    fn walk_node(&mut self, value: &mut Value, at: &str, file: &str, local_of: &str) {
        if let Some(reference) = ref_of(value).map(str::to_owned) {
            if let Some(replacement) = self.expand(&reference, at, file, local_of) {
                *value = replacement;
            }
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.walk(item, &child_pointer(at, key), file, local_of);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(item, &format!("{at}/{i}"), file, local_of);
                }
            }
            _ => {}
        }
    }

    /// The target of `reference` made self-contained, or `None` to leave
    /// the reference as it is.
    ///
    /// Local references stay local in the main document (`local_of` is
    /// empty); inside another file they are inlined, because they point into
    /// that file.
    fn expand(&mut self, reference: &str, at: &str, file: &str, local_of: &str) -> Option<Value> {
        let (file_part, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        if file_part.is_empty() && local_of.is_empty() {
            return None;
        }
        let ref_at = child_pointer(at, "$ref");
        let target_file = match file_part {
            "" => local_of.to_owned(),
            url if is_url(url) => url.to_owned(),
            relative if is_url(file) => join_url(file, relative),
            relative => resolve_path(file, relative),
        };
        if is_url(&target_file) && self.remote.is_none() {
            let message = format!(
                "remote reference `{reference}` is not fetched; supply the file with the document"
            );
            self.report(Diagnostic::new("remote-ref", ref_at, message), file);
            return None;
        }
        let key = (target_file.clone(), fragment.to_owned());
        if self.open.contains(&key) || self.open.len() >= MAX_OPEN {
            let message = format!(
                "reference `{reference}` loops through other files, which is not supported"
            );
            self.report(Diagnostic::new("ref-cycle", ref_at, message), file);
            return None;
        }
        let mut target = self.target(&target_file, fragment, reference, &ref_at, file)?;
        self.open.push(key);
        self.walk(&mut target, fragment, &target_file, &target_file);
        self.open.pop();
        Some(target)
    }

    fn target(
        &mut self,
        target_file: &str,
        fragment: &str,
        reference: &str,
        ref_at: &str,
        file: &str,
    ) -> Option<Value> {
        if !self.files.contains_key(target_file) {
            let parsed = self.parse(target_file, reference, ref_at, file);
            self.files.insert(target_file.to_owned(), parsed);
        }
        let document = self.files.get(target_file)?.as_ref()?;
        let pointer = percent_encoding::percent_decode_str(fragment).decode_utf8_lossy();
        match document.pointer(&pointer) {
            Some(found) => Some(found.clone()),
            None => {
                let message =
                    format!("reference `{reference}` points to nothing in `{target_file}`");
                self.report(Diagnostic::new("unresolved-ref", ref_at, message), file);
                None
            }
        }
    }

    fn parse(
        &mut self,
        target_file: &str,
        reference: &str,
        ref_at: &str,
        file: &str,
    ) -> Option<Value> {
        let loader = match (is_url(target_file), self.remote) {
            (true, Some(remote)) => remote,
            _ => self.loader,
        };
        let text = match loader.read(target_file) {
            Ok(text) => text,
            Err(reason) => {
                let message = format!("reference `{reference}` cannot be followed: {reason}");
                self.report(Diagnostic::new("unresolved-ref", ref_at, message), file);
                return None;
            }
        };
        match parse_text(&text) {
            Ok((value, _)) => Some(value),
            Err(error) => {
                for diagnostic in error.diagnostics {
                    self.report(diagnostic, target_file);
                }
                None
            }
        }
    }

    fn report(&mut self, mut diagnostic: Diagnostic, file: &str) {
        diagnostic.file = Some(file.to_owned());
        if !self.diagnostics.contains(&diagnostic) {
            self.diagnostics.push(diagnostic);
        }
    }
}

fn is_url(path: &str) -> bool {
    path.starts_with("http://") || path.starts_with("https://")
}

/// `relative` resolved against the URL of the file that refers to it.
fn join_url(base: &str, relative: &str) -> String {
    match url::Url::parse(base).and_then(|b| b.join(relative)) {
        Ok(joined) => joined.to_string(),
        Err(_) => relative.to_owned(),
    }
}

/// `relative` resolved against the folder of `file`, normalised.
fn resolve_path(file: &str, relative: &str) -> String {
    let folder = Path::new(file).parent().unwrap_or(Path::new(""));
    normalise(&folder.join(relative))
}

/// Removes `.` and folds `..` without touching the file system.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match parts.last().map(String::as_str) {
                Some(last) if last != ".." => {
                    parts.pop();
                }
                _ => parts.push("..".into()),
            },
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::RootDir => parts.push(String::new()),
            Component::Prefix(prefix) => {
                parts.push(prefix.as_os_str().to_string_lossy().into_owned())
            }
        }
    }
    parts.join("/")
}
