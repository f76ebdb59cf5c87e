//! The core tables: templates, documents, channels, messages, brokers, call logs.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the tables of the document model and the call log.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(templates()).await?;
        manager.create_table(documents()).await?;
        manager.create_table(channels()).await?;
        manager.create_table(definitions()).await?;
        manager.create_table(brokers()).await?;
        manager.create_table(call_logs()).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alias::new("message_call_logs"),
            Alias::new("message_brokers"),
            Alias::new("message_definitions"),
            Alias::new("message_channels"),
            Alias::new("asyncapi_documents"),
            Alias::new("asyncapi_templates"),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn templates() -> TableCreateStatement {
    Table::create()
        .table(Templates::Table)
        .if_not_exists()
        .col(string(Templates::Id).primary_key())
        .col(string(Templates::Name))
        .col(string_null(Templates::Version))
        .col(string(Templates::AsyncapiVersion))
        .col(text(Templates::Content))
        .col(string(Templates::ContentFormat))
        .col(timestamp_with_time_zone(Templates::CreatedAt))
        .to_owned()
}

fn documents() -> TableCreateStatement {
    Table::create()
        .table(Documents::Table)
        .if_not_exists()
        .col(string(Documents::Id).primary_key())
        .col(string(Documents::TemplateId))
        .col(string_uniq(Documents::Name))
        .col(string_null(Documents::Version))
        .col(string(Documents::AsyncapiVersion))
        .col(string(Documents::Title))
        .col(string(Documents::InfoVersion))
        .col(string_null(Documents::BaseUrl))
        .col(json(Documents::Spec))
        .col(timestamp_with_time_zone(Documents::CreatedAt))
        .to_owned()
}

fn channels() -> TableCreateStatement {
    Table::create()
        .table(Channels::Table)
        .if_not_exists()
        .col(string(Channels::Id).primary_key())
        .col(string(Channels::DocumentId))
        .col(string(Channels::Name))
        .col(string(Channels::Address))
        .col(text_null(Channels::Description))
        .col(json(Channels::Parameters))
        .col(json(Channels::Bindings))
        .col(json(Channels::OperationBindings))
        .col(boolean(Channels::ClientPublish))
        .col(boolean(Channels::ClientSubscribe))
        .col(string_null(Channels::BrokerId))
        .col(timestamp_with_time_zone(Channels::CreatedAt))
        .to_owned()
}

fn definitions() -> TableCreateStatement {
    Table::create()
        .table(Definitions::Table)
        .if_not_exists()
        .col(string(Definitions::Id).primary_key())
        .col(string(Definitions::DocumentId))
        .col(string(Definitions::ChannelId))
        .col(string(Definitions::Name))
        .col(string_null(Definitions::Title))
        .col(string_null(Definitions::ContentType))
        .col(string_null(Definitions::SchemaFormat))
        .col(json_null(Definitions::PayloadSchema))
        .col(json_null(Definitions::HeadersSchema))
        .col(json(Definitions::Bindings))
        .col(boolean(Definitions::ClientPublish))
        .col(boolean(Definitions::ClientSubscribe))
        .col(timestamp_with_time_zone(Definitions::CreatedAt))
        .to_owned()
}

fn brokers() -> TableCreateStatement {
    Table::create()
        .table(Brokers::Table)
        .if_not_exists()
        .col(string(Brokers::Id).primary_key())
        .col(string(Brokers::DocumentId))
        .col(string(Brokers::ServerName))
        .col(string(Brokers::Url))
        .col(string(Brokers::Protocol))
        .col(string_null(Brokers::ProtocolVersion))
        .col(text_null(Brokers::Description))
        .col(json(Brokers::Bindings))
        .col(timestamp_with_time_zone(Brokers::CreatedAt))
        .to_owned()
}

fn call_logs() -> TableCreateStatement {
    Table::create()
        .table(CallLogs::Table)
        .if_not_exists()
        .col(string(CallLogs::Id).primary_key())
        .col(string_null(CallLogs::DocumentId))
        .col(string_null(CallLogs::ChannelId))
        .col(string_null(CallLogs::MessageId))
        .col(string_null(CallLogs::BrokerId))
        .col(string(CallLogs::Direction))
        .col(string_null(CallLogs::Address))
        .col(string(CallLogs::Status))
        .col(string_null(CallLogs::ErrorKind))
        .col(text_null(CallLogs::Error))
        .col(big_integer_null(CallLogs::LatencyUs))
        .col(big_integer(CallLogs::PayloadBytes))
        .col(json_null(CallLogs::Payload))
        .col(json_null(CallLogs::Headers))
        .col(timestamp_with_time_zone(CallLogs::CreatedAt))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("idx_message_channels_document")
            .table(Channels::Table)
            .col(Channels::DocumentId)
            .to_owned(),
        Index::create()
            .name("idx_message_definitions_channel")
            .table(Definitions::Table)
            .col(Definitions::ChannelId)
            .to_owned(),
        Index::create()
            .name("idx_message_brokers_document")
            .table(Brokers::Table)
            .col(Brokers::DocumentId)
            .to_owned(),
        Index::create()
            .name("idx_message_call_logs_channel_time")
            .table(CallLogs::Table)
            .col(CallLogs::ChannelId)
            .col(CallLogs::CreatedAt)
            .to_owned(),
        Index::create()
            .name("idx_message_call_logs_time")
            .table(CallLogs::Table)
            .col(CallLogs::CreatedAt)
            .to_owned(),
    ]
}

#[derive(DeriveIden)]
enum Templates {
    #[sea_orm(iden = "asyncapi_templates")]
    Table,
    Id,
    Name,
    Version,
    AsyncapiVersion,
    Content,
    ContentFormat,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Documents {
    #[sea_orm(iden = "asyncapi_documents")]
    Table,
    Id,
    TemplateId,
    Name,
    Version,
    AsyncapiVersion,
    Title,
    InfoVersion,
    BaseUrl,
    Spec,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Channels {
    #[sea_orm(iden = "message_channels")]
    Table,
    Id,
    DocumentId,
    Name,
    Address,
    Description,
    Parameters,
    Bindings,
    OperationBindings,
    ClientPublish,
    ClientSubscribe,
    BrokerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Definitions {
    #[sea_orm(iden = "message_definitions")]
    Table,
    Id,
    DocumentId,
    ChannelId,
    Name,
    Title,
    ContentType,
    SchemaFormat,
    PayloadSchema,
    HeadersSchema,
    Bindings,
    ClientPublish,
    ClientSubscribe,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Brokers {
    #[sea_orm(iden = "message_brokers")]
    Table,
    Id,
    DocumentId,
    ServerName,
    Url,
    Protocol,
    ProtocolVersion,
    Description,
    Bindings,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CallLogs {
    #[sea_orm(iden = "message_call_logs")]
    Table,
    Id,
    DocumentId,
    ChannelId,
    MessageId,
    BrokerId,
    Direction,
    Address,
    Status,
    ErrorKind,
    Error,
    LatencyUs,
    PayloadBytes,
    Payload,
    Headers,
    CreatedAt,
}
