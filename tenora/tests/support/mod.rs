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
#[cfg(feature = "postgres")]
pub mod pg_cluster;

use std::sync::atomic::{AtomicU32, Ordering};

/// A short token unique to this test run and call: lowercase hex.
pub fn unique_token() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mixed = (u64::from(std::process::id()) << 32 | u64::from(nanos)) ^ (u64::from(n) << 20);
    format!("{:x}{:x}", mixed % 0xff_ffff, n)
}

/// Whether a missing server must fail the test (CI) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Reports a missing server: panics in CI, prints a loud skip otherwise.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("{what} is required when CI is set");
    }
    eprintln!("\n!!!! SKIPPED: {what} is not available; this test did not run !!!!\n");
}

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
