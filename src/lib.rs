//! StepFlow Gateway: an AsyncAPI-driven message router.
//!
//! A registered AsyncAPI document becomes live routing: its servers become
//! broker connections, its channels can be published to over REST and
//! subscribed to over WebSocket, and every message is checked against its
//! schema and logged.

pub mod actors;
pub mod asyncapi;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod catalog;
pub mod config;
pub mod credentials;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod publish;
pub mod registry;
pub mod routes;
pub mod store;
pub mod tls;
pub mod webhook;

pub use config::Config;
pub use gateway::{Gateway, GatewayError};
