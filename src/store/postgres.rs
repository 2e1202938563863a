//! PostgreSQL specifics: a connection pool sized for the shard count.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::StoreError;
use super::schema::Dialect;
use super::sql::SqlStore;

impl SqlStore {
    /// Connects to PostgreSQL at `url` with up to `max_connections` and migrates it.
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        super::install_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Dialect::Postgres.migrate(&pool).await?;
        Ok(SqlStore {
            pool,
            dialect: Dialect::Postgres,
            runner_lock: std::sync::Mutex::new(None),
            sqlite_path: None,
        })
    }
}
