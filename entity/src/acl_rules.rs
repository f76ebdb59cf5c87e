//! An access rule added through the admin API.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One stored access rule.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "acl_rules")]
pub struct Model {
    /// The rule's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The rule itself, as the config writes one: who, which channels,
    /// which actions.
    pub rule: Json,
    /// The principal that added it.
    pub created_by: String,
    /// When it was added.
    pub created_at: DateTimeUtc,
}

/// Rules stand alone.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
