//! One configured database server: what Tenora does on it (admin DDL, connection setup, locks).
//!
//! The trait is public in name only: this module is private to the crate, so applications can
//! neither name it nor call its methods. Every change to a server goes through `Tenora`, which
//! records it in the registry first.

use std::future::Future;

use super::{Backend, Made, Target};
use crate::config::Config;
use crate::error::{BoxError, Result};
use crate::lifecycle::Step;
use crate::migrations::Migrations;
use crate::naming::Naming;
use crate::ownership::{Found, Inventory, Proof};
use crate::secret::SecretString;
use crate::tenant_id::TenantId;

/// How a migration run keeps other runs off its database while it works.
#[derive(Debug)]
pub enum MigrationLock {
    /// A lock held by the connection's session, released with [`Server::unlock_migrations`]
    /// (or when the session ends).
    Session,
    /// An OS lock on this file, held by the harness for the run (SQLite).
    File(std::path::PathBuf),
}

/// Which way a connection to a tenant's database goes when a pooler fronts the server
/// (`[pooler]`): without one, both go to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Tenant traffic (the tenant pools): through the pooler.
    Traffic,
    /// Administrative work (migrations, seeds, checks): to the server itself.
    Direct,
}

/// One database server of backend `B`, built from the connection settings of `[base]` (the
/// server that holds the base database) or of a `[servers.<name>]` table.
pub trait Server<B: Backend>: Send + Sync + Sized + 'static {
    /// Builds the server from a validated config whose `[base]` holds its connection settings.
    fn from_config(config: &Config) -> Result<Self>;

    /// How tenant ids map to names on this server.
    fn naming(&self) -> &Naming;

    /// Whether tenants get their own database user with a password.
    fn uses_passwords(&self) -> bool;

    /// The server's home database (the base database, or the admin database of a tenant-only
    /// server), for messages (no credentials).
    fn describe_base(&self) -> String;

    /// A tenant's database, for messages (no credentials).
    fn describe_tenant(&self, id: &TenantId) -> String;

    /// Pool manager for the home database.
    fn base_manager(&self) -> B::Manager;

    /// Pool manager for a tenant's database, connecting as the tenant's user (through the
    /// pooler, if one fronts the server: [`Route::Traffic`]).
    fn tenant_manager(&self, id: &TenantId, password: Option<&SecretString>) -> B::Manager;

    /// One unpooled connection to a tenant's database as the tenant's user, going `route`.
    fn connect_tenant(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        route: Route,
    ) -> impl Future<Output = Result<B::Connection>> + Send;

    /// One unpooled connection to the home database.
    fn connect_base(&self) -> impl Future<Output = Result<B::Connection>> + Send;

    /// The server's connection limit and the connections other clients hold, read through
    /// `base`; `None` where the server has no such limit (SQLite).
    fn server_limits(
        &self,
        _base: &mut B::Connection,
    ) -> impl Future<Output = Result<Option<crate::budget::plan::ServerLimits>>> + Send {
        async { Ok(None) }
    }

    /// Reads, through `base`, server facts that shape names (MySQL vs MariaDB user-name
    /// limits); the default learns nothing.
    fn learn_server(&self, _base: &mut B::Connection) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Creates the tenant's user, carrying the proof of `token` (see `ownership`) from the
    /// statement that creates it. Fails with `TenantExists` when the user exists already.
    fn create_user(
        &self,
        id: &TenantId,
        password: &SecretString,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the tenant user's password (PostgreSQL: as a SCRAM verifier; MariaDB: as its hash;
    /// MySQL: in the statement, over the admin connection). Sessions already open stay.
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
    fn drop_user(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Creates the tenant's database, owned by its user and carrying the proof of `token`.
    /// Fails with `TenantExists` when the database exists already.
    fn create_database(
        &self,
        id: &TenantId,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Which objects bearing the tenant's names exist, and whether each carries `proof`.
    fn inspect(&self, id: &TenantId, proof: &Proof) -> impl Future<Output = Result<Found>> + Send;

    /// Every database and user whose name starts with the configured prefixes, with the mark
    /// each carries (one bulk read, for `check`).
    fn inventory(&self) -> impl Future<Output = Result<Inventory>> + Send;

    /// The marks (user, database) that a tenant's objects carry when `proof` proves them, as
    /// `inventory` reads them; `None` where only presence can be checked in bulk.
    fn expected_marks(&self, proof: &Proof) -> (Option<String>, Option<String>);

    /// The fingerprint of the migrations the template database was built with; `None` when
    /// there is none. Only PostgreSQL has templates.
    fn template_fingerprint(&self) -> impl Future<Output = Result<Option<String>>> + Send {
        async { Ok(None) }
    }

    /// Takes the lease of tenant `id` in registry `scope` for this process, without waiting:
    /// `false` when another process holds it. The lease ends with [`Server::release_lease`] or
    /// when this process dies (a server session lock, or an OS file lock). Only the server of
    /// the base database takes leases: every process sharing the registry sees them there.
    fn try_lease(&self, id: &TenantId, scope: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Ends a lease taken with [`Server::try_lease`].
    fn release_lease(&self, id: &TenantId, scope: &str) -> impl Future<Output = ()> + Send;

    /// Restricts the tenant's database to its own user.
    fn lock_down(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Drops the tenant's database if it exists, closing other sessions on it (only called
    /// once `inspect` proved it ours).
    fn drop_database(&self, id: &TenantId) -> impl Future<Output = Result<()>> + Send;

    /// Creates the base database if it does not exist; returns whether it was created.
    fn create_base(&self) -> impl Future<Output = Result<bool>> + Send;

    /// Builds (or rebuilds, when `fingerprint` differs from the one it was built for) the
    /// template database migrated with `migrations`. Only PostgreSQL has templates.
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

    /// Whether this server can keep warm spares (tenants cloned ahead, handed over by
    /// renaming: PostgreSQL).
    fn supports_spares(&self) -> bool {
        false
    }

    /// Makes spare `spare`: its role (no login yet, carrying the proof of `token`, with
    /// `password` set) and its database, a clone of the template built for `fingerprint`,
    /// owned by that role, locked down and closed to connections. Returns `false` (having made
    /// nothing) when the template is missing, built for other migrations, or being rebuilt.
    fn make_spare(
        &self,
        _spare: &TenantId,
        _token: &str,
        _password: &SecretString,
        _fingerprint: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(false) }
    }

    /// Hands spare `spare` (whose role carries the proof of `spare_token`; anything else with
    /// its names is not taken) over to tenant `id` in one server transaction: renames its
    /// database and role to the tenant's names, makes the role carry the proof of `token`
    /// and log in (with `password`, or the spare's own when `None`), and opens the database
    /// to connections. All or nothing: on an error the spare is left as it was. Returns
    /// `false` when the spare's objects are gone (or not the spare's); fails with [`Error::TenantExists`](crate::Error::TenantExists), naming the step,
    /// when the tenant's names are taken.
    fn take_spare(
        &self,
        _spare: &TenantId,
        _spare_token: &str,
        _id: &TenantId,
        _password: Option<&SecretString>,
        _token: &str,
    ) -> impl Future<Output = std::result::Result<bool, (Step, crate::error::Error)>> + Send {
        async { Ok(false) }
    }

    /// Whether the tenant's database exists.
    fn database_exists(&self, id: &TenantId) -> impl Future<Output = Result<bool>> + Send;

    /// Takes the migration lock of the database `conn` is connected to (`target`), waiting a
    /// bounded time, so concurrent runs (replicas migrating at startup) apply each migration
    /// exactly once.
    fn lock_migrations(
        &self,
        target: Target<'_>,
        conn: &mut B::Connection,
    ) -> impl Future<Output = std::result::Result<MigrationLock, BoxError>> + Send;

    /// The statements that limit, for the session they run on, how long each statement of a
    /// migration run may wait for a lock (`lock`) and run (`statement`); empty when neither is
    /// given. An error names a limit this server cannot enforce.
    fn session_limits_sql(
        &self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> impl Future<Output = std::result::Result<String, String>> + Send;

    /// Whether this server can limit how long a statement runs (see `session_limits_sql`).
    fn has_statement_timeout(&self) -> bool {
        true
    }

    /// Releases a [`MigrationLock::Session`] lock taken on `conn`.
    fn unlock_migrations(
        &self,
        _conn: &mut B::Connection,
    ) -> impl Future<Output = std::result::Result<(), BoxError>> + Send {
        async { Ok(()) }
    }
}
