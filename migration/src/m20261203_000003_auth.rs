//! Client authentication: API keys, and the owner of each webhook
//! subscription.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `api_keys` and adds `owner` to `webhook_subscriptions`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(string(ApiKeys::Id).primary_key())
                    .col(string(ApiKeys::Name))
                    .col(json(ApiKeys::Roles))
                    .col(text(ApiKeys::Hash))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .add_column(string_null(Webhooks::Owner))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .drop_column(Webhooks::Owner)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    #[sea_orm(iden = "api_keys")]
    Table,
    Id,
    Name,
    Roles,
    Hash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    #[sea_orm(iden = "webhook_subscriptions")]
    Table,
    Owner,
}
