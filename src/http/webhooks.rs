//! Webhook subscriptions: `POST /messages/subscribe`, `GET
//! /messages/subscriptions`, `GET`/`DELETE /messages/subscribe/{id}` and
//! `POST /messages/subscribe/{id}/resume`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use entity::webhook_subscriptions;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::JsonBody;
use super::problem::ApiError;
use super::subscription::Target;
use super::AppState;
use crate::actors::webhook_session::WebhookView;
use crate::actors::webhooks::{ListWebhooks, RemoveWebhook, ResumeWebhook, StartWebhook};
use crate::store;
use crate::webhook::check_callback_url;

/// Longest accepted signing secret, in bytes.
const MAX_SECRET_BYTES: usize = 1024;

/// The body of `POST /messages/subscribe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The channel whose messages are delivered.
    pub channel_id: String,
    /// Where each message is POSTed: http or https.
    pub callback_url: String,
    /// Parameter values that narrow the subscription; absent ones match
    /// any value.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Key of the HMAC-SHA256 signature of each delivery.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `POST /messages/subscribe`: checks and stores a webhook subscription,
/// then starts delivering to it.
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let fixed = parameter_values(&request.parameters)?;
    if let Some(secret) = &request.secret {
        if secret.is_empty() || secret.len() > MAX_SECRET_BYTES {
            return Err(ApiError::InvalidField {
                pointer: "/secret".into(),
                message: format!("`secret` must be 1 to {MAX_SECRET_BYTES} bytes long"),
            });
        }
    }
    // Checked once before the URL is resolved, for a quick answer, and
    // again under the registry's guard, so that the document cannot be
    // deleted between the check and the insert.
    Target::for_subscriber(&state, &caller.0, request.channel_id.clone(), &fixed)?;
    let allow_private = state.config.webhooks.allow_private_targets;
    let url = check_callback_url(&request.callback_url, allow_private)
        .await
        .map_err(|error| ApiError::InvalidField {
            pointer: "/callback_url".into(),
            message: error.to_string(),
        })?;
    let _guard = state.registry.hold_changes().await;
    let target = Target::resolve(&state.catalog.load(), request.channel_id, &fixed)?;

    let now = Utc::now();
    let row = webhook_subscriptions::Model {
        id: uuid::Uuid::new_v4().to_string(),
        document_id: target.channel.row.document_id.clone(),
        channel_id: target.channel.id.to_string(),
        callback_url: url.to_string(),
        parameters: json!(fixed),
        secret: request.secret,
        state: "active".into(),
        paused_reason: None,
        created_at: now,
        updated_at: now,
        owner: state.auth.enabled().then(|| caller.0.name.clone()),
        owner_principal: state.auth.enabled().then(|| caller.0.to_stored()),
    };
    store::webhooks::insert(&state.db, row.clone()).await?;
    let view = state
        .webhooks
        .send(StartWebhook { row, target })
        .await
        .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))?;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/messages/subscribe/{}", view.id)))
        .json(view))
}

/// Parameter values as strings: JSON strings, numbers and booleans are
/// accepted, so `{"deviceId": 42}` works like `{"deviceId": "42"}`.
fn parameter_values(
    values: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    values
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ApiError::InvalidField {
                        pointer: format!("/parameters/{}", pointer_token(name)),
                        message: format!("parameter `{name}` must be a string, number or boolean"),
                    })
                }
            };
            Ok((name.clone(), text))
        })
        .collect()
}

fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Filters of `GET /messages/subscriptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this channel's subscriptions.
    pub channel_id: Option<String>,
}

/// `GET /messages/subscriptions`: every webhook subscription with its state
/// and counts.
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let channel_id = query.into_inner().channel_id;
    let mut subscriptions = list_views(&state, channel_id).await?;
    subscriptions.retain(|view| may_manage(&state, &caller, view));
    Ok(HttpResponse::Ok().json(json!({ "subscriptions": subscriptions })))
}

/// `GET /messages/subscribe/{id}`: one subscription.
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(find(&state, &caller, &id).await?))
}

/// `DELETE /messages/subscribe/{id}`: removes a subscription; its channel's
/// broker-side subscription ends when it was the last consumer.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    find(&state, &caller, &id).await?;
    if !store::webhooks::delete(&state.db, &id).await? {
        return Err(not_found(id));
    }
    // A failed send means the gateway is stopping, which ends the session too.
    let _ = state.webhooks.send(RemoveWebhook(id)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /messages/subscribe/{id}/resume`: resumes a paused subscription.
pub async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    find(&state, &caller, &id).await?;
    if !store::webhooks::set_paused(&state.db, &id, None).await? {
        return Err(not_found(id));
    }
    let _ = state.webhooks.send(ResumeWebhook(id.clone())).await;
    Ok(HttpResponse::Ok().json(find(&state, &caller, &id).await?))
}

/// A subscription the caller may see and manage: its own, or any for an
/// admin. Others' answer 404, as if they did not exist.
async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<WebhookView, ApiError> {
    let views = list_views(state, None).await?;
    let found = views
        .into_iter()
        .find(|view| view.id == id && may_manage(state, caller, view));
    found.ok_or_else(|| not_found(id.to_owned()))
}

fn may_manage(state: &AppState, caller: &Caller, view: &WebhookView) -> bool {
    state.auth.require_admin(&caller.0).is_ok()
        || view.owner.as_deref() == Some(caller.0.name.as_str())
}

async fn list_views(
    state: &AppState,
    channel_id: Option<String>,
) -> Result<Vec<WebhookView>, ApiError> {
    state
        .webhooks
        .send(ListWebhooks { channel_id })
        .await
        .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))
}

fn not_found(id: String) -> ApiError {
    ApiError::NotFound {
        what: "webhook subscription",
        id,
    }
}
