//! A route's own MQTT session, through rumqttc. Its client id comes from
//! the route's name, and the broker keeps the session (its subscriptions
//! and every QoS 1 or 2 message not yet acknowledged) across
//! disconnections and gateway restarts. Each received message is
//! acknowledged only once the gateway is done with it, through its
//! [`Settle`]: for a route, once the target broker has taken it. A message
//! left unacknowledged is sent again by the broker when the session
//! resumes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, TlsConfiguration, Transport};
use tokio::task::JoinHandle;

use super::{MqttOptions, KEEP_ALIVE};
use crate::broker::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, Settle,
    SubscribeOptions, TopicFilter,
};
use crate::credentials::Credentials;

/// Requests (subscriptions and acknowledgements) that may wait for the
/// session's event loop. A session has at most 65,535 messages in flight
/// (one per packet id), so an acknowledgement always finds room, even
/// while the event loop waits for the gateway to take a message.
const REQUEST_CAPACITY: usize = u16::MAX as usize + 64;

/// One durable MQTT session that only receives.
pub struct MqttSession {
    options: MqttOptions,
    client_id: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    live: Mutex<Option<Live>>,
}

/// The connection of the moment.
struct Live {
    client: AsyncClient,
    pump: JoinHandle<()>,
    closing: Arc<AtomicBool>,
}

impl MqttSession {
    /// A session under `client_id` with the broker of `url`, not yet
    /// connected; `tls` holds the shared TLS settings.
    pub fn new(
        url: &str,
        client_id: &str,
        credentials: Option<Credentials>,
        tls: &Arc<rustls::ClientConfig>,
        connect_timeout: std::time::Duration,
    ) -> Result<Self, BrokerError> {
        let options = MqttOptions::from_url(url, credentials, connect_timeout)?;
        let tls = match &options.tls {
            Some(files) => Some(
                crate::tls::with_files(tls, files)
                    .map_err(|e| BrokerError::Unsupported(format!("MQTT TLS settings: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            options,
            client_id: client_id.to_owned(),
            tls,
            live: Mutex::new(None),
        })
    }

    fn rumqttc_options(&self) -> rumqttc::MqttOptions {
        let mut options =
            rumqttc::MqttOptions::new(&self.client_id, &self.options.host, self.options.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some((user, password)) = &self.options.credentials {
            options.set_credentials(user, password);
        }
        if let Some(tls) = &self.tls {
            let tls = TlsConfiguration::Rustls(tls.clone());
            options.set_transport(Transport::tls_with_config(tls));
        }
        options
    }

    fn client(&self) -> Result<AsyncClient, BrokerError> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.as_ref()
            .map(|live| live.client.clone())
            .ok_or_else(|| BrokerError::Unavailable("not connected to the MQTT broker".into()))
    }

    /// Ends the connection of the moment, if any, keeping the session.
    async fn close(&self) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(live) = live else { return };
        live.closing.store(true, Ordering::Relaxed);
        let _ = live.client.disconnect().await;
        // The event loop sends the DISCONNECT and then ends; a broker that
        // does not answer is not waited for.
        let mut pump = live.pump;
        if tokio::time::timeout(KEEP_ALIVE, &mut pump).await.is_err() {
            pump.abort();
        }
    }
}

/// Polls the event loop until the broker accepts the connection.
async fn connected(eventloop: &mut EventLoop) -> Result<(), rumqttc::ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
            return Ok(());
        }
    }
}

/// Hands each received message on with its acknowledgement, and reports
/// a lost connection unless the gateway closed it.
async fn pump(
    mut eventloop: EventLoop,
    client: AsyncClient,
    events_tx: EventsTx,
    closing: Arc<AtomicBool>,
) {
    loop {
        let publish = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => publish,
            Ok(_) => continue,
            Err(error) => {
                if !closing.load(Ordering::Relaxed) {
                    let reason = format!("connection to the MQTT broker lost: {error}");
                    let _ = events_tx.send(AdapterEvent::Disconnected(reason)).await;
                }
                return;
            }
        };
        let acks = client.clone();
        let held = publish.clone();
        // Not acknowledged, a message stays with the broker, which sends
        // it again when the session resumes.
        let settle = Settle::new(move |done| {
            if done {
                let _ = acks.try_ack(&held);
            }
        });
        let inbound = Inbound {
            topic: publish.topic.as_str().into(),
            payload: publish.payload,
            headers: Vec::new(),
            via: None,
            settle: Some(settle),
        };
        // Waiting here holds back the broker, which sends no more than
        // its in-flight limit of unacknowledged messages.
        if events_tx
            .send(AdapterEvent::Message(inbound))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

#[async_trait]
impl ProtocolAdapter for MqttSession {
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        self.close().await;
        let (client, mut eventloop) = AsyncClient::new(self.rumqttc_options(), REQUEST_CAPACITY);
        let server = &self.options.server_uri;
        let failed = |reason: String| {
            BrokerError::Unavailable(format!("cannot connect to {server}: {reason}"))
        };
        match tokio::time::timeout(self.options.connect_timeout, connected(&mut eventloop)).await {
            Ok(Ok(())) => {}
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                return Err(failed(format!(
                    "the broker refused the connection: {code:?}"
                )))
            }
            Ok(Err(error)) => return Err(failed(error.to_string())),
            Err(_) => return Err(failed("no answer in time".into())),
        }
        let closing = Arc::new(AtomicBool::new(false));
        let task = pump(eventloop, client.clone(), events_tx, closing.clone());
        let live = Live {
            client,
            pump: tokio::spawn(task),
            closing,
        };
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
        Ok(())
    }

    async fn publish(&self, _message: Outbound) -> Result<(), BrokerError> {
        Err(BrokerError::Refused(
            "a route's source session only receives".into(),
        ))
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        self.client()?
            .subscribe(filter.as_str(), qos(options.qos))
            .await
            .map_err(|e| BrokerError::Unavailable(format!("MQTT subscribe to `{filter}`: {e}")))
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        self.client()?
            .unsubscribe(filter.as_str())
            .await
            .map_err(|e| BrokerError::Unavailable(format!("MQTT unsubscribe from `{filter}`: {e}")))
    }

    async fn disconnect(&self) {
        self.close().await;
    }
}
