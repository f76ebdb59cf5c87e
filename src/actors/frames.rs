//! What a subscriber is sent for one delivery, the same on every front.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::subscription::Delivery;
use crate::catalog::ChannelEntry;

/// The message a subscriber of `channel` with the `fixed` parameter values
/// receives for `delivery`, or `None` when the delivery is not for it (an
/// address of another channel, or other parameter values).
pub fn message_frame(
    channel: &ChannelEntry,
    fixed: &BTreeMap<String, String>,
    delivery: &Delivery,
) -> Option<Value> {
    let captured = channel.address.capture(&delivery.topic)?;
    if fixed
        .iter()
        .any(|(name, value)| captured.get(name) != Some(value))
    {
        return None;
    }
    let headers: serde_json::Map<String, Value> = delivery
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Some(json!({
        "type": "message",
        "id": delivery.event_id.as_deref(),
        "channel_id": channel.id,
        "message": message_name(channel, &delivery.payload),
        "address": &*delivery.topic,
        "parameters": captured,
        "payload": &*delivery.payload,
        "headers": headers,
        "received_at": delivery.received_at,
    }))
}

/// The name of the channel's message the payload is: the only one, or the
/// first whose schema it matches; `message` when none does.
pub fn message_name<'c>(channel: &'c ChannelEntry, payload: &Value) -> &'c str {
    match channel.messages.as_slice() {
        [only] => &only.row.name,
        several => several
            .iter()
            .find(|m| m.payload.as_ref().is_some_and(|v| v.is_valid(payload)))
            .map_or("message", |m| m.row.name.as_str()),
    }
}
