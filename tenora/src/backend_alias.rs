//! Short names for the per-backend handle and connection types.

/// Tenora on PostgreSQL.
#[cfg(feature = "postgres")]
pub type PgTenora = crate::Tenora<crate::backend::Postgres>;

/// Tenora on SQLite.
#[cfg(feature = "sqlite")]
pub type SqliteTenora = crate::Tenora<crate::backend::Sqlite>;

/// A pooled PostgreSQL connection from Tenora.
#[cfg(feature = "postgres")]
pub type PgConn = crate::PooledConn<crate::backend::Postgres>;

/// A pooled SQLite connection from Tenora.
#[cfg(feature = "sqlite")]
pub type SqliteConn = crate::PooledConn<crate::backend::Sqlite>;

/// Tenora on MySQL / MariaDB.
#[cfg(feature = "mysql")]
pub type MysqlTenora = crate::Tenora<crate::backend::Mysql>;

/// A pooled MySQL connection from Tenora.
#[cfg(feature = "mysql")]
pub type MysqlConn = crate::PooledConn<crate::backend::Mysql>;
