//! Retention of the logs: rows older than the configured age go, and so
//! do the oldest beyond the configured count.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// Deletes the rows of `E` whose `created_at` is before `cutoff`, then the
/// oldest beyond `max_rows` (0 keeps any number); answers how many went.
/// Rows that share the boundary's time go together, so at most `max_rows`
/// stay.
pub async fn prune<E>(
    db: &DatabaseConnection,
    created_at: E::Column,
    cutoff: DateTime<Utc>,
    max_rows: u64,
) -> Result<u64, DbErr>
where
    E: EntityTrait,
{
    let mut removed = E::delete_many()
        .filter(created_at.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected;
    if max_rows > 0 {
        let boundary: Option<DateTime<Utc>> = E::find()
            .select_only()
            .column(created_at)
            .order_by_desc(created_at)
            .offset(max_rows)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        if let Some(at) = boundary {
            removed += E::delete_many()
                .filter(created_at.lte(at))
                .exec(db)
                .await?
                .rows_affected;
        }
    }
    Ok(removed)
}
