//! Queries over `api_keys`.

use entity::api_keys::{ActiveModel, Column, Entity, Model};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryOrder};

/// Stores a new key.
pub async fn insert(db: &DatabaseConnection, row: Model) -> Result<(), DbErr> {
    Entity::insert(ActiveModel::from(row)).exec(db).await?;
    Ok(())
}

/// One key by id.
pub async fn find(db: &DatabaseConnection, id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id.to_owned()).one(db).await
}

/// Every key, oldest first.
pub async fn all(db: &DatabaseConnection) -> Result<Vec<Model>, DbErr> {
    Entity::find().order_by_asc(Column::CreatedAt).all(db).await
}

/// Revokes one key; false when there was none of that id.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<bool, DbErr> {
    let result = Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(result.rows_affected > 0)
}
