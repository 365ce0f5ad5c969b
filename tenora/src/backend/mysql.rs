//! MySQL / MariaDB: one database and one user per tenant; the user holds privileges on its own
//! database only and no global privileges.

use std::sync::Arc;

use diesel_async::AsyncMysqlConnection;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Opts, OptsBuilder};

use diesel_async::{RunQueryDsl as _, SimpleAsyncConnection as _};

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
use crate::tls::mysql::MysqlTls;

impl_registry!(
    AsyncMysqlConnection,
    |_| "?".to_owned(),
    '`',
    "SELECT CAST(COLUMN_NAME AS CHAR) AS column_name FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
    |column, value| format!("BINARY {column} = {value}"),
    false
);

crate::run_log::impl_run_log!(AsyncMysqlConnection, |_| "?".to_owned());
crate::spare_table::impl_spare_table!(AsyncMysqlConnection, |_| "?".to_owned(), false);

/// MySQL's limit on database names.
const MAX_DATABASE: usize = 64;
/// MySQL's user-name limit, used until the server says otherwise (MariaDB allows 80, or 128 on
/// recent versions: see `learn_server`).
const MAX_USER: usize = 32;
/// The user-name limit as the server defines it: the length of `mysql.user.User`.
const USER_NAME_LIMIT_SQL: &str = "SELECT CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS len \
     FROM information_schema.COLUMNS \
     WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'user' AND COLUMN_NAME = 'User'";

/// How long a migration run waits for another run on the same database.
const MIGRATION_LOCK_WAIT_SECS: u32 = 3600;

#[derive(diesel::QueryableByName)]
struct LockResult {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    locked: Option<i32>,
}

/// How long dropping a tenant's database waits for a lock on it (MySQL waits a day by
/// default) once the sessions using it have been ended.
const DROP_LOCK_WAIT_SECS: u32 = 30;

/// Server error codes Tenora reacts to.
const ER_DB_CREATE_EXISTS: u16 = 1007;
const ER_CANNOT_USER: u16 = 1396;

/// The MySQL / MariaDB backend (cargo feature `mysql`).
///
/// Tenant `acme` gets the database `<database_prefix>acme` and the user
/// `'<user_prefix>acme'@'<user_host>'` with `GRANT ALL` on that database only. MySQL DDL is not
/// transactional; provisioning still removes everything it made when a step fails.
#[derive(Debug, Clone, Copy)]
pub enum Mysql {}

/// One MySQL or MariaDB server: its connection settings, TLS and admin connection.
pub struct MysqlServer {
    base: Opts,
    /// TLS to this server (its driver options are in `base`).
    tls: Arc<MysqlTls>,
    base_database: String,
    user_host: String,
    server: String,
    naming: Naming,
    /// Administrative statements take turns, so they hold one server connection at most.
    admin_turn: tokio::sync::Mutex<()>,
    /// The session holding this process's leases (named locks), opened on first use.
    lease_session: tokio::sync::Mutex<Option<mysql_async::Conn>>,
    /// Whether the server is MariaDB (read on first use).
    mariadb: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for MysqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlServer")
            .field("base_database", &self.base_database)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl sealed::Sealed for Mysql {}

/// Quotes an identifier: `` `name` ``, doubling any backtick inside.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal, escaping `'` and `\`.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A database name as it appears in `GRANT ... ON <db>.*`, where `_` and `%` are wildcards and
/// must be escaped: without this, tenant `a_b`'s grant would also cover a database `axb`.
fn grant_target(database: &str) -> String {
    let escaped = database
        .replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%");
    format!("{}.*", quote_ident(&escaped))
}

fn server_error(context: String) -> impl FnOnce(mysql_async::Error) -> Error {
    move |e| Error::Admin {
        context,
        source: Box::new(e),
    }
}

/// How a statement gives a user `password`: MariaDB as its hash (the plain password never
/// reaches the server, and the hash proves the user ours); MySQL 8 in the statement (no
/// portable hashed form for its default plugin).
fn identified_by(mariadb: bool, password: &SecretString) -> String {
    if mariadb {
        format!(
            "IDENTIFIED BY PASSWORD {}",
            quote_literal(&native_password_hash(password))
        )
    } else {
        format!("IDENTIFIED BY {}", quote_literal(password.expose()))
    }
}

/// The `mysql_native_password` hash of `password`: `*` and the upper-case hex SHA-1 of its
/// SHA-1, as the server stores it.
fn native_password_hash(password: &SecretString) -> String {
    use sha1::{Digest as _, Sha1};
    let inner = Sha1::digest(password.expose().as_bytes());
    let outer = Sha1::digest(inner);
    let mut hash = String::with_capacity(41);
    hash.push('*');
    for byte in outer {
        hash.push_str(&format!("{byte:02X}"));
    }
    hash
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

async fn connect(opts: &Opts, tls: &MysqlTls) -> diesel::ConnectionResult<AsyncMysqlConnection> {
    let builder = OptsBuilder::from_opts(opts.clone())
        // diesel-async keeps its own statement cache and expects found-rows semantics.
        .stmt_cache_size(0)
        .client_found_rows(true);
    let conn = tls.connect(builder).await.map_err(|e| {
        // Out of connection slots: the server's max_connections (1040: the budget shrinks), or
        // the account's max_user_connections (1203) or MAX_USER_CONNECTIONS resource (1226).
        // Marked so the budget can react.
        let message = match server_code(&e) {
            Some(1040) => format!("{}: {e}", crate::budget::SERVER_FULL),
            Some(1203 | 1226) => format!("{}: {e}", crate::budget::ACCOUNT_FULL),
            Some(1045) => format!("{}: {e}", crate::budget::AUTH_FAILED),
            _ => e.to_string(),
        };
        diesel::ConnectionError::BadConnection(message)
    })?;
    AsyncMysqlConnection::try_from(conn).await
}

fn manager(
    label: String,
    opts: Arc<Opts>,
    tls: Arc<MysqlTls>,
) -> AsyncDieselConnectionManager<AsyncMysqlConnection> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |_label| {
        let opts = Arc::clone(&opts);
        let tls = Arc::clone(&tls);
        Box::pin(async move { connect(&opts, &tls).await })
    });
    AsyncDieselConnectionManager::new_with_config(label, config)
}

