//! The tenant registry: one row per tenant in the base database.
//!
//! The table (default `tenora_tenants`, see `[registry] table`) ships as a base migration in the
//! `base-schema` crate; [`registry_migration_sql`] renders the same SQL for any table name.
//! Rows carry a [`TenantState`] so a crash half-way through provisioning or dropping stays
//! visible (and, later, repairable) instead of silently leaving a half-made tenant.

use std::fmt;

use chrono::NaiveDateTime;

use crate::tenant_id::TenantId;

pub use crate::lifecycle::TenantState;

/// A registry row, without its password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantRecord {
    /// The tenant.
    pub id: TenantId,
    /// Its state.
    pub state: TenantState,
    /// When the row was created (UTC).
    pub created_at: NaiveDateTime,
    /// When the row last changed (UTC).
    pub updated_at: NaiveDateTime,
    /// The database server holding the tenant's database (`default`: the base database's
    /// server; others are `[servers.<name>]`).
    pub server: String,
    /// The latest migration version applied to the tenant's database, as recorded after
    /// Tenora's last migration run on it (`None`: none recorded yet, or none applied).
    pub migration_version: Option<String>,
    /// The fingerprint of the set of migrations applied then (see
    /// [`Migrations::fingerprint`](crate::Migrations::fingerprint)): equal to the binary's
    /// when the tenant is up to date with it.
    pub migration_fingerprint: Option<String>,
}

/// A registry row as read from the database, with the stored (sealed) password and the
/// ownership token written onto the tenant's server objects.
pub(crate) struct StoredTenant {
    pub(crate) record: TenantRecord,
    pub(crate) password: Option<String>,
    /// `None` for rows made before Tenora wrote proofs of ownership (see `ownership`).
    pub(crate) token: Option<String>,
}

/// The raw row shape shared by every backend.
#[doc(hidden)]
#[derive(diesel::QueryableByName)]
pub struct RawRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) password: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) state: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) created_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) updated_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) token: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) server: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) migration_version: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) migration_fingerprint: Option<String>,
}

/// Tenants per server, as counted in the registry.
#[doc(hidden)]
#[derive(diesel::QueryableByName)]
pub struct ServerCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) server: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) tenants: i64,
}

/// A registry row Tenora cannot read as a tenant: its id breaks the naming rule, or its state
/// is none of Tenora's. Listing and fleet runs report such rows and carry on; `drop_tenant`
/// (or [`Tenora::forget_malformed_row`](crate::Tenora::forget_malformed_row) for an invalid id)
/// removes them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MalformedRow {
    /// The row's id, as stored.
    pub id: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for MalformedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry row {:?}: {}", self.id, self.problem)
    }
}

impl RawRow {
    /// The row as a tenant, or what is malformed about it.
    pub(crate) fn parse(self) -> std::result::Result<StoredTenant, MalformedRow> {
        let id = match TenantId::new(&self.id) {
            Ok(id) => id,
            Err(e) => {
                return Err(MalformedRow {
                    problem: format!("its id is not a valid tenant id ({e})"),
                    id: self.id,
                });
            }
        };
        let Some(state) = TenantState::parse(&self.state) else {
            return Err(MalformedRow {
                problem: format!(
                    "its state {:?} is none of provisioning, active, deleting",
                    self.state
                ),
                id: self.id,
            });
        };
        Ok(StoredTenant {
            record: TenantRecord {
                id,
                state,
                created_at: self.created_at,
                updated_at: self.updated_at,
                server: self.server,
                migration_version: self.migration_version,
                migration_fingerprint: self.migration_fingerprint,
            },
            password: self.password,
            token: self.token,
        })
    }

    pub(crate) fn into_stored(self, table: &str) -> crate::Result<StoredTenant> {
        self.parse().map_err(|bad| crate::Error::Database {
            context: format!("registry table `{table}` holds a malformed row"),
            source: diesel::result::Error::DeserializationError(bad.to_string().into()),
        })
    }
}

pub(crate) const COLUMNS: &str = "id, password, state, created_at, updated_at, token, server, \
                                  migration_version, migration_fingerprint";

/// The columns a new row is inserted with (the migration state is recorded after runs).
pub(crate) const INSERT_COLUMNS: &str =
    "id, password, state, created_at, updated_at, token, server";

