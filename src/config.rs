//! The gateway's configuration: plain data read from TOML and the environment.
//!
//! Loading only parses; nothing here opens files other than the config itself,
//! connects or binds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Prefix of environment variables that override config keys, with `__`
/// between path segments: `STEPFLOW__SERVER__BIND=127.0.0.1:9000`.
pub const ENV_PREFIX: &str = "STEPFLOW";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener and request limits.
    pub server: ServerConfig,
    /// Where documents and call logs are stored.
    pub database: DatabaseConfig,
    /// Process logs written through tracing.
    pub logging: LoggingConfig,
    /// The call log written to `message_call_logs`.
    pub call_log: CallLogConfig,
    /// Connections to brokers.
    pub brokers: BrokersConfig,
    /// WebSocket sessions of clients.
    pub websocket: WebSocketConfig,
    /// Server-Sent Events streams of clients.
    pub sse: SseConfig,
    /// Webhook subscriptions.
    pub webhooks: WebhooksConfig,
    /// Client authentication and access rules.
    pub auth: AuthConfig,
    /// AsyncAPI documents registered at start from files.
    pub documents: Vec<DocumentFile>,
    /// Static routes between channels, run from start.
    pub routes: Vec<RouteConfig>,
    /// How AsyncAPI documents are loaded.
    pub asyncapi: AsyncApiConfig,
}

/// How AsyncAPI documents are loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncApiConfig {
    /// Whether `$ref`s to `http(s)://` URLs are fetched. Off by default: a
    /// registration could otherwise make the gateway fetch from any host.
    pub allow_remote_refs: bool,
    /// How long one fetch may take.
    pub remote_timeout_ms: u64,
    /// Largest fetched file, in bytes.
    pub max_remote_bytes: u64,
}

impl Default for AsyncApiConfig {
    fn default() -> Self {
        Self {
            allow_remote_refs: false,
            remote_timeout_ms: 5_000,
            max_remote_bytes: 1024 * 1024,
        }
    }
}

/// An AsyncAPI document file registered at start, unless a document of its
/// name is registered already.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentFile {
    /// Unique name of the document.
    pub name: String,
    /// Path of the main file; relative `$ref`s resolve against its folder.
    pub path: std::path::PathBuf,
    /// A URL that replaces every server's URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// URLs that replace single servers' URLs, by server name.
    #[serde(default)]
    pub server_urls: std::collections::BTreeMap<String, String>,
}

/// The HTTP listener and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on; port 0 picks a free one.
    pub bind: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// How long a publish may wait for the broker's acknowledgement.
    pub publish_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Origins (`https://app.example.com`) whose browser pages may call the
    /// API and open `/sse` streams; `*` allows any. Empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            max_body_bytes: 1024 * 1024,
            workers: 0,
            publish_timeout_ms: 5_000,
            shutdown_timeout_secs: 10,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Where documents and call logs are stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (created on first start) or `postgres://...`.
    pub url: String,
    /// Largest number of pooled database connections.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/gateway.db".into(),
            max_connections: 8,
        }
    }
}

/// Process logs written through tracing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A tracing filter such as `info` or `stepflow_gateway=debug`;
    /// `RUST_LOG` wins when set.
    pub filter: String,
    /// `human` or `json`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Human,
        }
    }
}

/// How process log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// The call log written to `message_call_logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLogConfig {
    /// Whether payloads are kept in the call log.
    pub keep_payloads: bool,
    /// Records written in one transaction at most.
    pub batch_size: usize,
    /// Longest time a record waits before its batch is written.
    pub flush_interval_ms: u64,
    /// Records waiting to be written at most; beyond it they are dropped
    /// and counted.
    pub queue_capacity: usize,
    /// Share (0 to 1) of successful publish and receipt records written;
    /// failures are always written, and the statistics count everything.
    pub sample_rate: f64,
    /// Age after which call-log records and connection events are
    /// deleted.
    pub retention_secs: u64,
    /// Rows of each log kept at most, the newest; 0 keeps any number.
    pub max_rows: u64,
    /// How often old rows are deleted.
    pub prune_interval_ms: u64,
}

impl Default for CallLogConfig {
    fn default() -> Self {
        Self {
            keep_payloads: false,
            batch_size: 512,
            flush_interval_ms: 200,
            queue_capacity: 16_384,
            sample_rate: 1.0,
            retention_secs: 7 * 24 * 3_600,
            max_rows: 1_000_000,
            prune_interval_ms: 60_000,
        }
    }
}

