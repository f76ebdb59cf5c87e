//! Registration: from an AsyncAPI document to stored rows, a compiled
//! catalog entry and live broker connections.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use entity::{
    asyncapi_documents, asyncapi_templates, message_brokers, message_channels, message_definitions,
};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::actors::connection::BrokerSpec;
use crate::actors::supervisor::{EnsureBrokers, RemoveBrokers};
use crate::actors::BrokerSupervisor;
use crate::asyncapi::sources::{FileMap, Folder, Remote, SourceLoader};
use crate::asyncapi::{self, Diagnostic, Document, LoadError, LoadOptions, SourceFormat};
use crate::catalog::{ChannelEntry, DocumentEntry, SharedCatalog};
use crate::config::{AsyncApiConfig, BrokerCredentials, DocumentFile};
use crate::credentials;
use crate::ids::{BrokerId, ChannelId, DocumentId};
use crate::store::documents::{self, DocumentRows, Registered};

/// Protocols the gateway can connect to; a `base_url` with one of these
/// schemes also sets the protocol.
pub const KNOWN_PROTOCOLS: &[&str] = &["memory", "mqtt", "nats", "amqp", "kafka", "ws", "wss"];

/// The server a document without servers is given: the in-memory broker.
const DEFAULT_SERVER: &str = "default";

/// A registration as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Unique name of the document in this gateway.
    pub name: String,
    /// The document: JSON or YAML text, or a JSON object.
    pub asyncapi_content: Value,
    /// A version label of the caller's choosing.
    #[serde(default)]
    pub version: Option<String>,
    /// A URL that replaces every server's URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// URLs that replace single servers' URLs, by server name.
    #[serde(default)]
    pub server_urls: BTreeMap<String, String>,
    /// Files the document refers to with relative `$ref`s, by path relative
    /// to the document, each as text.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The document's own file name, against which `files` are resolved.
    #[serde(default)]
    pub path: Option<String>,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field of the request is wrong.
    #[error("invalid field `{field}`: {reason}")]
    InvalidRequest {
        /// The field's name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The document is not valid AsyncAPI.
    #[error(transparent)]
    Invalid(#[from] LoadError),
    /// A document with this name exists.
    #[error("a document named `{0}` is already registered")]
    NameTaken(String),
    /// No document has this id.
    #[error("unknown document `{0}`")]
    UnknownDocument(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] DbErr),
    /// The loader stopped without an answer.
    #[error("the document loader failed")]
    LoaderFailed,
}

/// Registers, restores and deletes documents.
pub struct Registry {
    db: DatabaseConnection,
    catalog: SharedCatalog,
    supervisor: Addr<BrokerSupervisor>,
    /// Fetches `http(s)://` references, when the config allows it.
    remote: Option<Arc<Remote>>,
    /// Credentials for brokers, matched to each document's servers.
    credentials: Vec<BrokerCredentials>,
    /// Serialises changes so that two registrations cannot race on a name
    /// or lose each other's catalog update.
    changes: Mutex<()>,
}

impl Registry {
    /// A registry over `db`, publishing changes into `catalog`.
    pub fn new(
        db: DatabaseConnection,
        catalog: SharedCatalog,
        supervisor: Addr<BrokerSupervisor>,
        refs: &AsyncApiConfig,
        credentials: Vec<BrokerCredentials>,
    ) -> Self {
        let remote = refs.allow_remote_refs.then(|| {
            let timeout = std::time::Duration::from_millis(refs.remote_timeout_ms);
            Arc::new(Remote::new(timeout, refs.max_remote_bytes))
        });
        Self {
            db,
            catalog,
            supervisor,
            remote,
            credentials,
            changes: Mutex::new(()),
        }
    }

    /// Validates, stores and activates a document.
    pub async fn register(&self, request: RegisterRequest) -> Result<Registered, RegistryError> {
        let files = FileMap(request.files.clone());
        self.register_with(request, Box::new(files)).await
    }

    /// Registers a document file from disk, with the files it refers to
    /// read from its folder; a document of that name already registered is
    /// left as it is.
    pub async fn register_file(
        &self,
        entry: &DocumentFile,
    ) -> Result<Option<Registered>, RegistryError> {
        if documents::name_taken(&self.db, &entry.name).await? {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&entry.path).map_err(|e| RegistryError::InvalidRequest {
                field: "documents.path",
                reason: format!("cannot read `{}`: {e}", entry.path.display()),
            })?;
        let folder = entry
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let file_name = entry
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let request = RegisterRequest {
            name: entry.name.clone(),
            asyncapi_content: Value::String(text),
            version: None,
            base_url: entry.base_url.clone(),
            server_urls: entry.server_urls.clone(),
            files: BTreeMap::new(),
            path: file_name,
        };
        self.register_with(request, Box::new(Folder(folder)))
            .await
            .map(Some)
    }

