//! WebSocket servers as brokers (AsyncAPI `ws` and `wss`): each channel address is a
//! path on the server. A publish sends the message as a text frame on the
//! address's socket (opened on first use) and answers once it is written;
//! a subscription opens the address's socket and delivers every frame the
//! server sends on it.
//!
//! A path cannot be a wildcard, so a subscription must name every channel
//! parameter. `wss` servers are reached over TLS with the gateway's
//! client settings (public roots and `brokers.tls_ca_file`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::credentials::Credentials;

use super::{
    AdapterEvent, BrokerError, EventsTx, Inbound, Outbound, ProtocolAdapter, SubscribeOptions,
    TopicFilter,
};

type Writer = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Frame>;

/// One open socket to one address of the server.
struct Socket {
    writer: Arc<Mutex<Writer>>,
    reader: JoinHandle<()>,
}

/// One WebSocket server.
pub struct WebSocketAdapter {
    base: url::Url,
    connect_timeout: Duration,
    /// Client settings for `wss`.
    tls: Arc<rustls::ClientConfig>,
    /// Headers of every handshake: the configured bearer token or API key.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Open sockets by address; a subscribed address is also read.
    sockets: Mutex<HashMap<String, Socket>>,
    subscribed: Mutex<std::collections::HashSet<String>>,
    events_tx: std::sync::Mutex<Option<EventsTx>>,
}

impl WebSocketAdapter {
    /// A client of a `ws://` or `wss://host[:port][/base]` server, not yet
    /// connected; `tls` is used for `wss`.
    pub fn new(
        url: &str,
        tls: Arc<rustls::ClientConfig>,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let base = url::Url::parse(url)
            .map_err(|e| BrokerError::Unsupported(format!("invalid WebSocket URL `{url}`: {e}")))?;
        if !matches!(base.scheme(), "ws" | "wss") {
            return Err(BrokerError::Unsupported(format!(
                "WebSocket scheme `{}` is not supported; use ws:// or wss://",
                base.scheme()
            )));
        }
        Ok(Self {
            base,
            tls,
            headers: handshake_headers(credentials.unwrap_or_default())?,
            connect_timeout,
            sockets: Mutex::new(HashMap::new()),
            subscribed: Mutex::new(Default::default()),
            events_tx: std::sync::Mutex::new(None),
        })
    }

    /// The URL of `address` on the server: the base path joined with it.
    fn url_of(&self, address: &str) -> String {
        let mut url = self.base.clone();
        let joined = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            address.trim_start_matches('/')
        );
        url.set_path(&joined);
        url.to_string()
    }

    fn events_tx(&self) -> Result<EventsTx, BrokerError> {
        let events_tx = self
            .events_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        events_tx.ok_or_else(|| BrokerError::Unavailable("not connected".into()))
    }

    /// The writer of `address`'s socket, opening it when needed.
    async fn socket(&self, address: &str) -> Result<Arc<Mutex<Writer>>, BrokerError> {
        let mut sockets = self.sockets.lock().await;
        if let Some(socket) = sockets.get(address).filter(|s| !s.reader.is_finished()) {
            return Ok(socket.writer.clone());
        }
        let url = self.url_of(address);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| BrokerError::Unsupported(format!("cannot open {url}: {e}")))?;
        request.headers_mut().extend(self.headers.iter().cloned());
        // Small frames go out at once: Nagle's algorithm is off.
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
        let connected = tokio::time::timeout(self.connect_timeout, connecting).await;
        let (stream, _) = match connected {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(BrokerError::Unavailable(format!("cannot open {url}: {e}"))),
            Err(_) => return Err(BrokerError::Unavailable(format!("opening {url} timed out"))),
        };
        let (writer, reader) = stream.split();
        let writer = Arc::new(Mutex::new(writer));
        let reader = tokio::spawn(read_frames(reader, address.to_owned(), self.events_tx()?));
        sockets.insert(
            address.to_owned(),
            Socket {
                writer: writer.clone(),
                reader,
            },
        );
        Ok(writer)
    }
}

/// The handshake headers of the configured credentials: `Authorization:
/// Bearer` for a token, and the API key in its header.
fn handshake_headers(
    credentials: Credentials,
) -> Result<Vec<(HeaderName, HeaderValue)>, BrokerError> {
    let invalid = |what: &str| {
        BrokerError::Unsupported(format!(
            "the configured {what} cannot be sent in an HTTP header"
        ))
    };
    let mut headers = Vec::new();
    if let Some(token) = credentials.token {
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| invalid("token"))?;
        headers.push((AUTHORIZATION, value));
    }
    if let Some(key) = credentials.api_key {
        let name = HeaderName::from_bytes(key.header.as_bytes())
            .map_err(|_| invalid("API key header name"))?;
        let value = HeaderValue::from_str(&key.value).map_err(|_| invalid("API key"))?;
        headers.push((name, value));
    }
    for (_, value) in &mut headers {
        value.set_sensitive(true);
    }
    Ok(headers)
}

/// Delivers the server's frames on one address until the socket closes.
async fn read_frames(
    mut reader: futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    address: String,
    events_tx: EventsTx,
) {
    while let Some(Ok(frame)) = reader.next().await {
        let payload = match frame {
            Frame::Text(text) => bytes::Bytes::copy_from_slice(text.as_bytes()),
            Frame::Binary(data) => data,
            Frame::Close(_) => break,
            _ => continue,
        };
        let inbound = Inbound {
            topic: address.as_str().into(),
            payload,
            headers: Vec::new(),
            via: None,
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
    // The server closed the socket: the connection reconnects and opens the
    // subscribed addresses again.
    let reason = format!("WebSocket server closed the socket of `{address}`");
    let _ = events_tx.send(AdapterEvent::Disconnected(reason)).await;
}

#[async_trait]
impl ProtocolAdapter for WebSocketAdapter {
    /// Sockets open per address on first use; connecting only readies the
    /// adapter.
    async fn connect(&self, events_tx: EventsTx) -> Result<(), BrokerError> {
        for (_, socket) in self.sockets.lock().await.drain() {
            socket.reader.abort();
        }
        *self.events_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(events_tx);
        Ok(())
    }

    async fn publish(&self, message: Outbound) -> Result<(), BrokerError> {
        let writer = self.socket(&message.topic).await?;
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let sent = writer.lock().await.send(Frame::text(text)).await;
        sent.map_err(|e| BrokerError::Unavailable(format!("WebSocket send failed: {e}")))
    }

    async fn subscribe(
        &self,
        filter: &TopicFilter,
        _options: &SubscribeOptions,
    ) -> Result<(), BrokerError> {
        if filter.is_wildcard() {
            let message = "a WebSocket server cannot be subscribed with a wildcard: give every channel parameter";
            return Err(BrokerError::Refused(message.into()));
        }
        self.socket(filter.as_str()).await?;
        self.subscribed
            .lock()
            .await
            .insert(filter.as_str().to_owned());
        Ok(())
    }

    async fn unsubscribe(&self, filter: &TopicFilter) -> Result<(), BrokerError> {
        self.subscribed.lock().await.remove(filter.as_str());
        if let Some(socket) = self.sockets.lock().await.remove(filter.as_str()) {
            socket.reader.abort();
            // The socket is going away either way.
            let _ = socket.writer.lock().await.close().await;
        }
        Ok(())
    }

    async fn disconnect(&self) {
        for (_, socket) in self.sockets.lock().await.drain() {
            socket.reader.abort();
            let _ = socket.writer.lock().await.close().await;
        }
    }
}
