//! Connection events: each broker connection's connects, disconnects and
//! failed or refused attempts, kept like the call log, and an index on the
//! call log's time for retention.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `connection_events` and indexes both logs by time.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConnectionEvents::Table)
                    .if_not_exists()
                    .col(string(ConnectionEvents::Id).primary_key())
                    .col(string(ConnectionEvents::BrokerId))
                    .col(string(ConnectionEvents::Protocol))
                    .col(string(ConnectionEvents::Url))
                    .col(string(ConnectionEvents::Event))
                    .col(text_null(ConnectionEvents::Detail))
                    .col(timestamp_with_time_zone(ConnectionEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connection_events_created_at")
                    .table(ConnectionEvents::Table)
                    .col(ConnectionEvents::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_message_call_logs_created_at")
                    .table(CallLogs::Table)
                    .col(CallLogs::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_message_call_logs_created_at")
                    .table(CallLogs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ConnectionEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ConnectionEvents {
    Table,
    Id,
    BrokerId,
    Protocol,
    Url,
    Event,
    Detail,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CallLogs {
    #[sea_orm(iden = "message_call_logs")]
    Table,
    CreatedAt,
}
