//! `/messages/statistics`, `/messages/stream` and `/metrics`: what the
//! gateway has done, per channel and broker, as it happens, and as
//! Prometheus series. All are for admins when authentication is on, since
//! they name every channel and broker.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{IntervalStream, ReceiverStream};

use super::auth::Caller;
use super::problem::ApiError;
use super::AppState;
use crate::actors::stats::{GetStatistics, Watch};
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

/// Filters of `GET /messages/stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only events of this document.
    asyncapi_document_id: Option<String>,
    /// Only events of this channel.
    channel_id: Option<String>,
}

/// `GET /messages/stream`: Server-Sent Events of message events, resumed
/// after `Last-Event-ID` from the events the gateway still keeps, with
/// heartbeat comments while idle.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let query = query.into_inner();
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let (tx, rx) = mpsc::channel(state.config.sse.queue_capacity.max(1));
    let watch = Watch {
        document: query.asyncapi_document_id.map(DocumentId::from),
        channel: query.channel_id.map(ChannelId::from),
        after,
        tx,
    };
    state
        .call_log
        .stats()
        .send(watch)
        .await
        .map_err(|_| ApiError::Unavailable("the event stream is not available".into()))?;
    let heartbeat = Duration::from_secs(state.config.sse.heartbeat_secs.max(1));
    let events = ReceiverStream::new(rx);
    let beats = IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat,
        heartbeat,
    ))
    .map(|_| ": heartbeat\n\n".to_owned());
    // The stream ends when the gateway stops, or when the Stats actor lets
    // a client that fell behind go.
    let mut shutdown = state.shutdown_rx.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let body = futures_util::stream::select(events, beats)
        .take_until(stopping)
        .map(|text| Ok::<_, actix_web::Error>(web::Bytes::from(text)));
    let opened = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from_static(b": stream open\n\n"))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(opened.chain(body)))
}
