//! Three replicas of the binary start at once on the same (SQLite) databases: together they
//! apply every migration exactly once, and each then serves.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use tenora::{Config, Migrations, SqliteTenora};

/// A running replica; killed when dropped.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary in `dir`; returns it with the numbers of its `migrated:` line and the
/// address it listens on.
fn start(dir: &std::path::Path) -> std::thread::JoinHandle<(Replica, String, String)> {
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_migrate-on-startup"))
            .current_dir(&dir)
            .env("APP_ADDR", "127.0.0.1:0")
            .env_remove("TENORA_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let replica = Replica(child);
        let mut next = || {
            lines.next().map(|l| l.unwrap()).unwrap_or_else(|| {
                panic!("the binary ended early (see its stderr)");
            })
        };
        let migrated = next();
        let listening = next();
        let addr = listening
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected line {listening:?}"))
            .to_owned();
        (replica, migrated, addr)
    })
}

fn health(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// `migrated: 1 base and 4 tenant migrations applied over 2 tenants` -> (1, 4, 2)
fn numbers(line: &str) -> (usize, usize, usize) {
    let n: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "{line}");
    (n[0], n[1], n[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two tenants created before any tenant migration existed.
    let old = SqliteTenora::builder(
        Config::sqlite(data.join("base.sqlite")).tenant_database_dir(data.join("tenants")),
    )
    .base_migrations(base_schema::MIGRATIONS)
    .tenant_migrations(Migrations::empty())
    .connect()
    .await
    .unwrap();
    old.migrate_base().await.unwrap();
    for name in ["acme", "globex"] {
        old.create_tenant(&old.tenant_id(name).unwrap(), None)
            .await
            .unwrap();
    }
    drop(old);

    let replicas: Vec<_> = (0..3).map(|_| start(dir.path())).collect();
    let started: Vec<_> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
    let per_tenant = tenant_schema::SQLITE_MIGRATIONS.iter().count();
    let (mut base, mut tenant) = (0, 0);
    for (_, migrated, addr) in &started {
        let (b, t, tenants) = numbers(migrated);
        assert_eq!(tenants, 2, "{migrated}");
        base += b;
        tenant += t;
        assert_eq!(health(addr), migrated.trim_start_matches("migrated: "));
    }
    assert_eq!(base, 0, "the base was migrated before");
    assert_eq!(
        tenant,
        2 * per_tenant,
        "each tenant migration applied exactly once across the replicas"
    );
}
