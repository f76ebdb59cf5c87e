//! `GET /ws/{channel_id}`: a WebSocket subscription to one channel.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Caller;
use super::problem::ApiError;
use super::subscription::{query_parameters, Target};
use super::AppState;
use crate::actors::ws_session::WsSessionParts;
use crate::actors::WsSession;

/// Upgrades to a WebSocket subscribed to the channel; query parameters fix
/// channel parameters and the others match any value.
pub async fn subscribe(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
    channel_id: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let fixed = query_parameters(query.into_inner());
    let target = Target::for_subscriber(&state, &caller.0, channel_id.into_inner(), &fixed)?;

    let (mut response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A browser that sent its token as a protocol must see one of its
    // protocols chosen; `stepflow` is offered alongside for that.
    if offers_protocol(&req, "stepflow") {
        let chosen = actix_web::http::header::HeaderValue::from_static("stepflow");
        response
            .headers_mut()
            .insert(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL, chosen);
    }
    let max_frame = state.config.websocket.max_frame_bytes;
    let parts = WsSessionParts {
        channel: target.channel,
        fixed,
        filter: target.filter,
        connection: target.connection,
        publisher: state.publisher.clone(),
        principal: caller.0,
        queue_capacity: state.config.websocket.queue_capacity,
        max_frame_bytes: max_frame,
        shutdown_rx: state.shutdown_rx.clone(),
        resume_after: last_event_id(&req),
    };
    let stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    WsSession::start(parts, session, stream);
    Ok(response)
}

/// The `Last-Event-ID` header a resuming client sends, as on SSE.
pub fn last_event_id(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Whether the client offered `protocol` in `Sec-WebSocket-Protocol`.
fn offers_protocol(req: &HttpRequest, protocol: &str) -> bool {
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == protocol)
}
