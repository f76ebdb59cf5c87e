//! NATS through async-nats: subjects are the address in dotted form (`/`
//! to `.`, `+` to `*`, `#` to `>`), headers are carried both ways, and a
//! publish answers once the message is flushed to the server (core NATS has
//! no acknowledgement).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::address::{dotted, undotted};
use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};
use crate::credentials::Credentials;

/// One NATS connection.
pub struct NatsAdapter {
    url: String,
    credentials: Option<Credentials>,
    connect_timeout: Duration,
    client: Mutex<Option<async_nats::Client>>,
    /// One task per subscription, forwarding its messages; dropping the
    /// task drops the subscriber, which unsubscribes.
    subscriptions: Mutex<HashMap<TopicFilter, JoinHandle<()>>>,
    events_tx: Mutex<Option<EventsTx>>,
}

impl NatsAdapter {
    /// A client for a `nats://host:port` URL, not yet connected.
    pub fn new(
        url: &str,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| BrokerError::Unsupported(format!("invalid NATS URL `{url}`: {e}")))?;
        if parsed.scheme() != "nats" {
            return Err(BrokerError::Unsupported(format!(
                "NATS scheme `{}` is not supported; use nats://",
                parsed.scheme()
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            credentials,
            connect_timeout,
            client: Mutex::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            events_tx: Mutex::new(None),
        })
    }

    /// Options with the configured credentials: user and password, or a
    /// token, and TLS with the given CA and client certificate.
    fn options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new();
        let Some(credentials) = &self.credentials else {
            return options;
        };
        if let (Some(user), Some(password)) = (&credentials.username, &credentials.password) {
            options = options.user_and_password(user.clone(), password.clone());
        } else if let Some(token) = &credentials.token {
            options = options.token(token.clone());
        }
        if let Some(tls) = &credentials.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        options
    }

    fn client(&self) -> Result<async_nats::Client, BrokerError> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        client.ok_or_else(|| BrokerError::Unavailable("not connected to NATS".into()))
    }

    fn drop_subscriptions(&self) {
        for (_, task) in self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

#[async_trait]
impl ProtocolAdapter for NatsAdapter {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        // A reconnect starts afresh: the connection actor subscribes again.
        self.drop_subscriptions();
        self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        let lost_tx = events_tx.clone();
        let client = self
            .options()
            .connection_timeout(self.connect_timeout)
            .max_reconnects(Some(0))
            .event_callback(move |event| {
                let lost_tx = lost_tx.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        let reason = "connection to the NATS server lost".to_owned();
                        let _ = lost_tx.try_send(AdapterEvent::Disconnected(reason));
                    }
                }
            })
            .connect(self.url.as_str())
            .await
            .map_err(|e| {
                BrokerError::Unavailable(format!("cannot connect to {}: {e}", self.url))
            })?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
        *self.events_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(events_tx);
        Ok(())
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        let client = self.client()?;
        let subject = dotted(&message.topic, ">");
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &message.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        let sent = match message.headers.is_empty() {
            true => client.publish(subject, message.payload).await,
            false => {
                client
                    .publish_with_headers(subject, headers, message.payload)
                    .await
            }
        };
        sent.map_err(|e| BrokerError::Unavailable(format!("NATS publish failed: {e}")))?;
        client
            .flush()
            .await
            .map_err(|e| BrokerError::Unavailable(format!("NATS flush failed: {e}")))
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        _options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        let client = self.client()?;
        let events_tx = self
            .events_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let events_tx =
            events_tx.ok_or_else(|| BrokerError::Unavailable("not connected to NATS".into()))?;
        let mut subscriber = client
            .subscribe(dotted(filter.as_str(), ">"))
            .await
            .map_err(|e| {
                BrokerError::Refused(format!("NATS subscribe to `{filter}` failed: {e}"))
            })?;
        let shape = filter.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Some(topic) = undotted(&shape, &message.subject) else {
                    continue;
                };
                let headers = message
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(name, values)| {
                        values
                            .iter()
                            .map(move |v| (name.to_string(), v.to_string()))
                    })
                    .collect();
                let inbound = Inbound {
                    topic: topic.into(),
                    payload: message.payload,
                    headers,
                    via: Some(shape.clone()),
                    settle: None,
                };
                if events_tx
                    .send(AdapterEvent::Message(inbound))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let previous = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(filter.clone(), task);
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        if let Some(task) = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(filter)
        {
            task.abort();
        }
        Ok(())
    }

    async fn disconnect(&self) {
        self.drop_subscriptions();
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(client) = client {
            // The connection closes with the last handle either way.
            let _ = client.flush().await;
        }
    }
}
