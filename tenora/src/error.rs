//! The crate's one error type.

use std::fmt;

use crate::tenant_id::TenantId;

/// Result alias used across Tenora.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from a lower layer (diesel, bb8, the OS), kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in Tenora.
///
/// Messages name the tenant, key, file, step or migration at fault and, where the fix is known,
/// say what to do. They never contain a password, key or URL with credentials.
///
/// `Debug` prints the same sentence followed by its causes (what `fn main() -> Result<..>`
/// shows when it returns an error), not the variant's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant id broke the naming rule.
    #[error("invalid tenant id {id:?}: {reason}")]
    InvalidTenantId {
        /// The rejected input (escaped when printed).
        id: String,
        /// Which rule it broke, stated in full.
        reason: String,
    },

    /// A configuration value is missing or wrong.
    #[error("configuration error at `{key}`: {message}")]
    Config {
        /// The key at fault, e.g. `tenant.pool.max_size` or `TENORA_KEY`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A server name that no `[servers.<name>]` table (nor `default`) defines: given to
    /// placement, or stored in a registry row.
    #[error(
        "unknown server `{name}`: the configured servers are {known}; add a [servers.{name}] \
         table (and restart) or pick one of them"
    )]
    UnknownServer {
        /// The name asked for.
        name: String,
        /// The configured servers, comma-separated.
        known: String,
    },

    /// The tenant is not in the registry, or is not `active` (being provisioned or dropped).
    #[error("unknown tenant `{id}`{}", match state {
        Some(s) => format!(": it is `{s}`, not `active`"),
        None => ": it is not in the registry".to_owned(),
    })]
    UnknownTenant {
        /// The tenant asked for.
        id: TenantId,
        /// Its registry state when it exists but is not active.
        state: Option<crate::lifecycle::TenantState>,
    },

    /// `create_tenant` for an id that is already registered or whose database already exists.
    #[error("tenant `{id}` already exists ({what}); nothing was changed")]
    TenantExists {
        /// The tenant.
        id: TenantId,
        /// What exists already: the registry row, the database, the role, the file.
        what: String,
    },

    /// A provisioning step failed; the earlier steps were undone.
    #[error(
        "creating tenant `{id}` failed at step `{step}`: {source}{}",
        cleanup_note(cleanup)
    )]
    Provision {
        /// The tenant.
        id: TenantId,
        /// The step that failed.
        step: crate::lifecycle::Step,
        /// Why it failed.
        #[source]
        source: Box<Error>,
        /// Errors met while undoing earlier steps (empty when everything was removed).
        cleanup: Vec<String>,
    },

    /// Dropping a tenant failed at a step; what was already removed stays removed.
    #[error(
        "dropping tenant `{id}` failed at step `{step}`: {source}; the tenant stays `deleting`: \
         run `tenora tenants repair {id}` (or `repair_tenant`) to finish once the cause is fixed"
    )]
    Drop {
        /// The tenant.
        id: TenantId,
        /// The step that failed.
        step: crate::lifecycle::Step,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },

    /// Another process (or task) is creating, dropping or repairing this tenant right now.
    #[error(
        "tenant `{id}` is being created, dropped or repaired by another process right now; \
         try again when it has finished"
    )]
    InProgress {
        /// The tenant.
        id: TenantId,
    },

    /// Work Tenora runs on a task of its own (a creation, a fleet run) was cancelled before it
    /// finished — the runtime is shutting down.
    #[error("{what} was cancelled before it finished ({reason}); run it again")]
    Cancelled {
        /// What was cancelled, e.g. "the creation of tenant `acme`".
        what: String,
        /// Why, as the runtime said.
        reason: String,
    },

    /// The registry row of a tenant changed under an operation (another process dropped or
    /// changed it meanwhile).
    #[error("tenant `{id}` changed while it was being worked on: {message}")]
    Conflict {
        /// The tenant.
        id: TenantId,
        /// What changed.
        message: String,
    },

    /// A migration failed or the migrations of a database could not be read.
    #[error("migrations on {database} failed: {source}")]
    Migration {
        /// `base database` or `tenant `id``.
        database: String,
        /// The error from the migration harness (names the migration).
        #[source]
        source: BoxError,
    },

    /// A seed file failed.
    #[error("seed `{seed}` on {database} failed: {source}")]
    Seed {
        /// `base database` or `tenant `id``.
        database: String,
        /// The seed file name.
        seed: String,
        /// The database error.
        #[source]
        source: diesel::result::Error,
    },

    /// A query failed.
    #[error("{context}: {source}")]
    Database {
        /// What Tenora was doing.
        context: String,
        /// The database error.
        #[source]
        source: diesel::result::Error,
    },

    /// An administrative statement (CREATE DATABASE, CREATE ROLE, ...) failed.
    #[error("{context}: {source}")]
    Admin {
        /// What Tenora was doing, naming the database or role.
        context: String,
        /// The server's error.
        #[source]
        source: BoxError,
    },

    /// Connecting to a database failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Which database (never with a password).
        target: String,
        /// The connection error.
        #[source]
        source: BoxError,
    },

    /// No connection could be taken from a pool in time because opening connections kept
    /// failing.
    #[error("no connection to {target} within the pool's connection_timeout: {source}")]
    PoolTimeout {
        /// Which database.
        target: String,
        /// The pool error.
        #[source]
        source: BoxError,
    },

    /// Every connection is in use: a wait ran out (the connection budget's
    /// `pool_cache.acquire_timeout`, or the pool's `connection_timeout`), or the server refused
    /// a new connection because it has no free slots. Busy is not broken: retry later (the
    /// axum integration answers `503 Service Unavailable` with `Retry-After`).
    #[error("{target} is busy: {message}")]
    Busy {
        /// Which database.
        target: String,
        /// Which wait ran out.
        wait: Wait,
        /// The budget or pool and its state, and what to do.
        message: String,
    },

    /// The registry table is missing from the base database.
    #[error(
        "the registry table `{table}` is missing in the base database: run the base migrations \
         (they must include the registry migration shipped by the base-schema crate) first"
    )]
    RegistryMissing {
        /// The configured table name.
        table: String,
    },

    /// The registry table lacks a column this version of Tenora reads (it was made by an
    /// earlier version).
    #[error(
        "the registry table `{table}` has no `{column}` column (it was made by an earlier \
         Tenora): run the base migrations — base_schema::MIGRATIONS adds it, `tenora migrate` \
         writes the migration into a run-time folder, and registry::{} renders it for \
         your own",
        migration_sql_of(column)
    )]
    RegistryOutdated {
        /// The configured table name.
        table: String,
        /// The missing column.
        column: String,
    },

    /// A stored password could not be decrypted or an encryption key is unusable.
    #[error("{0}")]
    Secret(#[from] crate::secret::SecretError),

    /// A key rotation found stored passwords that no configured key opens; it changed nothing.
    #[error(
        "cannot open the stored passwords of {count} tenant(s) with the configured keys \
         ({tenants}); nothing was changed. First: {first}"
    )]
    UnreadablePasswords {
        /// How many rows cannot be opened.
        count: usize,
        /// Their ids (the first few).
        tenants: String,
        /// Why the first one cannot be opened, and what to do.
        first: crate::secret::SecretError,
    },

    /// A file or folder operation failed.
    #[error("{context} ({}): {source}", path.display())]
    Io {
        /// What Tenora was doing.
        context: String,
        /// The path involved.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A fleet run did not start this tenant: it stopped after earlier failures (fail-fast,
    /// `max_failures`, or a failed `batch` wave).
    #[error(
        "tenant `{id}` was not started: the run stopped after earlier failures (fail-fast, \
         --max-failures or a failed --batch wave); fix them, then continue the run (--resume, \
         FleetOptions::resume)"
    )]
    Skipped {
        /// The tenant.
        id: TenantId,
    },

    /// A fleet run cannot be resumed or read as asked (no such run, a run of another
    /// command, tenants named alongside `--resume`).
    #[error("{message}")]
    FleetRun {
        /// What is wrong and what to do.
        message: String,
    },

    /// A request carried no tenant id where the resolver looks for one.
    #[error("the request names no tenant: {expected}")]
    MissingTenantId {
        /// Where the resolver looked, e.g. "header `x-tenant`".
        expected: String,
    },

    /// The resolver's authorizer refused the request for this tenant.
    #[error("access to tenant `{id}` denied: {reason}")]
    Denied {
        /// The tenant the request asked for.
        id: TenantId,
        /// Why (for logs; never sent to the client by the built-in error responses).
        reason: String,
    },

    /// The resolver's password provider failed.
    #[error("the password provider failed for tenant `{id}`: {source}")]
    PasswordProvider {
        /// The tenant.
        id: TenantId,
        /// The provider's error.
        #[source]
        source: BoxError,
    },

    /// The requested operation is not supported by this backend or build.
    #[error("{0}")]
    Unsupported(String),
}

