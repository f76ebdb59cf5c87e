//! One record per publish or receipt that passed through the gateway.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One call-log row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_call_logs")]
pub struct Model {
    /// UUID of the record, returned to the publisher.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The document of the channel, when the channel was known.
    pub document_id: Option<String>,
    /// The channel, when it was known.
    #[sea_orm(indexed)]
    pub channel_id: Option<String>,
    /// The message definition, when one was selected.
    pub message_id: Option<String>,
    /// The broker, when the call reached one.
    pub broker_id: Option<String>,
    /// `publish`, `receive` or `webhook` (a delivery to a webhook).
    pub direction: String,
    /// The concrete address, when it could be resolved.
    pub address: Option<String>,
    /// `delivered`, `rejected` or `failed`.
    pub status: String,
    /// Why it was rejected or failed, as a short kind such as `validation`.
    pub error_kind: Option<String>,
    /// The reason in words.
    pub error: Option<String>,
    /// Time from request to broker acknowledgement, in microseconds.
    pub latency_us: Option<i64>,
    /// Size of the payload in bytes.
    pub payload_bytes: i64,
    /// The payload, when the config keeps payloads.
    pub payload: Option<Json>,
    /// Headers sent with the message.
    pub headers: Option<Json>,
    /// When the call happened.
    #[sea_orm(indexed)]
    pub created_at: DateTimeUtc,
}

/// Call logs refer to channels and brokers by id only, so they outlive them.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
