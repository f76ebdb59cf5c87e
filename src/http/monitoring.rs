//! `/messages/statistics` and `/metrics`: what the gateway has done, per
//! channel and broker and as Prometheus series. Both are for admins when
//! authentication is on, since they name every channel and broker.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::Caller;
use super::problem::ApiError;
use super::AppState;
use crate::actors::stats::GetStatistics;
use crate::actors::supervisor::AllStatus;
use crate::ids::{ChannelId, DocumentId};

/// Filters of `GET /messages/statistics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticsQuery {
    /// Only channels of this document, and the brokers they use.
    asyncapi_document_id: Option<String>,
    /// Only this channel, and the brokers it uses.
    channel_id: Option<String>,
}

/// `GET /messages/statistics`: counts, bytes, throughput, error rate and
/// latency per channel and per broker.
pub async fn statistics(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<StatisticsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let query = query.into_inner();
    let asked = GetStatistics {
        document: query.asyncapi_document_id.map(DocumentId::from),
        channel: query.channel_id.map(ChannelId::from),
    };
    let mut figures = state
        .call_log
        .stats()
        .send(asked)
        .await
        .map_err(|_| ApiError::Unavailable("the statistics are not available".into()))?;
    figures["call_log"] = serde_json::json!({ "dropped": state.call_log.dropped() });
    Ok(HttpResponse::Ok().json(figures))
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let brokers = state.supervisor.send(AllStatus).await.unwrap_or_default();
    let text = state.call_log.metrics().render(&brokers);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
