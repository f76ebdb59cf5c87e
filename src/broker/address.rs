//! Addresses: AsyncAPI address templates, concrete topics and topic filters.
//!
//! The gateway's canonical topic form is the AsyncAPI address itself, with
//! `/` between levels, `+` matching one level and `#` (last) matching the
//! rest, as in MQTT. Protocols with other rules map from this form.

use std::collections::BTreeMap;
use std::fmt;

/// Characters a parameter value may not contain, because they would change
/// the topic's structure or act as wildcards.
const FORBIDDEN_IN_VALUE: &[char] = &['/', '+', '#', '*', '>', '\0'];
/// Characters that make a topic a filter in some protocol (MQTT `+ #`,
/// AMQP and NATS `* #  >`); nothing is published to such an address.
const WILDCARDS: &[char] = &['+', '#', '*', '>'];
/// Longest concrete address: MQTT topics carry a 16-bit length, and no
/// supported protocol takes more.
const MAX_TOPIC_BYTES: usize = 65_535;

/// An address with `{parameter}` placeholders, such as `device/{id}/data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTemplate {
    raw: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Level {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Parameter(String),
}

/// Why an address could not be made concrete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A placeholder has no value.
    #[error("missing value for channel parameter `{0}`")]
    MissingParameter(String),
    /// The concrete address is longer than any protocol carries.
    #[error("the concrete address is {bytes} bytes long; at most 65535 are allowed")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// The channel's address is a wildcard filter, which cannot be
    /// published to.
    #[error("address `{0}` contains a wildcard (+ # * >) and cannot be published to")]
    Wildcard(String),
    /// A value would change the topic's structure.
    #[error("value of channel parameter `{name}` may not be empty or contain / + # * > (nor . or white space on NATS and AMQP)")]
    InvalidValue {
        /// The parameter's name.
        name: String,
    },
}

impl AddressTemplate {
    /// Parses `raw`; text between `{` and `}` names a parameter.
    pub fn parse(raw: &str) -> Self {
        let levels = raw.split('/').map(parse_level).collect();
        Self {
            raw: raw.to_owned(),
            levels,
        }
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The parameter names in the order they appear.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.levels
            .iter()
            .flat_map(|l| &l.parts)
            .filter_map(|p| match p {
                Part::Parameter(name) => Some(name.as_str()),
                Part::Literal(_) => None,
            })
    }

    /// The concrete address with every placeholder filled from `values`.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, AddressError> {
        self.render_in(values, Separators::Slash)
    }

    /// Like [`AddressTemplate::render`]; for protocols whose levels are
    /// also separated by `.`, a value may not contain `.` or white space
    /// either, so that it cannot reach another channel's address.
    pub fn render_in(
        &self,
        values: &BTreeMap<String, String>,
        separators: Separators,
    ) -> Result<String, AddressError> {
        check_values(values, separators)?;
        let mut out = String::with_capacity(self.raw.len() + 16);
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            for part in &level.parts {
                match part {
                    Part::Literal(text) => out.push_str(text),
                    Part::Parameter(name) => out.push_str(checked_value(name, values)?),
                }
            }
        }
        if out.len() > MAX_TOPIC_BYTES {
            return Err(AddressError::TooLong { bytes: out.len() });
        }
        if out.contains(WILDCARDS) {
            return Err(AddressError::Wildcard(out));
        }
        Ok(out)
    }

    /// The filter that receives every address this template can produce
    /// with the given values; a level with an unbound parameter becomes `+`.
    pub fn filter(&self, values: &BTreeMap<String, String>) -> Result<TopicFilter, AddressError> {
        self.filter_in(values, Separators::Slash)
    }

    /// Like [`AddressTemplate::filter`], for protocols whose levels are
    /// also separated by `.` (NATS, AMQP): an unbound parameter turns only
    /// its `.`-separated token into `+`.
    pub fn filter_in(
        &self,
        values: &BTreeMap<String, String>,
        separators: Separators,
    ) -> Result<TopicFilter, AddressError> {
        check_values(values, separators)?;
        let mut levels = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            levels.push(filter_level(&level.parts, values, separators)?);
        }
        Ok(TopicFilter(levels.join("/")))
    }

    /// The parameter values of `topic` if it is an address of this template.
    pub fn capture(&self, topic: &str) -> Option<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            capture_level(&level.parts, topic_levels.next()?, &mut values)?;
        }
        match topic_levels.next() {
            Some(_) => None,
            None => Some(values),
        }
    }
}

impl fmt::Display for AddressTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Which characters separate the levels a wildcard can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separators {
    /// `/` only (MQTT, the in-memory broker).
    Slash,
    /// `/` and `.` (NATS subjects, AMQP routing keys).
    SlashAndDot,
}

impl Separators {
    /// The separators of `protocol`'s topics.
    pub fn of(protocol: &str) -> Self {
        match protocol {
            "nats" | "amqp" => Separators::SlashAndDot,
            _ => Separators::Slash,
        }
    }
}

