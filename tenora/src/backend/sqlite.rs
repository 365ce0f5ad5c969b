//! SQLite: the base database and each tenant are files; there are no users or passwords.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use diesel::SqliteConnection;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection as _};

use super::{Backend, MigrationLock, Server, Target, sealed};
use crate::config::{Client, Config};
use crate::error::{BoxError, Error, Result};
use crate::migrate::{self, MigrationOp};
use crate::migrations::Migrations;
use crate::naming::Naming;
use crate::ownership::{self, Found, Inventory, Presence, Proof};
use crate::registry::impl_registry;
use crate::secret::SecretString;
use crate::tenant_id::TenantId;

/// The diesel-async connection type of the SQLite backend.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

impl_registry!(
    SqliteConn,
    |_| "?".to_owned(),
    '"',
    "SELECT name AS column_name FROM pragma_table_info(?)",
    |column, value| format!("{column} = {value}"),
    false
);

crate::run_log::impl_run_log!(SqliteConn, |_| "?".to_owned());
crate::spare_table::impl_spare_table!(SqliteConn, |_| "?".to_owned(), false);

/// Settings applied to every SQLite connection: a busy timeout first (so the rest, and pooled
/// writers, wait for locks instead of failing), WAL for concurrent readers, enforced foreign
/// keys.
const PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;";

/// The SQLite backend (cargo feature `sqlite`, on by default).
///
/// The base database is the file `[base] database`; tenant `acme` lives in
/// `<database_dir>/<database_prefix>acme<database_suffix>`. Tenant files are opened with
/// `mode=rw`, so a missing file is an error rather than a silently created empty database.
///
/// The tenant's file is created as a hard link of `<file>.tenora-<token>`, whose name carries
/// the registry row's token: that second name, on the same file, is the proof that Tenora made
/// it for this tenant (a copy of the folder that does not keep hard links loses it).
#[derive(Debug, Clone, Copy)]
pub enum Sqlite {}

/// One folder of tenant files (and, on the default server, the base database file).
#[derive(Debug)]
pub struct SqliteServer {
    base_path: PathBuf,
    tenant_dir: PathBuf,
    naming: Naming,
    /// The lock files of the leases this process holds, kept open (the OS lock ends with them).
    leases: Mutex<HashMap<PathBuf, File>>,
}

impl sealed::Sealed for Sqlite {}

impl SqliteServer {
    fn tenant_path(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir.join(self.naming.database_name(id))
    }

    /// The file whose name carries the token, linked to the tenant's file.
    fn proof_path(&self, id: &TenantId, token: &str) -> PathBuf {
        side_file(&self.tenant_path(id), &format!("{PROOF_INFIX}{token}"))
    }

    /// Every proof file of tenant `id`'s file, whatever its token.
    fn proof_files(&self, id: &TenantId) -> Result<Vec<PathBuf>> {
        let path = self.tenant_path(id);
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{name}{PROOF_INFIX}");
        let entries = match std::fs::read_dir(&self.tenant_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_error(
                    "cannot list the tenant database folder".to_owned(),
                    &self.tenant_dir,
                    e,
                ));
            }
        };
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|entry| entry.path())
            .collect())
    }

    fn tenant_url(&self, id: &TenantId) -> String {
        format!("file:{}?mode=rw", uri_path(&self.tenant_path(id)))
    }

    fn manager(url: String) -> AsyncDieselConnectionManager<SqliteConn> {
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move { establish(&url).await })
        });
        AsyncDieselConnectionManager::new_with_config(url, config)
    }
}

async fn establish(url: &str) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(url).await?;
    conn.batch_execute(PRAGMAS)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// Between a tenant file's name and the token, in the name of its proof file.
const PROOF_INFIX: &str = ".tenora-";

/// Suffix of the file locked while a tenant is created, dropped or repaired.
const LEASE_SUFFIX: &str = "-lease.lock";

