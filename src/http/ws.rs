//! `GET /ws/{channel_id}`: a WebSocket subscription to one channel.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::problem::ApiError;
use super::subscription::Target;
use super::AppState;
use crate::actors::ws_session::WsSessionParts;
use crate::actors::WsSession;

/// Upgrades to a WebSocket subscribed to the channel; query parameters fix
/// channel parameters and the others match any value.
pub async fn subscribe(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let fixed = query.into_inner();
    let target = Target::resolve(&state.catalog.load(), channel_id.into_inner(), &fixed)?;

    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let max_frame = state.config.websocket.max_frame_bytes;
    let parts = WsSessionParts {
        channel: target.channel,
        fixed,
        filter: target.filter,
        connection: target.connection,
        publisher: state.publisher.clone(),
        queue_capacity: state.config.websocket.queue_capacity,
        shutdown_rx: state.shutdown_rx.clone(),
    };
    let stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    WsSession::start(parts, session, stream);
    Ok(response)
}
