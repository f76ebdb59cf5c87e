//! `/channels`: the channels of registered documents.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::problem::ApiError;
use super::{views, AppState};
use crate::ids::{ChannelId, DocumentId};

/// Filters of `GET /channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelQuery {
    /// Only the channels of this document.
    asyncapi_document_id: Option<String>,
}

/// `GET /channels`: channels, optionally of one document.
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.load();
    let document = query.asyncapi_document_id.clone().map(DocumentId::from);
    if let Some(id) = &document {
        if catalog.document(id).is_none() {
            return Err(ApiError::NotFound {
                what: "document",
                id: id.to_string(),
            });
        }
    }
    let channels: Vec<_> = catalog
        .channels(document.as_ref())
        .into_iter()
        .map(|c| views::channel(c))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "channels": channels })))
}

/// `GET /channels/{id}`: one channel.
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.load();
    let id = ChannelId::from(id.into_inner());
    let entry = catalog.channel(&id).ok_or_else(|| ApiError::NotFound {
        what: "channel",
        id: id.to_string(),
    })?;
    Ok(HttpResponse::Ok().json(views::channel(entry)))
}
