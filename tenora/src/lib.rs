//! # Tenora: database-per-tenant plumbing for Diesel
//!
//! Each tenant of your app gets its own database (and, on PostgreSQL, its own locked-down
//! login role). Tenora keeps a **registry** of tenants in a base database, **provisions** and
//! drops tenant databases with nothing left behind on failure, hands out **pooled diesel-async
//! connections** per tenant ([`Tenora::tenant_conn`]), and runs **migrations embedded at compile
//! time** on the base and every tenant database.
//!
//! ```no_run
//! use diesel_async::RunQueryDsl;
//! use tenora::{Config, SqliteTenora};
//!
//! // Migrations compiled into the binary (Diesel layout: <version>_<name>/up.sql, down.sql).
//! // const BASE: tenora::Migrations = tenora::embed_migrations!("migrations/base");
//! # const BASE: tenora::Migrations = tenora::Migrations::empty();
//! # const TENANT: tenora::Migrations = tenora::Migrations::empty();
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tenora = SqliteTenora::builder(Config::sqlite("data/base.sqlite"))
//!     .base_migrations(BASE)
//!     .tenant_migrations(TENANT)
//!     .connect()
//!     .await?;
//! tenora.migrate_base().await?;
//! let acme = tenora.tenant_id("acme")?;          // validated once
//! tenora.create_tenant(&acme, None).await?;      // database + migrations + registry row
//! let mut conn = tenora.tenant_conn(&acme).await?;
//! diesel::sql_query("SELECT 1").execute(&mut conn).await?;
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `sqlite` (default) | `backend::Sqlite` / `SqliteTenora`, with a bundled SQLite (no system library) |
//! | `postgres` | `backend::Postgres` / `PgTenora`, pure Rust (no libpq), TLS through rustls |
//! | `mysql` | `backend::Mysql` / `MysqlTenora` for MySQL and MariaDB, pure Rust (no libmysqlclient), TLS through rustls |
//! | `axum` | `resolver::axum`: a tower layer and axum extractors for the [`resolver`] |
//! | `blocking` | `blocking::Tenora`: a blocking facade for synchronous Diesel apps (its connections implement `diesel::Connection`) |
//! | `testing` | `testing::TestTenant`: a tenant for one test of your app, dropped afterwards |
//!
//! A PostgreSQL-only app takes `default-features = false, features = ["postgres"]`, so no
//! SQLite is compiled in. On docs.rs, items that need a feature say which.
//!
//! ## Modules
//! - [`TenantId`]: the validated tenant name; nothing takes a raw `&str` id.
//! - [`Config`]: `tenora.toml` / env / builder.
//! - [`secret`]: password generation and ChaCha20-Poly1305 sealing of stored passwords.
//! - [`Migrations`] / [`Seeds`] and [`embed_migrations!`] / [`embed_seeds!`].
//! - [`resolver`]: per-request tenant resolution for web apps (axum integration behind the
//!   `axum` feature).

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend feature the crate still builds (schema crates depend on it that way), but
// the plumbing that only backends use is idle.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code, unused_imports, unused_macros)
)]

pub mod backend;
mod backend_alias;
#[cfg(feature = "blocking")]
pub mod blocking;
mod budget;
mod cached_sql;
mod coarse_clock;
mod config;
mod doctor;
mod error;
mod failpoint;
mod fleet;
mod fleet_runs;
mod fleet_status;
mod key_rotation;
mod lease;
mod ledger;
mod lifecycle;
mod migrate;
mod migrations;
mod naming;
pub mod ownership;
mod password_provider;
mod password_rotation;
mod pool;
mod pool_cache;
mod pooler;
mod provision;
pub mod registry;
mod repair;
pub mod resolver;
pub(crate) mod run_log;
pub mod secret;
mod server_config;
mod servers;
pub(crate) mod spare_table;
mod spares;
mod telemetry;
mod tenant_id;
mod tenant_options;
mod tenora;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod unknown;