/// Whether two paths name the same file (the same inode on Unix).
fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }
    #[cfg(not(unix))]
    {
        // Without inode numbers in std: equal sizes and modification times.
        Ok(a.len() == b.len() && a.modified().ok() == b.modified().ok())
    }
}

/// Whether `path` still names the open `file` (it was not removed or replaced since it was
/// opened).
fn still_named(file: &File, path: &Path) -> bool {
    let (Ok(open), Ok(named)) = (file.metadata(), std::fs::metadata(path)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        open.dev() == named.dev() && open.ino() == named.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (open, named);
        true
    }
}

/// Suffix of the file locked during migration runs.
const MIGRATION_LOCK_SUFFIX: &str = "-migrate.lock";

/// `path` with `suffix` appended to its file name (`a.sqlite` → `a.sqlite-wal`).
fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut side = path.as_os_str().to_owned();
    side.push(suffix);
    PathBuf::from(side)
}

/// Percent-encodes a path for an SQLite `file:` URI.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn io_error(context: String, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(
            "cannot remove the database file".to_owned(),
            path,
            e,
        )),
    }
}

impl Backend for Sqlite {
    const CLIENT: Client = Client::Sqlite;
    const ADMIN_CONNECTIONS: u32 = 0;
    /// Files do not hang up.
    const PING_IDLE_AFTER: std::time::Duration = std::time::Duration::MAX;
    type Connection = SqliteConn;
    type Manager = AsyncDieselConnectionManager<SqliteConn>;
    type Server = SqliteServer;

    async fn run_harness(
        conn: SqliteConn,
        migrations: Migrations,
        op: MigrationOp,
        file_lock: Option<PathBuf>,
    ) -> std::result::Result<(SqliteConn, migrate::Ran), BoxError> {
        migrate::run_blocking(conn, migrations, op, file_lock).await
    }
}

