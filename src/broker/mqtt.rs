//! MQTT 3.1.1 through paho-mqtt: publish with the binding's QoS, subscribe
//! with topic filters, and report a lost connection to the owning actor.
//! The session is kept by the broker while the gateway is disconnected, so
//! QoS 1 and 2 messages that arrive meanwhile are delivered on reconnect;
//! a clean disconnect ends it. paho acknowledges a received QoS 1 or 2
//! message as it reads it, before the gateway hands it on; a route, which
//! must hold the acknowledgement until its target has the message, reads
//! through its own [`MqttSession`] instead.

use std::time::Duration;

use async_trait::async_trait;
use paho_mqtt as paho;

use crate::credentials::{Credentials, TlsFiles};

use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};

/// Default port of a plain MQTT listener.
const DEFAULT_PORT: u16 = 1883;
/// Default port of a TLS MQTT listener.
const TLS_PORT: u16 = 8883;
/// Keep-alive interval; a dead broker is noticed within about one and a
/// half of these.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Options of one MQTT connection.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// paho's form of the URL: `tcp://host:port`.
    pub server_uri: String,
    /// The broker's host, as the URL gives it.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// User name and password: from the config, else from the URL,
    /// percent-decoded.
    pub credentials: Option<(String, String)>,
    /// CA and client certificate files, when the connection uses TLS.
    pub tls: Option<TlsFiles>,
}

impl MqttOptions {
    /// Reads an `mqtt://[user:password@]host[:port]` (or `mqtts://`) URL
    /// and the configured credentials, which win over the URL's.
    pub fn from_url(
        url: &str,
        configured: Option<Credentials>,
        connect_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| BrokerError::Unsupported(format!("invalid MQTT URL `{url}`: {e}")))?;
        let secure_scheme = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                let message =
                    format!("MQTT scheme `{other}` is not supported; use mqtt:// or mqtts://");
                return Err(BrokerError::Unsupported(message));
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| BrokerError::Unsupported(format!("MQTT URL `{url}` has no host")))?;
        let configured = configured.unwrap_or_default();
        let tls = match (configured.tls, secure_scheme) {
            (Some(files), _) => Some(files),
            (None, true) => Some(TlsFiles::default()),
            (None, false) => None,
        };
        let default_port = if tls.is_some() {
            TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let port = parsed.port().unwrap_or(default_port);
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let from_url = (!parsed.username().is_empty()).then(|| {
            let password = parsed.password().map(decode).unwrap_or_default();
            (decode(parsed.username()), password)
        });
        let from_config = configured
            .username
            .map(|user| (user, configured.password.unwrap_or_default()));
        let transport = if tls.is_some() { "ssl" } else { "tcp" };
        Ok(Self {
            server_uri: format!("{transport}://{host}:{port}"),
            host: host.to_owned(),
            port,
            connect_timeout,
            credentials: from_config.or(from_url),
            tls,
        })
    }
}

/// paho's TLS options: the CA file replaces the system's roots when given,
/// and the client certificate and key identify the gateway.
fn ssl_options(tls: &TlsFiles) -> Result<paho::SslOptions, BrokerError> {
    let mut builder = paho::SslOptionsBuilder::new();
    let failed = |e: paho::Error| BrokerError::Unsupported(format!("MQTT TLS settings: {e}"));
    if let Some(ca) = &tls.ca_file {
        builder.trust_store(ca).map_err(failed)?;
    }
    if let Some(cert) = &tls.cert_file {
        builder.key_store(cert).map_err(failed)?;
    }
    if let Some(key) = &tls.key_file {
        builder.private_key(key).map_err(failed)?;
    }
    Ok(builder.finalize())
}

/// One MQTT connection.
pub struct MqttAdapter {
    client: paho::AsyncClient,
    options: MqttOptions,
}

impl MqttAdapter {
    /// A client for `url`, not yet connected.
    pub fn new(
        url: &str,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let options = MqttOptions::from_url(url, credentials, connect_timeout)?;
        let client_id = format!("stepflow-{}", uuid::Uuid::new_v4().simple());
        let client = paho::CreateOptionsBuilder::new()
            .server_uri(&options.server_uri)
            .client_id(client_id)
            .persistence(paho::PersistenceType::None)
            .create_client()
            .map_err(|e| BrokerError::Unsupported(format!("cannot create MQTT client: {e}")))?;
        Ok(Self { client, options })
    }

