//! The running gateway: database, actors, catalog and HTTP server, started
//! together and stopped in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use arc_swap::ArcSwap;
use sea_orm::DatabaseConnection;

use crate::actors::connection::{BrokerConnection, BrokerSpec, GetSpec};
use crate::actors::router::Drain;
use crate::actors::supervisor::{EnsureBrokers, Shutdown, Stopping};
use crate::actors::webhooks::{RestoreWebhooks, Webhooks};
use crate::actors::{BrokerSupervisor, CallLog, LogWriter, Router};
use crate::auth::Auth;
use crate::broker::AdapterContext;
use crate::catalog::{Catalog, SharedCatalog};
use crate::config::Config;
use crate::http::subscription::Target;
use crate::http::{self, AppState};
use crate::ids::BrokerId;
use crate::publish::Publisher;
use crate::registry::{Registry, RegistryError};
use crate::store::{self, StoreError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    /// The auth settings cannot be used.
    #[error("cannot set up authentication")]
    Auth(#[from] crate::auth::AuthSetupError),
    /// The TLS settings cannot be used.
    #[error("cannot set up TLS")]
    Tls(#[from] crate::tls::TlsError),
    /// Stored documents could not be loaded.
    #[error("cannot restore registered documents")]
    Restore(#[from] RegistryError),
    /// A document the config names could not be registered.
    #[error("cannot register document `{name}` from the config")]
    Document {
        /// The document's name in the config.
        name: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A route of the config cannot run.
    #[error("cannot start the routes of the config")]
    Route(#[from] crate::routes::RouteError),
    /// An entry of `server.cors_allowed_origins` is not an origin.
    #[error("server.cors_allowed_origins: `{0}` is not an origin such as `https://app.example.com` (scheme, host and port only) or `*`")]
    CorsOrigin(String),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on `{bind}`")]
    Bind {
        /// The configured address.
        bind: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A started gateway.
pub struct Gateway {
    local_addr: SocketAddr,
    server: ServerHandle,
    server_task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    supervisor: Addr<BrokerSupervisor>,
    routes: Arc<Vec<Addr<Router>>>,
    call_log: CallLog,
    db: DatabaseConnection,
    shutdown_timeout: Duration,
    /// Tells WebSocket sessions to close; each session holds a receiver.
    shutdown_tx: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Opens the database, starts the actors, restores every registered
    /// document and starts serving HTTP. Must run inside an actix system.
    pub async fn start(config: Config) -> Result<Self, GatewayError> {
        let config = Arc::new(config);
        let db = store::connect(&config.database.url, config.database.max_connections).await?;
        let call_log =
            LogWriter::new(db.clone(), config.call_log.clone()).spawn(config.sse.stream_buffer);
        let context = adapter_context(&config, &call_log)?;
        let supervisor = BrokerSupervisor::new(config.brokers.clone(), context).start();
        let catalog: SharedCatalog = Arc::new(ArcSwap::from_pointee(Catalog::default()));
        let registry = Arc::new(Registry::new(
            db.clone(),
            catalog.clone(),
            supervisor.clone(),
            &config.asyncapi,
            config.brokers.credentials.clone(),
        ));
        let restored = registry.restore().await?;
        load_documents(&registry, &config).await?;
        let documents = catalog.load().documents().len();
        let auth = Arc::new(Auth::new(&config.auth)?);
        let stored_rules = store::acl_rules::all(&db).await.map_err(StoreError::from)?;
        auth.rules().set_stored(stored_rules);
        let webhooks = Webhooks::new(
            catalog.clone(),
            config.webhooks.clone(),
            call_log.clone(),
            db.clone(),
            auth.clone(),
        )
        .start();
        let stored_webhooks = store::webhooks::all(&db).await.map_err(StoreError::from)?;
        // The owner only fails to answer when the system is stopping.
        let _ = webhooks.send(RestoreWebhooks(stored_webhooks)).await;

        if !auth.enabled() {
            tracing::warn!("authentication is off: every client may publish, subscribe and manage; set auth.enabled to require credentials");
        }
        let timeout = Duration::from_millis(config.server.publish_timeout_ms);
        let publisher = Publisher::new(
            catalog.clone(),
            call_log.clone(),
            auth.clone(),
            timeout,
            config.call_log.keep_payloads,
        );
        let routes = start_routes(&config, &catalog, &auth, &publisher, &supervisor).await?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            catalog,
            registry,
            publisher,
            supervisor: supervisor.clone(),
            webhooks,
            routes: routes.clone(),
            auth,
            verified_keys: Default::default(),
            call_log: call_log.clone(),
            db: db.clone(),
            config: config.clone(),
            shutdown_rx,
        };

        let (server, local_addr) = serve(&config, state)?;
        let handle = server.handle();
        let server_task = actix_web::rt::spawn(server);
        tracing::info!(%local_addr, documents, restored, "gateway listening");
        Ok(Self {
            local_addr,
            server: handle,
            server_task,
            supervisor,
            routes,
            call_log,
            db,
            shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_secs),
            shutdown_tx,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests and routed messages finish
    /// (within `server.shutdown_timeout_secs`), flushes the call log and
    /// closes every broker connection and the database.
    pub async fn shutdown(self) {
        // Sessions close with "going away" so that graceful stop need not
        // wait out their connections; publishes waiting for a broker that
        // is down are answered now rather than at their deadline.
        self.shutdown_tx.send_replace(true);
        let _ = self.supervisor.send(Stopping).await;
        let drained = futures_util::future::join_all(self.routes.iter().map(|r| r.send(Drain)));
        let routes = tokio::time::timeout(self.shutdown_timeout, drained);
        let (_, routes) = futures_util::join!(self.server.stop(true), routes);
        if routes.is_err() {
            tracing::warn!(
                timeout_secs = self.shutdown_timeout.as_secs(),
                "routes still held messages when the shutdown timeout ran out"
            );
        }
        // The server task ends with the server; its result adds nothing.
        let _ = self.server_task.await;
        // Closing the brokers records their last connection events, which
        // the flush then writes.
        let _ = self.supervisor.send(Shutdown).await;
        self.call_log.flush().await;
        if let Err(error) = self.db.close().await {
            tracing::warn!(%error, "database did not close cleanly");
        }
        tracing::info!("gateway stopped");
    }
}

/// What the broker connections share: the in-memory broker, timeouts,
/// the TLS settings and the call log their receipts go to.
fn adapter_context(config: &Config, call_log: &CallLog) -> Result<AdapterContext, GatewayError> {
    Ok(AdapterContext {
        memory: Default::default(),
        connect_timeout: Duration::from_millis(config.brokers.connect_timeout_ms),
        kafka_group_id: config.brokers.kafka_group_id.clone(),
        tls: crate::tls::client_config(config.brokers.tls_ca_file.as_deref())?,
        call_log: call_log.clone(),
    })
}

/// Starts one Router per route of the config, once every route checks
/// out.
async fn start_routes(
    config: &Config,
    catalog: &SharedCatalog,
    auth: &Auth,
    publisher: &Publisher,
    supervisor: &Addr<BrokerSupervisor>,
) -> Result<Arc<Vec<Addr<Router>>>, GatewayError> {
    let catalog = catalog.load();
    let routes = crate::routes::resolve(&config.routes, &catalog, auth)?;
    let mut routers = Vec::new();
    for route in routes {
        let target = Target::for_channel(&catalog, route.from.clone(), &route.from_parameters)
            .map_err(|e| crate::routes::RouteError {
                route: route.name.clone(),
                reason: format!("from: {e}"),
            })?;
        let source = source_connection(&route.name, target.connection, supervisor).await;
        tracing::info!(route = %route.name, from = %route.from.row.address, to = %route.to.row.address, "route started");
        let router = Router::new(route, publisher.clone(), source, target.filter);
        routers.push(router.start());
    }
    Ok(Arc::new(routers))
}

/// The connection a route reads its source through. On MQTT it is the
/// route's own durable session, under the client id
/// `stepflow-route-<name>`, so that the broker keeps what the route has
/// not yet settled across a gateway restart; elsewhere the server's shared
/// connection, whose broker keeps unsettled messages itself.
async fn source_connection(
    route: &str,
    shared: Addr<BrokerConnection>,
    supervisor: &Addr<BrokerSupervisor>,
) -> Addr<BrokerConnection> {
    let Ok(spec) = shared.send(GetSpec).await else {
        return shared;
    };
    if spec.protocol != "mqtt" {
        return shared;
    }
    let id = BrokerId::from(format!("route:{route}"));
    let own = BrokerSpec {
        id: id.clone(),
        session: Some(format!("stepflow-route-{route}")),
        ..spec
    };
    match supervisor.send(EnsureBrokers(vec![own])).await {
        Ok(mut started) => started.remove(&id).unwrap_or(shared),
        Err(_) => shared,
    }
}

/// Registers the documents the config names, unless registered already.
async fn load_documents(registry: &Registry, config: &Config) -> Result<(), GatewayError> {
    for entry in &config.documents {
        let loaded = registry.register_file(entry).await;
        let loaded = loaded.map_err(|source| GatewayError::Document {
            name: entry.name.clone(),
            source,
        })?;
        match loaded {
            Some(registered) => {
                let warnings = registered.warnings.len();
                tracing::info!(name = %entry.name, warnings, "document loaded from file");
            }
            None => tracing::debug!(name = %entry.name, "document from file already registered"),
        }
    }
    Ok(())
}

/// CORS for the browser pages of `origins` (`*`: any page): every
/// method, any request header, and the problem documents' headers shown.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .max_age(3_600);
    if origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin().send_wildcard();
    }
    origins
        .iter()
        .fold(cors, |cors, origin| cors.allowed_origin(origin))
}

/// Whether `text` is `*` or an origin exactly as a browser sends it.
fn is_origin(text: &str) -> bool {
    text == "*"
        || url::Url::parse(text).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https") && url.origin().ascii_serialization() == text
        })
}

fn serve(
    config: &Config,
    state: AppState,
) -> Result<(actix_web::dev::Server, SocketAddr), GatewayError> {
    let bind = config.server.bind.clone();
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let origins = config.server.cors_allowed_origins.clone();
    if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
        return Err(GatewayError::CorsOrigin(bad.clone()));
    }
    let server = HttpServer::new(move || {
        // Outermost, so that a browser's preflight is answered before
        // authentication asks for credentials it never sends.
        App::new()
            .wrap(actix_web::middleware::from_fn(http::auth::authenticate))
            .wrap(actix_web::middleware::Condition::new(
                !origins.is_empty(),
                cors(&origins),
            ))
            .configure(http::configure(state.clone()))
    })
    .workers(workers)
    // Nagle's algorithm would hold a small response or WebSocket frame
    // back until the client's delayed acknowledgement: tens of
    // milliseconds at p99.
    .tcp_nodelay(true)
    .shutdown_timeout(config.server.shutdown_timeout_secs)
    .disable_signals()
    .bind(&bind)
    .map_err(|source| GatewayError::Bind {
        bind: bind.clone(),
        source,
    })?;
    let local_addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| GatewayError::Bind {
            bind: bind.clone(),
            source: std::io::Error::other("no address bound"),
        })?;
    Ok((server.run(), local_addr))
}

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn cors_origins_are_scheme_host_and_port() {
        for good in ["*", "http://127.0.0.1:8080", "https://app.example.com"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "http://a/b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
