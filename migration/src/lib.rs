//! sea-orm migrations of the gateway's schema, applied in order at start.

pub use sea_orm_migration::prelude::*;

mod m20261203_000001_core;
mod m20261203_000002_webhooks;
mod m20261203_000003_auth;
mod m20261203_000004_access;
mod m20261204_000005_connection_events;

/// The gateway's migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261203_000001_core::Migration),
            Box::new(m20261203_000002_webhooks::Migration),
            Box::new(m20261203_000003_auth::Migration),
            Box::new(m20261203_000004_access::Migration),
            Box::new(m20261204_000005_connection_events::Migration),
        ]
    }
}
