//! The fleet-run log: two Tenora-owned tables in the base database, made on first use (like
//! the migration ledger in tenant databases), that record each fleet run and, as it goes, each
//! tenant's outcome — so a run that was killed or stopped can be resumed and reviewed.
//!
//! - `__tenora_runs`: one row per run (what it does, its state, how many tenants it covered);
//! - `__tenora_run_tenants`: one row per tenant the run had to work on (`pending` until it
//!   starts, `started`, then `done` or `failed`), with the rollback target and the outcome.
//!
//! Tenants already up to date when the run started are counted on the run row, not listed.

use std::future::Future;

use chrono::NaiveDateTime;
use diesel::QueryResult;

/// The table of runs.
pub const RUNS_TABLE: &str = "__tenora_runs";
/// The table of per-tenant outcomes.
pub const RUN_TENANTS_TABLE: &str = "__tenora_run_tenants";

/// Rows inserted per statement (four parameters each: well under SQLite's oldest limit of
/// 999 parameters).
pub(crate) const INSERT_CHUNK: usize = 200;

/// The longest `detail` kept (an error's text; a list of migrations), in characters.
pub(crate) const DETAIL_CHARS: usize = 2000;

/// Portable DDL (PostgreSQL, MySQL/MariaDB, SQLite) for both tables.
pub(crate) fn create_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (\
             id BIGINT NOT NULL PRIMARY KEY, \
             command VARCHAR(40) NOT NULL, \
             steps BIGINT NOT NULL, \
             state VARCHAR(20) NOT NULL, \
             tenants BIGINT NOT NULL, \
             up_to_date BIGINT NOT NULL, \
             fingerprint VARCHAR(64) NOT NULL, \
             started_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
         CREATE TABLE IF NOT EXISTS {RUN_TENANTS_TABLE} (\
             run_id BIGINT NOT NULL, \
             tenant VARCHAR(255) NOT NULL, \
             server VARCHAR(255) NOT NULL, \
             state VARCHAR(20) NOT NULL, \
             target VARCHAR(64), \
             started_from VARCHAR(64), \
             detail TEXT, \
             attempts BIGINT NOT NULL DEFAULT 0, \
             updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             PRIMARY KEY (run_id, tenant))"
    )
}

/// A new run's row.
#[doc(hidden)]
pub struct NewRun<'a> {
    pub(crate) id: i64,
    pub(crate) command: &'a str,
    pub(crate) steps: i64,
    pub(crate) tenants: i64,
    pub(crate) up_to_date: i64,
    pub(crate) fingerprint: &'a str,
}

/// A run's row with its tenants counted by state.
#[doc(hidden)]
#[derive(diesel::QueryableByName)]
pub struct RunRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) command: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) steps: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) state: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) tenants: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) up_to_date: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) fingerprint: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) started_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) updated_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) pending: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) started: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) done: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) failed: i64,
}

/// One tenant's row of a run.
#[doc(hidden)]
#[derive(diesel::QueryableByName)]
pub struct RunTenantRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) tenant: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) server: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) target: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) started_from: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub(crate) detail: Option<String>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) attempts: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) updated_at: NaiveDateTime,
}

/// Which runs to read.
#[doc(hidden)]
pub struct RunFilter<'a> {
    /// Only this run.
    pub(crate) id: Option<i64>,
    /// Only runs of this command.
    pub(crate) command: Option<&'a str>,
    /// Only runs that have not finished.
    pub(crate) unfinished: bool,
    /// At most this many, newest first.
    pub(crate) limit: i64,
}

/// The `SELECT` of runs with their tenants counted by state; `ph(n)` renders placeholder `n`.
/// Returns the SQL and which filters it binds (id, then command).
pub(crate) fn runs_sql(filter: &RunFilter<'_>, ph: fn(usize) -> String) -> String {
    let mut wheres = Vec::new();
    let mut n = 0;
    if filter.id.is_some() {
        n += 1;
        wheres.push(format!("r.id = {}", ph(n)));
    }
    if filter.command.is_some() {
        n += 1;
        wheres.push(format!("r.command = {}", ph(n)));
    }
    if filter.unfinished {
        wheres.push("r.state <> 'finished'".to_owned());
    }
    let wheres = if wheres.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", wheres.join(" AND "))
    };
    let count = |state: &str| format!("COUNT(CASE WHEN t.state = '{state}' THEN 1 END) AS {state}");
    format!(
        "SELECT r.id, r.command, r.steps, r.state, r.tenants, r.up_to_date, r.fingerprint, \
             r.started_at, r.updated_at, {}, {}, {}, {} \
         FROM {RUNS_TABLE} r LEFT JOIN {RUN_TENANTS_TABLE} t ON t.run_id = r.id \
         {wheres}\
         GROUP BY r.id, r.command, r.steps, r.state, r.tenants, r.up_to_date, r.fingerprint, \
             r.started_at, r.updated_at \
         ORDER BY r.id DESC LIMIT {}",
        count("pending"),
        count("started"),
        count("done"),
        count("failed"),
        filter.limit.max(0)
    )
}

