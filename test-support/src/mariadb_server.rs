//! A private MariaDB server started for one test (e.g. with a low `max_connections`), so tests
//! of connection limits never touch the shared server's settings.
//!
//! `mariadbd` refuses to run as root unless told which user to be: as root it runs with
//! `--user=mysql`, in a temp folder that user owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to set up a [`MariaDbServer`].
#[derive(Debug, Clone, Default)]
pub struct MariaDbOptions {
    /// `max_connections` of the server (default: MariaDB's, 151).
    pub max_connections: Option<u32>,
    /// Serve TLS with this certificate and key, and trust client certificates of this CA.
    pub ssl: Option<(crate::pki::CertFiles, PathBuf)>,
    /// Refuse TCP connections without TLS (`--require-secure-transport`).
    pub require_secure_transport: bool,
}

/// A running private MariaDB server; stopped and deleted on drop.
pub struct MariaDbServer {
    child: Child,
    dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl MariaDbServer {
    /// Starts a server allowing `max_connections` client connections, or returns `None`
    /// (after a loud message; a failure in CI) when MariaDB's server binaries are missing.
    pub fn start(max_connections: u32) -> Option<MariaDbServer> {
        Self::start_with(&MariaDbOptions {
            max_connections: Some(max_connections),
            ..MariaDbOptions::default()
        })
    }

    /// Starts a server set up as `options` say (see [`start`](Self::start)).
    pub fn start_with(options: &MariaDbOptions) -> Option<MariaDbServer> {
        let server = find(&["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]);
        let install = find(&["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]);
        let (Some(server), Some(install)) = (server, install) else {
            crate::missing("MariaDB server binaries (mariadbd, mariadb-install-db)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("tenora-mariadb-{}", crate::unique_token()));
        std::fs::create_dir_all(&dir).expect("create server folder");
        let as_root = crate::is_root();
        if as_root {
            crate::give_to("mysql:mysql", &dir);
        }
        let data = dir.join("data");
        let mut cmd = Command::new(&install);
        // Its own temp folder: bootstraps running at once collide in a shared /tmp.
        cmd.env("TMPDIR", &dir)
            .arg(format!("--datadir={}", path(&data)))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if as_root {
            cmd.arg("--user=mysql");
        }
        let out = cmd.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let mut cmd = Command::new(&server);
            cmd.arg("--no-defaults")
                .arg(format!("--tmpdir={}", path(&dir)))
                .arg(format!("--datadir={}", path(&data)))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", path(&dir.join("sock"))))
                .arg(format!("--pid-file={}", path(&dir.join("pid"))))
                .arg(format!("--log-error={}", path(&dir.join("error.log"))))
                .args(["--innodb-buffer-pool-size=16M", "--skip-log-bin"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if as_root {
                cmd.arg("--user=mysql");
            }
            if let Some(max) = options.max_connections {
                cmd.arg(format!("--max-connections={max}"));
            }
            if let Some((files, ca)) = &options.ssl {
                cmd.arg(format!("--ssl-cert={}", path(&files.cert)))
                    .arg(format!("--ssl-key={}", path(&files.key)))
                    .arg(format!("--ssl-ca={}", path(ca)));
            }
            if options.require_secure_transport {
                cmd.arg("--require-secure-transport=ON");
            }
            let child = cmd.spawn().expect("start mariadbd");
            let mut server = MariaDbServer {
                child,
                dir: dir.clone(),
                port,
            };
            if server.wait_ready(Duration::from_secs(30)) {
                return Some(server);
            }
            // Probably lost the port to someone else: stop it (keeping the folder), try again.
            server.dir = PathBuf::new();
        }
        panic!(
            "mariadbd did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // The server listens on TCP before it makes its Unix socket: wait for both.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.dir.join("sock").exists()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Root's URL of the server's `mysql` database through its Unix socket (a test's own admin
    /// access when TCP needs TLS).
    pub fn socket_url(&self) -> String {
        format!(
            "mysql://root@localhost/mysql?socket={}",
            path(&self.dir.join("sock"))
        )
    }

    /// Root's URL (no password) of the server's `mysql` database.
    pub fn admin_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
