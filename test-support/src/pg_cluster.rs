//! A private PostgreSQL cluster started for one test: with `scram-sha-256` authentication for
//! tests of password behaviour (the machine's main cluster trusts every local connection), or
//! with a low `max_connections` for tests of connection limits.
//!
//! `initdb` and `postgres` refuse to run as root: when the test runs as root, they run as the
//! `postgres` OS user through `runuser`, in a temp folder that user owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How to set up a [`PgCluster`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `max_connections` of the server (default: PostgreSQL's, 100).
    pub max_connections: Option<u32>,
    /// Trust every local connection instead of checking passwords with `scram-sha-256`.
    pub trust: bool,
    /// Serve TLS with this certificate and key (`ssl = on`).
    pub ssl: Option<crate::pki::CertFiles>,
    /// The CA whose client certificates the server accepts (`ssl_ca_file`, for `cert` logins).
    pub ssl_ca: Option<PathBuf>,
    /// The whole `pg_hba.conf` (default: initdb's, with the `auth` above).
    pub hba: Option<String>,
}

/// A running private cluster; stopped and deleted on drop.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Superuser password (the superuser is `postgres`).
    pub password: String,
}

fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PgCluster {
    fn run(&self, program: &str, args: &[&str]) -> Output {
        run(&self.bin, self.as_postgres, program, args)
    }

    /// Starts a `scram-sha-256` cluster, or returns `None` (after a loud message; a failure in
    /// CI) when the PostgreSQL server binaries are not installed.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(&PgOptions::default())
    }

    /// Starts a cluster set up as `options` say (see [`start`](Self::start)).
    pub fn start_with(options: &PgOptions) -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            crate::missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)");
            return None;
        };
        let as_postgres = crate::is_root();
        let dir = std::env::temp_dir().join(format!("tenora-pg-{}", crate::unique_token()));
        std::fs::create_dir_all(&dir).expect("create cluster folder");
        let password = format!("pw{}", crate::unique_token());
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
        let mut ssl_settings = String::new();
        if let Some(files) = &options.ssl {
            // The server insists that its key is private to it.
            use std::os::unix::fs::PermissionsExt as _;
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::copy(&files.cert, &cert).expect("copy server certificate");
            std::fs::copy(&files.key, &key).expect("copy server key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod server key");
            ssl_settings = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                path(&cert),
                path(&key)
            );
            if let Some(ca) = &options.ssl_ca {
                let copy = dir.join("client-ca.crt");
                std::fs::copy(ca, &copy).expect("copy client CA");
                ssl_settings.push_str(&format!(" -c ssl_ca_file={}", path(&copy)));
            }
        }
        if as_postgres {
            crate::give_to("postgres:postgres", &dir);
        }
        let mut cluster = PgCluster {
            bin,
            dir,
            as_postgres,
            port: 0,
            password,
        };
        let data = cluster.data_dir();
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                if options.trust {
                    "--auth=trust"
                } else {
                    "--auth=scram-sha-256"
                },
                "--pwfile",
                path(&pwfile),
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        if let Some(hba) = &options.hba {
            // Rewrites the file initdb made (its owner stays).
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        }
        // A few tries in case another process takes the port between probe and start.
        for _ in 0..5 {
            cluster.port = free_port();
            let mut settings = format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                cluster.port,
                path(&cluster.dir)
            );
            if let Some(max) = options.max_connections {
                settings.push_str(&format!(" -c max_connections={max}"));
            }
            settings.push_str(&ssl_settings);
            let log = cluster.dir.join("log");
            let out = cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    path(&data),
                    "-o",
                    &settings,
                    "-l",
                    path(&log),
                    "-w",
                    "start",
                ],
            );
            if out.status.success() {
                return Some(cluster);
            }
        }
        panic!(
            "pg_ctl start failed: {}",
            std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default()
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash or a lost host would;
    /// its files stay until the cluster is dropped.
    pub fn stop(&self) {
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &["-D", path(&data), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The lines of the server's log where it refused a connection for lack of slots ("too many
    /// clients", "remaining connection slots are reserved"): the server's own record of an
    /// overrun, not sampled.
    pub fn refusals(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("too many clients") || l.contains("remaining connection slots"))
            .map(str::to_owned)
            .collect()
    }

    /// Superuser connection string of the cluster's `postgres` database through its Unix
    /// socket (for `local` lines of `pg_hba.conf`: a test's own admin access when TCP needs
    /// TLS).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres password={} dbname=postgres",
            path(&self.dir),
            self.port,
            self.password
        )
    }

    /// Superuser URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(bin: &Path, as_postgres: bool, program: &str, args: &[&str]) -> Output {
    let exe = bin.join(program);
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
