//! Queries over `message_call_logs`.

use entity::message_call_logs::{self, ActiveModel, Column, Entity};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::actors::CallRecord;

/// Writes `records` in one transaction.
pub async fn insert_batch(db: &DatabaseConnection, records: Vec<CallRecord>) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let mut rows = records.into_iter().map(active_model).peekable();
    let txn = db.begin().await?;
    // Backends cap the bind parameters of one statement; 15 columns a row
    // keeps 200 rows well under every limit.
    while rows.peek().is_some() {
        let chunk: Vec<ActiveModel> = rows.by_ref().take(200).collect();
        Entity::insert_many(chunk).exec(&txn).await?;
    }
    txn.commit().await
}

/// Which call-log records to list.
#[derive(Debug, Default)]
pub struct LogFilter {
    /// Only this channel's.
    pub channel_id: Option<String>,
    /// Only this document's.
    pub document_id: Option<String>,
    /// Only this direction (`publish`, `receive`, `route`, `webhook`).
    pub direction: Option<String>,
    /// Only this status (`delivered`, `received`, `rejected`, `failed`).
    pub status: Option<String>,
    /// Only records made at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The newest records that pass `filter`, newest first.
pub async fn recent(
    db: &DatabaseConnection,
    filter: &LogFilter,
    limit: u64,
) -> Result<Vec<message_call_logs::Model>, DbErr> {
    let mut query = Entity::find().order_by_desc(Column::CreatedAt).limit(limit);
    let equal = [
        (Column::ChannelId, &filter.channel_id),
        (Column::DocumentId, &filter.document_id),
        (Column::Direction, &filter.direction),
        (Column::Status, &filter.status),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            query = query.filter(column.eq(value.as_str()));
        }
    }
    if let Some(since) = filter.since {
        query = query.filter(Column::CreatedAt.gte(since));
    }
    query.all(db).await
}

fn active_model(record: CallRecord) -> ActiveModel {
    ActiveModel {
        id: Set(record.id.into()),
        document_id: Set(record.document_id.map(Into::into)),
        channel_id: Set(record.channel_id.map(Into::into)),
        message_id: Set(record.message_id.map(Into::into)),
        broker_id: Set(record.broker_id.map(Into::into)),
        direction: Set(record.direction.to_owned()),
        address: Set(record.address),
        status: Set(record.status.to_owned()),
        error_kind: Set(record.error_kind.map(str::to_owned)),
        error: Set(record.error),
        latency_us: Set(record.latency_us),
        payload_bytes: Set(record.payload_bytes),
        payload: Set(record.payload),
        headers: Set(record.headers),
        created_at: Set(record.created_at),
    }
}
