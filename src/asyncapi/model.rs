//! The normalized model: what the gateway needs of a 2.x or 3.0 document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A loaded document in the version-neutral form.
#[derive(Debug, Clone)]
pub struct Document {
    /// The `asyncapi` field, such as `2.6.0`.
    pub asyncapi_version: String,
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub info_version: String,
    /// The servers, in document order.
    pub servers: Vec<Server>,
    /// The channels, in document order.
    pub channels: Vec<Channel>,
    /// The whole document with local references resolved; a reference that
    /// would loop is kept as `{"$ref": ...}` to its enclosing definition.
    pub resolved: Value,
    /// Problems that do not refuse the document.
    pub warnings: Vec<super::Diagnostic>,
}

/// A server: a broker the document's channels live on.
#[derive(Debug, Clone)]
pub struct Server {
    /// The server's key in the document.
    pub name: String,
    /// The URL with variables replaced by their defaults.
    pub url: String,
    /// The protocol, such as `mqtt`.
    pub protocol: String,
    /// The protocol version, if given.
    pub protocol_version: Option<String>,
    /// The description, if given.
    pub description: Option<String>,
    /// Server bindings by protocol.
    pub bindings: Value,
}

/// A channel with the messages it carries and the directions clients may use.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The channel's key: the address in 2.x, the channel id in 3.0.
    pub name: String,
    /// The address with `{parameter}` placeholders.
    pub address: String,
    /// The description, if given.
    pub description: Option<String>,
    /// The parameters by name.
    pub parameters: BTreeMap<String, Parameter>,
    /// Channel bindings by protocol.
    pub bindings: Value,
    /// Operation bindings by protocol, merged over the channel's operations.
    pub operation_bindings: Value,
    /// Servers the channel is limited to; empty means every server.
    pub servers: Vec<String>,
    /// Whether clients may send on it (2.x `publish`, 3.0 `receive`).
    pub client_publish: bool,
    /// Whether clients may receive from it (2.x `subscribe`, 3.0 `send`).
    pub client_subscribe: bool,
    /// The messages, one per distinct name.
    pub messages: Vec<Message>,
}

/// A channel parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// The schema a value must match (3.0 `enum` becomes a schema too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// A runtime expression such as `$message.payload#/deviceId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The description, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A message a channel carries.
#[derive(Debug, Clone)]
pub struct Message {
    /// The key the message is known by inside its channel (3.0) or the
    /// component it came from (2.x).
    pub key: String,
    /// The message's name.
    pub name: String,
    /// The title, if given.
    pub title: Option<String>,
    /// The content type, or the document's default.
    pub content_type: Option<String>,
    /// The payload's `schemaFormat`, if given.
    pub schema_format: Option<String>,
    /// The resolved payload schema.
    pub payload: Option<Value>,
    /// The resolved headers schema.
    pub headers: Option<Value>,
    /// Message bindings by protocol.
    pub bindings: Value,
    /// Whether clients may send it.
    pub client_publish: bool,
    /// Whether clients may receive it.
    pub client_subscribe: bool,
}

impl Channel {
    /// Adds `message`, or widens the directions of the one with its name.
    pub fn add_message(&mut self, message: Message) {
        match self.messages.iter_mut().find(|m| m.name == message.name) {
            Some(existing) => {
                existing.client_publish |= message.client_publish;
                existing.client_subscribe |= message.client_subscribe;
            }
            None => self.messages.push(message),
        }
    }
}
