//! The AsyncAPI text exactly as it was registered.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One registered source text.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "asyncapi_templates")]
pub struct Model {
    /// UUID of the template.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Name the registration gave.
    pub name: String,
    /// Version label the registration gave, if any.
    pub version: Option<String>,
    /// The `asyncapi` field of the document, such as `2.6.0`.
    pub asyncapi_version: String,
    /// The source text as received.
    #[sea_orm(column_type = "Text")]
    pub content: String,
    /// `json` or `yaml`.
    pub content_format: String,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

/// Templates relate to documents through `asyncapi_documents.template_id`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
