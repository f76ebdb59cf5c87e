//! Queries over `connection_events`.

use entity::connection_events::{self, ActiveModel, Column, Entity};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::actors::log_writer::ConnectionEvent;

/// Writes `events` in one transaction.
pub async fn insert_batch(
    db: &DatabaseConnection,
    events: Vec<ConnectionEvent>,
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<ActiveModel> = events
        .into_iter()
        .map(|event| ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            broker_id: Set(event.broker_id.into()),
            protocol: Set(event.protocol),
            url: Set(event.url),
            event: Set(event.event.to_owned()),
            detail: Set(event.detail),
            created_at: Set(event.at),
        })
        .collect();
    let txn = db.begin().await?;
    for chunk in rows.chunks(500) {
        Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
    }
    txn.commit().await
}

/// The newest events, newest first, optionally of one broker.
pub async fn recent(
    db: &DatabaseConnection,
    broker_id: Option<&str>,
    limit: u64,
) -> Result<Vec<connection_events::Model>, DbErr> {
    let mut query = Entity::find().order_by_desc(Column::CreatedAt).limit(limit);
    if let Some(broker_id) = broker_id {
        query = query.filter(Column::BrokerId.eq(broker_id));
    }
    query.all(db).await
}
