//! One event in the life of a broker connection.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One connection event row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "connection_events")]
pub struct Model {
    /// UUID of the event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The broker connection.
    pub broker_id: String,
    /// Its protocol.
    pub protocol: String,
    /// Its URL, with any password masked.
    pub url: String,
    /// `connected`, `disconnected`, `connect_failed` or `auth_failed`.
    pub event: String,
    /// Why, for a disconnect or a failure.
    pub detail: Option<String>,
    /// When it happened.
    pub created_at: DateTimeUtc,
}

/// Events refer to their broker by id only.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