    async fn register_with(
        &self,
        request: RegisterRequest,
        loader: Box<dyn SourceLoader + Send>,
    ) -> Result<Registered, RegistryError> {
        check_name(&request.name)?;
        // Loading is CPU work and may fetch files: it runs off the worker
        // that serves requests.
        let remote = self.remote.clone();
        let (request, parsed) = tokio::task::spawn_blocking(move || {
            let remote = remote.as_deref().map(|r| r as &dyn SourceLoader);
            let parsed = parse_content(&request, loader.as_ref(), remote);
            (request, parsed)
        })
        .await
        .map_err(|_| RegistryError::LoaderFailed)?;
        let (content, document, format) = parsed?;
        let rows = build_rows(&request, content, &document, format, Utc::now())?;
        let channels = compile(&rows)?;

        let _guard = self.changes.lock().await;
        if documents::name_taken(&self.db, &request.name).await? {
            return Err(RegistryError::NameTaken(request.name));
        }
        documents::insert(&self.db, &rows).await?;
        self.activate(&rows, channels).await;
        tracing::info!(document = %rows.document.id, name = %rows.document.name, "document registered");
        Ok(Registered {
            rows,
            warnings: document.warnings,
        })
    }

    /// Activates every stored document; used at start.
    pub async fn restore(&self) -> Result<usize, RegistryError> {
        let _guard = self.changes.lock().await;
        let all = documents::load_all(&self.db).await?;
        for rows in &all {
            match compile(rows) {
                Ok(channels) => self.activate(rows, channels).await,
                Err(error) => {
                    tracing::error!(document = %rows.document.id, %error, "stored document no longer compiles; skipped");
                }
            }
        }
        Ok(all.len())
    }

    /// Holds off registrations and deletions while the guard lives, so that
    /// something stored against a channel (a webhook subscription) cannot
    /// race with the deletion of its document.
    pub async fn hold_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Removes a document, its rows and its broker connections.
    pub async fn delete(&self, id: &DocumentId) -> Result<(), RegistryError> {
        let _guard = self.changes.lock().await;
        let catalog = self.catalog.load();
        let entry = catalog
            .document(id)
            .ok_or_else(|| RegistryError::UnknownDocument(id.to_string()))?;
        documents::delete(&self.db, &entry.row).await?;
        let brokers = entry
            .brokers
            .iter()
            .map(|b| BrokerId::from(b.id.clone()))
            .collect();
        self.catalog.store(catalog.without_document(id).into());
        // The supervisor only fails to answer when the system is stopping.
        let _ = self.supervisor.send(RemoveBrokers(brokers)).await;
        Ok(())
    }

    async fn activate(&self, rows: &DocumentRows, channels: Vec<ChannelEntry>) {
        let specs = rows
            .brokers
            .iter()
            .map(|b| BrokerSpec {
                id: BrokerId::from(b.id.clone()),
                protocol: b.protocol.clone(),
                url: b.url.clone(),
                credentials: credentials::for_server(
                    &self.credentials,
                    &rows.document.name,
                    &b.server_name,
                    &rows.document.spec,
                ),
                session: None,
            })
            .collect();
        let connections = self
            .supervisor
            .send(EnsureBrokers(specs))
            .await
            .unwrap_or_default();
        let entry = DocumentEntry {
            row: rows.document.clone(),
            channel_ids: rows
                .channels
                .iter()
                .map(|c| ChannelId::from(c.id.clone()))
                .collect(),
            brokers: rows.brokers.clone(),
        };
        let next = self
            .catalog
            .load()
            .with_document(entry, channels, connections);
        self.catalog.store(next.into());
    }
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    let reason = match name.trim() {
        "" => "must not be empty",
        n if n.chars().count() > 200 => "must be at most 200 characters",
        n if n != name => "must not start or end with white space",
        n if n.chars().any(char::is_control) => "must not contain control characters",
        _ => return Ok(()),
    };
    Err(RegistryError::InvalidRequest {
        field: "name",
        reason: reason.into(),
    })
}