impl MysqlServer {
    fn tenant_opts(&self, id: &TenantId, password: Option<&SecretString>) -> Opts {
        OptsBuilder::from_opts(self.base.clone())
            .user(Some(self.naming.user_name(id)))
            .pass(password.map(|p| p.expose().to_owned()))
            .db_name(Some(self.naming.database_name(id)))
            .into()
    }

    fn account(&self, id: &TenantId) -> String {
        format!(
            "{}@{}",
            quote_literal(&self.naming.user_name(id)),
            quote_literal(&self.user_host)
        )
    }

    async fn admin(&self) -> std::result::Result<mysql_async::Conn, mysql_async::Error> {
        let admin = OptsBuilder::from_opts(self.base.clone()).db_name(None::<String>);
        self.tls.connect(admin).await
    }

    async fn admin_execute(&self, sql: &str) -> std::result::Result<(), mysql_async::Error> {
        let _turn = self.admin_turn.lock().await;
        let mut conn = self.admin().await?;
        let result = conn.query_drop(sql).await;
        let _ = conn.disconnect().await;
        result
    }

    /// Whether the server is MariaDB rather than MySQL (they prove ownership differently).
    async fn is_mariadb(&self) -> Result<bool> {
        self.mariadb
            .get_or_try_init(|| async {
                let _turn = self.admin_turn.lock().await;
                let mut conn = self.admin().await?;
                let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
                let _ = conn.disconnect().await;
                Ok::<_, mysql_async::Error>(version.unwrap_or_default().contains("MariaDB"))
            })
            .await
            .copied()
            .map_err(server_error(format!(
                "cannot read the server version of {}",
                self.server
            )))
    }

    /// The named lock of tenant `id`'s lease in registry `scope` of this base database (the
    /// names are server-wide and limited to 64 characters, hence the hash).
    fn lease_name(&self, id: &TenantId, scope: &str) -> String {
        let hash = super::stable_hash(&["tenora lease", &self.base_database, scope, id.as_str()]);
        format!("tenora_lease_{hash:016x}")
    }

    /// Ends every session of `user` or on `database` but this one (`KILL` of a session that
    /// ended meanwhile fails harmlessly).
    async fn end_sessions(
        conn: &mut mysql_async::Conn,
        column: &str,
        value: &str,
    ) -> std::result::Result<(), mysql_async::Error> {
        let ids: Vec<u64> = conn
            .exec(
                format!(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE {column} = ? AND ID <> CONNECTION_ID()"
                ),
                (value,),
            )
            .await?;
        for id in ids {
            let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
        }
        Ok(())
    }

