//! One channel of a registered document.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One channel row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_channels")]
pub struct Model {
    /// UUID of the channel.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The document that declares it.
    #[sea_orm(indexed)]
    pub document_id: String,
    /// The channel's key in the document (the address in 2.x, the id in 3.0).
    pub name: String,
    /// The address with its `{parameter}` placeholders.
    pub address: String,
    /// The channel's description, if any.
    pub description: Option<String>,
    /// Parameter name to its resolved definition (schema, location).
    pub parameters: Json,
    /// Channel bindings by protocol.
    pub bindings: Json,
    /// Operation bindings by protocol, merged over every operation on the channel.
    pub operation_bindings: Json,
    /// Whether the document lets clients send on this channel.
    pub client_publish: bool,
    /// Whether the document lets clients receive from this channel.
    pub client_subscribe: bool,
    /// The broker that carries the channel, if the document names one.
    pub broker_id: Option<String>,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

/// Channels belong to a document and refer to a broker by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
