//! The warm-spare table: a Tenora-owned table in the base database, made on first fill (like
//! the fleet-run log), with one row per spare tenant database made ahead (see `spares`).
//!
//! A row is inserted before anything is made on the server and deleted only after what it
//! names is gone (or handed to a tenant), so a crash at any point leaves a row that says what
//! to look for: the spare's name (its database and role names derive from it), its server and
//! the token its role carries as proof. Rows carry their deployment's scope (its registry
//! table), so deployments sharing a base database never read, count or sweep each other's
//! spares.

use std::future::Future;

use chrono::NaiveDateTime;
use diesel::QueryResult;

/// The table of spares.
pub const SPARES_TABLE: &str = "__tenora_spares";

/// Portable DDL (PostgreSQL, MySQL/MariaDB, SQLite).
pub(crate) fn create_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {SPARES_TABLE} (\
             name VARCHAR(63) NOT NULL PRIMARY KEY, \
             scope VARCHAR(255) NOT NULL, \
             server VARCHAR(255) NOT NULL, \
             state VARCHAR(20) NOT NULL, \
             token VARCHAR(64) NOT NULL, \
             password TEXT NOT NULL, \
             fingerprint VARCHAR(64) NOT NULL, \
             claimed_by VARCHAR(255), \
             created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
}

/// A spare's row (no `Debug`: it holds a sealed password).
#[doc(hidden)]
#[derive(Clone, diesel::QueryableByName)]
pub struct SpareRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) name: String,
    /// The deployment's registry table.
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[allow(dead_code)]
    pub(crate) scope: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) server: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) state: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) token: String,
    /// The spare role's password, sealed like a tenant's (for the spare's name).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) password: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) fingerprint: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) claimed_by: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) created_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) updated_at: NaiveDateTime,
}