/// The SQL of the registry migration for `table` (portable across PostgreSQL, MySQL and
/// SQLite), for a new project: the table with every column Tenora reads.
pub fn registry_migration_sql(table: &str) -> (String, String) {
    let up = format!(
        "-- Tenora's tenant registry: one row per tenant database.\n\
         CREATE TABLE {table} (\n    \
             id VARCHAR(63) NOT NULL PRIMARY KEY,\n    \
             password TEXT,\n    \
             state VARCHAR(16) NOT NULL,\n    \
             created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
             updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
             token VARCHAR(64),\n    \
             server VARCHAR(63) NOT NULL DEFAULT 'default',\n    \
             migration_version VARCHAR(64),\n    \
             migration_fingerprint VARCHAR(64)\n\
         );\n"
    );
    let down = format!("DROP TABLE {table};\n");
    (up, down)
}

/// The SQL of the migration that adds the `token` column (Tenora 0.2) to a registry table
/// made by an earlier [`registry_migration_sql`]. The column holds the per-tenant token that
/// proves which server objects Tenora made for the row; `base-schema` ships it for the default
/// table name.
pub fn registry_token_migration_sql(table: &str) -> (String, String) {
    let up = format!(
        "-- Proof of ownership: the token Tenora writes onto each tenant's database objects.\n\
         ALTER TABLE {table} ADD COLUMN token VARCHAR(64);\n"
    );
    let down = format!("ALTER TABLE {table} DROP COLUMN token;\n");
    (up, down)
}

/// The SQL of the migration that adds the `server` column (Tenora 0.3) to a registry table
/// made by an earlier release: the server holding each tenant's database. Existing rows get
/// `default`, the server of the base database, which is where they are; `base-schema` ships it
/// for the default table name.
pub fn registry_server_migration_sql(table: &str) -> (String, String) {
    let up = format!(
        "-- Placement: the database server that holds each tenant's database.\n\
         ALTER TABLE {table} ADD COLUMN server VARCHAR(63) NOT NULL DEFAULT 'default';\n"
    );
    let down = format!("ALTER TABLE {table} DROP COLUMN server;\n");
    (up, down)
}

/// The SQL of the migration that adds `migration_version` and `migration_fingerprint` (Tenora
/// 0.3) to a registry table made by an earlier release: what each tenant's last migration run
/// applied, so the fleet's state is one query on the base database. Existing rows start
/// without (their next run records it); `base-schema` ships it for the default table name.
pub fn registry_migration_state_sql(table: &str) -> (String, String) {
    let up = format!(
        "-- Migration state: what each tenant's last migration run left applied.\n\
         ALTER TABLE {table} ADD COLUMN migration_version VARCHAR(64);\n\
         ALTER TABLE {table} ADD COLUMN migration_fingerprint VARCHAR(64);\n"
    );
    let down = format!(
        "ALTER TABLE {table} DROP COLUMN migration_fingerprint;\n\
         ALTER TABLE {table} DROP COLUMN migration_version;\n"
    );
    (up, down)
}