    async fn schema_exists(&self, name: &str) -> Result<bool> {
        let run = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let row: Option<u8> = conn
                .exec_first(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?",
                    (name,),
                )
                .await?;
            let _ = conn.disconnect().await;
            Ok::<_, mysql_async::Error>(row.is_some())
        };
        run.await.map_err(server_error(format!(
            "cannot look up `{name}` on {}",
            self.server
        )))
    }
}

impl Backend for Mysql {
    const CLIENT: Client = Client::Mysql;
    /// Administrative statements take turns on one connection at a time; a second one holds
    /// the leases.
    const ADMIN_CONNECTIONS: u32 = 2;
    /// The driver cannot tell a session the server ended: ping after a second idle.
    const PING_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
    type Connection = AsyncMysqlConnection;
    type Manager = AsyncDieselConnectionManager<AsyncMysqlConnection>;
    type Server = MysqlServer;

    async fn run_harness(
        conn: AsyncMysqlConnection,
        migrations: Migrations,
        op: MigrationOp,
        file_lock: Option<std::path::PathBuf>,
    ) -> std::result::Result<(AsyncMysqlConnection, migrate::Ran), BoxError> {
        migrate::run_blocking(conn, migrations, op, file_lock).await
    }
}

impl Server<Mysql> for MysqlServer {
    fn from_config(config: &Config) -> Result<Self> {
        let b = &config.base;
        let (url, tls) = config.base_url_and_tls()?;
        let (tls, ssl_opts) = MysqlTls::new(&crate::tls::Loaded::load(
            tls,
            crate::tls::Vocabulary::Mysql,
        )?);
        let opts = match &url {
            Some(url) => Opts::from_url(url.expose()).map_err(|e| {
                Error::config(
                    "base.url",
                    format!(
                        "not a valid MySQL connection URL ({})",
                        crate::config::redact_url(&e.to_string())
                    ),
                )
            })?,
            None => Opts::default(),
        };
        if opts.ssl_opts().is_some() {
            return Err(Error::config(
                "base.url",
                "has TLS parameters of the driver's own; use ssl-mode and ssl-ca",
            ));
        }
        let mut builder = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .ssl_opts(ssl_opts);
        if let Some(host) = &b.host {
            builder = builder.ip_or_hostname(host.clone());
        }
        if let Some(port) = b.port {
            builder = builder.tcp_port(port);
        }
        if let Some(user) = &b.user {
            builder = builder.user(Some(user.clone()));
        }
        if let Some(password) = &b.password {
            builder = builder.pass(Some(password.expose().to_owned()));
        }
        if let Some(database) = &b.database {
            builder = builder.db_name(Some(database.clone()));
        }
        let opts: Opts = builder.into();
        let user = opts.user().map(str::to_owned).ok_or_else(|| {
            Error::config("base.user", "no user given (in base.url or base.user)")
        })?;
        let base_database = opts.db_name().map(str::to_owned).ok_or_else(|| {
            Error::config(
                "base.database",
                "no base database given (the path of base.url, or base.database)",
            )
        })?;
        let server = match opts.socket() {
            Some(socket) => socket.to_owned(),
            None => format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        } + tls.describe();
        let (prefix, suffix) = config.database_affixes();
        let naming = Naming::new(
            &prefix,
            &config.tenant.user_prefix,
            &suffix,
            MAX_DATABASE,
            MAX_USER,
        )
        .reserve_databases([
            "mysql",
            "information_schema",
            "performance_schema",
            "sys",
            base_database.as_str(),
        ])
        .reserve_users([user.as_str(), "root", "mysql", "mariadb.sys"]);
        Ok(MysqlServer {
            base: opts,
            tls: Arc::new(tls),
            base_database,
            user_host: config.tenant.user_host.clone(),
            server,
            naming,
            admin_turn: tokio::sync::Mutex::new(()),
            lease_session: tokio::sync::Mutex::new(None),
            mariadb: tokio::sync::OnceCell::new(),
        })
    }

    fn naming(&self) -> &Naming {
        &self.naming
    }

    fn uses_passwords(&self) -> bool {
        true
    }

    fn describe_base(&self) -> String {
        format!(
            "the MySQL base database `{}` on {}",
            self.base_database, self.server
        )
    }