/// Spare-table queries on one backend's connection type (implemented by `impl_spare_table!`).
#[doc(hidden)]
pub trait SpareConnection: Send {
    /// Makes the table if missing.
    fn spares_prepare(&mut self) -> impl Future<Output = QueryResult<()>> + Send;
    /// Inserts a spare being made (`making`) of deployment `scope`, with its sealed password.
    fn spares_insert(
        &mut self,
        scope: &str,
        name: &str,
        server: &str,
        token: &str,
        password: &str,
        fingerprint: &str,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Moves spare `name` from state `from` (claimed by `was_claimed_by`, when given) to `to`,
    /// setting `claimed_by`; returns the rows changed (0: someone else moved it first).
    fn spares_move(
        &mut self,
        name: &str,
        from: &str,
        was_claimed_by: Option<&str>,
        to: &str,
        claimed_by: Option<&str>,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Deletes spare `name`'s row.
    fn spares_delete(&mut self, name: &str) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Replaces spare `name`'s sealed password with `new` if it still holds `expected`;
    /// returns the rows changed (0: changed or removed meanwhile).
    fn spares_swap_password(
        &mut self,
        name: &str,
        expected: &str,
        new: &str,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Every spare row of deployment `scope` (of every deployment sharing the base database
    /// with `None`), by server and age.
    fn spares_all(
        &mut self,
        scope: Option<&str>,
    ) -> impl Future<Output = QueryResult<Vec<SpareRow>>> + Send;
    /// Claims the oldest `ready` spare on `server` built for `fingerprint` for `tenant`
    /// (`claimed`, `claimed_by`), skipping spares other sign-ups are claiming; returns it.
    fn spares_claim(
        &mut self,
        scope: &str,
        server: &str,
        fingerprint: &str,
        tenant: &str,
    ) -> impl Future<Output = QueryResult<Option<SpareRow>>> + Send;
}

/// How many `ready` spares a claim looks at where it takes two statements (the first claims
/// the oldest; concurrent claims move on to the next).
pub(crate) const CANDIDATES: i64 = 4;

/// The columns of [`SpareRow`], in its order.
pub(crate) const COLUMNS: &str =
    "name, scope, server, state, token, password, fingerprint, claimed_by, created_at, updated_at";

/// Implements [`SpareConnection`] for a diesel-async connection type, given the backend's
/// bind placeholder for parameter `n` (1-based) and whether it has `UPDATE … RETURNING` and
/// `FOR UPDATE SKIP LOCKED` (PostgreSQL: a claim in one round trip).
macro_rules! impl_spare_table {
    ($conn:ty, $ph:expr, $returning:expr) => {
        impl $crate::spare_table::SpareConnection for $conn {
            async fn spares_prepare(&mut self) -> diesel::QueryResult<()> {
                use diesel_async::SimpleAsyncConnection as _;
                self.batch_execute(&$crate::spare_table::create_sql()).await
            }

            async fn spares_insert(
                &mut self,
                scope: &str,
                name: &str,
                server: &str,
                token: &str,
                password: &str,
                fingerprint: &str,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "INSERT INTO {} (name, scope, server, state, token, password, fingerprint, \
                     created_at, updated_at) VALUES ({}, {}, {}, 'making', {}, {}, {}, {}, {})",
                    $crate::spare_table::SPARES_TABLE,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5),
                    ph(6),
                    ph(7),
                    ph(8)
                );
                diesel::sql_query(sql)
                    .bind::<Text, _>(name)
                    .bind::<Text, _>(scope)
                    .bind::<Text, _>(server)
                    .bind::<Text, _>(token)
                    .bind::<Text, _>(password)
                    .bind::<Text, _>(fingerprint)
                    .bind::<Timestamp, _>(now)
                    .bind::<Timestamp, _>(now)
                    .execute(self)
                    .await
            }

            async fn spares_move(
                &mut self,
                name: &str,
                from: &str,
                was_claimed_by: Option<&str>,
                to: &str,
                claimed_by: Option<&str>,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{Nullable, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let mut sql = format!(
                    "UPDATE {} SET state = {}, claimed_by = {}, updated_at = {} \
                     WHERE name = {} AND state = {}",
                    $crate::spare_table::SPARES_TABLE,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5)
                );
                if was_claimed_by.is_some() {
                    sql.push_str(&format!(" AND claimed_by = {}", ph(6)));
                }
                let query = diesel::sql_query(sql)
                    .into_boxed()
                    .bind::<Text, _>(to)
                    .bind::<Nullable<Text>, _>(claimed_by)
                    .bind::<Timestamp, _>(chrono::Utc::now().naive_utc())
                    .bind::<Text, _>(name)
                    .bind::<Text, _>(from);
                match was_claimed_by {
                    Some(tenant) => query.bind::<Text, _>(tenant).execute(self).await,
                    None => query.execute(self).await,
                }
            }

            async fn spares_delete(&mut self, name: &str) -> diesel::QueryResult<usize> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = format!(
                    "DELETE FROM {} WHERE name = {}",
                    $crate::spare_table::SPARES_TABLE,
                    ph(1)
                );
                // Cached: one text, run after every sign-up that took a spare.
                $crate::cached_sql::cached_sql::<<$conn as diesel_async::AsyncConnectionCore>::Backend>(sql)
                    .bind::<diesel::sql_types::Text, _>(name)
                    .execute(self)
                    .await
            }

            async fn spares_swap_password(
                &mut self,
                name: &str,
                expected: &str,
                new: &str,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = format!(
                    "UPDATE {} SET password = {}, updated_at = {} WHERE name = {} \
                     AND password = {}",
                    $crate::spare_table::SPARES_TABLE,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4)
                );
                diesel::sql_query(sql)
                    .bind::<Text, _>(new)
                    .bind::<Timestamp, _>(chrono::Utc::now().naive_utc())
                    .bind::<Text, _>(name)
                    .bind::<Text, _>(expected)
                    .execute(self)
                    .await
            }

            async fn spares_all(
                &mut self,
                scope: Option<&str>,
            ) -> diesel::QueryResult<Vec<$crate::spare_table::SpareRow>> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = |filter: &str| {
                    format!(
                        "SELECT {} FROM {}{filter} ORDER BY server, created_at, name",
                        $crate::spare_table::COLUMNS,
                        $crate::spare_table::SPARES_TABLE,
                    )
                };
                match scope {
                    Some(scope) => {
                        diesel::sql_query(sql(&format!(" WHERE scope = {}", ph(1))))
                            .bind::<diesel::sql_types::Text, _>(scope)
                            .load(self)
                            .await
                    }
                    None => diesel::sql_query(sql("")).load(self).await,
                }
            }

            async fn spares_claim(
                &mut self,
                scope: &str,
                server: &str,
                fingerprint: &str,
                tenant: &str,
            ) -> diesel::QueryResult<Option<$crate::spare_table::SpareRow>> {
                use diesel::OptionalExtension as _;
                use diesel::sql_types::{BigInt, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                use $crate::spare_table::{CANDIDATES, COLUMNS, SPARES_TABLE};
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                if $returning {
                    // One round trip: concurrent claims skip each other's rows.
                    let sql = format!(
                        "UPDATE {SPARES_TABLE} SET state = 'claimed', claimed_by = {}, \
                         updated_at = {} WHERE state = 'ready' AND name = (SELECT name FROM \
                         {SPARES_TABLE} WHERE scope = {} AND server = {} AND state = 'ready' \
                         AND fingerprint = {} ORDER BY created_at, name LIMIT 1 \
                         FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}",
                        ph(1),
                        ph(2),
                        ph(3),
                        ph(4),
                        ph(5)
                    );
                    // Cached: one text, run by every sign-up.
                    return $crate::cached_sql::cached_sql::<<$conn as diesel_async::AsyncConnectionCore>::Backend>(sql)
                        .bind::<Text, _>(tenant)
                        .bind::<Timestamp, _>(now)
                        .bind::<Text, _>(scope)
                        .bind::<Text, _>(server)
                        .bind::<Text, _>(fingerprint)
                        .get_result(self)
                        .await
                        .optional();
                }
                let sql = format!(
                    "SELECT {COLUMNS} FROM {SPARES_TABLE} WHERE scope = {} AND server = {} \
                     AND state = 'ready' AND fingerprint = {} ORDER BY created_at, name LIMIT {}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4)
                );
                let candidates: Vec<$crate::spare_table::SpareRow> = diesel::sql_query(sql)
                    .bind::<Text, _>(scope)
                    .bind::<Text, _>(server)
                    .bind::<Text, _>(fingerprint)
                    .bind::<BigInt, _>(CANDIDATES)
                    .load(&mut *self)
                    .await?;
                for mut row in candidates {
                    let moved = self
                        .spares_move(&row.name, "ready", None, "claimed", Some(tenant))
                        .await?;
                    if moved == 1 {
                        row.state = "claimed".to_owned();
                        row.claimed_by = Some(tenant.to_owned());
                        return Ok(Some(row));
                    }
                }
                Ok(None)
            }
        }
    };
}
pub(crate) use impl_spare_table;