fn parse_content(
    request: &RegisterRequest,
    loader: &dyn SourceLoader,
    remote: Option<&dyn SourceLoader>,
) -> Result<(String, Document, SourceFormat), RegistryError> {
    let path = request.path.clone().unwrap_or_else(|| "asyncapi".into());
    let options = LoadOptions {
        path,
        loader,
        remote,
    };
    match &request.asyncapi_content {
        Value::String(text) => {
            let (document, format) = asyncapi::load_with(text, &options)?;
            Ok((text.clone(), document, format))
        }
        content @ Value::Object(_) => {
            let document = asyncapi::load::load_value(content.clone(), &options)?;
            Ok((content.to_string(), document, SourceFormat::Json))
        }
        _ => Err(RegistryError::InvalidRequest {
            field: "asyncapi_content",
            reason: "must be the document as a string (JSON or YAML) or as a JSON object".into(),
        }),
    }
}

/// A document's channels as a publish sees them, loaded and compiled
/// without storing anything or connecting a broker (for fuzzing and
/// offline checks); neighbour files come from `request.files`.
pub fn compile_offline(request: &RegisterRequest) -> Result<Vec<ChannelEntry>, RegistryError> {
    let files = FileMap(request.files.clone());
    let (content, document, format) = parse_content(request, &files, None)?;
    let rows = build_rows(request, content, &document, format, Utc::now())?;
    Ok(compile(&rows)?)
}

/// Every row of a registration, with fresh ids.
fn build_rows(
    request: &RegisterRequest,
    content: String,
    document: &Document,
    format: SourceFormat,
    now: DateTime<Utc>,
) -> Result<DocumentRows, RegistryError> {
    let document_id = DocumentId::generate().to_string();
    let template = asyncapi_templates::Model {
        id: uuid::Uuid::new_v4().to_string(),
        name: request.name.clone(),
        version: request.version.clone(),
        asyncapi_version: document.asyncapi_version.clone(),
        content,
        content_format: format.as_str().to_owned(),
        created_at: now,
    };
    let brokers = broker_rows(request, document, &document_id, now)?;
    let mut channels = Vec::with_capacity(document.channels.len());
    let mut messages = Vec::new();
    for channel in &document.channels {
        let broker_id = channel_broker(channel, &brokers);
        let row = channel_row(channel, &document_id, broker_id, now);
        messages.extend(channel.messages.iter().map(|m| message_row(m, &row, now)));
        channels.push(row);
    }
    let document_row = asyncapi_documents::Model {
        id: document_id,
        template_id: template.id.clone(),
        name: request.name.clone(),
        version: request.version.clone(),
        asyncapi_version: document.asyncapi_version.clone(),
        title: document.title.clone(),
        info_version: document.info_version.clone(),
        base_url: request.base_url.clone(),
        spec: document.resolved.clone(),
        created_at: now,
    };
    Ok(DocumentRows {
        template,
        document: document_row,
        channels,
        messages,
        brokers,
    })
}

