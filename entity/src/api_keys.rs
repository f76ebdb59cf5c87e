//! An API key: its holder's name and roles, and the hash of its secret.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One API key row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// The key's id, which is also part of the key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The principal the key authenticates as.
    pub name: String,
    /// The principal's roles, a JSON array of strings.
    pub roles: Json,
    /// Argon2id hash of the key's secret, in PHC form; the secret itself is
    /// not kept.
    pub hash: String,
    /// When it was issued.
    pub created_at: DateTimeUtc,
}

/// Keys stand alone.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
