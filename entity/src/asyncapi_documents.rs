//! A registered AsyncAPI document: its resolved form and how it was bound.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One registered document.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "asyncapi_documents")]
pub struct Model {
    /// UUID of the document.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The template holding the source text.
    pub template_id: String,
    /// Unique name the registration gave.
    #[sea_orm(unique)]
    pub name: String,
    /// Version label the registration gave, if any.
    pub version: Option<String>,
    /// The `asyncapi` field, such as `3.0.0`.
    pub asyncapi_version: String,
    /// `info.title` of the document.
    pub title: String,
    /// `info.version` of the document.
    pub info_version: String,
    /// URL that replaced every server URL at registration, if any.
    pub base_url: Option<String>,
    /// The document with its local references resolved.
    pub spec: Json,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

/// Documents own channels, messages and brokers through their `document_id`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
