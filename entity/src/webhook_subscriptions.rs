//! A webhook subscription: a channel's messages POSTed to a callback URL.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One webhook subscription row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_subscriptions")]
pub struct Model {
    /// UUID of the subscription.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The document of the channel; deleting it deletes the subscription.
    #[sea_orm(indexed)]
    pub document_id: String,
    /// The channel subscribed to.
    pub channel_id: String,
    /// Where each message is POSTed.
    pub callback_url: String,
    /// Parameter values that narrow the subscription, by name.
    pub parameters: Json,
    /// The key of the HMAC-SHA256 signature, when the subscriber gave one.
    /// It is needed to sign, so it is kept as given; no API returns it.
    pub secret: Option<String>,
    /// `active` or `paused`.
    pub state: String,
    /// Why it was paused.
    pub paused_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When its state last changed.
    pub updated_at: DateTimeUtc,
    /// The principal that created it, when authentication was on.
    pub owner: Option<String>,
    /// That principal's roles and claims (`{"roles": [..], "claims": {..}}`),
    /// against which each delivery is checked.
    pub owner_principal: Option<Json>,
}

/// Subscriptions refer to their channel and document by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