    fn describe_tenant(&self, id: &TenantId) -> String {
        format!(
            "tenant `{id}` (MySQL database `{}` on {})",
            self.naming.database_name(id),
            self.server
        )
    }

    fn base_manager(&self) -> AsyncDieselConnectionManager<AsyncMysqlConnection> {
        manager(
            self.describe_base(),
            Arc::new(self.base.clone()),
            Arc::clone(&self.tls),
        )
    }

    fn tenant_manager(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
    ) -> AsyncDieselConnectionManager<AsyncMysqlConnection> {
        manager(
            self.describe_tenant(id),
            Arc::new(self.tenant_opts(id, password)),
            Arc::clone(&self.tls),
        )
    }

    async fn connect_tenant(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        _route: super::server::Route,
    ) -> Result<AsyncMysqlConnection> {
        connect(&self.tenant_opts(id, password), &self.tls)
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_tenant(id),
                source: Box::new(e),
            })
    }

    async fn connect_base(&self) -> Result<AsyncMysqlConnection> {
        connect(&self.base, &self.tls)
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_base(),
                source: Box::new(e),
            })
    }

    async fn learn_server(&self, base: &mut AsyncMysqlConnection) -> Result<()> {
        #[derive(diesel::QueryableByName)]
        struct Limit {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
            len: Option<i64>,
        }
        // Not visible to an account without privileges on `mysql`: keep MySQL's 32 then.
        let limits: Vec<Limit> = diesel::sql_query(USER_NAME_LIMIT_SQL)
            .load(base)
            .await
            .map_err(|source| Error::Database {
                context: format!("cannot read the user-name limit of {}", self.server),
                source,
            })?;
        if let Some(len) = limits.into_iter().next().and_then(|l| l.len) {
            let len = usize::try_from(len).unwrap_or(MAX_USER).clamp(16, 255);
            self.naming.set_max_user_len(len);
        }
        Ok(())
    }

    async fn server_limits(
        &self,
        _base: &mut AsyncMysqlConnection,
    ) -> Result<Option<crate::budget::plan::ServerLimits>> {
        // On an admin connection: `SHOW` needs the text protocol, which diesel does not offer.
        let read = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let limits: Option<(i64, i64)> = conn
                .query_first("SELECT @@max_connections, @@max_user_connections")
                .await?;
            let threads: Option<(String, i64)> = conn
                .query_first("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
                .await?;
            let _ = conn.disconnect().await;
            Ok::<_, mysql_async::Error>((limits, threads))
        };
        let (limits, threads) = read.await.map_err(server_error(format!(
            "cannot read the connection limit of {} (set pool_cache.max_connections to skip \
             this)",
            self.server
        )))?;
        let count = |n: i64| u32::try_from(n).unwrap_or(0);
        let (max, per_account) = limits.unwrap_or((0, 0));
        // Threads_connected counts this admin connection and Tenora's first base connection.
        let others = threads.map_or(0, |(_, n)| count(n).saturating_sub(2));
        Ok(Some(crate::budget::plan::ServerLimits {
            max_connections: count(max),
            reserved: 0,
            in_use_by_others: others,
            // The session value is the account's own limit when it has one, else the global.
            account_limit: (per_account > 0).then(|| count(per_account)),
        }))
    }

    async fn set_password(&self, id: &TenantId, password: &SecretString) -> Result<()> {
        let account = self.account(id);
        // MariaDB takes the hash (the plain password never reaches the server); MySQL 8 has no
        // portable hashed form for its default plugin, so the password goes in the statement
        // over the admin connection (TLS when configured).
        let sql = format!(
            "ALTER USER {account} {}",
            identified_by(self.is_mariadb().await?, password)
        );
        self.admin_execute(&sql).await.map_err(server_error(format!(
            "cannot set the password of the user {account} on {}",
            self.server
        )))
    }

    async fn create_user(&self, id: &TenantId, password: &SecretString, token: &str) -> Result<()> {
        let account = self.account(id);
        // The proof travels in the statement that creates the user. MariaDB has no comments on
        // users: its users are created with the hash of the password (which only the registry
        // holds) and proven by it; MySQL 8.0.21+ keeps a comment.
        let mariadb = self.is_mariadb().await?;
        let mut sql = format!("CREATE USER {account} {}", identified_by(mariadb, password));
        if !mariadb {
            sql.push_str(&format!(
                " COMMENT {}",
                quote_literal(&ownership::mark(token))
            ));
        }
        match self.admin_execute(&sql).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(ER_CANNOT_USER) => Err(Error::TenantExists {
                id: id.clone(),
                what: format!("the user {account} exists on {}", self.server),
            }),
            Err(e) => Err(server_error(format!("cannot create the user {account}"))(e)),
        }
    }

    async fn drop_user(&self, id: &TenantId) -> Result<()> {
        let account = self.account(id);
        let user = self.naming.user_name(id);
        // Its sessions end first, so none lingers (or reconnects) after it is gone.
        let run = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let result = async {
                MysqlServer::end_sessions(&mut conn, "USER", &user).await?;
                conn.query_drop(format!("DROP USER IF EXISTS {account}"))
                    .await
            }
            .await;
            let _ = conn.disconnect().await;
            result
        };
        run.await
            .map_err(server_error(format!("cannot drop the user {account}")))
    }

    async fn create_database(&self, id: &TenantId, token: &str) -> Result<()> {
        let db = self.naming.database_name(id);
        // MariaDB keeps a comment on databases: the proof is created with the database. MySQL
        // has none; there the database is proven by the grant to the proven user (see
        // `inspect`).
        let sql = if self.is_mariadb().await? {
            format!(
                "CREATE DATABASE {} COMMENT {}",
                quote_ident(&db),
                quote_literal(&ownership::mark(token))
            )
        } else {
            format!("CREATE DATABASE {}", quote_ident(&db))
        };
        match self.admin_execute(&sql).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(ER_DB_CREATE_EXISTS) => Err(Error::TenantExists {
                id: id.clone(),
                what: format!("the database `{db}` exists on {}", self.server),
            }),
            Err(e) => Err(server_error(format!("cannot create the database `{db}`"))(
                e,
            )),
        }
    }

    async fn lock_down(&self, id: &TenantId) -> Result<()> {
        let db = self.naming.database_name(id);
        let account = self.account(id);
        self.admin_execute(&format!(
            "GRANT ALL PRIVILEGES ON {} TO {account}",
            grant_target(&db)
        ))
        .await
        .map_err(server_error(format!(
            "cannot grant {account} its rights on the database `{db}`"
        )))
    }

    async fn drop_database(&self, id: &TenantId) -> Result<()> {
        let db = self.naming.database_name(id);
        // DROP DATABASE waits for every open transaction on its tables (for a day, by
        // default): end the sessions using it first, and bound the wait for the rest (a
        // session on another database holding a lock here).
        let run = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let result = async {
                conn.query_drop(format!(
                    "SET SESSION lock_wait_timeout = {DROP_LOCK_WAIT_SECS}"
                ))
                .await?;
                // Only the sessions on this (proven) database: the user of the same name may
                // not be the tenant's; its own sessions end in `drop_user` once proven.
                MysqlServer::end_sessions(&mut conn, "DB", &db).await?;
                conn.query_drop(format!("DROP DATABASE IF EXISTS {}", quote_ident(&db)))
                    .await
            }
            .await;
            let _ = conn.disconnect().await;
            result
        };
        run.await
            .map_err(server_error(format!("cannot drop the database `{db}`")))
    }

    async fn inspect(&self, id: &TenantId, proof: &Proof) -> Result<Found> {
        let db = self.naming.database_name(id);
        let user = self.naming.user_name(id);
        let mariadb = self.is_mariadb().await?;
        let mark = proof.token.as_deref().map(ownership::mark);
        let run = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let result = async {
                // The user: MariaDB by its password hash, MySQL by its comment.
                let user_sql = if mariadb {
                    "SELECT authentication_string FROM mysql.user WHERE User = ? AND Host = ?"
                } else {
                    "SELECT JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.metadata.comment')) \
                     FROM mysql.user WHERE User = ? AND Host = ?"
                };
                let user_row: Option<Option<String>> =
                    conn.exec_first(user_sql, (&user, &self.user_host)).await?;
                let user_ours = match &user_row {
                    None => None,
                    // No password to compare (none stored, or it cannot be opened): unproven.
                    Some(value) if mariadb => Some(match value {
                        Some(stored) => proof
                            .passwords
                            .iter()
                            .any(|password| native_password_hash(password) == *stored),
                        None => false,
                    }),
                    Some(value) => Some(mark.is_some() && value.as_deref() == mark.as_deref()),
                };
                // The database: MariaDB by its comment, MySQL by the proven user's grant.
                let database_ours = if mariadb {
                    let row: Option<Option<String>> = conn
                        .exec_first(
                            "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA \
                             WHERE SCHEMA_NAME = ?",
                            (&db,),
                        )
                        .await?;
                    row.map(|comment| mark.is_some() && comment.as_deref() == mark.as_deref())
                } else {
                    let exists: Option<u8> = conn
                        .exec_first(
                            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                            (&db,),
                        )
                        .await?;
                    let pattern = grant_target(&db);
                    let pattern = pattern
                        .trim_end_matches(".*")
                        .trim_matches('`')
                        .replace("``", "`");
                    let granted: Option<u8> = conn
                        .exec_first(
                            "SELECT 1 FROM mysql.db WHERE Db = ? AND User = ? AND Host = ?",
                            (&pattern, &user, &self.user_host),
                        )
                        .await?;
                    exists.map(|_| user_ours == Some(true) && granted.is_some())
                };
                Ok::<_, mysql_async::Error>((user_ours, database_ours))
            }
            .await;
            let _ = conn.disconnect().await;
            result
        };
        let (user, database) = run.await.map_err(server_error(format!(
            "cannot look up the database and user of tenant `{id}` on {}",
            self.server
        )))?;
        Ok(Found {
            user: Presence::of(user),
            database: Presence::of(database),
        })
    }

    async fn inventory(&self) -> Result<Inventory> {
        let mariadb = self.is_mariadb().await?;
        let (user_prefix, db_prefix) = (self.naming.user_prefix(), self.naming.database_prefix());
        let run = async {
            let _turn = self.admin_turn.lock().await;
            let mut conn = self.admin().await?;
            let result = async {
                let user_mark = if mariadb {
                    "authentication_string"
                } else {
                    "JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.metadata.comment'))"
                };
                let users: Vec<(String, Option<String>)> = conn
                    .exec(
                        format!(
                            "SELECT User, {user_mark} FROM mysql.user \
                             WHERE Host = ? AND LEFT(User, ?) = ?"
                        ),
                        (&self.user_host, user_prefix.len(), user_prefix),
                    )
                    .await?;
                let db_mark = if mariadb { "SCHEMA_COMMENT" } else { "NULL" };
                let databases: Vec<(String, Option<String>)> = conn
                    .exec(
                        format!(
                            "SELECT SCHEMA_NAME, {db_mark} FROM information_schema.SCHEMATA \
                             WHERE LEFT(SCHEMA_NAME, ?) = ?"
                        ),
                        (db_prefix.len(), db_prefix),
                    )
                    .await?;
                Ok::<_, mysql_async::Error>((users, databases))
            }
            .await;
            let _ = conn.disconnect().await;
            result
        };
        let (users, databases) = run.await.map_err(server_error(format!(
            "cannot list the tenant databases and users on {}",
            self.server
        )))?;
        let empty = |mark: Option<String>| mark.filter(|m| !m.is_empty());
        Ok(Inventory {
            users: users
                .into_iter()
                .filter(|(name, _)| self.naming.id_of_user(name).is_some())
                .map(|(name, mark)| (name, empty(mark)))
                .collect(),
            databases: databases
                .into_iter()
                .filter(|(name, _)| self.naming.id_of_database(name).is_some())
                .map(|(name, mark)| (name, empty(mark)))
                .collect(),
            // No warm spares on MySQL.
            spares: Default::default(),
        })
    }

    fn expected_marks(&self, proof: &Proof) -> (Option<String>, Option<String>) {
        let mark = proof.token.as_deref().map(ownership::mark);
        // Known once `inventory` or `inspect` ran (it reads the server version first).
        match self.mariadb.get() {
            // Only one password can be expected in bulk (not while a rotation is in progress).
            Some(true) => match proof.passwords.as_slice() {
                [password] => (Some(native_password_hash(password)), mark),
                _ => (None, mark),
            },
            _ => (mark, None),
        }
    }

    async fn try_lease(&self, id: &TenantId, scope: &str) -> Result<bool> {
        let name = self.lease_name(id, scope);
        let mut session = self.lease_session.lock().await;
        let run = async {
            if session.is_none() {
                let mut conn = self.admin().await?;
                // An idle lease session must not be closed by the server's wait_timeout: its
                // locks would go with it while their work goes on.
                conn.query_drop("SET SESSION wait_timeout = 31536000")
                    .await?;
                *session = Some(conn);
            }
            let conn = session.as_mut().expect("opened above");
            let got: Option<Option<i64>> =
                conn.exec_first("SELECT GET_LOCK(?, 0)", (&name,)).await?;
            Ok::<_, mysql_async::Error>(got.flatten() == Some(1))
        };
        let result = run.await;
        if result.is_err() {
            // A broken session has lost its locks anyway; the next lease opens a new one.
            *session = None;
        }
        result.map_err(server_error(format!(
            "cannot take the lease of tenant `{id}` on {}",
            self.server
        )))
    }

    async fn release_lease(&self, id: &TenantId, scope: &str) {
        let name = self.lease_name(id, scope);
        let mut session = self.lease_session.lock().await;
        if let Some(conn) = session.as_mut()
            && let Err(e) = conn.exec_drop("DO RELEASE_LOCK(?)", (&name,)).await
        {
            tracing::debug!(tenant = %id, error = %e, "could not release a lease");
            *session = None;
        }
    }

    async fn create_base(&self) -> Result<bool> {
        let db = &self.base_database;
        if self.schema_exists(db).await? {
            return Ok(false);
        }
        self.admin_execute(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            quote_ident(db)
        ))
        .await
        .map_err(server_error(format!(
            "cannot create the base database `{db}`"
        )))?;
        Ok(true)
    }

    async fn database_exists(&self, id: &TenantId) -> Result<bool> {
        let db = self.naming.database_name(id);
        if db.len() > MAX_DATABASE {
            return Ok(false);
        }
        self.schema_exists(&db).await
    }

    async fn session_limits_sql(
        &self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> std::result::Result<String, String> {
        let mut sql = String::new();
        if let Some(lock) = lock {
            // Whole seconds, at least 1: metadata locks (DDL) and InnoDB row locks.
            let secs = lock.as_secs() + u64::from(lock.subsec_nanos() > 0);
            let secs = secs.max(1);
            sql.push_str(&format!(
                "SET SESSION lock_wait_timeout = {secs}; \
                 SET SESSION innodb_lock_wait_timeout = {secs}; "
            ));
        }
        if let Some(statement) = statement {
            let mariadb = self.is_mariadb().await.map_err(|e| e.to_string())?;
            if mariadb {
                sql.push_str(&format!(
                    "SET SESSION max_statement_time = {:.3}; ",
                    statement.as_secs_f64().max(0.001)
                ));
            } else {
                // MySQL limits only read-only SELECTs this way; DDL runs unlimited.
                sql.push_str(&format!(
                    "SET SESSION max_execution_time = {}; ",
                    statement.as_millis().max(1)
                ));
            }
        }
        Ok(sql)
    }

    async fn lock_migrations(
        &self,
        _target: Target<'_>,
        conn: &mut AsyncMysqlConnection,
    ) -> std::result::Result<MigrationLock, BoxError> {
        // A named server-wide lock per database (names are limited to 64 characters, hence
        // the hash); released by unlock_migrations or when the session ends.
        let locked = diesel::sql_query(format!(
            "SELECT GET_LOCK(CONCAT('tenora_', SHA1(DATABASE())), {MIGRATION_LOCK_WAIT_SECS}) \
             AS locked"
        ))
        .get_result::<LockResult>(conn)
        .await?;
        if locked.locked != Some(1) {
            return Err(format!(
                "could not take the migration lock of this database within \
                 {MIGRATION_LOCK_WAIT_SECS} s; another migration run may be stuck"
            )
            .into());
        }
        Ok(MigrationLock::Session)
    }

    async fn unlock_migrations(
        &self,
        conn: &mut AsyncMysqlConnection,
    ) -> std::result::Result<(), BoxError> {
        conn.batch_execute("DO RELEASE_LOCK(CONCAT('tenora_', SHA1(DATABASE())))")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_grant_wildcards() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal("it's \\"), "'it''s \\\\'");
        assert_eq!(grant_target("t_a_b"), "`t\\_a\\_b`.*");
    }

    #[test]
    fn native_password_hash_matches_the_server() {
        // `SELECT PASSWORD('x')` on MariaDB 10.11.
        let hash = native_password_hash(&SecretString::new("x".to_owned()));
        assert_eq!(hash, "*B69027D44F6E5EDC07F1AEAD1477967B16F28227");
    }
}
