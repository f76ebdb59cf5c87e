//! The actor core: broker connections under one supervisor, one actor per
//! broker-side subscription, the call-log writer, the statistics, and the
//! sessions of WebSocket, SSE and webhook subscribers.

pub mod connection;
pub mod frames;
pub mod log_writer;
pub mod router;
pub mod sse_session;
pub mod stats;
pub mod subscription;
pub mod supervisor;
pub mod webhook_session;
pub mod webhooks;
pub mod ws_session;

pub use connection::{BrokerConnection, ConnectionState, ConnectionStatus};
pub use log_writer::{CallLog, CallRecord, LogWriter};
pub use router::Router;
pub use sse_session::SseSession;
pub use subscription::{ChannelSubscription, Delivery};
pub use supervisor::BrokerSupervisor;
pub use ws_session::WsSession;