/// Why a registry query failed: the table or one of Tenora's columns is missing (read from the
/// database's catalog after the failure), or the query failed otherwise.
#[doc(hidden)]
#[derive(Debug)]
pub enum RegistryError {
    /// The registry table does not exist.
    MissingTable,
    /// The table lacks this column Tenora reads.
    MissingColumn(&'static str),
    /// Any other failure.
    Query(diesel::result::Error),
}

/// The result of a registry query.
#[doc(hidden)]
pub type RegistryResult<T> = std::result::Result<T, RegistryError>;

/// Sorts a failed registry query using the table's columns as the catalog lists them (empty:
/// no such table).
#[doc(hidden)]
pub fn classify(error: diesel::result::Error, columns: &[String]) -> RegistryError {
    if columns.is_empty() {
        return RegistryError::MissingTable;
    }
    COLUMNS
        .split(", ")
        .find(|wanted| !columns.iter().any(|c| c.eq_ignore_ascii_case(wanted)))
        .map_or(RegistryError::Query(error), RegistryError::MissingColumn)
}

/// Registry queries on one backend's connection type. Implemented for each backend's
/// connection by `impl_registry!`, so the SQL is written once and checked per backend.
pub trait RegistryConnection: Send {
    /// Reads one row.
    #[doc(hidden)]
    fn registry_get(
        &mut self,
        table: &str,
        id: &TenantId,
    ) -> impl Future<Output = RegistryResult<Option<RawRow>>> + Send;
    /// Reads every row, ordered by id.
    #[doc(hidden)]
    fn registry_list(
        &mut self,
        table: &str,
    ) -> impl Future<Output = RegistryResult<Vec<RawRow>>> + Send;
    /// Inserts a row.
    #[doc(hidden)]
    fn registry_insert(
        &mut self,
        table: &str,
        id: &TenantId,
        password: Option<String>,
        state: TenantState,
        token: Option<&str>,
        server: &str,
    ) -> impl Future<Output = RegistryResult<usize>> + Send;
    /// Records what a migration run left applied on tenant `id`'s database.
    #[doc(hidden)]
    fn registry_set_migrations(
        &mut self,
        table: &str,
        id: &TenantId,
        version: Option<&str>,
        fingerprint: Option<&str>,
    ) -> impl Future<Output = RegistryResult<usize>> + Send;
    /// The ledger of the database this connection is on (see `ledger`): applied version →
    /// checksum; empty when it has none.
    #[doc(hidden)]
    fn applied_checksums(
        &mut self,
    ) -> impl Future<Output = std::collections::HashMap<String, String>> + Send;
    /// The versions Diesel records as applied on the database this connection is on.
    #[doc(hidden)]
    fn applied_versions(&mut self) -> impl Future<Output = RegistryResult<Vec<String>>> + Send;
    /// Whether the database this connection is on has table `table` (read from the catalog).
    #[doc(hidden)]
    fn table_exists(&mut self, table: &str) -> impl Future<Output = RegistryResult<bool>> + Send;
    /// Counts the rows per server.
    #[doc(hidden)]
    fn registry_server_counts(
        &mut self,
        table: &str,
    ) -> impl Future<Output = RegistryResult<Vec<ServerCount>>> + Send;
    /// Changes a row's state, only if it is in state `from` (any state when `None`); returns
    /// the number of rows changed.
    #[doc(hidden)]
    fn registry_set_state(
        &mut self,
        table: &str,
        id: &TenantId,
        from: Option<TenantState>,
        to: TenantState,
    ) -> impl Future<Output = RegistryResult<usize>> + Send;
    /// Marks a `provisioning` row `active`, recording what its database has applied and,
    /// with `password`, replacing its stored password, in one statement; returns the number
    /// of rows changed (0: the row is no longer `provisioning`) and, where the backend can
    /// return it from the same statement (PostgreSQL), the row as stored.
    #[doc(hidden)]
    fn registry_activate(
        &mut self,
        table: &str,
        id: &TenantId,
        version: Option<&str>,
        fingerprint: &str,
        password: Option<&str>,
    ) -> impl Future<Output = RegistryResult<(usize, Option<RawRow>)>> + Send;
    /// Replaces a row's stored password, only if it still holds `expected` (a compare and
    /// swap: a value changed by another process since it was read is never overwritten);
    /// returns the number of rows changed.
    #[doc(hidden)]
    fn registry_swap_password(
        &mut self,
        table: &str,
        id: &TenantId,
        expected: &str,
        new: &str,
    ) -> impl Future<Output = RegistryResult<usize>> + Send;
    /// Deletes a row (by its id as stored, valid or not); with `token`, only the row carrying
    /// it (so a process never deletes a row another one inserted since).
    #[doc(hidden)]
    fn registry_delete(
        &mut self,
        table: &str,
        id: &str,
        token: Option<&str>,
    ) -> impl Future<Output = RegistryResult<usize>> + Send;
}

/// Quotes the registry table name with the backend's identifier quote character (the name is
/// already validated as `[a-z_][a-z0-9_]*`; quoting keeps keywords such as `user` usable).
#[doc(hidden)]
pub fn quote_table(table: &str, quote: char) -> String {
    format!("{quote}{table}{quote}")
}

/// Implements [`RegistryConnection`] for a concrete diesel-async connection type, given the
/// backend's bind placeholder for parameter `n` (1-based), its identifier quote character, a
/// catalog query listing a table's columns (`column_name`) with the table name bound as its
/// one parameter, and the SQL of an exact (case- and accent-sensitive) text comparison of a
/// column with a placeholder.
macro_rules! impl_registry {
    ($conn:ty, $ph:expr, $quote:expr, $columns:expr, $exact:expr, $returning:expr) => {
        /// A registry query's result, a failure sorted: a missing table or column is read
        /// from the catalog, not guessed from the message (which the server may translate).
        async fn registry_result<T>(
            conn: &mut $conn,
            table: &str,
            result: diesel::QueryResult<T>,
        ) -> $crate::registry::RegistryResult<T> {
            use diesel::result::{DatabaseErrorKind, Error as DieselError};
            use diesel_async::RunQueryDsl as _;
            let error = match result {
                Ok(value) => return Ok(value),
                // Only a server-side failure other than a duplicate id can be a missing table.
                Err(DieselError::DatabaseError(kind, info))
                    if !matches!(kind, DatabaseErrorKind::UniqueViolation) =>
                {
                    DieselError::DatabaseError(kind, info)
                }
                Err(error) => return Err($crate::registry::RegistryError::Query(error)),
            };
            #[derive(diesel::QueryableByName)]
            struct Column {
                #[diesel(sql_type = diesel::sql_types::Text)]
                column_name: String,
            }
            let columns = diesel::sql_query($columns)
                .bind::<diesel::sql_types::Text, _>(table)
                .load::<Column>(conn)
                .await;
            Err(match columns {
                Ok(columns) => {
                    let names: Vec<String> = columns.into_iter().map(|c| c.column_name).collect();
                    $crate::registry::classify(error, &names)
                }
                Err(_) => $crate::registry::RegistryError::Query(error),
            })
        }

        impl $crate::registry::RegistryConnection for $conn {
            async fn registry_get(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
            ) -> $crate::registry::RegistryResult<Option<$crate::registry::RawRow>> {
                use diesel::OptionalExtension as _;
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = format!(
                    "SELECT {} FROM {} WHERE id = {}",
                    $crate::registry::COLUMNS,
                    $crate::registry::quote_table(table, $quote),
                    ph(1)
                );
                // Cached: every pool build (a cache miss) reads the row.
                let result = $crate::cached_sql::cached_sql::<
                    <$conn as diesel_async::AsyncConnectionCore>::Backend,
                >(sql)
                .bind::<diesel::sql_types::Text, _>(id.as_str())
                .get_result::<$crate::registry::RawRow>(self)
                .await
                .optional();
                registry_result(self, table, result).await
            }

            async fn registry_list(
                &mut self,
                table: &str,
            ) -> $crate::registry::RegistryResult<Vec<$crate::registry::RawRow>> {
                use diesel_async::RunQueryDsl as _;
                let sql = format!(
                    "SELECT {} FROM {} ORDER BY id",
                    $crate::registry::COLUMNS,
                    $crate::registry::quote_table(table, $quote)
                );
                let result = diesel::sql_query(sql).load(self).await;
                registry_result(self, table, result).await
            }

            async fn registry_insert(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
                password: Option<String>,
                state: $crate::registry::TenantState,
                token: Option<&str>,
                server: &str,
            ) -> $crate::registry::RegistryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({}, {}, {}, {}, {}, {}, {})",
                    $crate::registry::quote_table(table, $quote),
                    $crate::registry::INSERT_COLUMNS,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5),
                    ph(6),
                    ph(7)
                );
                // Cached: one text per registry, run by every sign-up.
                let result = $crate::cached_sql::cached_sql::<
                    <$conn as diesel_async::AsyncConnectionCore>::Backend,
                >(sql)
                .bind::<diesel::sql_types::Text, _>(id.as_str())
                .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(password)
                .bind::<diesel::sql_types::Text, _>(state.as_str())
                .bind::<diesel::sql_types::Timestamp, _>(now)
                .bind::<diesel::sql_types::Timestamp, _>(now)
                .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(token)
                .bind::<diesel::sql_types::Text, _>(server)
                .execute(self)
                .await;
                registry_result(self, table, result).await
            }

