//! Webhook subscriptions: consumers of a channel that receive its messages
//! as HTTP POSTs, kept across restarts.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `webhook_subscriptions`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(string(Webhooks::Id).primary_key())
                    .col(string(Webhooks::DocumentId))
                    .col(string(Webhooks::ChannelId))
                    .col(text(Webhooks::CallbackUrl))
                    .col(json(Webhooks::Parameters))
                    .col(text_null(Webhooks::Secret))
                    .col(string(Webhooks::State))
                    .col(text_null(Webhooks::PausedReason))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .col(timestamp_with_time_zone(Webhooks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_subscriptions_document")
                    .table(Webhooks::Table)
                    .col(Webhooks::DocumentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Webhooks {
    #[sea_orm(iden = "webhook_subscriptions")]
    Table,
    Id,
    DocumentId,
    ChannelId,
    CallbackUrl,
    Parameters,
    Secret,
    State,
    PausedReason,
    CreatedAt,
    UpdatedAt,
}