/// Which wait of a [`Error::Busy`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// The connection budget had no free connection within `pool_cache.acquire_timeout`.
    Budget,
    /// Every connection of the tenant's (or the base) pool stayed checked out for the pool's
    /// `connection_timeout`.
    Pool,
    /// The database server refused a new connection: it has no free connection slots.
    Server,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wait::Budget => "connection budget",
            Wait::Pool => "pool",
            Wait::Server => "server",
        })
    }
}

fn cleanup_note(cleanup: &[String]) -> String {
    if cleanup.is_empty() {
        "; everything created for it was removed".to_owned()
    } else {
        format!(
            "; undoing the earlier steps also failed ({}): the tenant stays `deleting`; run \
             `tenora tenants repair` (or `repair_tenant`) to finish once the cause is fixed",
            cleanup.join("; ")
        )
    }
}

impl Error {
    pub(crate) fn db(context: impl fmt::Display, source: diesel::result::Error) -> Self {
        Error::Database {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A connection error naming its server: `label` (` on server `<name>``) is appended to
    /// the target.
    pub(crate) fn on_server(self, label: &str) -> Self {
        match self {
            Error::Connect { target, source } if !label.is_empty() => Error::Connect {
                target: target + label,
                source,
            },
            other => other,
        }
    }

    /// A config error about a `[base]` or `[pool_cache]` key of server `name`'s derived config,
    /// re-keyed to its `[servers.<name>]` table.
    pub(crate) fn under_server(self, name: &str) -> Self {
        match self {
            Error::Config { key, message } => {
                let key = match key.rsplit_once('.') {
                    Some((_, last)) => format!("servers.{name}.{last}"),
                    None => format!("servers.{name}"),
                };
                Error::Config { key, message }
            }
            other => other,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            // Many messages already end with their cause's text.
            if !self.to_string().contains(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}

/// The `registry::*_sql` function that renders the migration adding `column`.
fn migration_sql_of(column: &str) -> &'static str {
    match column {
        "token" => "registry_token_migration_sql",
        "server" => "registry_server_migration_sql",
        "migration_version" | "migration_fingerprint" => "registry_migration_state_sql",
        _ => "registry_migration_sql",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_as_the_message_and_its_causes() {
        let e = Error::config("base.url", "is not a URL");
        assert_eq!(format!("{e:?}"), e.to_string());
        let e = Error::Io {
            context: "cannot read the config file".to_owned(),
            path: "tenora.toml".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        let debug = format!("{e:?}");
        assert!(debug.starts_with(&e.to_string()), "{debug}");
        assert!(!debug.contains("Io {"), "{debug}");
    }
}
