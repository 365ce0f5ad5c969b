//! A private PgBouncer started for one test, in front of a PostgreSQL server on 127.0.0.1.
//!
//! The binary comes from an environment variable: `TENORA_TEST_PGBOUNCER` (a current release,
//! 1.21 or later, with prepared statements in transaction mode; `.ci/run` builds 1.25.2 with
//! `../shared/tools/pgbouncer/build.sh`) or `TENORA_TEST_PGBOUNCER_OLD` (the distribution's
//! 1.18, without them). Without it the test skips with a loud message (fails in CI).
//!
//! Authentication needs no passwords: `auth_type = trust` with every role that connects listed
//! in `auth_file` ([`PgBouncer::allow`] adds roles and reloads). PgBouncer refuses to run as
//! root: it runs as the `postgres` OS user, in a temp folder that user owns. Its log goes with
//! the folder; set `TENORA_KEEP_PGBOUNCER_LOG` to keep the last one as
//! `/tmp/pgbouncer-last.log`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pg_cluster::{free_port, path};

/// The environment variable naming a current PgBouncer (1.21 or later).
pub const PGBOUNCER_VAR: &str = "TENORA_TEST_PGBOUNCER";
/// The environment variable naming PgBouncer 1.18 (no prepared statements in transaction mode).
pub const PGBOUNCER_OLD_VAR: &str = "TENORA_TEST_PGBOUNCER_OLD";

/// The console user's password when PgBouncer checks passwords.
const CONSOLE_PASSWORD: &str = "console";

/// How to set up a [`PgBouncer`].
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// `pool_mode`: `transaction` (default) or `session`.
    pub pool_mode: &'static str,
    /// `default_pool_size`: server connections per database and user (default 20).
    pub default_pool_size: u32,
    /// `auth_type`: `trust` (default: every role in `auth_file` logs in without a password) or
    /// `scram-sha-256` (PgBouncer checks the passwords [`PgBouncer::allow_with_password`]
    /// gives it; it still logs in to the server without one).
    pub auth_type: &'static str,
}

impl Default for PgBouncerOptions {
    fn default() -> Self {
        PgBouncerOptions {
            pool_mode: "transaction",
            default_pool_size: 20,
            auth_type: "trust",
        }
    }
}

/// A running PgBouncer; stopped and its folder deleted on drop.
pub struct PgBouncer {
    exe: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    users: Vec<(String, String)>,
}

impl PgBouncer {
    /// Starts the PgBouncer that environment variable `var` names ([`PGBOUNCER_VAR`] or
    /// [`PGBOUNCER_OLD_VAR`]) in front of the PostgreSQL server `server_url` points at (its
    /// host and port; PgBouncer logs in without a password), or returns `None` (after a loud
    /// message; a failure in CI) when it is not set.
    pub fn start(var: &str, server_url: &str, options: &PgBouncerOptions) -> Option<PgBouncer> {
        let exe = match std::env::var(var) {
            Ok(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                crate::missing(&format!("PgBouncer (set {var} to its binary)"));
                return None;
            }
        };
        assert!(exe.is_file(), "{var} names no file: {}", exe.display());
        let (server_host, server_port) = host_and_port(server_url);
        let as_postgres = crate::is_root();
        let dir = std::env::temp_dir().join(format!("tenora-pgbouncer-{}", crate::unique_token()));
        std::fs::create_dir_all(&dir).expect("create PgBouncer folder");
        let mut bouncer = PgBouncer {
            exe,
            dir,
            as_postgres,
            port: 0,
            // The console's user: a password once PgBouncer checks them.
            users: vec![(
                "postgres".to_owned(),
                if options.auth_type == "trust" {
                    String::new()
                } else {
                    CONSOLE_PASSWORD.to_owned()
                },
            )],
        };
        bouncer.write_users();
        // A few tries in case another process takes the port between probe and start.
        for _ in 0..5 {
            bouncer.port = free_port();
            let ini = format!(
                "[databases]\n\
                 * = host={server_host} port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir = {dir}\n\
                 auth_type = {auth}\n\
                 auth_file = {dir}/users.txt\n\
                 admin_users = postgres\n\
                 pool_mode = {mode}\n\
                 default_pool_size = {size}\n\
                 max_client_conn = 2000\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 server_idle_timeout = 5\n\
                 logfile = {dir}/pgbouncer.log\n\
                 pidfile = {dir}/pgbouncer.pid\n",
                port = bouncer.port,
                dir = path(&bouncer.dir),
                mode = options.pool_mode,
                size = options.default_pool_size,
                auth = options.auth_type,
            );
            std::fs::write(bouncer.ini(), ini).expect("write pgbouncer.ini");
            if as_postgres {
                crate::give_to("postgres:postgres", &bouncer.dir);
            }
            if bouncer.launch() {
                return Some(bouncer);
            }
        }
        panic!("PgBouncer did not start: {}", bouncer.log());
    }