/// Connections to brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokersConfig {
    /// How long one connection attempt may take.
    pub connect_timeout_ms: u64,
    /// First delay before reconnecting after a failure.
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// Latest messages each channel subscription keeps, for SSE clients
    /// that resume with `Last-Event-ID`.
    pub replay_messages: usize,
    /// The Kafka consumer group under which subscriptions commit what they
    /// handed on, and from whose offsets they resume after a restart; a
    /// channel's operation binding `groupId` wins. None: subscriptions
    /// start at the end of their topics.
    pub kafka_group_id: Option<String>,
    /// A PEM file of CA certificates trusted for TLS broker connections
    /// besides the public roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Credentials presented to the brokers of matching servers; the first
    /// entry that matches a server is used.
    pub credentials: Vec<BrokerCredentials>,
    /// How long a publish may wait for a broker that is down before it
    /// fails; 0 fails it at once. Keep it below `server.publish_timeout_ms`.
    pub buffer_timeout_ms: u64,
    /// Publishes that may wait per broker; beyond, they fail at once.
    pub buffer_capacity: usize,
}

/// Credentials for the brokers of some servers: those of one document, one
/// server name, or the servers whose `security` names one scheme, or any
/// combination. Secrets are given as they are or as the name of an
/// environment variable that holds them.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerCredentials {
    /// The document whose servers it serves; any when absent.
    #[serde(default)]
    pub document: Option<String>,
    /// The server name; any when absent.
    #[serde(default)]
    pub server: Option<String>,
    /// A security scheme, by its name under `components.securitySchemes`,
    /// that the server must require; any when absent.
    #[serde(default)]
    pub scheme: Option<String>,
    /// User name (MQTT, AMQP, NATS, Kafka SASL).
    #[serde(default)]
    pub username: Option<String>,
    /// Password, as it is.
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// SASL mechanism: `plain`, `scram-sha-256` or `scram-sha-512` for
    /// Kafka; `plain`, `amqplain` or `external` for AMQP.
    #[serde(default)]
    pub mechanism: Option<SaslMechanism>,
    /// Connect over TLS even without certificate files.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM file of the client certificate.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Bearer token (WebSocket brokers; NATS token), as it is.
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// API key (WebSocket brokers), as it is.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Header that carries the API key; by default the one the scheme
    /// names, else `X-API-Key`.
    #[serde(default)]
    pub api_key_header: Option<String>,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("BrokerCredentials")
            .field("document", &self.document)
            .field("server", &self.server)
            .field("scheme", &self.scheme)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("mechanism", &self.mechanism)
            .field("tls", &self.tls)
            .field("token", &hidden(&self.token))
            .field("api_key", &hidden(&self.api_key))
            .finish_non_exhaustive()
    }
}

/// A SASL mechanism for broker logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    /// User name and password in the clear (over TLS, one hopes).
    Plain,
    /// RabbitMQ's AMQP-table form of PLAIN.
    Amqplain,
    /// The TLS client certificate identifies the client.
    External,
    /// SCRAM with SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl Default for BrokersConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            reconnect_initial_ms: 250,
            reconnect_max_ms: 30_000,
            replay_messages: 1_024,
            kafka_group_id: None,
            tls_ca_file: None,
            credentials: Vec::new(),
            buffer_timeout_ms: 2_000,
            buffer_capacity: 1_000,
        }
    }
}

/// WebSocket sessions of clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Messages queued for one session at most; a session that falls further
    /// behind is closed as too slow.
    pub queue_capacity: usize,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1_024,
            max_frame_bytes: 1024 * 1024,
        }
    }
}

/// Server-Sent Events streams of clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Events queued for one stream at most; a client that falls further
    /// behind has its stream ended.
    pub queue_capacity: usize,
    /// How often a comment keeps an idle stream open through proxies.
    pub heartbeat_secs: u64,
    /// Message events `GET /messages/stream` keeps for clients that
    /// resume with `Last-Event-ID`.
    pub stream_buffer: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1_024,
            heartbeat_secs: 15,
            stream_buffer: 10_000,
        }
    }
}

