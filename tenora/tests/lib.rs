//! Integration tests against real databases: SQLite always, PostgreSQL when
//! `TENORA_TEST_PG_URL` is set, MySQL/MariaDB when `TENORA_TEST_MYSQL_URL` is set (both required
//! when `CI` is set). One test binary for the crate.

mod support;

mod properties;

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod rotation;

mod scenarios;

mod servers;

mod status;

mod fleet_runs;

mod sqlite;

mod metrics;

#[cfg(feature = "testing")]
mod testing;

#[cfg(feature = "blocking")]
mod blocking;

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod limits;

#[cfg(feature = "postgres")]
mod postgres;

#[cfg(feature = "postgres")]
mod spares;

#[cfg(feature = "postgres")]
mod pooler;

#[cfg(feature = "mysql")]
mod mysql;

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod tls;

/// Runs every shared scenario as a test against one backend.
macro_rules! scenario_tests {
    ($module:ident, $backend:ty) => {
        mod $module {
            use crate::scenarios as s;
            type B = $backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn provision_and_isolation() {
                s::provision_and_isolation::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn invalid_ids_create_nothing() {
                s::invalid_ids_create_nothing::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failing_migration_leaves_nothing() {
                s::failing_migration_leaves_nothing::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicate_create_changes_nothing() {
                s::duplicate_create_changes_nothing::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn drop_removes_everything() {
                s::drop_removes_everything::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_first_calls_share_one_pool() {
                s::concurrent_first_calls_share_one_pool::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_and_unregistered() {
                s::unknown_and_unregistered::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn migrate_and_rollback() {
                s::migrate_and_rollback::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn runtime_migration_folders_match_embedded() {
                s::runtime_migration_folders_match_embedded::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancelled_create_still_finishes() {
                s::cancelled_create_still_finishes::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_fleet_runs_apply_each_migration_once() {
                s::concurrent_fleet_runs_apply_each_migration_once::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fail_fast_skips_the_rest() {
                s::fail_fast_skips_the_rest::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn connection_budget_is_never_exceeded() {
                s::connection_budget_is_never_exceeded::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cached_pools_are_bounded_and_idle_ones_close() {
                s::cached_pools_are_bounded_and_idle_ones_close::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn seeds_run_on_create_and_on_demand() {
                s::seeds_run_on_create_and_on_demand::<B>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn resolver_validates_authorizes_and_looks_up() {
                s::resolver_validates_authorizes_and_looks_up::<B>().await
            }
        }
    };
}

scenario_tests!(lite, tenora::backend::Sqlite);
#[cfg(feature = "postgres")]
scenario_tests!(pg, tenora::backend::Postgres);
#[cfg(feature = "mysql")]
scenario_tests!(my, tenora::backend::Mysql);
