//! What WebSocket and SSE subscriptions share: finding the channel, its
//! broker connection and the filter, before the response starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;

use super::problem::ApiError;
use super::AppState;
use crate::actors::BrokerConnection;
use crate::auth::{AccessRequest, Action, Auth, Principal};
use crate::broker::address::AddressError;
use crate::broker::{Separators, TopicFilter};
use crate::catalog::{Catalog, ChannelEntry};
use crate::ids::{ChannelId, DocumentId};
use crate::publish::check_parameter;

/// What a subscription needs, checked before the upgrade so that a bad
/// request gets an HTTP problem document rather than a closed socket.
pub struct Target {
    /// The channel.
    pub channel: Arc<ChannelEntry>,
    /// The filter the fixed parameters give.
    pub filter: TopicFilter,
    /// The channel's broker connection.
    pub connection: Addr<BrokerConnection>,
}

impl Target {
    /// Checks the request against the catalog.
    pub fn resolve(
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
        Self::for_channel(catalog, channel, fixed)
    }

    /// The target on `channel` itself, which may be one no document
    /// declares (a route's raw address).
    pub fn for_channel(
        catalog: &Catalog,
        channel: Arc<ChannelEntry>,
        fixed: &BTreeMap<String, String>,
    ) -> Result<Self, ApiError> {
        check_fixed(&channel, fixed)?;

        let broker = channel
            .broker
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("channel has no broker".into()))?;
        let separators = Separators::of(&broker.protocol);
        let filter = channel
            .address
            .filter_in(fixed, separators)
            .map_err(|e| match &e {
                AddressError::InvalidValue { name } => ApiError::Parameter {
                    name: name.clone(),
                    detail: e.to_string(),
                },
                _ => ApiError::BadRequest(e.to_string()),
            })?;
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

impl Target {
    /// The target of a subscription `principal` asks for, once the channel
    /// and parameter values check out and the access rules allow it.
    pub fn for_subscriber(
        state: &AppState,
        principal: &Principal,
        channel_id: String,
        fixed: &BTreeMap<String, String>,
    ) -> Result<Self, ApiError> {
        let catalog = state.catalog.load();
        let target = Self::resolve(&catalog, channel_id, fixed)?;
        target.authorize(&catalog, &state.auth, principal, fixed)?;
        Ok(target)
    }

    /// Refuses a principal that may not subscribe to the channel with these
    /// parameter values (absent ones mean every value).
    pub fn authorize(
        &self,
        catalog: &Catalog,
        auth: &Auth,
        principal: &Principal,
        fixed: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let document_id = DocumentId::from(self.channel.row.document_id.clone());
        let document = catalog.document(&document_id);
        let messages: Vec<&str> = self
            .channel
            .messages
            .iter()
            .map(|m| m.row.name.as_str())
            .collect();
        let request = AccessRequest {
            action: Action::Subscribe,
            document: document.map_or("", |d| d.row.name.as_str()),
            address: &self.channel.row.address,
            parameters: fixed,
            messages: &messages,
        };
        Ok(auth.authorize(principal, &request)?)
    }
}

/// The channel parameter values of a WebSocket or SSE query: every query
/// parameter but `access_token`, which carries a credential.
pub fn query_parameters(mut query: BTreeMap<String, String>) -> BTreeMap<String, String> {
    query.remove("access_token");
    query
}

/// Every fixed value names a parameter of the channel and matches its
/// schema.
fn check_fixed(channel: &ChannelEntry, fixed: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in fixed {
        let Some(parameter) = channel.parameters.get(name) else {
            let known: Vec<&str> = channel.parameters.keys().map(String::as_str).collect();
            return Err(ApiError::Parameter {
                name: name.clone(),
                detail: format!(
                    "`{name}` is not a parameter of channel `{}`; its parameters: [{}]",
                    channel.row.name,
                    known.join(", ")
                ),
            });
        };
        if let Some(validator) = &parameter.validator {
            check_parameter(validator, name, value).map_err(|e| ApiError::Parameter {
                name: name.clone(),
                detail: e.to_string(),
            })?;
        }
    }
    Ok(())
}
