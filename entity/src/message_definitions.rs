//! One message a channel can carry, with its payload schema.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One message definition row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_definitions")]
pub struct Model {
    /// UUID of the message definition.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The document that declares it.
    #[sea_orm(indexed)]
    pub document_id: String,
    /// The channel that carries it.
    #[sea_orm(indexed)]
    pub channel_id: String,
    /// The message's name (its `name`, `messageId` or component key).
    pub name: String,
    /// The message's title, if any.
    pub title: Option<String>,
    /// The message's content type, or the document's default.
    pub content_type: Option<String>,
    /// The payload's `schemaFormat`, if the document sets one.
    pub schema_format: Option<String>,
    /// The resolved payload schema.
    pub payload_schema: Option<Json>,
    /// The resolved headers schema.
    pub headers_schema: Option<Json>,
    /// Message bindings by protocol.
    pub bindings: Json,
    /// Whether clients may send this message.
    pub client_publish: bool,
    /// Whether clients may receive this message.
    pub client_subscribe: bool,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

/// Message definitions belong to a channel.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