fn broker_rows(
    request: &RegisterRequest,
    document: &Document,
    document_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<message_brokers::Model>, RegistryError> {
    for name in request.server_urls.keys() {
        if !document.servers.iter().any(|s| &s.name == name) {
            let reason = format!("the document has no server named `{name}`");
            return Err(RegistryError::InvalidRequest {
                field: "server_urls",
                reason,
            });
        }
    }
    let mut rows = Vec::new();
    for server in &document.servers {
        let (url, field) = match (request.server_urls.get(&server.name), &request.base_url) {
            (Some(url), _) => (url.clone(), Some("server_urls")),
            (None, Some(url)) => (url.clone(), Some("base_url")),
            (None, None) => (server.url.clone(), None),
        };
        let protocol = effective_protocol(&url, &server.protocol, field)?;
        rows.push(message_brokers::Model {
            id: BrokerId::generate().to_string(),
            document_id: document_id.to_owned(),
            server_name: server.name.clone(),
            url,
            protocol,
            protocol_version: server.protocol_version.clone(),
            description: server.description.clone(),
            bindings: server.bindings.clone(),
            created_at: now,
        });
    }
    if rows.is_empty() {
        let url = request
            .base_url
            .clone()
            .unwrap_or_else(|| "memory://default".into());
        let protocol = effective_protocol(&url, "memory", Some("base_url"))?;
        rows.push(message_brokers::Model {
            id: BrokerId::generate().to_string(),
            document_id: document_id.to_owned(),
            server_name: DEFAULT_SERVER.into(),
            url,
            protocol,
            protocol_version: None,
            description: Some(
                "the gateway's in-memory broker; the document names no server".into(),
            ),
            bindings: Value::Object(Default::default()),
            created_at: now,
        });
    }
    Ok(rows)
}

/// The protocol of a server at `url`: the URL's scheme when it names a
/// protocol the gateway knows, else the document's protocol.
fn effective_protocol(
    url: &str,
    declared: &str,
    field: Option<&'static str>,
) -> Result<String, RegistryError> {
    let scheme = match url::Url::parse(url) {
        Ok(parsed) => parsed.scheme().to_owned(),
        Err(error) => match field {
            Some(field) => {
                return Err(RegistryError::InvalidRequest {
                    field,
                    reason: format!("`{url}` is not a URL: {error}"),
                })
            }
            None => return Ok(declared.to_owned()),
        },
    };
    match (field, KNOWN_PROTOCOLS.contains(&scheme.as_str())) {
        (Some(_), true) => Ok(scheme),
        (Some(field), false) => Err(RegistryError::InvalidRequest {
            field,
            reason: format!(
                "scheme `{scheme}` is not a broker protocol the gateway serves ({})",
                KNOWN_PROTOCOLS.join(", ")
            ),
        }),
        (None, _) => Ok(declared.to_owned()),
    }
}

/// The broker of a channel: the first of its servers, or the document's
/// first server when the channel names none.
fn channel_broker<'b>(
    channel: &asyncapi::Channel,
    brokers: &'b [message_brokers::Model],
) -> Option<&'b str> {
    let chosen = match channel.servers.first() {
        Some(name) => brokers.iter().find(|b| &b.server_name == name),
        None => brokers.first(),
    };
    chosen.map(|b| b.id.as_str())
}

fn channel_row(
    channel: &asyncapi::Channel,
    document_id: &str,
    broker_id: Option<&str>,
    now: DateTime<Utc>,
) -> message_channels::Model {
    message_channels::Model {
        id: ChannelId::generate().to_string(),
        document_id: document_id.to_owned(),
        name: channel.name.clone(),
        address: channel.address.clone(),
        description: channel.description.clone(),
        parameters: serde_json::to_value(&channel.parameters).unwrap_or_default(),
        bindings: channel.bindings.clone(),
        operation_bindings: channel.operation_bindings.clone(),
        client_publish: channel.client_publish,
        client_subscribe: channel.client_subscribe,
        broker_id: broker_id.map(str::to_owned),
        created_at: now,
    }
}

fn message_row(
    message: &asyncapi::Message,
    channel: &message_channels::Model,
    now: DateTime<Utc>,
) -> message_definitions::Model {
    message_definitions::Model {
        id: uuid::Uuid::new_v4().to_string(),
        document_id: channel.document_id.clone(),
        channel_id: channel.id.clone(),
        name: message.name.clone(),
        title: message.title.clone(),
        content_type: message.content_type.clone(),
        schema_format: message.schema_format.clone(),
        payload_schema: message.payload.clone(),
        headers_schema: message.headers.clone(),
        bindings: message.bindings.clone(),
        client_publish: message.client_publish,
        client_subscribe: message.client_subscribe,
        created_at: now,
    }
}

/// Compiles every channel of `rows`, collecting every problem.
fn compile(rows: &DocumentRows) -> Result<Vec<ChannelEntry>, LoadError> {
    let brokers: HashMap<&str, &message_brokers::Model> =
        rows.brokers.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut compiled = Vec::with_capacity(rows.channels.len());
    let mut problems: Vec<Diagnostic> = Vec::new();
    for channel in &rows.channels {
        let messages = rows
            .messages
            .iter()
            .filter(|m| m.channel_id == channel.id)
            .cloned()
            .collect();
        let broker = channel
            .broker_id
            .as_deref()
            .and_then(|id| brokers.get(id))
            .map(|b| (*b).clone());
        match ChannelEntry::compile(channel.clone(), messages, broker, &rows.document.spec) {
            Ok(entry) => compiled.push(entry),
            Err(found) => problems.extend(found),
        }
    }
    match problems.is_empty() {
        true => Ok(compiled),
        false => Err(LoadError {
            diagnostics: problems,
        }),
    }
}
