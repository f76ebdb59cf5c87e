//! The HTTP front: routes, shared state, and the one error mapping.

mod asyncapis;
pub mod auth;
pub mod body;
mod channels;
mod health;
mod messages;
mod monitoring;
pub mod problem;
mod sse;
pub mod subscription;
mod views;
mod webhooks;
mod ws;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use sea_orm::DatabaseConnection;

use crate::actors::webhooks::Webhooks;
use crate::actors::{BrokerSupervisor, CallLog};
use crate::catalog::SharedCatalog;
use crate::config::Config;
use crate::publish::Publisher;
use crate::registry::Registry;

pub use problem::ApiError;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The compiled registered documents.
    pub catalog: SharedCatalog,
    /// Registers and deletes documents.
    pub registry: Arc<Registry>,
    /// Publishes for REST and WebSocket clients.
    pub publisher: Publisher,
    /// Owner of the broker connections.
    pub supervisor: Addr<BrokerSupervisor>,
    /// The actors of the config's static routes.
    pub routes: Arc<Vec<Addr<crate::actors::Router>>>,
    /// Owner of the webhook subscriptions' sessions.
    pub webhooks: Addr<Webhooks>,
    /// Authentication and access rules.
    pub auth: Arc<crate::auth::Auth>,
    /// API keys verified since start.
    pub verified_keys: Arc<crate::auth::keys::VerifiedKeys>,
    /// Producer handle of the call-log writer.
    pub call_log: CallLog,
    /// The database.
    pub db: DatabaseConnection,
    /// The configuration the gateway started with.
    pub config: Arc<Config>,
    /// Turns true when the gateway begins to shut down; the gateway holds
    /// the sender.
    pub shutdown_rx: tokio::sync::watch::Receiver<bool>,
}

/// Registers every route and the error mapping of queries and paths.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(web::QueryConfig::default().error_handler(problem::query_error))
            .app_data(web::PathConfig::default().error_handler(problem::path_error))
            .service(
                resource("/asyncapis/register", "POST").route(web::post().to(asyncapis::register)),
            )
            .service(resource("/asyncapis", "GET").route(web::get().to(asyncapis::list)))
            .service(
                resource("/asyncapis/{id}", "GET, DELETE")
                    .route(web::get().to(asyncapis::get))
                    .route(web::delete().to(asyncapis::delete)),
            )
            .service(resource("/channels", "GET").route(web::get().to(channels::list)))
            .service(resource("/channels/{id}", "GET").route(web::get().to(channels::get)))
            .service(resource("/messages/publish", "POST").route(web::post().to(messages::publish)))
            .service(
                resource("/messages/subscribe", "POST").route(web::post().to(webhooks::create)),
            )
            .service(
                resource("/messages/subscriptions", "GET").route(web::get().to(webhooks::list)),
            )
            .service(
                resource("/messages/subscribe/{id}", "GET, DELETE")
                    .route(web::get().to(webhooks::get))
                    .route(web::delete().to(webhooks::delete)),
            )
            .service(
                resource("/messages/subscribe/{id}/resume", "POST")
                    .route(web::post().to(webhooks::resume)),
            )
            .service(
                resource("/messages/{id}/schema", "GET").route(web::get().to(messages::schema)),
            )
            .service(
                resource("/connections/status", "GET").route(web::get().to(health::connections)),
            )
            .service(resource("/logs/recent", "GET").route(web::get().to(messages::recent_logs)))
            .service(
                resource("/logs/connections", "GET")
                    .route(web::get().to(messages::connection_logs)),
            )
            .service(
                resource("/messages/statistics", "GET")
                    .route(web::get().to(monitoring::statistics)),
            )
            .service(resource("/metrics", "GET").route(web::get().to(monitoring::metrics)))
            .service(resource("/messages/stream", "GET").route(web::get().to(monitoring::stream)))
            .service(resource("/ws/{channel_id}", "GET").route(web::get().to(ws::subscribe)))
            .service(resource("/sse/{channel_id}", "GET").route(web::get().to(sse::subscribe)))
            .service(
                resource("/auth/keys", "GET, POST")
                    .route(web::get().to(auth::list_keys))
                    .route(web::post().to(auth::create_key)),
            )
            .service(
                resource("/auth/keys/{id}", "DELETE").route(web::delete().to(auth::delete_key)),
            )
            .service(
                resource("/auth/rules", "GET, POST")
                    .route(web::get().to(auth::list_rules))
                    .route(web::post().to(auth::create_rule)),
            )
            .service(
                resource("/auth/rules/{id}", "DELETE").route(web::delete().to(auth::delete_rule)),
            )
            .service(resource("/health", "GET").route(web::get().to(health::health)))
            .default_service(web::to(problem::not_found));
    }
}

/// A route whose unsupported methods answer 405 with a problem document
/// and the `Allow` header.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || problem::method_not_allowed(allow)))
}