impl Server<Sqlite> for SqliteServer {
    fn from_config(config: &Config) -> Result<Self> {
        let base = config
            .base
            .database
            .clone()
            .or_else(|| config.base.url.as_ref().map(|u| u.expose().to_owned()))
            .ok_or_else(|| Error::config("base.database", "SQLite needs a base database path"))?;
        let base = match base
            .strip_prefix("sqlite://")
            .or_else(|| base.strip_prefix("file:"))
        {
            Some(path) => path,
            None if base.contains("://") => {
                // Never echo it: it may be another server's URL with a password in it.
                return Err(Error::config(
                    "base.url",
                    "the SQLite client takes a file path (or sqlite://path), not a server URL; \
                     check base.client and TENORA_BASE_URL",
                ));
            }
            None => &base,
        };
        let base_path = config.resolve(Path::new(base));
        let tenant_dir = config.resolve(&config.tenant.database_dir);
        let (prefix, suffix) = config.database_affixes();
        let mut naming = Naming::new(
            &prefix,
            &config.tenant.user_prefix,
            &suffix,
            255,
            usize::MAX,
        );
        if base_path.parent() == Some(tenant_dir.as_path())
            && let Some(name) = base_path.file_name()
        {
            naming = naming.reserve_databases([name.to_string_lossy().into_owned()]);
        }
        if let Some(parent) = base_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                io_error(
                    "cannot create the folder of the base database".to_owned(),
                    parent,
                    e,
                )
            })?;
        }
        Ok(SqliteServer {
            base_path,
            tenant_dir,
            naming,
            leases: Mutex::default(),
        })
    }

    fn naming(&self) -> &Naming {
        &self.naming
    }

    fn uses_passwords(&self) -> bool {
        false
    }

    fn describe_base(&self) -> String {
        format!("the SQLite base database {}", self.base_path.display())
    }

    fn describe_tenant(&self, id: &TenantId) -> String {
        format!(
            "tenant `{id}` (SQLite file {})",
            self.tenant_path(id).display()
        )
    }

    fn base_manager(&self) -> AsyncDieselConnectionManager<SqliteConn> {
        SqliteServer::manager(self.base_path.to_string_lossy().into_owned())
    }

    fn tenant_manager(
        &self,
        id: &TenantId,
        _password: Option<&SecretString>,
    ) -> AsyncDieselConnectionManager<SqliteConn> {
        SqliteServer::manager(self.tenant_url(id))
    }

    async fn connect_tenant(
        &self,
        id: &TenantId,
        _password: Option<&SecretString>,
        _route: super::server::Route,
    ) -> Result<SqliteConn> {
        establish(&self.tenant_url(id))
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_tenant(id),
                source: Box::new(e),
            })
    }

    async fn connect_base(&self) -> Result<SqliteConn> {
        establish(&self.base_path.to_string_lossy())
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_base(),
                source: Box::new(e),
            })
    }

    async fn create_user(
        &self,
        _id: &TenantId,
        _password: &SecretString,
        _token: &str,
    ) -> Result<()> {
        Ok(())
    }

    async fn drop_user(&self, _id: &TenantId) -> Result<()> {
        Ok(())
    }

    async fn create_database(&self, id: &TenantId, token: &str) -> Result<()> {
        let path = self.tenant_path(id);
        std::fs::create_dir_all(&self.tenant_dir).map_err(|e| {
            io_error(
                "cannot create the tenant database folder".to_owned(),
                &self.tenant_dir,
                e,
            )
        })?;
        // The proof file first, then the tenant's name as a second link to it: the link either
        // appears carrying the proof or not at all (it fails if the name is taken).
        let proof = self.proof_path(id, token);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            // Tenant data is private to the service's OS user.
            options.mode(0o600);
        }
        options.open(&proof).map_err(|e| {
            io_error(
                format!("cannot create the database file of tenant `{id}`"),
                &proof,
                e,
            )
        })?;
        match std::fs::hard_link(&proof, &path) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&proof);
                Err(if e.kind() == ErrorKind::AlreadyExists {
                    Error::TenantExists {
                        id: id.clone(),
                        what: format!("its database file {} exists", path.display()),
                    }
                } else {
                    io_error(
                        format!("cannot create the database file of tenant `{id}`"),
                        &path,
                        e,
                    )
                })
            }
        }
    }

    async fn inspect(&self, id: &TenantId, proof: &Proof) -> Result<Found> {
        let path = self.tenant_path(id);
        let proof_path = proof.token.as_deref().map(|t| self.proof_path(id, t));
        let proven = proof_path.as_deref().filter(|p| p.exists());
        let database = match (path.exists(), proven) {
            // A proof file whose link was never made (a crash in between): ours to remove.
            (false, Some(_)) => Presence::Ours,
            (false, None) => Presence::Absent,
            (true, Some(proof_path)) => match same_file(&path, proof_path) {
                Ok(true) => Presence::Ours,
                Ok(false) => Presence::Foreign,
                Err(e) => {
                    return Err(io_error(
                        format!("cannot inspect the database file of tenant `{id}`"),
                        &path,
                        e,
                    ));
                }
            },
            (true, None) => Presence::Foreign,
        };
        Ok(Found {
            user: Presence::Absent,
            database,
        })
    }

    async fn inventory(&self) -> Result<Inventory> {
        let entries = match std::fs::read_dir(&self.tenant_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Inventory::default()),
            Err(e) => {
                return Err(io_error(
                    "cannot list the tenant database folder".to_owned(),
                    &self.tenant_dir,
                    e,
                ));
            }
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        let mut inventory = Inventory::default();
        for name in &names {
            let Some(id) = self.naming.id_of_database(name) else {
                continue;
            };
            // The mark: the token of a proof file that is the same file.
            let path = self.tenant_path(&id);
            let prefix = format!("{name}{PROOF_INFIX}");
            let mark = names
                .iter()
                .filter_map(|other| other.strip_prefix(&prefix))
                .find(|token| same_file(&path, &self.proof_path(&id, token)).unwrap_or(false))
                .map(ownership::mark);
            inventory.databases.insert(name.clone(), mark);
        }
        Ok(inventory)
    }

    fn expected_marks(&self, proof: &Proof) -> (Option<String>, Option<String>) {
        (None, proof.token.as_deref().map(ownership::mark))
    }

    async fn try_lease(&self, id: &TenantId, _scope: &str) -> Result<bool> {
        let path = side_file(&self.tenant_path(id), LEASE_SUFFIX);
        std::fs::create_dir_all(&self.tenant_dir).map_err(|e| {
            io_error(
                "cannot create the tenant database folder".to_owned(),
                &self.tenant_dir,
                e,
            )
        })?;
        // The holder removes the lock file when it releases a dropped tenant's lease: a file
        // locked after that removal is no longer the one others open, so try again.
        for _ in 0..8 {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| {
                    io_error(format!("cannot open the lease of tenant `{id}`"), &path, e)
                })?;
            match file.try_lock() {
                Ok(()) if still_named(&file, &path) => {
                    self.leases
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(path, file);
                    return Ok(true);
                }
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_error(
                        format!("cannot lock the lease of tenant `{id}`"),
                        &path,
                        e,
                    ));
                }
            }
        }
        // Removed under us every time: another process is busy with this tenant.
        Ok(false)
    }

    async fn release_lease(&self, id: &TenantId, _scope: &str) {
        let path = side_file(&self.tenant_path(id), LEASE_SUFFIX);
        let file = self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&path);
        // No tenant file left: remove the lock file too (while still holding the lock).
        if file.is_some() && !self.tenant_path(id).exists() {
            let _ = std::fs::remove_file(&path);
        }
        drop(file);
    }

    async fn lock_down(&self, _id: &TenantId) -> Result<()> {
        Ok(())
    }

    async fn drop_database(&self, id: &TenantId) -> Result<()> {
        let path = self.tenant_path(id);
        for suffix in ["-wal", "-shm", "-journal", MIGRATION_LOCK_SUFFIX] {
            remove_if_exists(&side_file(&path, suffix))?;
        }
        remove_if_exists(&path)?;
        for proof in self.proof_files(id)? {
            remove_if_exists(&proof)?;
        }
        Ok(())
    }

    async fn create_base(&self) -> Result<bool> {
        if self.base_path.exists() {
            return Ok(false);
        }
        // Opening the base database creates the file.
        drop(self.connect_base().await?);
        Ok(true)
    }

    async fn database_exists(&self, id: &TenantId) -> Result<bool> {
        Ok(self.tenant_path(id).exists())
    }

    fn has_statement_timeout(&self) -> bool {
        false
    }

    async fn session_limits_sql(
        &self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> std::result::Result<String, String> {
        if statement.is_some() {
            return Err(
                "SQLite has no statement timeout: leave out --statement-timeout \
                        (FleetOptions::statement_timeout) on SQLite"
                    .to_owned(),
            );
        }
        // How long a statement waits for another connection's write lock.
        Ok(lock.map_or_else(String::new, |lock| {
            format!("PRAGMA busy_timeout = {};", lock.as_millis().max(1))
        }))
    }

    async fn lock_migrations(
        &self,
        target: Target<'_>,
        _conn: &mut SqliteConn,
    ) -> std::result::Result<MigrationLock, BoxError> {
        // SQLite's own locks cover one transaction, not a whole run: an OS file lock beside
        // the database serializes runs across processes.
        let database = match target {
            Target::Base => self.base_path.clone(),
            Target::Tenant(id) => self.tenant_path(id),
        };
        Ok(MigrationLock::File(side_file(
            &database,
            MIGRATION_LOCK_SUFFIX,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_refused_without_echoing_them() {
        let mut config = Config::sqlite("unused.sqlite");
        config.base.database = None;
        config.base.url = Some(SecretString::new("postgres://u:hunter2@h/db"));
        let err = SqliteServer::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("takes a file path"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn uri_paths_are_percent_encoded() {
        assert_eq!(
            uri_path(Path::new("/a b/c?d#e.sqlite")),
            "/a%20b/c%3Fd%23e.sqlite"
        );
    }
}
