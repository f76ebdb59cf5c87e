//! Authentication of every request but `/health`, in one middleware, and
//! the API key endpoints. A request's principal travels in its extensions;
//! handlers take it as [`Caller`] and ask [`crate::auth::Auth`] what it may
//! do.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::body::JsonBody;
use super::problem::ApiError;
use super::AppState;
use crate::auth::acl::{self, StoredRule};
use crate::auth::{keys, AuthError, Principal};
use crate::config::AclRule;
use crate::store;

/// The `Sec-WebSocket-Protocol` entry that carries a token for browsers,
/// which cannot set headers on a WebSocket: `stepflow.bearer.<token>`.
pub const PROTOCOL_TOKEN_PREFIX: &str = "stepflow.bearer.";

/// The principal of the request.
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let principal = req.extensions().get::<Principal>().cloned();
        ready(
            principal.map(Caller).ok_or_else(|| {
                ApiError::Unauthenticated("the request carries no credentials".into())
            }),
        )
    }
}

/// Authenticates the request, or answers 401.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path() != "/health" {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let principal = match state {
            Some(state) => principal(req.request(), &state).await?,
            None => Principal::anonymous(),
        };
        req.extensions_mut().insert(principal);
    }
    next.call(req).await
}

async fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    if !state.auth.enabled() {
        return Ok(Principal::anonymous());
    }
    let token = credential(req).ok_or_else(|| {
        AuthError::Unauthenticated(
            "credentials are required: send `Authorization: Bearer <token or API key>`".into(),
        )
    })?;
    let principal = match keys::parse(&token) {
        Some((id, secret)) => api_key(state, &token, id, secret).await?,
        None => state.auth.tokens().verify(&token)?,
    };
    Ok(principal)
}

/// The bearer credential: the `Authorization` header; on the WebSocket and
/// SSE routes, whose browser clients cannot set it, else the `access_token`
/// query parameter, else a `Sec-WebSocket-Protocol` entry.
fn credential(req: &HttpRequest) -> Option<String> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if let Some((_, token)) = header {
        return Some(token.trim().to_owned());
    }
    let browser_route = req.path().starts_with("/ws/") || req.path().starts_with("/sse/");
    if !browser_route {
        return None;
    }
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok();
    let from_query = query.and_then(|q| {
        q.0.into_iter()
            .find(|(name, _)| name == "access_token")
            .map(|(_, v)| v)
    });
    if from_query.is_some() {
        return from_query;
    }
    req.headers()
        .get_all("sec-websocket-protocol")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(PROTOCOL_TOKEN_PREFIX)
                .map(str::to_owned)
        })
}

async fn api_key(
    state: &AppState,
    key: &str,
    id: &str,
    secret: &str,
) -> Result<Principal, AuthError> {
    if let Some(principal) = state.verified_keys.get(key) {
        return Ok(principal);
    }
    let refused = || AuthError::Unauthenticated("the API key is not valid".into());
    let row = store::api_keys::find(&state.db, id)
        .await
        .ok()
        .flatten()
        .ok_or_else(refused)?;
    let (secret, hash) = (secret.to_owned(), row.hash.clone());
    // Argon2 takes tens of milliseconds by design: off the async threads.
    let verified = web::block(move || keys::verify(&secret, &hash))
        .await
        .unwrap_or(false);
    if !verified {
        return Err(refused());
    }
    let roles = serde_json::from_value(row.roles).unwrap_or_default();
    // The key's name is its subject, so rules that bind a parameter to
    // `sub` apply to keys and tokens alike.
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), row.name.clone().into());
    let principal = Principal {
        name: row.name,
        roles,
        claims,
        expires_at: None,
    };
    state.verified_keys.insert(key, id, principal.clone());
    Ok(principal)
}

/// The body of `POST /auth/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The principal the key authenticates as.
    pub name: String,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `POST /auth/keys`: issues a key; the reply is the only place it is
/// shown.
pub async fn create_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<NewKey>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let request = body.into_inner();
    if request.name.trim().is_empty() {
        return Err(ApiError::InvalidField {
            pointer: "/name".into(),
            message: "`name` must not be empty".into(),
        });
    }
    let (row, key) = new_key(request.name, request.roles);
    store::api_keys::insert(&state.db, row.clone()).await?;
    let view = json!({"id": row.id, "name": row.name, "roles": row.roles, "created_at": row.created_at, "key": key});
    Ok(HttpResponse::Created().json(view))
}

/// A key row and the key itself, for the API and the command line.
pub fn new_key(name: String, roles: Vec<String>) -> (entity::api_keys::Model, String) {
    let issued = keys::issue();
    let row = entity::api_keys::Model {
        id: issued.id,
        name,
        roles: json!(roles),
        hash: issued.hash,
        created_at: Utc::now(),
    };
    (row, issued.key)
}

/// `GET /auth/keys`: every key, without its secret or hash.
pub async fn list_keys(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let keys: Vec<_> = store::api_keys::all(&state.db)
        .await?
        .into_iter()
        .map(|k| json!({"id": k.id, "name": k.name, "roles": k.roles, "created_at": k.created_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "keys": keys })))
}

/// `DELETE /auth/keys/{id}`: revokes a key at once.
pub async fn delete_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let id = id.into_inner();
    if !store::api_keys::delete(&state.db, &id).await? {
        return Err(ApiError::NotFound {
            what: "API key",
            id,
        });
    }
    state.verified_keys.forget(&id);
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /auth/rules`: the rules of the config, then those of the API.
pub async fn list_rules(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let rules = state.auth.rules();
    let configured: Vec<_> = rules
        .configured()
        .iter()
        .enumerate()
        .map(|(index, rule)| json!({"source": "config", "index": index, "rule": rule}))
        .collect();
    let stored: Vec<_> = rules.stored().iter().map(stored_view).collect();
    let all = [configured, stored].concat();
    Ok(HttpResponse::Ok().json(json!({ "rules": all })))
}

/// `POST /auth/rules`: adds a rule, in force at once and kept across
/// restarts.
pub async fn create_rule(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<AclRule>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let rule = body.into_inner();
    acl::check(&rule).map_err(|e| ApiError::InvalidField {
        pointer: e.pointer,
        message: e.message,
    })?;
    let stored = StoredRule {
        id: uuid::Uuid::new_v4().to_string(),
        rule,
        created_by: caller.0.name,
        created_at: Utc::now(),
    };
    store::acl_rules::insert(&state.db, &stored).await?;
    let view = stored_view(&stored);
    state.auth.rules().add_stored(stored);
    Ok(HttpResponse::Created().json(view))
}

/// `DELETE /auth/rules/{id}`: removes a rule of the API at once; the
/// config's rules change only with the config.
pub async fn delete_rule(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require_admin(&caller.0)?;
    let id = id.into_inner();
    if !store::acl_rules::delete(&state.db, &id).await? {
        return Err(ApiError::NotFound {
            what: "access rule",
            id,
        });
    }
    state.auth.rules().remove_stored(&id);
    Ok(HttpResponse::NoContent().finish())
}

fn stored_view(stored: &StoredRule) -> serde_json::Value {
    json!({
        "source": "api",
        "id": stored.id,
        "rule": stored.rule,
        "created_by": stored.created_by,
        "created_at": stored.created_at,
    })
}
