//! Test support: per-test databases on real servers, cleaned up on drop.
//!
//! Environment:
//! - `TENORA_TEST_PG_URL`: admin URL of a PostgreSQL server where tests may create databases
//!   and roles (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Without it PostgreSQL tests
//!   skip with a loud message — unless `CI` is set, where they fail.
//! - `TENORA_TEST_MYSQL_URL`: admin URL of a MySQL or MariaDB server, likewise (e.g.
//!   `mysql://root@127.0.0.1:3306/mysql`).
//! - SQLite tests need nothing.

#![allow(dead_code)]

pub mod backends;

pub use tenora_test_support::unique_token;

/// Asserts that `result` is an error whose message contains every needle.
#[track_caller]
pub fn assert_err_contains<T>(result: tenora::Result<T>, needles: &[&str]) {
    let err = match result {
        Ok(_) => panic!("expected an error containing {needles:?}, got Ok"),
        Err(e) => e.to_string(),
    };
    for needle in needles {
        assert!(err.contains(needle), "error {err:?} lacks {needle:?}");
    }
}
