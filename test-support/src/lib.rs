//! Dev-only helpers shared by Tenora's test binaries and its benchmark (not published).
//!
//! - [`server_url`]: a server's admin URL from the environment; without it a test skips with a
//!   loud message, unless `CI` is set, where it fails.
//! - [`unique_token`]: a short name part unique to a run, so tests can run in parallel.
//! - [`Cleanup`]: drops, when it goes out of scope, every database and role/user a test made
//!   ([`Made`]), also when the test panics.
//! - [`PgCluster`] / [`MariaDbServer`]: a private PostgreSQL or MariaDB server for one test
//!   (password checks, low `max_connections`).
//! - [`Counter`]: counts a test's connections where the server enforces its limit
//!   (`pg_stat_activity`, `information_schema.processlist`) and keeps the peak.

mod mariadb_server;
mod pg_cluster;
mod pgbouncer;
mod pki;
mod server_count;

pub use mariadb_server::{MariaDbOptions, MariaDbServer};
pub use pg_cluster::{PgCluster, PgOptions};
pub use pgbouncer::{PGBOUNCER_OLD_VAR, PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};
pub use pki::{CertFiles, TestPki};
pub use server_count::{Counter, connection_ids};

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable as _;

/// A short token unique to this process and call: lowercase hex.
pub fn unique_token() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .subsec_nanos();
    let mixed = (u64::from(std::process::id()) << 32 | u64::from(nanos)) ^ (u64::from(n) << 20);
    format!("{:x}{:x}", mixed % 0xff_ffff, n)
}

/// Whether this process runs as root (server binaries then run as their own OS user).
pub(crate) fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Hands `path` (recursively) to the OS user and group `owner`, e.g. `postgres:postgres`.
pub(crate) fn give_to(owner: &str, path: &std::path::Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown of {} failed", path.display());
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
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, which
    // would hide the line under a plain `cargo test`.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!! SKIPPED: {what} is not available; this test did not run !!!!\n"
    );
}

/// The URL in env var `var`, or `None` after reporting `what` missing (see [`missing`]).
pub fn server_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            missing(&format!("{what} ({var})"));
            None
        }
    }
}

/// Runs `future` to completion on a fresh current-thread runtime in another thread: usable
/// from `Drop` and from inside a test's own runtime.
pub fn block_on<F, T>(future: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Writes a Diesel-layout migration folder `<dir>/<name>/` with `up.sql` and `down.sql`.
pub fn write_migration(dir: &std::path::Path, name: &str, up: &str, down: &str) {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).expect("create a migration folder");
    std::fs::write(folder.join("up.sql"), up).expect("write up.sql");
    std::fs::write(folder.join("down.sql"), down).expect("write down.sql");
}

/// A tokio-postgres client connected to `url` (its driver runs on the current runtime).
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A mysql_async connection to `url`.
pub async fn mysql_connect(url: &str) -> mysql_async::Conn {
    mysql_async::Conn::from_url(url)
        .await
        .expect("connect to the test MySQL server")
}

/// What a test made on a server, by name.
#[derive(Debug, Clone, Default)]
pub struct Made {
    /// Databases whose names start with one of these.
    pub database_prefixes: Vec<String>,
    /// Databases with exactly these names.
    pub databases: Vec<String>,
    /// Roles (PostgreSQL) or users (MySQL) whose names start with one of these.
    pub user_prefixes: Vec<String>,
}

impl Made {
    /// Databases and users named with `prefix`.
    pub fn prefixed(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Made {
            database_prefixes: vec![prefix.clone()],
            databases: Vec::new(),
            user_prefixes: vec![prefix],
        }
    }

    fn database_matches(&self, name: &str) -> bool {
        self.databases.iter().any(|d| d == name)
            || self.database_prefixes.iter().any(|p| name.starts_with(p))
    }

    fn user_matches(&self, name: &str) -> bool {
        self.user_prefixes.iter().any(|p| name.starts_with(p))
    }
}

/// Drops, on the PostgreSQL server at `admin_url`, every database then every role in `made`.
pub async fn drop_pg(admin_url: &str, made: &Made) {
    let client = pg_connect(admin_url).await;
    let names = |sql: &'static str| {
        let client = &client;
        async move {
            let rows = client.query(sql, &[]).await.expect("list test objects");
            rows.into_iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    for db in names("SELECT datname::text FROM pg_database").await {
        if made.database_matches(&db) {
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    db.replace('"', "\"\"")
                ))
                .await
                .expect("drop a test database");
        }
    }
    for role in names("SELECT rolname::text FROM pg_roles").await {
        if made.user_matches(&role) {
            client
                .batch_execute(&format!(
                    "DROP ROLE IF EXISTS \"{}\"",
                    role.replace('"', "\"\"")
                ))
                .await
                .expect("drop a test role");
        }
    }
}

/// Drops, on the MySQL / MariaDB server at `admin_url`, every database then every user in
/// `made`.
pub async fn drop_mysql(admin_url: &str, made: &Made) {
    let mut conn = mysql_connect(admin_url).await;
    let dbs: Vec<String> = conn
        .query("SELECT schema_name FROM information_schema.schemata")
        .await
        .expect("list test databases");
    for db in dbs.iter().filter(|d| made.database_matches(d)) {
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            db.replace('`', "``")
        ))
        .await
        .expect("drop a test database");
    }
    let users: Vec<(String, String)> = conn
        .query("SELECT user, host FROM mysql.user")
        .await
        .expect("list test users");
    for (user, host) in users.iter().filter(|(u, _)| made.user_matches(u)) {
        conn.query_drop(format!(
            "DROP USER IF EXISTS '{}'@'{}'",
            user.replace('\'', "''"),
            host.replace('\'', "''")
        ))
        .await
        .expect("drop a test user");
    }
    let _ = conn.disconnect().await;
}

/// Which kind of server a [`Cleanup`] works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// Drops what a test made when it goes out of scope (also after a panic).
#[derive(Debug)]
pub struct Cleanup {
    /// The server kind.
    pub server: Server,
    /// Its admin URL.
    pub admin_url: String,
    /// What to drop.
    pub made: Made,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (server, url, made) = (self.server, self.admin_url.clone(), self.made.clone());
        let done = std::thread::spawn(move || {
            block_on(async move {
                match server {
                    Server::Postgres => drop_pg(&url, &made).await,
                    Server::Mysql => drop_mysql(&url, &made).await,
                }
            })
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("cleaning up the test objects on {server:?} failed");
        }
    }
}
