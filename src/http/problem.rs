//! The one place where errors become what clients see: RFC 9457 problem
//! documents (`application/problem+json`).

use actix_web::http::StatusCode;
use actix_web::{error, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Value};

use crate::broker::address::AddressError;
use crate::broker::BrokerError;
use crate::publish::{PublishError, PublishFailure};
use crate::registry::RegistryError;

/// A problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, constant summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Each problem found, where there are several (diagnostics, schema
    /// violations), each with its pointer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Value>,
    /// The channel parameter concerned, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The call-log record of a failed publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_log_id: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, kind: &str, title: &'static str, detail: String) -> Self {
        Self {
            kind: format!("urn:stepflow:problem:{kind}"),
            title,
            status: status.as_u16(),
            detail,
            errors: None,
            parameter: None,
            call_log_id: None,
        }
    }

    /// The problem a failed publish is reported as, on every front.
    pub fn from_publish(failure: &PublishFailure) -> Self {
        let detail = failure.error.to_string();
        let mut problem = match &failure.error {
            PublishError::UnknownChannel(_) => Self::new(
                StatusCode::NOT_FOUND,
                "unknown-channel",
                "Unknown channel",
                detail,
            ),
            PublishError::UnknownMessage(_) => Self::new(
                StatusCode::NOT_FOUND,
                "unknown-message",
                "Unknown message",
                detail,
            ),
            PublishError::Invalid { violations, .. } => {
                let mut p = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "Message does not match its schema",
                    detail,
                );
                p.errors = serde_json::to_value(violations).ok();
                p
            }
            PublishError::Address(error) => address_problem(error, detail),
            PublishError::InvalidParameter { name, .. } => {
                parameter_problem("invalid-parameter", name, detail)
            }
            PublishError::NoBroker => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Broker unavailable",
                detail,
            ),
            PublishError::Broker(error) => broker_problem(error),
            PublishError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
            }
            PublishError::ReservedHeader(name) => {
                let mut p = Self::new(
                    StatusCode::BAD_REQUEST,
                    "reserved-header",
                    "Header reserved for the gateway",
                    detail,
                );
                let pointer = format!("/headers/{}", name.replace('~', "~0").replace('/', "~1"));
                p.errors = Some(serde_json::json!([{ "pointer": pointer, "message": "reserved" }]));
                p
            }
        };
        problem.call_log_id = Some(failure.call_log_id.to_string());
        problem
    }
}

fn address_problem(error: &AddressError, detail: String) -> Problem {
    match error {
        AddressError::MissingParameter(name) => {
            parameter_problem("missing-parameter", name, detail)
        }
        AddressError::InvalidValue { name } => parameter_problem("invalid-parameter", name, detail),
        AddressError::TooLong { .. } | AddressError::Wildcard(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-address",
            "Address cannot be published to",
            detail,
        ),
    }
}

fn parameter_problem(kind: &str, name: &str, detail: String) -> Problem {
    let title = match kind {
        "missing-parameter" => "Missing channel parameter",
        _ => "Invalid channel parameter",
    };
    let mut problem = Problem::new(StatusCode::BAD_REQUEST, kind, title, detail);
    problem.parameter = Some(name.to_owned());
    problem
}

fn broker_problem(error: &BrokerError) -> Problem {
    let detail = error.to_string();
    match error {
        BrokerError::Unavailable(_) | BrokerError::Unsupported(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker-unavailable",
            "Broker unavailable",
            detail,
        ),
        BrokerError::Timeout(_) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "broker-timeout",
            "Broker did not acknowledge",
            detail,
        ),
        BrokerError::InvalidAddress(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-address",
            "Address cannot be published to",
            detail,
        ),
        BrokerError::Refused(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "broker-refused",
            "Broker refused the message",
            detail,
        ),
    }
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A publish failed.
    #[error("{}", .0.error)]
    Publish(PublishFailure),
    /// A registration or deletion failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A named resource does not exist.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// What kind of resource.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A channel parameter of a subscription is unknown or its value
    /// cannot be used.
    #[error("{detail}")]
    Parameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The request body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The request body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A field of the request body has the wrong shape or is missing.
    #[error("invalid JSON body at `{pointer}`: {message}")]
    MalformedField {
        /// JSON pointer to the field in the request body.
        pointer: String,
        /// What is wrong with it.
        message: String,
    },
    /// One field of a well-formed request has a value that cannot be used.
    #[error("{message}")]
    InvalidField {
        /// JSON pointer to the field in the request body.
        pointer: String,
        /// What is wrong with it.
        message: String,
    },
    /// The gateway cannot serve the request now.
    #[error("{0}")]
    Unavailable(String),
    /// No credentials, or credentials that do not hold.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        match error {
            crate::auth::AuthError::Unauthenticated(reason) => ApiError::Unauthenticated(reason),
            crate::auth::AuthError::Forbidden(reason) => ApiError::Forbidden(reason),
        }
    }
}

