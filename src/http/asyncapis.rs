//! `/asyncapis`: register, list, show and delete documents.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::Caller;
use super::body::JsonBody;
use super::problem::ApiError;
use super::{views, AppState};
use crate::actors::webhooks::RemoveDocumentWebhooks;
use crate::ids::DocumentId;
use crate::registry::RegisterRequest;

/// `POST /asyncapis/register`: stores and activates a document.
pub async fn register(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let registered = state.registry.register(body.into_inner()).await?;
    let catalog = state.catalog.load();
    let mut view = views::registered(
        &registered.rows,
        &catalog,
        &state.config.brokers.credentials,
    );
    view["warnings"] = serde_json::to_value(&registered.warnings).unwrap_or_default();
    Ok(HttpResponse::Created().json(view))
}

/// `GET /asyncapis`: every registered document.
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.load();
    let documents: Vec<_> = catalog
        .documents()
        .into_iter()
        .map(|d| views::document(d, &catalog, &state.config.brokers.credentials))
        .collect();
    HttpResponse::Ok().json(json!({ "documents": documents }))
}

/// `GET /asyncapis/{id}`: one document, with its resolved form.
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.load();
    let id = DocumentId::from(id.into_inner());
    let entry = catalog.document(&id).ok_or_else(|| ApiError::NotFound {
        what: "document",
        id: id.to_string(),
    })?;
    let mut view = views::document(entry, &catalog, &state.config.brokers.credentials);
    view["spec"] = views::without_url_passwords(entry.row.spec.clone());
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /asyncapis/{id}`: removes a document and its connections.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let id = DocumentId::from(id.into_inner());
    state.registry.delete(&id).await?;
    // Paused webhook sessions hold no subscription that would end with the
    // document's connections; they are ended here. A failed send means the
    // gateway is stopping, which ends them too.
    let _ = state
        .webhooks
        .send(RemoveDocumentWebhooks(id.to_string()))
        .await;
    Ok(HttpResponse::NoContent().finish())
}