/// Webhook subscriptions: where they may point and how deliveries are
/// retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Whether callback URLs may point at loopback, private, link-local and
    /// other non-public addresses. Off: a subscription could otherwise make
    /// the gateway send requests into its own network.
    pub allow_private_targets: bool,
    /// How long one delivery attempt may take.
    pub timeout_ms: u64,
    /// Attempts per message, the first included, before it is recorded as
    /// failed.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with each further retry.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts, a `Retry-After` included.
    pub retry_max_ms: u64,
    /// Messages waiting for one subscription at most; beyond it new
    /// messages are recorded as failed and not queued.
    pub queue_capacity: usize,
    /// Messages in a row that failed after every attempt before the
    /// subscription is paused.
    pub pause_after_failures: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            timeout_ms: 10_000,
            max_attempts: 6,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            queue_capacity: 10_000,
            pause_after_failures: 5,
        }
    }
}

/// Client authentication and access rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether clients must authenticate; off, everyone may do everything.
    pub enabled: bool,
    /// How bearer tokens (JWT) are verified.
    pub jwt: JwtConfig,
    /// What principals may publish and subscribe to; nothing is allowed
    /// that no rule grants.
    pub rules: Vec<AclRule>,
}

/// How JWT bearer tokens are verified. With neither key set, only API keys
/// authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Secret of HS256 tokens.
    pub hs256_secret: Option<String>,
    /// PEM file of the RSA public key of RS256 tokens.
    pub rs256_public_key_file: Option<std::path::PathBuf>,
    /// JWKS file (`{"keys": [...]}`) of public keys, picked by a token's
    /// `kid`.
    pub jwks_file: Option<std::path::PathBuf>,
    /// The `aud` tokens must carry, when set.
    pub audience: Option<String>,
    /// The `iss` tokens must carry, when set.
    pub issuer: Option<String>,
    /// The claim that lists a token's roles.
    pub roles_claim: String,
    /// Clock difference tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_file: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            roles_claim: "roles".into(),
            leeway_secs: 30,
        }
    }
}

/// One access rule: who, which channels, which actions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// The principal it applies to (an API key's name or a token's `sub`);
    /// any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The role it applies to; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The name of the document whose channels it covers; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// The channel address, placeholders included, it covers; any when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Parameters that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Parameters that must equal these claims of the principal's token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bind: BTreeMap<String, String>,
    /// The message names it covers; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// `publish`, `subscribe` or both.
    pub actions: Vec<crate::auth::Action>,
}

/// A static route: every message of one channel is published on another,
/// on whatever brokers the two live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Its name, in logs, status and errors.
    pub name: String,
    /// Where messages come from.
    pub from: RouteEnd,
    /// Where they go.
    pub to: RouteEnd,
    /// The principal the access rules see for it; the route's name when
    /// absent.
    #[serde(default)]
    pub principal: Option<String>,
    /// That principal's roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Whether each message is checked against the target message's
    /// schema before it is forwarded; one that fails is counted and
    /// recorded, never forwarded.
    #[serde(default = "yes")]
    pub validate: bool,
    /// Messages that may wait for the target at most (while its broker is
    /// down); beyond, a message is refused and counted as `overflow`. An
    /// AMQP or Kafka source keeps what the route cannot take yet.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

fn yes() -> bool {
    true
}

fn default_max_pending() -> usize {
    100_000
}

/// One end of a route: a channel of a loaded document, or a raw address
/// on one of its servers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEnd {
    /// The document's name.
    pub document: String,
    /// The channel: its address as written, or its name (key) in the
    /// document. Give either this or `address`.
    #[serde(default)]
    pub channel: Option<String>,
    /// A raw address on a broker of the document, which no channel
    /// declares: `{name}` stands for a level of any value, captured on
    /// `from` and filled on `to`. Messages to it are not validated.
    #[serde(default)]
    pub address: Option<String>,
    /// With `address`, the server (broker) of the document that carries
    /// it; needed when the document has several.
    #[serde(default)]
    pub server: Option<String>,
    /// Parameter values: on `from`, they narrow what is taken; on `to`,
    /// they fill its address, `{name}` standing for a value captured from
    /// `from`. A `to` parameter not given takes the captured value of the
    /// same name.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration")]
pub struct ConfigError(#[source] config::ConfigError);

impl Config {
    /// Reads `path` (when it exists) and then the `STEPFLOW__` environment.
    ///
    /// A missing file is not an error: the defaults are the zero-setup
    /// gateway (SQLite file, in-memory broker).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::Config::builder()
            .add_source(config::File::from(path).required(false))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    // Lists from the environment are comma-separated.
                    .list_separator(",")
                    .with_list_parse_key("server.cors_allowed_origins"),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(ConfigError)
    }
}