impl From<PublishFailure> for ApiError {
    fn from(failure: PublishFailure) -> Self {
        ApiError::Publish(failure)
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ApiError::Publish(failure) => Problem::from_publish(failure),
            ApiError::Registry(error) => registry_problem(error),
            ApiError::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            ApiError::BadRequest(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Malformed request",
                detail,
            ),
            ApiError::TooLarge(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
                detail,
            ),
            ApiError::UnsupportedMediaType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Request body must be JSON",
                detail,
            ),
            ApiError::MalformedField { pointer, message } => {
                let mut p = Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Malformed request",
                    detail,
                );
                p.errors = Some(json!([{ "pointer": pointer, "message": message }]));
                p
            }
            ApiError::Parameter { name, .. } => {
                parameter_problem("invalid-parameter", name, detail)
            }
            ApiError::InvalidField { pointer, message } => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-field",
                    "Invalid field value",
                    detail,
                );
                p.errors = Some(json!([{ "pointer": pointer, "message": message }]));
                p
            }
            ApiError::Unauthenticated(_) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                detail,
            ),
            ApiError::Forbidden(_) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
            }
            ApiError::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
            ),
            ApiError::Database(error) => {
                tracing::error!(%error, "database error while serving a request");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database",
                    "Database unavailable",
                    "the database failed; try again".into(),
                )
            }
        }
    }
}

fn registry_problem(error: &RegistryError) -> Problem {
    let detail = error.to_string();
    match error {
        RegistryError::InvalidRequest { field, .. } => {
            let mut p = Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid registration",
                detail,
            );
            p.errors =
                Some(json!([{ "pointer": format!("/{field}"), "message": error.to_string() }]));
            p
        }
        RegistryError::Invalid(load) => {
            let mut p = Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-asyncapi",
                "Not a valid AsyncAPI document",
                detail,
            );
            p.errors = serde_json::to_value(&load.diagnostics).ok();
            p
        }
        RegistryError::NameTaken(_) => Problem::new(
            StatusCode::CONFLICT,
            "name-taken",
            "Name already registered",
            detail,
        ),
        RegistryError::LoaderFailed => {
            tracing::error!("document loader stopped without an answer");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "loader",
                "Loader failed",
                detail,
            )
        }
        RegistryError::UnknownDocument(_) => {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
        }
        RegistryError::Database(error) => {
            tracing::error!(%error, "database error during registration");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database",
                "Database unavailable",
                "the database failed; nothing was stored".into(),
            )
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("www-authenticate", "Bearer"));
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            tracing::info!(status = status.as_u16(), detail = %problem.detail, "request refused");
        }
        response
            .content_type("application/problem+json")
            .json(problem)
    }
}

/// Maps a query string that does not parse.
pub fn query_error(err: error::QueryPayloadError, _req: &HttpRequest) -> error::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

/// Maps a path segment that does not parse.
pub fn path_error(err: error::PathError, _req: &HttpRequest) -> error::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

/// Answers routes that do not exist.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        what: "route",
        id: format!("{} {}", req.method(), req.path()),
    })
}

/// Answers a method a route does not support.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let detail = format!("this route supports {allow}");
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        detail,
    );
    HttpResponse::MethodNotAllowed()
        .insert_header(("allow", allow))
        .content_type("application/problem+json")
        .json(problem)
}
