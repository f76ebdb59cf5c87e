//! `/messages` and `/logs`: publish, message schemas, recent call logs.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::body::JsonBody;
use super::problem::ApiError;
use super::AppState;
use crate::publish::PublishRequest;
use crate::store;

/// `POST /messages/publish`: validates and publishes one message, replying
/// once the broker has taken it.
pub async fn publish(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let outcome = state
        .publisher
        .publish(body.into_inner(), &caller.0)
        .await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// `GET /messages/{id}/schema`: a message's resolved payload and headers
/// schemas.
pub async fn schema(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.load();
    let id = id.into_inner();
    let found = catalog
        .channels(None)
        .into_iter()
        .flat_map(|c| c.messages.iter().map(move |m| (c, m)))
        .find(|(_, m)| m.id.as_str() == id);
    let Some((channel, message)) = found else {
        return Err(ApiError::NotFound {
            what: "message",
            id,
        });
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": message.id,
        "name": message.row.name,
        "channel_id": channel.id,
        "schema_format": message.row.schema_format,
        "payload": message.row.payload_schema,
        "validation_schema": message.converted,
        "headers": message.row.headers_schema,
        "validated": message.payload.is_some(),
    })))
}

/// Filters of `GET /logs/recent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only records of this channel.
    channel_id: Option<String>,
    /// Only records of this document.
    asyncapi_document_id: Option<String>,
    /// Only this direction: `publish`, `receive`, `route`, `webhook`,
    /// `websocket` or `sse` (the last two: subscribers dropped).
    direction: Option<String>,
    /// Only this status: `delivered`, `received`, `rejected` or `failed`.
    status: Option<String>,
    /// Only records at or after this time (RFC 3339).
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// How many records at most (default 100, at most 1000).
    limit: Option<u64>,
}

/// `GET /logs/recent`: the newest call-log records.
pub async fn recent_logs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    // The log names every channel, address and callback URL, and holds
    // payloads when the config keeps them: it is for admins.
    state.auth.require_admin(&caller.0)?;
    let query = query.into_inner();
    let directions = ["publish", "receive", "route", "webhook", "websocket", "sse"];
    one_of("direction", query.direction.as_deref(), &directions)?;
    let statuses = ["delivered", "received", "rejected", "failed"];
    one_of("status", query.status.as_deref(), &statuses)?;
    let limit = query.limit.unwrap_or(100).min(1_000);
    let filter = store::call_logs::LogFilter {
        channel_id: query.channel_id,
        document_id: query.asyncapi_document_id,
        direction: query.direction,
        status: query.status,
        since: query.since,
    };
    let logs = store::call_logs::recent(&state.db, &filter, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "logs": logs, "dropped": state.call_log.dropped() })))
}

/// Refuses a filter value outside `allowed`, naming the parameter.
fn one_of(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(value) if !allowed.contains(&value) => Err(ApiError::BadRequest(format!(
            "query parameter `{name}` must be one of {}, not `{value}`",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Filters of `GET /logs/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLogQuery {
    /// Only events of this broker.
    broker_id: Option<String>,
    /// How many events at most (default 100, at most 1000).
    limit: Option<u64>,
}

/// `GET /logs/connections`: the newest connection events (connects,
/// disconnects, failed and refused attempts).
pub async fn connection_logs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ConnectionLogQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let limit = query.limit.unwrap_or(100).min(1_000);
    let events =
        store::connection_events::recent(&state.db, query.broker_id.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "events": events })))
}
