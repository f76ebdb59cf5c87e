//! One server of a registered document: a broker the gateway connects to.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One broker row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_brokers")]
pub struct Model {
    /// UUID of the broker.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The document that declares it.
    #[sea_orm(indexed)]
    pub document_id: String,
    /// The server's key in the document.
    pub server_name: String,
    /// The URL the gateway connects to, variables resolved.
    pub url: String,
    /// The protocol, such as `mqtt` or `memory`.
    pub protocol: String,
    /// The protocol version, if the document gives one.
    pub protocol_version: Option<String>,
    /// The server's description, if any.
    pub description: Option<String>,
    /// Server bindings by protocol.
    pub bindings: Json,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

/// Brokers belong to a document.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