/// Fleet-run log queries on one backend's connection type (implemented by `impl_run_log!`).
#[doc(hidden)]
pub trait RunLogConnection: Send {
    /// Makes both tables if missing.
    fn run_log_prepare(&mut self) -> impl Future<Output = QueryResult<()>> + Send;
    /// The next free run id (one more than the highest).
    fn run_log_next_id(&mut self) -> impl Future<Output = QueryResult<i64>> + Send;
    /// Inserts a run's row (fails on a taken id: the caller picks the next).
    fn run_log_insert_run(
        &mut self,
        run: &NewRun<'_>,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Inserts `pending` rows for `(tenant, server)` pairs (at most [`INSERT_CHUNK`]).
    fn run_log_insert_tenants(
        &mut self,
        run: i64,
        tenants: &[(String, String)],
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Sets a tenant's state and detail; `attempt` counts a new attempt.
    fn run_log_set_tenant(
        &mut self,
        run: i64,
        tenant: &str,
        state: &str,
        detail: Option<&str>,
        attempt: bool,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Marks a tenant started (one more attempt) with a rollback's `target` and
    /// `started_from` unless it has them already (the first writer's stay); returns the stored
    /// pair, `None` when the run has no row for the tenant.
    fn run_log_claim(
        &mut self,
        run: i64,
        tenant: &str,
        target: &str,
        started_from: &str,
    ) -> impl Future<Output = QueryResult<Option<(Option<String>, Option<String>)>>> + Send;
    /// Sets a run's state.
    fn run_log_set_run(
        &mut self,
        run: i64,
        state: &str,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
    /// Reads runs, newest first.
    fn run_log_runs(
        &mut self,
        filter: &RunFilter<'_>,
    ) -> impl Future<Output = QueryResult<Vec<RunRow>>> + Send;
    /// Reads a run's tenant rows, by tenant.
    fn run_log_tenants(
        &mut self,
        run: i64,
    ) -> impl Future<Output = QueryResult<Vec<RunTenantRow>>> + Send;
}

/// Implements [`RunLogConnection`] for a diesel-async connection type, given the backend's
/// bind placeholder for parameter `n` (1-based).
macro_rules! impl_run_log {
    ($conn:ty, $ph:expr) => {
        impl $crate::run_log::RunLogConnection for $conn {
            async fn run_log_prepare(&mut self) -> diesel::QueryResult<()> {
                use diesel_async::SimpleAsyncConnection as _;
                self.batch_execute(&$crate::run_log::create_sql()).await
            }

            async fn run_log_next_id(&mut self) -> diesel::QueryResult<i64> {
                use diesel_async::RunQueryDsl as _;
                #[derive(diesel::QueryableByName)]
                struct Next {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    next: i64,
                }
                let sql = format!(
                    "SELECT COALESCE(MAX(id), 0) + 1 AS next FROM {}",
                    $crate::run_log::RUNS_TABLE
                );
                diesel::sql_query(sql)
                    .get_result::<Next>(self)
                    .await
                    .map(|n| n.next)
            }

            async fn run_log_insert_run(
                &mut self,
                run: &$crate::run_log::NewRun<'_>,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{BigInt, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "INSERT INTO {} (id, command, steps, state, tenants, up_to_date, \
                     fingerprint, started_at, updated_at) \
                     VALUES ({}, {}, {}, 'running', {}, {}, {}, {}, {})",
                    $crate::run_log::RUNS_TABLE,
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
                    .bind::<BigInt, _>(run.id)
                    .bind::<Text, _>(run.command)
                    .bind::<BigInt, _>(run.steps)
                    .bind::<BigInt, _>(run.tenants)
                    .bind::<BigInt, _>(run.up_to_date)
                    .bind::<Text, _>(run.fingerprint)
                    .bind::<Timestamp, _>(now)
                    .bind::<Timestamp, _>(now)
                    .execute(self)
                    .await
            }

            async fn run_log_insert_tenants(
                &mut self,
                run: i64,
                tenants: &[(String, String)],
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{BigInt, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                if tenants.is_empty() {
                    return Ok(0);
                }
                let ph: fn(usize) -> String = $ph;
                let rows: Vec<String> = (0..tenants.len())
                    .map(|i| {
                        let n = i * 4;
                        format!(
                            "({}, {}, {}, 'pending', {})",
                            ph(n + 1),
                            ph(n + 2),
                            ph(n + 3),
                            ph(n + 4)
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO {} (run_id, tenant, server, state, updated_at) VALUES {}",
                    $crate::run_log::RUN_TENANTS_TABLE,
                    rows.join(", ")
                );
                let now = chrono::Utc::now().naive_utc();
                let mut query = diesel::sql_query(sql).into_boxed();
                for (tenant, server) in tenants {
                    query = query
                        .bind::<BigInt, _>(run)
                        .bind::<Text, _>(tenant.clone())
                        .bind::<Text, _>(server.clone())
                        .bind::<Timestamp, _>(now);
                }
                query.execute(self).await
            }

            async fn run_log_set_tenant(
                &mut self,
                run: i64,
                tenant: &str,
                state: &str,
                detail: Option<&str>,
                attempt: bool,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "UPDATE {} SET state = {}, detail = {}, attempts = attempts + {}, \
                     updated_at = {} WHERE run_id = {} AND tenant = {}",
                    $crate::run_log::RUN_TENANTS_TABLE,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5),
                    ph(6)
                );
                diesel::sql_query(sql)
                    .bind::<Text, _>(state)
                    .bind::<Nullable<Text>, _>(detail)
                    .bind::<BigInt, _>(i64::from(attempt))
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(run)
                    .bind::<Text, _>(tenant)
                    .execute(self)
                    .await
            }

            async fn run_log_claim(
                &mut self,
                run: i64,
                tenant: &str,
                target: &str,
                started_from: &str,
            ) -> diesel::QueryResult<Option<(Option<String>, Option<String>)>> {
                use diesel::OptionalExtension as _;
                use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "UPDATE {} SET state = 'started', target = COALESCE(target, {}), \
                     started_from = COALESCE(started_from, {}), attempts = attempts + 1, \
                     updated_at = {} WHERE run_id = {} AND tenant = {}",
                    $crate::run_log::RUN_TENANTS_TABLE,
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5)
                );
                let changed = diesel::sql_query(sql)
                    .bind::<Text, _>(target)
                    .bind::<Text, _>(started_from)
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(run)
                    .bind::<Text, _>(tenant)
                    .execute(&mut *self)
                    .await?;
                if changed != 1 {
                    return Ok(None);
                }
                #[derive(diesel::QueryableByName)]
                struct Stored {
                    #[diesel(sql_type = Nullable<Text>)]
                    target: Option<String>,
                    #[diesel(sql_type = Nullable<Text>)]
                    started_from: Option<String>,
                }
                let sql = format!(
                    "SELECT target, started_from FROM {} WHERE run_id = {} AND tenant = {}",
                    $crate::run_log::RUN_TENANTS_TABLE,
                    ph(1),
                    ph(2)
                );
                diesel::sql_query(sql)
                    .bind::<BigInt, _>(run)
                    .bind::<Text, _>(tenant)
                    .get_result::<Stored>(self)
                    .await
                    .optional()
                    .map(|stored| stored.map(|s| (s.target, s.started_from)))
            }

            async fn run_log_set_run(
                &mut self,
                run: i64,
                state: &str,
            ) -> diesel::QueryResult<usize> {
                use diesel::sql_types::{BigInt, Text, Timestamp};
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let now = chrono::Utc::now().naive_utc();
                let sql = format!(
                    "UPDATE {} SET state = {}, updated_at = {} WHERE id = {}",
                    $crate::run_log::RUNS_TABLE,
                    ph(1),
                    ph(2),
                    ph(3)
                );
                diesel::sql_query(sql)
                    .bind::<Text, _>(state)
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(run)
                    .execute(self)
                    .await
            }

            async fn run_log_runs(
                &mut self,
                filter: &$crate::run_log::RunFilter<'_>,
            ) -> diesel::QueryResult<Vec<$crate::run_log::RunRow>> {
                use diesel::sql_types::{BigInt, Text};
                use diesel_async::RunQueryDsl as _;
                let sql = $crate::run_log::runs_sql(filter, $ph);
                let mut query = diesel::sql_query(sql).into_boxed();
                if let Some(id) = filter.id {
                    query = query.bind::<BigInt, _>(id);
                }
                if let Some(command) = filter.command {
                    query = query.bind::<Text, _>(command.to_owned());
                }
                query.load(self).await
            }

            async fn run_log_tenants(
                &mut self,
                run: i64,
            ) -> diesel::QueryResult<Vec<$crate::run_log::RunTenantRow>> {
                use diesel_async::RunQueryDsl as _;
                let ph: fn(usize) -> String = $ph;
                let sql = format!(
                    "SELECT tenant, server, state, target, started_from, detail, attempts, updated_at \
                     FROM {} WHERE run_id = {} ORDER BY tenant",
                    $crate::run_log::RUN_TENANTS_TABLE,
                    ph(1)
                );
                diesel::sql_query(sql)
                    .bind::<diesel::sql_types::BigInt, _>(run)
                    .load(self)
                    .await
            }
        }
    };
}
pub(crate) use impl_run_log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_filtered_with_numbered_placeholders() {
        let filter = RunFilter {
            id: Some(3),
            command: Some("migrate"),
            unfinished: true,
            limit: 5,
        };
        let sql = runs_sql(&filter, |n| format!("${n}"));
        assert!(sql.contains("WHERE r.id = $1 AND r.command = $2 AND r.state <> 'finished' "));
        assert!(sql.ends_with("LIMIT 5"));
        let all = RunFilter {
            id: None,
            command: None,
            unfinished: false,
            limit: -1,
        };
        let sql = runs_sql(&all, |_| "?".to_owned());
        assert!(!sql.contains("WHERE"));
        assert!(sql.ends_with("LIMIT 0"));
    }
}
