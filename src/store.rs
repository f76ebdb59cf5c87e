//! Storage: the database connection, its migrations, and the queries over
//! the sea-orm entities.

pub mod acl_rules;
pub mod api_keys;
pub mod call_logs;
pub mod connection_events;
pub mod documents;
pub mod retention;
pub mod webhooks;

use std::path::Path;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file's folder could not be created.
    #[error("cannot create the database folder `{path}`")]
    Folder {
        /// The folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database refused the connection or a migration.
    #[error("database error")]
    Database(#[from] DbErr),
}

/// Opens the database at `url`, creating a SQLite file and its folder on
/// first use, and applies every pending migration.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, StoreError> {
    let url = prepare_sqlite(url)?;
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections.max(1))
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Write-ahead logging: a call-log batch commits with one sync of
        // the log rather than a rollback journal's several, and readers of
        // the API do not wait for the writer.
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
        });
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// For `sqlite://` URLs: makes sure the folder exists and that the file is
/// created when missing.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_owned());
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_owned());
    }
    if let Some(folder) = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
            path: folder.display().to_string(),
            source,
        })?;
    }
    let query = match query {
        "" => "mode=rwc".to_owned(),
        q if q.contains("mode=") => q.to_owned(),
        q => format!("{q}&mode=rwc"),
    };
    Ok(format!("sqlite://{path}?{query}"))
}
