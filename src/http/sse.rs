//! `GET /sse/{channel_id}`: a Server-Sent Events subscription to one
//! channel, with the semantics of `/ws/{channel_id}`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::auth::Caller;
use super::problem::ApiError;
use super::subscription::{query_parameters, Target};
use super::AppState;
use crate::actors::sse_session::SseSessionParts;
use crate::actors::SseSession;

/// Opens an event stream; query parameters fix channel parameters, and a
/// `Last-Event-ID` header resumes after that event.
pub async fn subscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    channel_id: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let fixed = query_parameters(query.into_inner());
    let target = Target::for_subscriber(&state, &caller.0, channel_id.into_inner(), &fixed)?;
    let resume_after = super::ws::last_event_id(&req);

    let (chunks_tx, chunks_rx) = mpsc::channel(state.config.sse.queue_capacity.max(1));
    let parts = SseSessionParts {
        channel: target.channel,
        fixed,
        filter: target.filter,
        connection: target.connection,
        resume_after,
        heartbeat: Duration::from_secs(state.config.sse.heartbeat_secs.max(1)),
        shutdown_rx: state.shutdown_rx.clone(),
        expires_at: caller.0.expires_at,
        call_log: state.call_log.clone(),
    };
    SseSession::start(parts, chunks_tx);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(ReceiverStream::new(chunks_rx)))
}
