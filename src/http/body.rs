//! JSON request bodies: read up to the configured limit, parsed with the
//! place of any error as a JSON pointer, so that a client learns which
//! field is wrong and not only a line and column.

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::problem::ApiError;
use super::AppState;

/// A request body parsed as JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(usize::MAX, |s| s.config.server.max_body_bytes);
        let checked = content_type_is_json(req).and_then(|()| declared_length(req, limit));
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::BadRequest(format!("request body could not be read: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit).into());
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(JsonBody).map_err(Into::into)
        })
    }
}

/// Refuses a body that is not declared as JSON.
fn content_type_is_json(req: &HttpRequest) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = declared.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    let got = match declared {
        "" => "none".to_owned(),
        other => format!("`{other}`"),
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "request body must be JSON with Content-Type: application/json (got {got})"
    )))
}

/// Refuses at once a body whose declared length is over the limit.
fn declared_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(length) if length > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
}

/// Parses `body`; a value of the wrong shape is reported at its pointer.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde takes a struct from an array of its fields in order too; a
    // request is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::MalformedField {
            pointer: String::new(),
            message: "the body must be a JSON object".into(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.classify() != Category::Data {
            return ApiError::BadRequest(format!("invalid JSON body: {inner}"));
        }
        let mut pointer = pointer_of(error.path());
        if let Some(field) = missing_field(&inner.to_string()) {
            pointer.push('/');
            pointer.push_str(&escape(field));
        }
        ApiError::MalformedField {
            message: without_position(&inner.to_string()).to_owned(),
            pointer,
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The JSON pointer of a path serde walked.
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        let step = match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => escape(key),
            Segment::Enum { variant } => escape(variant),
            Segment::Unknown => continue,
        };
        pointer.push('/');
        pointer.push_str(&step);
    }
    pointer
}

/// The field a "missing field" error names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde_json's message without its " at line L column C" ending: the
/// pointer says where.
fn without_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        count: u32,
    }

    fn refusal(body: &str) -> (String, String) {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::MalformedField { pointer, message }) => (pointer, message),
            Err(other) => (String::new(), other.to_string()),
            Ok(parsed) => panic!("accepted: {parsed:?}"),
        }
    }

    #[test]
    fn a_wrong_type_is_named_by_its_pointer() {
        let (pointer, message) =
            refusal(r#"{"name": "a", "items": [{"count": 1}, {"count": "2"}]}"#);
        assert_eq!(pointer, "/items/1/count");
        assert!(message.starts_with("invalid type: string"), "{message}");
    }

    #[test]
    fn a_missing_field_is_named_by_its_pointer() {
        let (pointer, message) = refusal(r#"{"name": "a", "items": [{}]}"#);
        assert_eq!(pointer, "/items/0/count");
        assert_eq!(message, "missing field `count`");
    }

    #[test]
    fn broken_json_names_its_line_and_column() {
        let (pointer, message) = refusal("{\"name\": \"a\",\n \"items\": [");
        assert_eq!(pointer, "");
        assert!(message.contains("line 2 column"), "{message}");
        let (_, trailing) = refusal(r#"{"name": "a", "items": []} extra"#);
        assert!(trailing.contains("trailing characters"), "{trailing}");
    }
}
