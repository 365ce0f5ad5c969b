//! What differs between database servers: admin SQL, connection setup, naming limits.
//!
//! [`Tenora`](crate::Tenora) is generic over a [`Backend`]; pick one with a cargo feature and the
//! matching type: `Postgres` (feature `postgres`), `Mysql` (`mysql`), `Sqlite` (`sqlite`, on by
//! default). The trait is sealed: its methods are Tenora's plumbing, not an extension point.

use std::future::Future;

use diesel_async::pooled_connection::PoolError;

use crate::config::{Client, Config};
use crate::error::Result;
use crate::lifecycle::Step;
use crate::migrate::MigrationOp;
use crate::migrations::Migrations;
use crate::naming::Naming;
use crate::ownership::{Found, Inventory, Proof};
use crate::registry::RegistryConnection;
use crate::secret::SecretString;
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

/// A database server kind Tenora can provision tenants on. Sealed.
pub trait Backend: sealed::Sealed + Sized + Send + Sync + 'static {
    /// The `client` value of configs for this backend.
    const CLIENT: Client;

    /// The most administrative connections (CREATE DATABASE, CREATE ROLE, ...) the backend
    /// holds at once. They are a slice of the connection budget kept aside for them.
    const ADMIN_CONNECTIONS: u32;

    /// A pooled connection idle for longer than this is pinged before it is handed out. Ended
    /// sessions the driver can tell without a round trip (PostgreSQL) are caught on every
    /// checkout; the ping is for what it cannot see (a silent network, MySQL's killed or
    /// timed-out sessions).
    #[doc(hidden)]
    const PING_IDLE_AFTER: std::time::Duration;

    /// The diesel-async connection type handed out by `tenant_conn` and `base_conn`.
    type Connection: diesel_async::AsyncConnection + RegistryConnection + Send + 'static;

    /// The bb8 connection manager of [`Backend::Connection`].
    type Manager: bb8::ManageConnection<Connection = Self::Connection, Error = PoolError>;

    /// Builds the backend from a validated config.
    #[doc(hidden)]
    fn from_config(config: &Config) -> Result<Self>;

    /// How tenant ids map to names on this backend.
    fn naming(&self) -> &Naming;

    /// Whether tenants get their own database user with a password.
    fn uses_passwords(&self) -> bool;

    /// The base database, for messages (no credentials).
    #[doc(hidden)]
    fn describe_base(&self) -> String;

    /// A tenant's database, for messages (no credentials).
    #[doc(hidden)]
    fn describe_tenant(&self, id: &TenantId) -> String;

    /// Pool manager for the base database.
    #[doc(hidden)]
    fn base_manager(&self) -> Self::Manager;

    /// Pool manager for a tenant's database, connecting as the tenant's user.
    #[doc(hidden)]
    fn tenant_manager(&self, id: &TenantId, password: Option<&SecretString>) -> Self::Manager;

    /// One unpooled connection to a tenant's database as the tenant's user.
    #[doc(hidden)]
    fn connect_tenant(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
    ) -> impl Future<Output = Result<Self::Connection>> + Send;

    /// One unpooled connection to the base database.
    #[doc(hidden)]
    fn connect_base(&self) -> impl Future<Output = Result<Self::Connection>> + Send;

    /// The server's connection limit and the connections other clients hold, read through
    /// `base` (Tenora's first connection to the base database); `None` where the server has no
    /// such limit (SQLite).
    #[doc(hidden)]
    fn server_limits(
        &self,
        _base: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<crate::budget::plan::ServerLimits>>> + Send {
        async { Ok(None) }
    }

    /// Reads, through `base`, server facts that shape names (MySQL vs MariaDB user-name
    /// limits); the default learns nothing.
    #[doc(hidden)]
    fn learn_server(
        &self,
        _base: &mut Self::Connection,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Creates the tenant's user, carrying the proof of `token` (see `ownership`) from the
    /// statement that creates it. Fails with `TenantExists` when the user exists already.
    #[doc(hidden)]
    fn create_user(
        &self,
        id: &TenantId,
        password: &SecretString,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the tenant user's password (PostgreSQL: as a SCRAM verifier; MariaDB: as its hash;
    /// MySQL: in the statement, over the admin connection). Sessions already open stay.
    #[doc(hidden)]
    fn set_password(
        &self,
        id: &TenantId,
        password: &SecretString,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = password;
        async move {
            Err(crate::error::Error::Unsupported(format!(
                "tenant `{id}` has no database user of its own on this backend, so it has no \
                 password to rotate"
            )))
        }
    }

    /// Drops the tenant's user if it exists (only called once `inspect` proved it ours): its
    /// sessions end, and what it holds in other databases is released first.
    #[doc(hidden)]
    fn drop_user(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Creates the tenant's database, owned by its user and carrying the proof of `token`.
    /// Fails with `TenantExists` when the database exists already.
    #[doc(hidden)]
    fn create_database(
        &self,
        id: &TenantId,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Which objects bearing the tenant's names exist, and whether each carries `proof`.
    #[doc(hidden)]
    fn inspect(&self, id: &TenantId, proof: &Proof) -> impl Future<Output = Result<Found>> + Send;

    /// Every database and user whose name starts with the configured prefixes, with the mark
    /// each carries (one bulk read, for `check`).
    #[doc(hidden)]
    fn inventory(&self) -> impl Future<Output = Result<Inventory>> + Send;

    /// The marks (user, database) that a tenant's objects carry when `proof` proves them, as
    /// `inventory` reads them; `None` where only presence can be checked in bulk.
    #[doc(hidden)]
    fn expected_marks(&self, proof: &Proof) -> (Option<String>, Option<String>);

    /// The fingerprint of the migrations the template database was built with; `None` when
    /// there is none. Only PostgreSQL has templates.
    #[doc(hidden)]
    fn template_fingerprint(&self) -> impl Future<Output = Result<Option<String>>> + Send {
        async { Ok(None) }
    }

    /// Takes the lease of tenant `id` in registry `scope` for this process, without waiting:
    /// `false` when another process holds it. The lease ends with [`Backend::release_lease`] or
    /// when this process dies (a server session lock, or an OS file lock).
    #[doc(hidden)]
    fn try_lease(&self, id: &TenantId, scope: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Ends a lease taken with [`Backend::try_lease`].
    #[doc(hidden)]
    fn release_lease(&self, id: &TenantId, scope: &str) -> impl Future<Output = ()> + Send;

    /// Restricts the tenant's database to its own user.
    #[doc(hidden)]
    fn lock_down(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Drops the tenant's database if it exists, closing other sessions on it (only called
    /// once `inspect` proved it ours).
    #[doc(hidden)]
    fn drop_database(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Creates the base database if it does not exist; returns whether it was created.
    #[doc(hidden)]
    fn create_base(&self) -> impl Future<Output = Result<bool>> + Send;

    /// Builds (or rebuilds, when `fingerprint` differs from the one it was built for) the
    /// template database migrated with `migrations`. Only PostgreSQL has templates.
    #[doc(hidden)]
    fn prepare_template(
        &self,
        _migrations: &Migrations,
        _fingerprint: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Creates the tenant's user (when `password` is given) and its database as a clone of an
    /// up-to-date template, owned by that user and already locked down, both carrying the
    /// proof of `token`; records in `made` what exists. Returns `false` when there is no such
    /// template (or it is being rebuilt); the user may then already be made (see `made`), the
    /// database is not. Errors name the step that failed.
    #[doc(hidden)]
    fn create_from_template(
        &self,
        _id: &TenantId,
        _password: Option<&SecretString>,
        _token: &str,
        _fingerprint: &str,
        _made: &mut Made,
    ) -> impl Future<Output = std::result::Result<bool, (Step, crate::error::Error)>> + Send {
        async { Ok(false) }
    }

    /// Whether the tenant's database exists.
    fn database_exists(&self, id: &TenantId) -> impl Future<Output = Result<bool>> + Send;

    /// Runs or reverts migrations on `conn` (connected to `target`) under the database's
    /// migration lock, so concurrent runs (e.g. replicas migrating at startup) apply each
    /// migration exactly once; returns the connection with the names of the migrations touched.
    #[doc(hidden)]
    fn run_migrations(
        &self,
        target: Target<'_>,
        conn: Self::Connection,
        migrations: Migrations,
        op: MigrationOp,
    ) -> impl Future<
        Output = std::result::Result<(Self::Connection, Vec<String>), crate::error::BoxError>,
    > + Send;
}

/// A stable 64-bit hash (FNV-1a) of `parts`, for lock keys that every process must derive alike.
#[cfg(any(feature = "postgres", feature = "mysql"))]
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
