//! `/health` and `/connections/status`.

use crate::actors::router::GetRouteStatus;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::actors::supervisor::AllStatus;
use crate::actors::ConnectionState;

/// `GET /health`: 200 while the database answers, 503 otherwise; broker
/// outages are reported but do not make the gateway unhealthy.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.ping().await.is_ok();
    let brokers = state.supervisor.send(AllStatus).await.unwrap_or_default();
    let connected = brokers
        .iter()
        .filter(|b| b.state == ConnectionState::Connected)
        .count();
    let body = json!({
        "status": if database { "ok" } else { "unavailable" },
        "database": if database { "ok" } else { "unreachable" },
        "brokers": { "total": brokers.len(), "connected": connected },
    });
    match database {
        true => HttpResponse::Ok().json(body),
        false => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// `GET /connections/status`: the state of every broker connection and
/// route, and the open subscriber sessions by front.
pub async fn connections(state: web::Data<AppState>) -> HttpResponse {
    let brokers = state.supervisor.send(AllStatus).await.unwrap_or_default();
    let asked = state.routes.iter().map(|r| r.send(GetRouteStatus));
    let routes: Vec<_> = futures_util::future::join_all(asked)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let metrics = state.call_log.metrics();
    let sessions = json!({
        "websocket": metrics.sessions("websocket"),
        "sse": metrics.sessions("sse"),
    });
    HttpResponse::Ok().json(json!({ "brokers": brokers, "routes": routes, "sessions": sessions }))
}