    /// Options of a connection: `clean` starts a session afresh and ends
    /// it with the connection. Otherwise the broker keeps the session, its
    /// subscriptions and the QoS 1 and 2 messages that arrive for them,
    /// while the gateway is disconnected, across a broker restart too
    /// where the broker persists sessions; a reconnection resumes it.
    fn connect_options(&self, clean: bool) -> Result<paho::ConnectOptions, BrokerError> {
        let mut builder = paho::ConnectOptionsBuilder::new_v3();
        builder
            .keep_alive_interval(KEEP_ALIVE)
            .clean_session(clean)
            .connect_timeout(self.options.connect_timeout);
        if let Some((user, password)) = &self.options.credentials {
            builder.user_name(user.as_str()).password(password.as_str());
        }
        if let Some(tls) = &self.options.tls {
            builder.ssl_options(ssl_options(tls)?);
        }
        Ok(builder.finalize())
    }

    fn install_callbacks(&self, events_tx: EventsTx) {
        let lost_tx = events_tx.clone();
        self.client.set_connection_lost_callback(move |_| {
            let _ = lost_tx.try_send(AdapterEvent::Disconnected(
                "connection to the MQTT broker lost".into(),
            ));
        });
        // paho calls this on its own thread, so blocking there applies
        // back-pressure to the broker instead of dropping messages.
        self.client.set_message_callback(move |_, message| {
            let Some(message) = message else { return };
            let inbound = Inbound {
                topic: message.topic().into(),
                payload: bytes::Bytes::copy_from_slice(message.payload()),
                headers: Vec::new(),
                via: None,
                settle: None,
            };
            let _ = events_tx.blocking_send(AdapterEvent::Message(inbound));
        });
    }
}

#[async_trait]
impl ProtocolAdapter for MqttAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        self.install_callbacks(events_tx);
        let options = self.connect_options(false)?;
        let server = &self.options.server_uri;
        self.client.connect(options).await.map(|_| ()).map_err(|e| {
            // paho shows a refusal's return code only as "(0)".
            let reason = match e {
                paho::Error::ConnectReturn(code) => {
                    format!("the broker refused the connection: {code}")
                }
                other => other.to_string(),
            };
            BrokerError::Unavailable(format!("cannot connect to {server}: {reason}"))
        })
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        if !self.client.is_connected() {
            return Err(BrokerError::Unavailable(format!(
                "not connected to {}",
                self.options.server_uri
            )));
        }
        let qos = i32::from(message.qos.min(2));
        let mut builder = paho::MessageBuilder::new()
            .topic(message.topic)
            .payload(message.payload.to_vec())
            .qos(qos);
        if message.retain {
            builder = builder.retained(true);
        }
        self.client
            .publish(builder.finalize())
            .await
            .map_err(publish_error)
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        let qos = i32::from(options.qos.min(2));
        self.client
            .subscribe(filter.as_str(), qos)
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Refused(format!("MQTT subscribe to `{filter}` failed: {e}")))
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        self.client
            .unsubscribe(filter.as_str())
            .await
            .map(|_| ())
            .map_err(|e| {
                BrokerError::Refused(format!("MQTT unsubscribe from `{filter}` failed: {e}"))
            })
    }

    async fn disconnect(&self) {
        if !self.client.is_connected() {
            return;
        }
        // The connection is going away either way. A clean connection
        // after it has the broker forget the session, so that nothing is
        // queued for a gateway that will not come back as this client.
        let _ = self.client.disconnect(None).await;
        if let Ok(options) = self.connect_options(true) {
            if self.client.connect(options).await.is_ok() {
                let _ = self.client.disconnect(None).await;
            }
        }
    }
}

fn publish_error(error: paho::Error) -> BrokerError {
    match error {
        paho::Error::Disconnected => {
            BrokerError::Unavailable("disconnected from the MQTT broker".into())
        }
        // A publish cut short: the connection dropped before the broker
        // acknowledged it.
        paho::Error::OperationIncomplete => BrokerError::Unavailable(
            "the connection to the MQTT broker was lost before it acknowledged the message".into(),
        ),
        other => BrokerError::Refused(format!("MQTT publish failed: {other}")),
    }
}

mod session;

pub use session::MqttSession;

#[cfg(test)]
mod tests;
