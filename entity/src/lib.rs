//! sea-orm entities: one module per table of the gateway's schema.
//!
//! Ids are UUID strings, times are UTC, JSON columns hold JSON values.

pub mod acl_rules;
pub mod api_keys;
pub mod asyncapi_documents;
pub mod asyncapi_templates;
pub mod connection_events;
pub mod message_brokers;
pub mod message_call_logs;
pub mod message_channels;
pub mod message_definitions;
pub mod webhook_subscriptions;