    fn ini(&self) -> PathBuf {
        self.dir.join("pgbouncer.ini")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.pid")
    }

    fn write_users(&self) {
        let lines: String = self
            .users
            .iter()
            .map(|(u, p)| {
                format!(
                    "\"{}\" \"{}\"\n",
                    u.replace('"', "\"\""),
                    p.replace('"', "\"\"")
                )
            })
            .collect();
        std::fs::write(self.dir.join("users.txt"), lines).expect("write users.txt");
        if self.as_postgres {
            crate::give_to("postgres:postgres", &self.dir);
        }
    }

    /// Starts the daemon and waits until it accepts connections; `false` if it exited.
    fn launch(&self) -> bool {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.exe);
            c
        } else {
            Command::new(&self.exe)
        };
        let out = cmd
            .arg("-d")
            .arg(self.ini())
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.exe.display()));
        if !out.status.success() {
            return false;
        }
        // `-d` returns before the daemon listens: ready once its Unix socket, in this
        // instance's own folder, exists (a TCP probe could reach another process on the
        // port) and the pid file names it.
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if socket.exists() && self.pid().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the daemon: SIGINT, then SIGKILL if it is still there after a few seconds (a
    /// zombie counts as gone).
    fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                !status
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
        };
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if running() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.pid_file())
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    /// Lets roles `users` log in (trust mode refuses roles missing from `auth_file`): reloads
    /// the configuration and returns once the console lists them.
    pub async fn allow<S: AsRef<str>>(&mut self, users: &[S]) {
        let none: Vec<(&str, &str)> = users.iter().map(|u| (u.as_ref(), "")).collect();
        self.allow_with_password(&none).await;
    }

    /// Lets roles log in with these passwords (checked by PgBouncer under `scram-sha-256`;
    /// a role listed again gets the new password): reloads the configuration and returns once
    /// the console lists them.
    pub async fn allow_with_password(&mut self, users: &[(&str, &str)]) {
        for (user, password) in users {
            self.users.retain(|(u, _)| u != user);
            self.users
                .push(((*user).to_owned(), (*password).to_owned()));
        }
        self.write_users();
        let console = crate::pg_connect(&self.console_url()).await;
        console
            .simple_query("RELOAD")
            .await
            .expect("RELOAD on the PgBouncer console");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed: Vec<String> = console
                .simple_query("SHOW USERS")
                .await
                .expect("SHOW USERS on the PgBouncer console")
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        row.get("name").map(str::to_owned)
                    }
                    _ => None,
                })
                .collect();
            if users.iter().all(|(u, _)| listed.iter().any(|l| l == u)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not pick up the new users: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops PgBouncer (every client connection closes) and starts it again on the same port,
    /// as an operator's restart would.
    pub fn restart(&self) {
        self.stop();
        for _ in 0..50 {
            if self.launch() {
                return;
            }
            // The port may linger for a moment after the old process exits.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PgBouncer did not restart: {}", self.log());
    }

    /// The version line the binary prints (`PgBouncer 1.25.2`).
    pub fn version(&self) -> String {
        let out = Command::new(&self.exe)
            .arg("--version")
            .output()
            .expect("run pgbouncer --version");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The admin console's URL.
    fn console_url(&self) -> String {
        let password = &self.users[0].1;
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/pgbouncer",
            self.port
        )
    }

    /// URL of database `database` as role `user` through this PgBouncer (no password: trust).
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// `SHOW STATS` from the admin console: per database, the transactions PgBouncer served
    /// (`total_xact_count`).
    pub async fn transactions_per_database(&self) -> std::collections::BTreeMap<String, u64> {
        let client = crate::pg_connect(&self.console_url()).await;
        let messages = client
            .simple_query("SHOW STATS")
            .await
            .expect("SHOW STATS on the PgBouncer console");
        messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get("database")?.to_owned(),
                    row.get("total_xact_count")?.parse().ok()?,
                )),
                _ => None,
            })
            .collect()
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("TENORA_KEEP_PGBOUNCER_LOG").is_some() {
            let _ = std::fs::copy(self.dir.join("pgbouncer.log"), "/tmp/pgbouncer-last.log");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first TCP host and port of a PostgreSQL URL (defaults: 127.0.0.1, 5432).
fn host_and_port(url: &str) -> (String, u16) {
    use std::str::FromStr as _;
    let config = tokio_postgres::Config::from_str(url).expect("a PostgreSQL URL");
    let host = config
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => Some(name.clone()),
            #[cfg(unix)]
            _ => None,
        })
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    (host, config.get_ports().first().copied().unwrap_or(5432))
}
