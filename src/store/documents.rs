//! Queries over the document model: templates, documents, channels,
//! message definitions and brokers.

use entity::{
    asyncapi_documents, asyncapi_templates, message_brokers, message_channels, message_definitions,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    TransactionTrait,
};

/// Every row of one registered document.
#[derive(Debug, Clone)]
pub struct DocumentRows {
    /// The source text.
    pub template: asyncapi_templates::Model,
    /// The document.
    pub document: asyncapi_documents::Model,
    /// Its channels, in document order.
    pub channels: Vec<message_channels::Model>,
    /// Its message definitions.
    pub messages: Vec<message_definitions::Model>,
    /// Its brokers.
    pub brokers: Vec<message_brokers::Model>,
}

/// A registration just stored, with what was noticed but accepted.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The stored rows.
    pub rows: DocumentRows,
    /// Problems that did not refuse the document.
    pub warnings: Vec<crate::asyncapi::Diagnostic>,
}

/// Whether a document named `name` exists.
pub async fn name_taken(db: &DatabaseConnection, name: &str) -> Result<bool, DbErr> {
    let found = asyncapi_documents::Entity::find()
        .filter(asyncapi_documents::Column::Name.eq(name))
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Stores every row of a registration in one transaction: all or nothing.
pub async fn insert(db: &DatabaseConnection, rows: &DocumentRows) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    asyncapi_templates::Entity::insert(rows.template.clone().into_active_model())
        .exec(&txn)
        .await?;
    asyncapi_documents::Entity::insert(rows.document.clone().into_active_model())
        .exec(&txn)
        .await?;
    for broker in &rows.brokers {
        message_brokers::Entity::insert(broker.clone().into_active_model())
            .exec(&txn)
            .await?;
    }
    for channel in &rows.channels {
        message_channels::Entity::insert(channel.clone().into_active_model())
            .exec(&txn)
            .await?;
    }
    for message in &rows.messages {
        message_definitions::Entity::insert(message.clone().into_active_model())
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// Every registered document with its rows, oldest first.
pub async fn load_all(db: &DatabaseConnection) -> Result<Vec<DocumentRows>, DbErr> {
    let documents = asyncapi_documents::Entity::find()
        .order_by_asc(asyncapi_documents::Column::CreatedAt)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(documents.len());
    for document in documents {
        out.push(load_one(db, document).await?);
    }
    Ok(out)
}

async fn load_one(
    db: &DatabaseConnection,
    document: asyncapi_documents::Model,
) -> Result<DocumentRows, DbErr> {
    let template = asyncapi_templates::Entity::find_by_id(document.template_id.clone())
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("template of document {}", document.id)))?;
    let channels = message_channels::Entity::find()
        .filter(message_channels::Column::DocumentId.eq(&document.id))
        .order_by_asc(message_channels::Column::Name)
        .all(db)
        .await?;
    let messages = message_definitions::Entity::find()
        .filter(message_definitions::Column::DocumentId.eq(&document.id))
        .all(db)
        .await?;
    let brokers = message_brokers::Entity::find()
        .filter(message_brokers::Column::DocumentId.eq(&document.id))
        .all(db)
        .await?;
    Ok(DocumentRows {
        template,
        document,
        channels,
        messages,
        brokers,
    })
}

/// Deletes a document and every row that belongs to it, in one transaction.
/// Call logs stay.
pub async fn delete(
    db: &DatabaseConnection,
    document: &asyncapi_documents::Model,
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    super::webhooks::delete_of_document(&txn, &document.id).await?;
    message_definitions::Entity::delete_many()
        .filter(message_definitions::Column::DocumentId.eq(&document.id))
        .exec(&txn)
        .await?;
    message_channels::Entity::delete_many()
        .filter(message_channels::Column::DocumentId.eq(&document.id))
        .exec(&txn)
        .await?;
    message_brokers::Entity::delete_many()
        .filter(message_brokers::Column::DocumentId.eq(&document.id))
        .exec(&txn)
        .await?;
    asyncapi_documents::Entity::delete_by_id(document.id.clone())
        .exec(&txn)
        .await?;
    asyncapi_templates::Entity::delete_by_id(document.template_id.clone())
        .exec(&txn)
        .await?;
    txn.commit().await
}
