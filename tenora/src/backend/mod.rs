//! What differs between database servers: admin SQL, connection setup, naming limits.
//!
//! [`Tenora`](crate::Tenora) is generic over a [`Backend`]; pick one with a cargo feature and the
//! matching type: `Postgres` (feature `postgres`), `Mysql` (`mysql`), `Sqlite` (`sqlite`, on by
//! default). The trait is sealed: its methods are Tenora's plumbing, not an extension point.
//!
//! The shape: a [`Backend`] is the static dialect of one kind of server (limits, quoting, lock
//! statements, connection types); a `Server` value (crate-internal, one per configured database
//! server) carries the admin sessions, connection settings and DDL of one server. `Tenora`
//! holds the servers and a budget per server; a tenant's registry row says which server holds
//! it. One migration runner (`migrate::run_locked`) takes each server's lock/unlock hooks.

use std::future::Future;

use diesel_async::pooled_connection::PoolError;

use crate::config::Client;
use crate::migrate::MigrationOp;
use crate::migrations::Migrations;
use crate::registry::RegistryConnection;
use crate::tenant_id::TenantId;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::Postgres;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "mysql")]
pub use mysql::Mysql;

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::Sqlite;

/// What a tenant creation has made on the server so far.
#[doc(hidden)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Made {
    /// The tenant's user exists.
    pub user: bool,
    /// The tenant's database exists.
    pub database: bool,
}

/// Which database a migration run is for.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The base database.
    Base,
    /// A tenant's database.
    Tenant(&'a TenantId),
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

pub(crate) mod server;
pub(crate) use server::{MigrationLock, Server};

/// A database server kind Tenora can provision tenants on: PostgreSQL, MySQL/MariaDB or
/// SQLite. Sealed.
///
/// A backend is a type, never a value: it names the SQL dialect, the connection type and the
/// limits of its kind of server. What Tenora does on one configured server (its admin
/// sessions, connection settings, DDL) lives in a per-server value Tenora keeps to itself, so
/// an application cannot create or drop a database behind the registry's back.
pub trait Backend: sealed::Sealed + Sized + Send + Sync + 'static {
    /// The `client` value of configs for this backend.
    const CLIENT: Client;

    /// The most administrative connections (CREATE DATABASE, CREATE ROLE, ...) the backend
    /// holds at once per server. They are a slice of the connection budget kept aside for them.
    const ADMIN_CONNECTIONS: u32;

    /// A pooled connection idle for longer than this is pinged before it is handed out. Ended
    /// sessions the driver can tell without a round trip (PostgreSQL) are caught on every
    /// checkout; the ping is for what it cannot see (a silent network, MySQL's killed or
    /// timed-out sessions).
    #[doc(hidden)]
    const PING_IDLE_AFTER: std::time::Duration;

    /// The diesel-async connection type handed out by `tenant_conn` and `base_conn`.
    #[allow(private_bounds)]
    type Connection: diesel_async::AsyncConnection
        + RegistryConnection
        + crate::run_log::RunLogConnection
        + crate::spare_table::SpareConnection
        + Send
        + 'static;

    /// The bb8 connection manager of [`Backend::Connection`].
    type Manager: bb8::ManageConnection<Connection = Self::Connection, Error = PoolError>;

    /// One configured database server of this kind (internal).
    #[doc(hidden)]
    #[allow(private_bounds)]
    type Server: server::Server<Self>;

    /// Runs `op` with Diesel's migration harness on `conn` (holding the OS file lock
    /// `file_lock` for the run, when given) and hands the connection back. The caller takes
    /// the database's migration lock around it (see `migrate::run_locked`).
    #[doc(hidden)]
    fn run_harness(
        conn: Self::Connection,
        migrations: Migrations,
        op: MigrationOp,
        file_lock: Option<std::path::PathBuf>,
    ) -> impl Future<
        Output = std::result::Result<
            (Self::Connection, crate::migrate::Ran),
            crate::error::BoxError,
        >,
    > + Send;
}

/// A stable 64-bit hash (FNV-1a) of `parts`, for lock keys that every process must derive alike.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}
