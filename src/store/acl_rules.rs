//! Queries over `acl_rules`.

use entity::acl_rules::{ActiveModel, Column, Entity, Model};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryOrder};

use crate::auth::acl::StoredRule;

/// Stores a new rule.
pub async fn insert(db: &DatabaseConnection, rule: &StoredRule) -> Result<(), DbErr> {
    let encoded = serde_json::to_value(&rule.rule).map_err(|e| DbErr::Json(e.to_string()))?;
    let row = Model {
        id: rule.id.clone(),
        rule: encoded,
        created_by: rule.created_by.clone(),
        created_at: rule.created_at,
    };
    Entity::insert(ActiveModel::from(row)).exec(db).await?;
    Ok(())
}

/// Every rule, oldest first. A row that no longer reads as a rule is an
/// error: skipping it could silently take away a grant, or keep one that
/// was meant to go.
pub async fn all(db: &DatabaseConnection) -> Result<Vec<StoredRule>, DbErr> {
    let rows = Entity::find()
        .order_by_asc(Column::CreatedAt)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            let rule = serde_json::from_value(row.rule)
                .map_err(|e| DbErr::Json(format!("access rule `{}`: {e}", row.id)))?;
            Ok(StoredRule {
                id: row.id,
                rule,
                created_by: row.created_by,
                created_at: row.created_at,
            })
        })
        .collect()
}

/// Removes one rule; false when there was none of that id.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<bool, DbErr> {
    let result = Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(result.rows_affected > 0)
}