pub use crate::backend_alias::*;
pub use crate::budget::plan::{BudgetPlan, BudgetSource, ServerLimits};
pub use crate::budget::{BudgetManager, Budgeted, ConnectError};
pub use crate::config::{
    BaseConfig, Client, Config, ENV_BASE_URL, ENV_CONFIG, ENV_KEY, ENV_OLD_KEYS, MetricsConfig,
    PoolCacheConfig, PoolConfig, RegistryConfig, SecretsConfig, TenantConfig, redact_url,
};
pub use crate::doctor::{Health, Problem};
pub use crate::error::{BoxError, Error, Result, Wait};
pub use crate::fleet::{FleetOp, FleetOptions, FleetReport, TenantOutcome};
pub use crate::fleet_runs::{FleetRun, Resume, RunId, RunState, RunTenant, RunTenantState};
pub use crate::fleet_status::{FleetStatus, MigrationStatus, TenantStatus};
pub use crate::key_rotation::{KeyRole, KeyRotation, KeyStatus, KeyUse};
pub use crate::ledger::LEDGER_TABLE;
pub use crate::lifecycle::Step;
pub use crate::migrate::MigrationOp;
pub use crate::migrations::{Migrations, SeedScript, Seeds, SqlMigration};
pub use crate::naming::Naming;
pub use crate::ownership::{Presence, Removal};
pub use crate::pool::PooledConn;
pub use crate::pool_cache::CacheStats;
#[doc(hidden)]
pub use crate::pool_cache::bench as __cache_bench;
pub use crate::pooler::{PoolerConfig, PoolerMode};
pub use crate::registry::{TenantRecord, TenantState};
pub use crate::repair::Repair;
pub use crate::secret::{EncryptionKey, KeyRing, SecretString};
pub use crate::server_config::{DEFAULT_SERVER, ServerConfig, server_url_var};
pub use crate::servers::ServerStatus;
pub use crate::spares::{Spare, SpareFill, SpareState};
pub use crate::tenant_id::TenantId;
pub use crate::tenant_options::TenantOptions;
pub use crate::tenora::{Tenora, TenoraBuilder};
pub use crate::tls::{InvalidTlsMode, TlsMode, TlsSettings};

/// Embeds a Diesel-layout migrations folder (relative to the crate's `Cargo.toml`) as a
/// [`Migrations`] value, validated at compile time: each `<version>_<name>/` folder holds an
/// `up.sql` and optionally a `down.sql`. A missing `up.sql`, a duplicate version or an
/// unreadable file is a compile error on the path.
///
/// ```
/// // Your crate's folder is typically "migrations" (or "migrations/tenants"); this one holds a
/// // single `2026-01-01-000000_create_notes`.
/// pub const MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("doc-examples/migrations");
///
/// let migrations = MIGRATIONS;
/// let first = migrations.iter().next().unwrap();
/// // As in Diesel: the version is the folder name's leading digits, the name the whole folder.
/// assert_eq!(first.version(), "20260101000000");
/// assert_eq!(first.name(), "2026-01-01-000000_create_notes");
/// assert!(first.up_sql().starts_with("CREATE TABLE notes"));
/// // Hand it to the builder: `.tenant_migrations(MIGRATIONS)` (or `.base_migrations`).
/// ```
///
/// Editing an embedded file triggers a rebuild; adding a *new* migration folder does not, so
/// give the crate a `build.rs` with `println!("cargo:rerun-if-changed=migrations");`.
pub use tenora_macros::embed_migrations;

/// Embeds a folder of `*.sql` seed files (run in file-name order) as a [`Seeds`] value.
///
/// ```
/// // Typically "seeds/tenants": run on every new tenant after its migrations.
/// pub const SEEDS: tenora::Seeds = tenora::embed_seeds!("doc-examples/seeds");
///
/// let seeds = SEEDS;
/// let names: Vec<&str> = seeds.iter().map(|seed| seed.name()).collect();
/// assert_eq!(names, ["01_welcome.sql"]);
/// // Hand it to the builder: `.tenant_seeds(SEEDS)` (or `.base_seeds`).
/// ```
pub use tenora_macros::embed_seeds;

#[doc(hidden)]
pub mod __private {
    pub use crate::migrations::{Migrations, SeedScript, Seeds, SqlMigration};
}