fn filter_level(
    parts: &[Part],
    values: &BTreeMap<String, String>,
    separators: Separators,
) -> Result<String, AddressError> {
    let mut text = String::new();
    // After a wildcard token, the rest of that token is skipped.
    let mut skipping = false;
    for part in parts {
        match part {
            Part::Literal(literal) if skipping => {
                if let Some(dot) = literal.find('.') {
                    text.push_str(&literal[dot..]);
                    skipping = false;
                }
            }
            Part::Literal(literal) => text.push_str(literal),
            Part::Parameter(name) if values.contains_key(name) => {
                if !skipping {
                    text.push_str(checked_value(name, values)?);
                }
            }
            Part::Parameter(_) if separators == Separators::Slash => return Ok("+".into()),
            Part::Parameter(_) => {
                if !skipping {
                    text.truncate(text.rfind('.').map_or(0, |dot| dot + 1));
                    text.push('+');
                    skipping = true;
                }
            }
        }
    }
    Ok(text)
}

/// For `.`-separated protocols, no value may hold `.` or white space.
fn check_values(
    values: &BTreeMap<String, String>,
    separators: Separators,
) -> Result<(), AddressError> {
    if separators == Separators::Slash {
        return Ok(());
    }
    let bad = values
        .iter()
        .find(|(_, v)| v.contains('.') || v.chars().any(char::is_whitespace));
    match bad {
        Some((name, _)) => Err(AddressError::InvalidValue { name: name.clone() }),
        None => Ok(()),
    }
}

fn checked_value<'v>(
    name: &str,
    values: &'v BTreeMap<String, String>,
) -> Result<&'v str, AddressError> {
    let value = values
        .get(name)
        .ok_or_else(|| AddressError::MissingParameter(name.to_owned()))?;
    if value.is_empty() || value.contains(FORBIDDEN_IN_VALUE) {
        return Err(AddressError::InvalidValue {
            name: name.to_owned(),
        });
    }
    Ok(value)
}

fn parse_level(level: &str) -> Level {
    let mut parts = Vec::new();
    let mut rest = level;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        parts.push(Part::Parameter(rest[open + 1..open + len].to_owned()));
        rest = &rest[open + len + 1..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Level { parts }
}

/// Matches one topic level against literal and parameter parts; a parameter
/// takes the shortest text up to the next literal (the rest, when last).
fn capture_level(parts: &[Part], text: &str, values: &mut BTreeMap<String, String>) -> Option<()> {
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
            Part::Parameter(name) => {
                let end = match parts.get(i + 1) {
                    Some(Part::Literal(next)) => rest.find(next.as_str())?,
                    _ => rest.len(),
                };
                if end == 0 {
                    return None;
                }
                values.insert(name.clone(), rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(())
}

/// A topic filter in the canonical form: `/` levels, `+` and a final `#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(String);

impl TopicFilter {
    /// Wraps a filter string already in canonical form.
    pub fn new(filter: impl Into<String>) -> Self {
        Self(filter.into())
    }

    /// The filter as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the filter has a wildcard level.
    pub fn is_wildcard(&self) -> bool {
        self.0.split('/').any(|level| level == "+" || level == "#")
    }

    /// Whether the concrete `topic` matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_levels = topic.split('/');
        for level in self.0.split('/') {
            match (level, topic_levels.next()) {
                ("#", _) => return true,
                (_, None) => return false,
                ("+", Some(_)) => {}
                (literal, Some(actual)) if literal == actual => {}
                (dotted, Some(actual)) if dotted.contains('.') => {
                    if !tokens_match(dotted, actual) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }
}

/// A `.`-separated level of a filter against a topic level, `+` matching
/// one token.
fn tokens_match(filter: &str, topic: &str) -> bool {
    let mut actual = topic.split('.');
    for token in filter.split('.') {
        match (token, actual.next()) {
            (_, None) => return false,
            ("+", Some(_)) => {}
            (expected, Some(found)) if expected == found => {}
            _ => return false,
        }
    }
    actual.next().is_none()
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The dotted form of a canonical topic or filter, for protocols whose
/// levels are separated by `.` (NATS subjects, AMQP routing keys): `/`
/// becomes `.`, `+` becomes `*`, and a final `#` becomes `rest`.
pub fn dotted(canonical: &str, rest: &str) -> String {
    canonical
        .split(['/', '.'])
        .map(|token| match token {
            "+" => "*",
            "#" => rest,
            literal => literal,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Reads a dotted topic back into the canonical form, using the shape of
/// the `filter` it arrived through: a literal level takes as many tokens as
/// it has, `+` one, and `#` the rest. `None` when the topic does not fit.
pub fn undotted(filter: &TopicFilter, topic: &str) -> Option<String> {
    let mut tokens = topic.split('.');
    let mut levels = Vec::new();
    for level in filter.as_str().split('/') {
        match level {
            "#" => {
                levels.extend(tokens.by_ref().map(str::to_owned));
                return Some(levels.join("/"));
            }
            "+" => levels.push(tokens.next()?.to_owned()),
            shaped => {
                let taken: Vec<&str> = tokens.by_ref().take(shaped.split('.').count()).collect();
                let joined = taken.join(".");
                if !tokens_match(shaped, &joined) {
                    return None;
                }
                levels.push(joined);
            }
        }
    }
    match tokens.next() {
        Some(_) => None,
        None => Some(levels.join("/")),
    }
}

/// `url` with its password replaced by `***`, for logs and responses.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