            async fn registry_set_migrations(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
                version: Option<&str>,
                fingerprint: Option<&str>,
            ) -> $crate::registry::RegistryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = format!(
                    "UPDATE {} SET migration_version = {}, migration_fingerprint = {} \
                     WHERE id = {}",
                    $crate::registry::quote_table(table, $quote),
                    ph(1),
                    ph(2),
                    ph(3)
                );
                let result = diesel::sql_query(sql)
                    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(version)
                    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(fingerprint)
                    .bind::<diesel::sql_types::Text, _>(id.as_str())
                    .execute(self)
                    .await;
                registry_result(self, table, result).await
            }

            async fn applied_checksums(&mut self) -> std::collections::HashMap<String, String> {
                use diesel_async::RunQueryDsl as _;
                #[derive(diesel::QueryableByName)]
                struct Applied {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    version: String,
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    checksum: String,
                }
                let sql = format!(
                    "SELECT version, checksum FROM {}",
                    $crate::ledger::LEDGER_TABLE
                );
                // No table: nothing applied by Tenora yet (or only by other tools).
                diesel::sql_query(sql)
                    .load::<Applied>(self)
                    .await
                    .map(|rows| rows.into_iter().map(|r| (r.version, r.checksum)).collect())
                    .unwrap_or_default()
            }

            async fn applied_versions(&mut self) -> $crate::registry::RegistryResult<Vec<String>> {
                use diesel_async::RunQueryDsl as _;
                #[derive(diesel::QueryableByName)]
                struct Version {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    version: String,
                }
                diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                    .load::<Version>(self)
                    .await
                    .map(|rows| rows.into_iter().map(|r| r.version).collect())
                    .map_err($crate::registry::RegistryError::Query)
            }

            async fn table_exists(
                &mut self,
                table: &str,
            ) -> $crate::registry::RegistryResult<bool> {
                use diesel_async::RunQueryDsl as _;
                #[derive(diesel::QueryableByName)]
                struct Column {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    #[allow(dead_code)]
                    column_name: String,
                }
                diesel::sql_query($columns)
                    .bind::<diesel::sql_types::Text, _>(table)
                    .load::<Column>(self)
                    .await
                    .map(|columns| !columns.is_empty())
                    .map_err($crate::registry::RegistryError::Query)
            }

            async fn registry_server_counts(
                &mut self,
                table: &str,
            ) -> $crate::registry::RegistryResult<Vec<$crate::registry::ServerCount>> {
                use diesel_async::RunQueryDsl as _;
                let sql = format!(
                    "SELECT server, COUNT(*) AS tenants FROM {} GROUP BY server",
                    $crate::registry::quote_table(table, $quote)
                );
                let result = diesel::sql_query(sql).load(self).await;
                registry_result(self, table, result).await
            }

            async fn registry_set_state(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
                from: Option<$crate::registry::TenantState>,
                to: $crate::registry::TenantState,
            ) -> $crate::registry::RegistryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let mut sql = format!(
                    "UPDATE {} SET state = {}, updated_at = {} WHERE id = {}",
                    $crate::registry::quote_table(table, $quote),
                    ph(1),
                    ph(2),
                    ph(3)
                );
                if from.is_some() {
                    sql.push_str(&format!(" AND state = {}", ph(4)));
                }
                let query = diesel::sql_query(sql)
                    .into_boxed()
                    .bind::<diesel::sql_types::Text, _>(to.as_str())
                    .bind::<diesel::sql_types::Timestamp, _>(now)
                    .bind::<diesel::sql_types::Text, _>(id.as_str());
                let result = match from {
                    Some(from) => {
                        query
                            .bind::<diesel::sql_types::Text, _>(from.as_str())
                            .execute(self)
                            .await
                    }
                    None => query.execute(self).await,
                };
                registry_result(self, table, result).await
            }

            async fn registry_activate(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
                version: Option<&str>,
                fingerprint: &str,
                password: Option<&str>,
            ) -> $crate::registry::RegistryResult<(usize, Option<$crate::registry::RawRow>)> {
                use diesel::OptionalExtension as _;
                use diesel::sql_types::{Nullable, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let mut sql = format!(
                    "UPDATE {} SET state = 'active', updated_at = {}, migration_version = {}, \
                     migration_fingerprint = {}",
                    $crate::registry::quote_table(table, $quote),
                    ph(1),
                    ph(2),
                    ph(3)
                );
                let next = if password.is_some() {
                    sql.push_str(&format!(", password = {}", ph(4)));
                    5
                } else {
                    4
                };
                sql.push_str(&format!(
                    " WHERE id = {} AND state = 'provisioning'",
                    ph(next)
                ));
                if $returning {
                    sql.push_str(&format!(" RETURNING {}", $crate::registry::COLUMNS));
                }
                // Cached: two texts per registry (with or without the password), run by
                // every sign-up.
                let mut query = $crate::cached_sql::cached_sql::<
                    <$conn as diesel_async::AsyncConnectionCore>::Backend,
                >(sql)
                .bind::<Timestamp, _>(chrono::Utc::now().naive_utc())
                .bind::<Nullable<Text>, _>(version)
                .bind::<Text, _>(fingerprint);
                if let Some(password) = password {
                    query = query.bind::<Text, _>(password);
                }
                let query = query.bind::<Text, _>(id.as_str());
                if $returning {
                    let result = query
                        .get_result::<$crate::registry::RawRow>(&mut *self)
                        .await
                        .optional();
                    return registry_result(self, table, result)
                        .await
                        .map(|row| (usize::from(row.is_some()), row));
                }
                let result = query.execute(&mut *self).await;
                registry_result(self, table, result)
                    .await
                    .map(|n| (n, None))
            }

            async fn registry_swap_password(
                &mut self,
                table: &str,
                id: &$crate::TenantId,
                expected: &str,
                new: &str,
            ) -> $crate::registry::RegistryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let exact: fn(&str, String) -> String = $exact;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "UPDATE {} SET password = {}, updated_at = {} WHERE id = {} AND {}",
                    $crate::registry::quote_table(table, $quote),
                    ph(1),
                    ph(2),
                    ph(3),
                    exact("password", ph(4))
                );
                let result = diesel::sql_query(sql)
                    .bind::<diesel::sql_types::Text, _>(new)
                    .bind::<diesel::sql_types::Timestamp, _>(now)
                    .bind::<diesel::sql_types::Text, _>(id.as_str())
                    .bind::<diesel::sql_types::Text, _>(expected)
                    .execute(self)
                    .await;
                registry_result(self, table, result).await
            }

            async fn registry_delete(
                &mut self,
                table: &str,
                id: &str,
                token: Option<&str>,
            ) -> $crate::registry::RegistryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let mut sql = format!(
                    "DELETE FROM {} WHERE id = {}",
                    $crate::registry::quote_table(table, $quote),
                    ph(1)
                );
                if token.is_some() {
                    sql.push_str(&format!(" AND token = {}", ph(2)));
                }
                let query = diesel::sql_query(sql)
                    .into_boxed()
                    .bind::<diesel::sql_types::Text, _>(id);
                let result = match token {
                    Some(token) => {
                        query
                            .bind::<diesel::sql_types::Text, _>(token)
                            .execute(self)
                            .await
                    }
                    None => query.execute(self).await,
                };
                registry_result(self, table, result).await
            }
        }
    };
}
pub(crate) use impl_registry;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_the_catalog() {
        let err = || diesel::result::Error::NotFound;
        let cols = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(matches!(classify(err(), &[]), RegistryError::MissingTable));
        let old = cols(&["id", "password", "state", "created_at", "updated_at"]);
        assert!(matches!(
            classify(err(), &old),
            RegistryError::MissingColumn("token")
        ));
        let without_server = cols(&[
            "id",
            "password",
            "state",
            "created_at",
            "updated_at",
            "token",
        ]);
        assert!(matches!(
            classify(err(), &without_server),
            RegistryError::MissingColumn("server")
        ));
        let full = cols(&[
            "ID",
            "password",
            "state",
            "created_at",
            "updated_at",
            "token",
            "server",
            "migration_version",
            "migration_fingerprint",
        ]);
        assert!(matches!(classify(err(), &full), RegistryError::Query(_)));
    }

    #[test]
    fn migration_sql_names_the_table() {
        let (up, down) = registry_migration_sql("my_tenants");
        assert!(up.contains("CREATE TABLE my_tenants"));
        assert_eq!(down, "DROP TABLE my_tenants;\n");
    }
}
