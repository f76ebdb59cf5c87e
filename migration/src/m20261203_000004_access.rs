//! Access rules added through the admin API, beside those of the config,
//! and the roles and claims of each webhook subscription's owner, against
//! which its deliveries are checked.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `acl_rules` and adds `owner_principal` to
/// `webhook_subscriptions`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AclRules::Table)
                    .if_not_exists()
                    .col(string(AclRules::Id).primary_key())
                    .col(json(AclRules::Rule))
                    .col(string(AclRules::CreatedBy))
                    .col(timestamp_with_time_zone(AclRules::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .add_column(json_null(Webhooks::OwnerPrincipal))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .drop_column(Webhooks::OwnerPrincipal)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AclRules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AclRules {
    Table,
    Id,
    Rule,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    #[sea_orm(iden = "webhook_subscriptions")]
    Table,
    OwnerPrincipal,
}
