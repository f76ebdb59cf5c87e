//! Queries over `webhook_subscriptions`.

use chrono::Utc;
use entity::webhook_subscriptions::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

/// Stores a new subscription.
pub async fn insert(db: &DatabaseConnection, row: Model) -> Result<(), DbErr> {
    Entity::insert(ActiveModel::from(row)).exec(db).await?;
    Ok(())
}

/// Every subscription, oldest first.
pub async fn all(db: &DatabaseConnection) -> Result<Vec<Model>, DbErr> {
    Entity::find().order_by_asc(Column::CreatedAt).all(db).await
}

/// Removes one subscription; false when there was none of that id.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<bool, DbErr> {
    let result = Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(result.rows_affected > 0)
}

/// Removes the subscriptions of a document's channels, in the caller's
/// transaction.
pub async fn delete_of_document<C: ConnectionTrait>(
    db: &C,
    document_id: &str,
) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::DocumentId.eq(document_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Records that a subscription is paused for `reason`, or active again
/// when `reason` is `None`; false when there is no such subscription.
pub async fn set_paused(
    db: &DatabaseConnection,
    id: &str,
    reason: Option<String>,
) -> Result<bool, DbErr> {
    let state = if reason.is_some() { "paused" } else { "active" };
    let result = Entity::update_many()
        .col_expr(Column::State, state.into())
        .col_expr(Column::PausedReason, reason.into())
        .col_expr(Column::UpdatedAt, Utc::now().into())
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}
