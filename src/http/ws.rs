//! `GET /ws/{channel_id}`: a WebSocket subscription to one channel.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};

use super::problem::ApiError;
use super::AppState;
use crate::actors::ws_session::WsSessionParts;
use crate::actors::{BrokerConnection, WsSession};
use crate::broker::{Separators, TopicFilter};
use crate::catalog::{Catalog, ChannelEntry};
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

/// What a subscription needs, checked before the upgrade so that a bad
/// request gets an HTTP problem document rather than a closed socket.
struct Target {
    channel: Arc<ChannelEntry>,
    filter: TopicFilter,
    connection: Addr<BrokerConnection>,
}

impl Target {
    fn resolve(
        catalog: &Catalog,
        channel_id: String,
        fixed: &BTreeMap<String, String>,
    ) -> Result<Self, ApiError> {
        let id = ChannelId::from(channel_id);
        let not_found = || ApiError::NotFound {
            what: "channel",
            id: id.to_string(),
        };
        let channel = catalog.channel(&id).ok_or_else(not_found)?.clone();
        check_fixed(&channel, fixed)?;

        let broker = channel
            .broker
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("channel has no broker".into()))?;
        let separators = Separators::of(&broker.protocol);
        let filter = channel
            .address
            .filter_in(fixed, separators)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let connection =
            catalog
                .connection(&broker.id)
                .cloned()
                .ok_or_else(|| ApiError::NotFound {
                    what: "broker connection",
                    id: broker.id.clone(),
                })?;
        Ok(Self {
            channel,
            filter,
            connection,
        })
    }
}

/// Every fixed value names a parameter of the channel and matches its
/// schema.
fn check_fixed(channel: &ChannelEntry, fixed: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in fixed {
        let Some(parameter) = channel.parameters.get(name) else {
            let known: Vec<&str> = channel.parameters.keys().map(String::as_str).collect();
            return Err(ApiError::BadRequest(format!(
                "`{name}` is not a parameter of channel `{}`; its parameters: [{}]",
                channel.row.name,
                known.join(", ")
            )));
        };
        if let Some(validator) = &parameter.validator {
            check_parameter(validator, name, value)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
    }
    Ok(())
}
