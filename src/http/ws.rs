//! `GET /ws/{channel_id}`: a WebSocket subscription to one channel.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::problem::ApiError;
use super::AppState;
use crate::actors::ws_session::WsSessionParts;
use crate::actors::WsSession;
use crate::ids::ChannelId;
use crate::publish::check_parameter;

/// Upgrades to a WebSocket subscribed to the channel; query parameters fix
/// channel parameters and the others match any value.
pub async fn subscribe(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.load();
    let id = ChannelId::from(channel_id.into_inner());
    let channel = catalog
        .channel(&id)
        .ok_or_else(|| ApiError::NotFound {
            what: "channel",
            id: id.to_string(),
        })?
        .clone();
    let fixed = query.into_inner();
    if let Some(unknown) = fixed
        .keys()
        .find(|name| !channel.parameters.contains_key(*name))
    {
        let known: Vec<&str> = channel.parameters.keys().map(String::as_str).collect();
        return Err(ApiError::BadRequest(format!(
            "`{unknown}` is not a parameter of channel `{}`; its parameters: [{}]",
            channel.row.name,
            known.join(", ")
        )));
    }
    for (name, value) in &fixed {
        let validator = channel
            .parameters
            .get(name)
            .and_then(|p| p.validator.as_ref());
        if let Some(validator) = validator {
            check_parameter(validator, name, value)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
    }
    let filter = channel
        .address
        .filter(&fixed)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let broker = channel
        .broker
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("channel has no broker".into()))?;
    let connection = catalog
        .connection(&broker.id)
        .ok_or_else(|| ApiError::NotFound {
            what: "broker connection",
            id: broker.id.clone(),
        })?
        .clone();
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let max_frame = state.config.websocket.max_frame_bytes;
    let parts = WsSessionParts {
        channel,
        fixed,
        filter,
        connection,
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
