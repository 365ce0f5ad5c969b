//! PostgreSQL: one database and one login role per tenant; the role owns its database and
//! nobody else (but superusers) may connect to it.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use diesel_async::SimpleAsyncConnection as _;

use super::server::Route;
use super::{Backend, Made, MigrationLock, Server, Target, sealed};
use crate::config::{Client, Config};
use crate::error::{BoxError, Error, Result};
use crate::lifecycle::Step;
use crate::migrate::{self, MigrationOp};
use crate::migrations::Migrations;
use crate::naming::Naming;
use crate::ownership::{self, Found, Inventory, Presence, Proof};
use crate::registry::impl_registry;
use crate::secret::SecretString;
use crate::tenant_id::TenantId;
use crate::tls::postgres::PgTls;

impl_registry!(
    AsyncPgConnection,
    |n| format!("${n}"),
    '"',
    "SELECT attname::text AS column_name FROM pg_attribute \
     WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped",
    |column, value| format!("{column} = {value}"),
    true
);

crate::run_log::impl_run_log!(AsyncPgConnection, |n| format!("${n}"));
crate::spare_table::impl_spare_table!(AsyncPgConnection, |n| format!("${n}"), true);

/// Advisory lock key of migration runs (the bytes of "tenoraMG").
const MIGRATION_LOCK_KEY: i64 = 8387231305986821447;

/// The template's advisory lock is held exclusively while it is rebuilt, shared while it is
/// cloned; its key is derived from the template's name (`PgServer::template_lock_key`), so
/// deployments with other prefixes on the same server never wait for each other. Taken on
/// sessions of the admin database, so every process using the same server sees the same lock.
const TEMPLATE_LOCK_SCOPE: &str = "tenora template";

/// How long a migration run waits for another run on the same database.
const MIGRATION_LOCK_WAIT_SECS: u32 = 3600;

/// How long `prepare_template` waits for another process rebuilding the template (or for
/// clones to finish) before giving up.
const TEMPLATE_LOCK_WAIT: Duration = Duration::from_secs(600);

/// The id whose database and role names the template uses (reserved for tenants).
const TEMPLATE_ID: &str = "tenora_template";

/// Start of the template database's comment, followed by the fingerprint of its migrations.
/// (`v2`: objects owned by `pg_database_owner`; older templates are rebuilt.)
const TEMPLATE_LABEL: &str = "tenora template v2 ";

/// `pg_database_owner` (the implicit role of a database's owner) exists from PostgreSQL 14.
const MIN_TEMPLATE_SERVER: i32 = 140000;

/// PostgreSQL's limit on identifier length, in bytes.
const MAX_IDENTIFIER: usize = 63;

/// The PostgreSQL backend (cargo feature `postgres`).
///
/// Tenant `acme` gets the database `<database_prefix>acme`, owned by the login role
/// `<user_prefix>acme`; `CONNECT` is revoked from `PUBLIC`, so other tenants' roles cannot
/// connect to it. Its password is sent to the server as a SCRAM-SHA-256 verifier, never in
/// plain text. Connections are built from a parsed config, not from URLs with passwords in them.
#[derive(Debug, Clone, Copy)]
pub enum Postgres {}

/// One PostgreSQL server: its connection settings, TLS and admin sessions.
pub struct PgServer {
    base: Arc<tokio_postgres::Config>,
    /// TLS to this server, for every connection Tenora opens to it.
    tls: PgTls,
    admin: tokio_postgres::Config,
    /// Admin sessions on the admin database, opened as needed: administrative statements of
    /// different tenants run at once, one per session.
    admin_sessions: AdminSessions,
    /// A second admin session, holding the template lock while the template is rebuilt.
    role_session: AdminSession,
    /// A session on the base database holding this process's tenant leases (advisory locks
    /// are per database: on the base database, every process using this registry sees them,
    /// whatever its admin database).
    lease_session: AdminSession,
    base_database: String,
    server: String,
    naming: Naming,
    /// Where tenant traffic connects when a pooler fronts the server (`[pooler]`): its hosts
    /// and ports, with the server's TLS settings.
    pooled: Option<Arc<tokio_postgres::Config>>,
    /// For messages about tenants: `, traffic through the transaction-mode pooler at …`, or
    /// empty without a pooler.
    pooler_label: String,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config redacts its password in Debug; we print less still.
        f.debug_struct("PgServer")
            .field("base_database", &self.base_database)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl sealed::Sealed for Postgres {}

/// A lazily opened administrative session; the lock serializes its statements.
type AdminSession = tokio::sync::Mutex<Option<tokio_postgres::Client>>;

/// How many admin sessions on the admin database run administrative statements at once.
const ADMIN_SESSIONS: usize = 3;

/// A few admin sessions; a caller waits its turn in a fair queue, then holds one session (for
/// a multi-statement sequence that needs one session, such as a session-level lock taken
/// and released around a clone).
struct AdminSessions {
    slots: Vec<AdminSession>,
    turns: tokio::sync::Semaphore,
}

impl Default for AdminSessions {
    fn default() -> Self {
        AdminSessions {
            slots: (0..ADMIN_SESSIONS)
                .map(|_| AdminSession::default())
                .collect(),
            turns: tokio::sync::Semaphore::new(ADMIN_SESSIONS),
        }
    }
}

/// One admin session, held until dropped; derefs to the (opened) client slot.
struct AdminGuard<'s> {
    session: tokio::sync::MutexGuard<'s, Option<tokio_postgres::Client>>,
    _turn: tokio::sync::SemaphorePermit<'s>,
}

impl std::ops::Deref for AdminGuard<'_> {
    type Target = Option<tokio_postgres::Client>;

    fn deref(&self) -> &Self::Target {
        &self.session
    }
}

impl AdminSessions {
    /// A free session slot (opened or not): each holder of a slot holds a turn, so with a
    /// turn one slot is free.
    async fn take(&self) -> AdminGuard<'_> {
        let turn = self
            .turns
            .acquire()
            .await
            .expect("the admin semaphore is never closed");
        let session = self
            .slots
            .iter()
            .find_map(|slot| slot.try_lock().ok())
            .expect("a turn always finds a free admin session");
        AdminGuard {
            session,
            _turn: turn,
        }
    }
}

/// Quotes an identifier: `"name"`, doubling any `"` inside.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal: `'text'`, doubling any `'` inside (the server runs with
/// `standard_conforming_strings = on`, set on every admin session).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn describe_server(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(h) => format!("{h}:{port}"),
            #[cfg(unix)]
            Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    }
}

/// A tokio-postgres error with the server's message in its `Display` (tokio-postgres itself
/// prints only "db error" and keeps the message in its source).
#[derive(Debug)]
pub(crate) struct ServerError(tokio_postgres::Error);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(f, "{}: {}", db.severity(), db.message())?;
                if let Some(detail) = db.detail() {
                    write!(f, " ({detail})")?;
                }
                if let Some(hint) = db.hint() {
                    write!(f, "; hint: {hint}")?;
                }
                Ok(())
            }
            None => {
                write!(f, "{}", self.0)?;
                let mut source = std::error::Error::source(&self.0);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

async fn connect(
    config: &tokio_postgres::Config,
    tls: &PgTls,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let (client, connection) = tls
        .connect(config)
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(connect_message(e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// Whether a pooler (PgBouncer) refused the password: it checks passwords itself and answers
/// with SQLSTATE 08P01 and the server's wording, not 28P01.
fn pooler_refused_password(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::PROTOCOL_VIOLATION
            && (db.message().contains("password authentication failed")
                || db.message().contains("SASL authentication failed"))
    })
}

/// A failed connect's message; a server out of connection slots (SQLSTATE 53300: "too many
/// clients", "remaining connection slots are reserved") or a role's or database's connection
/// limit is marked so the budget can react.
fn connect_message(e: tokio_postgres::Error) -> String {
    // Only a refused password (not pg_hba rejections, certificate or role problems: 28000).
    if e.code() == Some(&SqlState::INVALID_PASSWORD) || pooler_refused_password(&e) {
        return format!("{}: {}", crate::budget::AUTH_FAILED, ServerError(e));
    }
    if e.code() != Some(&SqlState::TOO_MANY_CONNECTIONS) {
        return ServerError(e).to_string();
    }
    // The same SQLSTATE covers a role's or database's own CONNECTION LIMIT ("too many
    // connections for role/database"); told apart by the server's (English) message.
    let own_limit = e.as_db_error().is_some_and(|db| {
        db.message().contains(" for role ") || db.message().contains(" for database ")
    });
    let mark = if own_limit {
        crate::budget::ACCOUNT_FULL
    } else {
        crate::budget::SERVER_FULL
    };
    format!("{mark}: {}", ServerError(e))
}

/// The server's connection limit, the slots ordinary roles cannot use, and other clients'
/// connections (every client backend but this session).
#[derive(diesel::QueryableByName)]
struct PgLimits {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    max_connections: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    reserved: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    others: i32,
}

const LIMITS_SQL: &str = "SELECT current_setting('max_connections')::int4 AS max_connections, \
     (current_setting('superuser_reserved_connections')::int4 \
      + COALESCE(current_setting('reserved_connections', true), '0')::int4) AS reserved, \
     (SELECT count(*) FROM pg_stat_activity \
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int4 AS others";

fn manager(
    label: String,
    config: Arc<tokio_postgres::Config>,
    tls: PgTls,
) -> AsyncDieselConnectionManager<AsyncPgConnection> {
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |_label| {
        let config = Arc::clone(&config);
        let tls = tls.clone();
        Box::pin(async move { connect(&config, &tls).await })
    });
    // The "URL" is only a label: connections come from the parsed config above.
    AsyncDieselConnectionManager::new_with_config(label, manager_config)
}

/// The connection settings of tenant traffic through `pooler`: its hosts and ports, the rest
/// (TLS, timeouts, keepalives, application name) as `server`'s; each tenant's user, database
/// and password are filled in per connection.
fn pooled_config(
    pooler: &crate::pooler::PoolerConfig,
    server: &tokio_postgres::Config,
) -> Result<tokio_postgres::Config> {
    // Checked with its table's name by `Config::validate`.
    let parsed = pooler.address("pooler")?;
    let mut config = tokio_postgres::Config::new();
    for host in parsed.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => config.host(name),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => config.host_path(path),
        };
    }
    for port in parsed.get_ports() {
        config.port(*port);
    }
    config
        .application_name(server.get_application_name().unwrap_or("tenora"))
        .ssl_mode(server.get_ssl_mode())
        .keepalives(server.get_keepalives())
        .keepalives_idle(server.get_keepalives_idle());
    if let Some(timeout) = server.get_connect_timeout() {
        config.connect_timeout(*timeout);
    }
    if let Some(interval) = server.get_keepalives_interval() {
        config.keepalives_interval(interval);
    }
    if let Some(retries) = server.get_keepalives_retries() {
        config.keepalives_retries(retries);
    }
    if let Some(timeout) = server.get_tcp_user_timeout() {
        config.tcp_user_timeout(*timeout);
    }
    Ok(config)
}

impl PgServer {
    /// The template database and its owner role.
    fn template_names(&self) -> (String, String) {
        let id = TenantId::new(TEMPLATE_ID).expect("a valid id");
        (self.naming.database_name(&id), self.naming.user_name(&id))
    }

    /// The advisory lock key of this deployment's template.
    fn template_lock_key(&self) -> i64 {
        let (db, _) = self.template_names();
        let hash = super::stable_hash(&[TEMPLATE_LOCK_SCOPE, &db]);
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// The fingerprint the template was built for, if it exists.
    async fn read_template_fingerprint(&self) -> Result<Option<String>> {
        let (db, _) = self.template_names();
        let session = self.admin_session().await.map_err(admin_error(format!(
            "cannot look up the template database `{db}`"
        )))?;
        let Some(client) = session.as_ref() else {
            return Ok(None);
        };
        let row = client
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .await
            .map_err(admin_error(format!(
                "cannot look up the template database `{db}`"
            )))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<String>>(0))
            .and_then(|c| c.strip_prefix(TEMPLATE_LABEL).map(str::to_owned)))
    }

    fn tenant_config(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        route: Route,
    ) -> tokio_postgres::Config {
        let via = match (&self.pooled, route) {
            (Some(pooler), Route::Traffic) => pooler,
            _ => &self.base,
        };
        let mut config = (**via).clone();
        config
            .user(self.naming.user_name(id))
            .dbname(self.naming.database_name(id));
        if let Some(password) = password {
            config.password(password.expose());
        }
        config
    }

    /// An admin session on the admin database, opened on first use and reopened if it was
    /// closed; held by the caller until dropped. A few sessions serve the administrative
    /// statements (connecting costs more than most of them), so different tenants' statements
    /// run at once and callers queue fairly for a free one.
    async fn admin_session(&self) -> std::result::Result<AdminGuard<'_>, tokio_postgres::Error> {
        let mut guard = self.admin_sessions.take().await;
        self.open(&mut guard.session, &self.admin).await?;
        Ok(guard)
    }

    async fn open_session<'s>(
        &self,
        slot: &'s AdminSession,
    ) -> std::result::Result<
        tokio::sync::MutexGuard<'s, Option<tokio_postgres::Client>>,
        tokio_postgres::Error,
    > {
        self.open_session_on(slot, &self.admin).await
    }

    /// The session in `slot`, opened with `config` on first use and reopened if it was closed.
    async fn open_session_on<'s>(
        &self,
        slot: &'s AdminSession,
        config: &tokio_postgres::Config,
    ) -> std::result::Result<
        tokio::sync::MutexGuard<'s, Option<tokio_postgres::Client>>,
        tokio_postgres::Error,
    > {
        let mut session = slot.lock().await;
        self.open(&mut session, config).await?;
        Ok(session)
    }

    /// Opens `session` with `config` unless it holds an open client.
    async fn open(
        &self,
        session: &mut Option<tokio_postgres::Client>,
        config: &tokio_postgres::Config,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        if session.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self.tls.connect(config).await?;
            // The driver ends when the client is dropped or the server closes the session.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
                .batch_execute("SET standard_conforming_strings = on")
                .await?;
            *session = Some(client);
        }
        Ok(())
    }

    /// Drops and rebuilds the template (the caller holds the template lock exclusively).
    async fn rebuild_template(&self, migrations: &Migrations, fingerprint: &str) -> Result<bool> {
        let (db, role) = self.template_names();
        let version = self.server_version().await?;
        if version < MIN_TEMPLATE_SERVER {
            tracing::warn!(
                server_version = version,
                "template provisioning needs PostgreSQL 14 or later; tenants are migrated instead"
            );
            return Ok(false);
        }
        let (qdb, qrole) = (quote_ident(&db), quote_ident(&role));
        let fail = |what: &str| admin_error(format!("cannot {what} the template database `{db}`"));
        // Rebuild from scratch: simpler and safer than patching an old template.
        self.admin_execute(&format!("DROP DATABASE IF EXISTS {qdb} WITH (FORCE)"))
            .await
            .map_err(fail("drop"))?;
        self.admin_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {qrole} NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .await
        .map_err(fail("create the owner role of"))?;
        // Owned by the admin (each clone is handed to its tenant's role); its objects are
        // created by the template role, then given to `pg_database_owner` below.
        self.admin_execute(&format!("CREATE DATABASE {qdb}"))
            .await
            .map_err(fail("create"))?;
        let mut config = (*self.base).clone();
        config.dbname(&db);
        let mut conn = connect(&config, &self.tls)
            .await
            .map_err(|e| Error::Connect {
                target: format!("the template database `{db}`"),
                source: Box::new(e),
            })?;
        conn.batch_execute(&format!(
            "GRANT CREATE, TEMPORARY ON DATABASE {qdb} TO {qrole}; \
             GRANT CREATE ON SCHEMA public TO {qrole}; SET ROLE {qrole}"
        ))
        .await
        .map_err(|e| Error::db(format!("cannot prepare the template database `{db}`"), e))?;
        let (mut conn, _) = migrate::run_blocking(conn, migrations.clone(), MigrationOp::Up, None)
            .await
            .map_err(|source| Error::Migration {
                database: format!("the template database `{db}`"),
                source,
            })?;
        // Hand every object to `pg_database_owner`, the implicit role of whoever owns the
        // database: in each clone that is the tenant's role, so a clone needs no per-tenant
        // REASSIGN (and no connection to it). Then drop the template role's rights.
        conn.batch_execute(&format!(
            "RESET ROLE; REASSIGN OWNED BY {qrole} TO pg_database_owner; DROP OWNED BY {qrole}"
        ))
        .await
        .map_err(|e| Error::db(format!("cannot hand over the template database `{db}`"), e))?;
        drop(conn);
        // Nobody may connect to a template while it is cloned; the comment records which
        // migrations it holds.
        self.admin_execute(&format!(
            "COMMENT ON DATABASE {qdb} IS {}",
            quote_literal(&format!("{TEMPLATE_LABEL}{fingerprint}"))
        ))
        .await
        .map_err(fail("label"))?;
        self.admin_execute(&format!("ALTER DATABASE {qdb} ALLOW_CONNECTIONS false"))
            .await
            .map_err(fail("close"))?;
        tracing::info!(template = %db, "template database rebuilt");
        Ok(true)
    }

    /// Clones the template into tenant `id`'s database, owned by its role, on the admin
    /// session `client` (where the caller holds the template lock shared, and has checked the
    /// fingerprint; a successful clone releases that lock).
    async fn clone_template(
        &self,
        client: &tokio_postgres::Client,
        id: &TenantId,
        password: Option<&SecretString>,
        token: &str,
        made: &mut Made,
    ) -> std::result::Result<bool, (Step, Error)> {
        let (template, _) = self.template_names();
        let db = self.naming.database_name(id);
        let role = self.naming.user_name(id);
        // The role first: the clone is created owned by it, so the database carries the proof
        // of ownership from the statement that creates it.
        if let Some(password) = password {
            self.create_role_on(client, id, password, token)
                .await
                .map_err(|e| (Step::CreateUser, e))?;
            made.user = true;
            crate::failpoint::reached(Step::CreateUser.key());
        }
        // Closed to connections until it is locked down below.
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {} OWNER {} ALLOW_CONNECTIONS false",
            quote_ident(&db),
            quote_ident(&template),
            quote_ident(&role)
        );
        let cloned = match client.batch_execute(&sql).await {
            Ok(()) => true,
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {
                return Err((
                    Step::CreateDatabase,
                    Error::TenantExists {
                        id: id.clone(),
                        what: format!("the database `{db}` exists on {}", self.server),
                    },
                ));
            }
            // Another process is rebuilding the template right now (it vanished since the
            // check, or a session is migrating it): create the database the plain way.
            Err(e)
                if e.code() == Some(&SqlState::UNDEFINED_DATABASE)
                    || e.code() == Some(&SqlState::OBJECT_IN_USE) =>
            {
                tracing::info!(template = %template, error = %ServerError(e), "template busy; migrating instead");
                false
            }
            Err(e) => {
                return Err((
                    Step::CreateDatabase,
                    admin_error(format!(
                        "cannot clone the template into the database `{db}`"
                    ))(e),
                ));
            }
        };
        if !cloned {
            return Ok(false);
        }
        made.database = true;
        crate::failpoint::reached(Step::CreateDatabase.key());

        // The clone's objects belong to `pg_database_owner` (see `prepare_template`): owning
        // the database makes the tenant's role the owner of everything in it. Lock it down as
        // `lock_down` does a plain tenant database, then release the template lock — one round
        // trip.
        client
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {d} FROM PUBLIC; \
                 ALTER DATABASE {d} ALLOW_CONNECTIONS true; \
                 SELECT pg_advisory_unlock_shared({key})",
                d = quote_ident(&db),
                key = self.template_lock_key(),
            ))
            .await
            .map_err(|e| {
                (
                    Step::LockDown,
                    admin_error(format!("cannot lock down the database `{db}`"))(e),
                )
            })?;
        crate::failpoint::reached(Step::LockDown.key());
        Ok(true)
    }

    /// Takes the template lock shared on the admin session `client` without waiting (while
    /// the template is being rebuilt, tenants are migrated instead) and checks, in the same
    /// round trip, that the template was built for `fingerprint`. Returns whether both hold;
    /// if not, the lock is not held.
    async fn lock_current_template(
        &self,
        client: &tokio_postgres::Client,
        fingerprint: &str,
    ) -> Result<bool> {
        let (template, _) = self.template_names();
        // One round trip: the key is a number, the name is quoted as a literal (a parameter
        // would add a prepare round trip to every template sign-up).
        let rows = client
            .simple_query(&format!(
                "SELECT pg_try_advisory_lock_shared({}), \
                 (SELECT shobj_description(oid, 'pg_database') FROM pg_database \
                  WHERE datname = {})",
                self.template_lock_key(),
                quote_literal(&template)
            ))
            .await
            .map_err(admin_error(format!(
                "cannot look up the template database `{template}`"
            )))?;
        let row = rows.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let locked = row.is_some_and(|row| row.get(0) == Some("t"));
        let label = row.and_then(|row| row.get(1));
        if !locked {
            return Ok(false);
        }
        let current = label.and_then(|l| l.strip_prefix(TEMPLATE_LABEL)) == Some(fingerprint);
        if !current {
            unlock_template_shared(client, self.template_lock_key()).await;
        }
        Ok(current)
    }

    /// The server's `server_version_num` (e.g. 150004).
    async fn server_version(&self) -> Result<i32> {
        let run = async {
            let session = self.admin_session().await?;
            match session.as_ref() {
                Some(client) => client.query_one("SHOW server_version_num", &[]).await,
                None => unreachable!("admin_session always leaves a client"),
            }
        };
        let row = run.await.map_err(admin_error(format!(
            "cannot read the server version of {}",
            self.server
        )))?;
        row.get::<_, String>(0).parse().map_err(|_| {
            Error::Unsupported(format!(
                "{} reports an unreadable server_version_num",
                self.server
            ))
        })
    }

    /// Runs one administrative statement (alone: CREATE DATABASE refuses to run inside a
    /// multi-statement batch).
    async fn admin_execute(&self, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
        let session = self.admin_session().await?;
        match session.as_ref() {
            Some(client) => client.batch_execute(sql).await,
            None => unreachable!("admin_session always leaves a client"),
        }
    }

    /// Runs `sql` on the session in `slot` that is connected to the base database.
    async fn execute_on_base(
        &self,
        slot: &AdminSession,
        sql: &str,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let session = self.open_session_on(slot, &self.base).await?;
        match session.as_ref() {
            Some(client) => client.batch_execute(sql).await,
            None => unreachable!("open_session_on always leaves a client"),
        }
    }

    /// Creates tenant `id`'s login role with its proof of ownership (the comment
    /// `tenora:<token>`) in one transaction, so the role never exists without it.
    ///
    /// The password goes in a statement of its own, after `CREATE ROLE` has succeeded: a
    /// failing statement is written to the server log, and a refused `CREATE ROLE` (the name
    /// is taken) then carries no password verifier into it.
    async fn create_role(&self, id: &TenantId, password: &SecretString, token: &str) -> Result<()> {
        let role = self.naming.user_name(id);
        let session = self
            .admin_session()
            .await
            .map_err(admin_error(format!("cannot create the role `{role}`")))?;
        let client = session
            .as_ref()
            .expect("admin_session always leaves a client");
        self.create_role_on(client, id, password, token).await
    }

    /// [`PgServer::create_role`] on the admin session `client`.
    async fn create_role_on(
        &self,
        client: &tokio_postgres::Client,
        id: &TenantId,
        password: &SecretString,
        token: &str,
    ) -> Result<()> {
        let role = self.naming.user_name(id);
        let qrole = quote_ident(&role);
        // Send a SCRAM verifier, so the plain password never reaches the server or its logs.
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        let rollback = || async {
            let _ = client.batch_execute("ROLLBACK").await;
        };
        if let Err(e) = client
            .batch_execute(&format!("BEGIN; CREATE ROLE {qrole} LOGIN"))
            .await
        {
            rollback().await;
            return Err(if e.code() == Some(&SqlState::DUPLICATE_OBJECT) {
                Error::TenantExists {
                    id: id.clone(),
                    what: format!("the role `{role}` exists on {}", self.server),
                }
            } else {
                admin_error(format!("cannot create the role `{role}`"))(e)
            });
        }
        let finish = format!(
            "COMMENT ON ROLE {qrole} IS {}; ALTER ROLE {qrole} PASSWORD {}; COMMIT",
            quote_literal(&ownership::mark(token)),
            quote_literal(&verifier)
        );
        if let Err(e) = client.batch_execute(&finish).await {
            rollback().await;
            return Err(admin_error(format!("cannot create the role `{role}`"))(e));
        }
        Ok(())
    }

    /// The advisory lock key of tenant `id`'s lease in registry `scope` of this base database.
    fn lease_key(&self, id: &TenantId, scope: &str) -> i64 {
        let hash = super::stable_hash(&["tenora lease", &self.base_database, scope, id.as_str()]);
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// Gives what `role` owns in `database` to that database's owner and revokes every right
    /// granted to `role` there.
    async fn release_role_in(&self, role: &str, database: &str) -> Result<()> {
        let mut config = self.admin.clone();
        config.dbname(database);
        let context = || format!("cannot release the role `{role}` in the database `{database}`");
        let (client, connection) = self
            .tls
            .connect(&config)
            .await
            .map_err(|e| admin_error(context())(e))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let qrole = quote_ident(role);
        let owner: String = client
            .query_one(
                "SELECT r.rolname::text FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
                 WHERE d.datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| admin_error(context())(e))?
            .get(0);
        let result = client
            .batch_execute(&format!(
                "REASSIGN OWNED BY {qrole} TO {}; DROP OWNED BY {qrole}",
                quote_ident(&owner)
            ))
            .await
            .map_err(|e| admin_error(context())(e));
        drop(client);
        let _ = driver.await;
        result
    }

    async fn admin_exists(&self, sql: &str, name: &str) -> Result<bool> {
        let run = async {
            let session = self.admin_session().await?;
            match session.as_ref() {
                Some(client) => client.query_opt(sql, &[&name]).await,
                None => unreachable!("admin_session always leaves a client"),
            }
        };
        run.await
            .map(|row| row.is_some())
            .map_err(|e| Error::Admin {
                context: format!("cannot look up `{name}` on {}", self.server),
                source: Box::new(ServerError(e)),
            })
    }
}

/// Releases the template lock taken shared on `client` (it also ends with the session, should
/// that be broken).
async fn unlock_template_shared(client: &tokio_postgres::Client, key: i64) {
    let _ = client
        .batch_execute(&format!("SELECT pg_advisory_unlock_shared({key})"))
        .await;
}

fn admin_error(context: String) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::Admin {
        context,
        source: Box::new(ServerError(e)),
    }
}

impl Backend for Postgres {
    const CLIENT: Client = Client::Postgres;
    /// The admin sessions (`ADMIN_SESSIONS`), one more for the template lock, and the lease
    /// session on the base database.
    const ADMIN_CONNECTIONS: u32 = ADMIN_SESSIONS as u32 + 2;
    /// An ended session is seen by the driver at once; ping only long-idle connections.
    const PING_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
    type Connection = AsyncPgConnection;
    type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
    type Server = PgServer;

    async fn run_harness(
        conn: AsyncPgConnection,
        migrations: Migrations,
        op: MigrationOp,
        file_lock: Option<std::path::PathBuf>,
    ) -> std::result::Result<(AsyncPgConnection, migrate::Ran), BoxError> {
        migrate::run_blocking(conn, migrations, op, file_lock).await
    }
}

impl Server<Postgres> for PgServer {
    fn from_config(config: &Config) -> Result<Self> {
        let b = &config.base;
        let (url, tls) = config.base_url_and_tls()?;
        let tls = PgTls::new(&crate::tls::Loaded::load(
            tls,
            crate::tls::Vocabulary::Libpq,
        )?)?;
        let mut pg = match &url {
            Some(url) => tokio_postgres::Config::from_str(url.expose()).map_err(|e| {
                Error::config(
                    "base.url",
                    format!(
                        "not a valid PostgreSQL connection URL ({})",
                        crate::config::redact_url(&e.to_string())
                    ),
                )
            })?,
            None => tokio_postgres::Config::new(),
        };
        if pg.get_ssl_mode() != tokio_postgres::config::SslMode::Prefer {
            // The driver read an sslmode that Tenora's own reading missed: never let a
            // setting it cannot see weaken (or strengthen) what it applies.
            return Err(Error::config(
                "base.url",
                "has sslmode in a form Tenora cannot read; write it as `sslmode=<mode>` or set \
                 base.sslmode",
            ));
        }
        if let Some(host) = &b.host {
            pg.host(host);
        }
        if let Some(port) = b.port {
            pg.port(port);
        }
        if let Some(user) = &b.user {
            pg.user(user);
        }
        if let Some(password) = &b.password {
            pg.password(password.expose());
        }
        if let Some(database) = &b.database {
            pg.dbname(database);
        }
        if pg.get_hosts().is_empty() {
            pg.host("localhost");
        }
        let user = pg.get_user().map(str::to_owned).ok_or_else(|| {
            Error::config("base.user", "no user given (in base.url or base.user)")
        })?;
        let base_database = pg.get_dbname().map(str::to_owned).ok_or_else(|| {
            Error::config(
                "base.database",
                "no base database given (the path of base.url, or base.database)",
            )
        })?;
        pg.application_name("tenora")
            .ssl_mode(tls.ssl_mode())
            .connect_timeout(Duration::from_secs(config.base.pool.connection_timeout));
        let mut admin = pg.clone();
        admin.dbname(&b.admin_database);
        let (prefix, suffix) = config.database_affixes();
        let naming = Naming::new(
            &prefix,
            &config.tenant.user_prefix,
            &suffix,
            MAX_IDENTIFIER,
            MAX_IDENTIFIER,
        )
        .reserve_databases([
            "postgres",
            "template0",
            "template1",
            b.admin_database.as_str(),
            base_database.as_str(),
        ])
        .reserve_users([
            user.as_str(),
            "postgres",
            "public",
            "none",
            "current_user",
            "current_role",
            "session_user",
        ])
        .reserve_user_prefix("pg_");
        // The template database and its owner role use the tenant id `tenora_template`.
        let template = TenantId::new(TEMPLATE_ID).expect("a valid id");
        let naming = naming
            .clone()
            .reserve_databases([naming.database_name(&template)])
            .reserve_users([naming.user_name(&template)])
            .reserve_id_prefix(crate::spares::SPARE_PREFIX);
        let pooled = config
            .pooler
            .as_ref()
            .map(|pooler| pooled_config(pooler, &pg).map(Arc::new))
            .transpose()?;
        let pooler_label = match (&config.pooler, &pooled) {
            (Some(pooler), Some(at)) => format!(
                ", traffic through the {}-mode pooler at {}",
                pooler.mode,
                describe_server(at)
            ),
            _ => String::new(),
        };
        Ok(PgServer {
            pooled,
            pooler_label,
            server: format!("{}{}", describe_server(&pg), tls.describe()),
            base: Arc::new(pg),
            tls,
            admin,
            admin_sessions: AdminSessions::default(),
            role_session: AdminSession::default(),
            lease_session: AdminSession::default(),
            base_database,
            naming,
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
            "the PostgreSQL base database `{}` on {}",
            self.base_database, self.server
        )
    }

    fn describe_tenant(&self, id: &TenantId) -> String {
        format!(
            "tenant `{id}` (PostgreSQL database `{}` on {}{})",
            self.naming.database_name(id),
            self.server,
            self.pooler_label
        )
    }

    fn base_manager(&self) -> AsyncDieselConnectionManager<AsyncPgConnection> {
        manager(
            self.describe_base(),
            Arc::clone(&self.base),
            self.tls.clone(),
        )
    }

    fn tenant_manager(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
    ) -> AsyncDieselConnectionManager<AsyncPgConnection> {
        manager(
            self.describe_tenant(id),
            Arc::new(self.tenant_config(id, password, Route::Traffic)),
            self.tls.clone(),
        )
    }

    async fn connect_tenant(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        route: Route,
    ) -> Result<AsyncPgConnection> {
        connect(&self.tenant_config(id, password, route), &self.tls)
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_tenant(id),
                source: Box::new(e),
            })
    }

    async fn connect_base(&self) -> Result<AsyncPgConnection> {
        connect(&self.base, &self.tls)
            .await
            .map_err(|e| Error::Connect {
                target: self.describe_base(),
                source: Box::new(e),
            })
    }

    async fn server_limits(
        &self,
        base: &mut AsyncPgConnection,
    ) -> Result<Option<crate::budget::plan::ServerLimits>> {
        use diesel_async::RunQueryDsl as _;
        let limits: PgLimits = diesel::sql_query(LIMITS_SQL)
            .get_result(base)
            .await
            .map_err(|e| {
                Error::db(
                    format!(
                        "cannot read the connection limit of {} (set pool_cache.max_connections \
                         to skip this)",
                        self.server
                    ),
                    e,
                )
            })?;
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        Ok(Some(crate::budget::plan::ServerLimits {
            max_connections: count(limits.max_connections),
            reserved: count(limits.reserved),
            in_use_by_others: count(limits.others),
            account_limit: None,
        }))
    }

    async fn create_user(&self, id: &TenantId, password: &SecretString, token: &str) -> Result<()> {
        self.create_role(id, password, token).await
    }

    async fn set_password(&self, id: &TenantId, password: &SecretString) -> Result<()> {
        let role = self.naming.user_name(id);
        // A SCRAM verifier: the plain password never reaches the server or its logs.
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        let sql = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&role),
            quote_literal(&verifier)
        );
        let session = self.admin_session().await.map_err(admin_error(format!(
            "cannot set the password of the role `{role}`"
        )))?;
        let client = session
            .as_ref()
            .expect("admin_session always leaves a client");
        client
            .batch_execute(&sql)
            .await
            .map_err(admin_error(format!(
                "cannot set the password of the role `{role}`"
            )))
    }

    async fn drop_user(&self, id: &TenantId) -> Result<()> {
        let role = self.naming.user_name(id);
        // Another tenant's role may have granted this role rights on its objects (or this role
        // may own objects in another database): DROP ROLE refuses while any database holds
        // such a dependency. Release them in each database that has one first.
        let databases: Vec<String> = {
            let session = self
                .admin_session()
                .await
                .map_err(admin_error(format!("cannot drop the role `{role}`")))?;
            let client = session
                .as_ref()
                .expect("admin_session always leaves a client");
            client
                .query(
                    "SELECT DISTINCT d.datname FROM pg_shdepend s \
                     JOIN pg_database d ON d.oid = s.dbid \
                     JOIN pg_roles r ON r.oid = s.refobjid \
                     WHERE s.refclassid = 'pg_authid'::regclass AND r.rolname = $1",
                    &[&role],
                )
                .await
                .map_err(admin_error(format!(
                    "cannot find what depends on the role `{role}`"
                )))?
                .iter()
                .map(|row| row.get(0))
                .collect()
        };
        for database in databases {
            self.release_role_in(&role, &database).await?;
        }
        self.admin_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
            .await
            .map_err(admin_error(format!("cannot drop the role `{role}`")))
    }

    async fn create_database(&self, id: &TenantId, _token: &str) -> Result<()> {
        let db = self.naming.database_name(id);
        let role = self.naming.user_name(id);
        // Closed to connections until `lock_down` has revoked PUBLIC's rights: nobody can
        // open a session in the window between the two statements.
        let sql = format!(
            "CREATE DATABASE {} OWNER {} ALLOW_CONNECTIONS false",
            quote_ident(&db),
            quote_ident(&role)
        );
        match self.admin_execute(&sql).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Err(Error::TenantExists {
                id: id.clone(),
                what: format!("the database `{db}` exists on {}", self.server),
            }),
            Err(e) => Err(admin_error(format!("cannot create the database `{db}`"))(e)),
        }
    }

    async fn lock_down(&self, id: &TenantId) -> Result<()> {
        let db = self.naming.database_name(id);
        self.admin_execute(&format!(
            "REVOKE ALL ON DATABASE {d} FROM PUBLIC; ALTER DATABASE {d} ALLOW_CONNECTIONS true",
            d = quote_ident(&db)
        ))
        .await
        .map_err(admin_error(format!(
            "cannot revoke PUBLIC's rights on the database `{db}`"
        )))
    }

    async fn drop_database(&self, id: &TenantId) -> Result<()> {
        let db = self.naming.database_name(id);
        self.admin_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&db)
        ))
        .await
        .map_err(admin_error(format!("cannot drop the database `{db}`")))
    }

    async fn inspect(&self, id: &TenantId, proof: &Proof) -> Result<Found> {
        let db = self.naming.database_name(id);
        let role = self.naming.user_name(id);
        let mark = proof.token.as_deref().map(ownership::mark);
        // Per object: NULL when absent, else whether it carries the proof. The role carries
        // the token in its comment; the database is proven by belonging to that role.
        let run = async {
            let session = self.admin_session().await?;
            let client = session
                .as_ref()
                .expect("admin_session always leaves a client");
            let row = client
                .query_one(
                    "SELECT \
                       (SELECT COALESCE(shobj_description(r.oid, 'pg_authid') = $3, false) \
                          FROM pg_roles r WHERE r.rolname = $2), \
                       (SELECT COALESCE(shobj_description(d.datdba, 'pg_authid') = $3, false) \
                          FROM pg_database d WHERE d.datname = $1)",
                    &[&db, &role, &mark],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((
                row.get::<_, Option<bool>>(0),
                row.get::<_, Option<bool>>(1),
            ))
        };
        let (user, database) = run.await.map_err(admin_error(format!(
            "cannot look up the database and role of tenant `{id}` on {}",
            self.server
        )))?;
        Ok(Found {
            user: Presence::of(user),
            database: Presence::of(database),
        })
    }

    async fn inventory(&self) -> Result<Inventory> {
        // Roles carry the mark in their comment; databases are proven by their owner's.
        let run = async {
            let session = self.admin_session().await?;
            let client = session
                .as_ref()
                .expect("admin_session always leaves a client");
            client
                .query(
                    "SELECT true, rolname::text, shobj_description(oid, 'pg_authid') \
                       FROM pg_roles WHERE starts_with(rolname, $1) \
                     UNION ALL \
                     SELECT false, datname::text, shobj_description(datdba, 'pg_authid') \
                       FROM pg_database WHERE starts_with(datname, $2)",
                    &[&self.naming.user_prefix(), &self.naming.database_prefix()],
                )
                .await
        };
        let rows = run.await.map_err(admin_error(format!(
            "cannot list the tenant databases and roles on {}",
            self.server
        )))?;
        let mut inventory = Inventory::default();
        for row in rows {
            let (is_user, name, mark): (bool, String, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            let known = if is_user {
                self.naming.id_of_user(&name)
            } else {
                self.naming.id_of_database(&name)
            };
            match (known, is_user) {
                (Some(_), true) => drop(inventory.users.insert(name, mark)),
                (Some(_), false) => drop(inventory.databases.insert(name, mark)),
                (None, _) if self.naming.is_spare_name(&name, is_user) => {
                    inventory.spares.insert((is_user, name), mark);
                }
                (None, _) => {}
            }
        }
        Ok(inventory)
    }

    fn expected_marks(&self, proof: &Proof) -> (Option<String>, Option<String>) {
        let mark = proof.token.as_deref().map(ownership::mark);
        (mark.clone(), mark)
    }

    async fn template_fingerprint(&self) -> Result<Option<String>> {
        self.read_template_fingerprint().await
    }

    async fn try_lease(&self, id: &TenantId, scope: &str) -> Result<bool> {
        // A session-level advisory lock on the lease session (on the base database): it ends
        // with the session, and so with this process.
        let key = self.lease_key(id, scope);
        let run = async {
            let session = self
                .open_session_on(&self.lease_session, &self.base)
                .await?;
            let client = session
                .as_ref()
                .expect("open_session_on always leaves a client");
            // The key is a number this code made: inlined, the lock is one round trip (a
            // parameter would add a prepare round trip on every sign-up).
            let rows = client
                .simple_query(&format!("SELECT pg_try_advisory_lock({key})"))
                .await?;
            let taken = rows.iter().any(|message| {
                matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
            });
            Ok::<bool, tokio_postgres::Error>(taken)
        };
        run.await.map_err(admin_error(format!(
            "cannot take the lease of tenant `{id}` on {}",
            self.server
        )))
    }

    async fn release_lease(&self, id: &TenantId, scope: &str) {
        let key = self.lease_key(id, scope);
        if let Err(e) = self
            .execute_on_base(
                &self.lease_session,
                &format!("SELECT pg_advisory_unlock({key})"),
            )
            .await
        {
            // The lease ends with the session anyway.
            tracing::debug!(tenant = %id, error = %ServerError(e), "could not release a lease");
        }
    }

    async fn create_base(&self) -> Result<bool> {
        let db = &self.base_database;
        if self
            .admin_exists("SELECT 1 FROM pg_database WHERE datname = $1", db)
            .await?
        {
            return Ok(false);
        }
        match self
            .admin_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
            .await
        {
            Ok(()) => Ok(true),
            // Created concurrently by someone else: fine.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
            Err(e) => Err(admin_error(format!(
                "cannot create the base database `{db}`"
            ))(e)),
        }
    }

    async fn prepare_template(&self, migrations: &Migrations, fingerprint: &str) -> Result<bool> {
        if self.read_template_fingerprint().await?.as_deref() == Some(fingerprint) {
            return Ok(true);
        }
        // One rebuild at a time across processes (replicas starting together), and none while
        // a clone is running: an exclusive advisory lock on the second admin session. It is
        // tried, not waited for, so that session stays free for this process's clones (which
        // hold the lock shared and may need it for CREATE ROLE) in between.
        let (db, _) = self.template_names();
        let lock_error = || admin_error(format!("cannot lock the template database `{db}`"));
        let deadline = std::time::Instant::now() + TEMPLATE_LOCK_WAIT;
        loop {
            let got: bool = {
                let session = self
                    .open_session(&self.role_session)
                    .await
                    .map_err(lock_error())?;
                let client = session
                    .as_ref()
                    .expect("open_session always leaves a client");
                client
                    .query_one(
                        &format!("SELECT pg_try_advisory_lock({})", self.template_lock_key()),
                        &[],
                    )
                    .await
                    .map_err(lock_error())?
                    .get(0)
            };
            if got {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Admin {
                    context: format!("cannot lock the template database `{db}`"),
                    source: format!(
                        "another process held its lock for {} s (rebuilding it, or cloning \
                         it); it may be stuck: look for sessions holding advisory lock \
                         {} in pg_locks",
                        TEMPLATE_LOCK_WAIT.as_secs(),
                        self.template_lock_key()
                    )
                    .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Another process may have rebuilt it while this one waited.
        let rebuilt = match self.read_template_fingerprint().await {
            Ok(current) if current.as_deref() == Some(fingerprint) => Ok(true),
            Ok(_) => self.rebuild_template(migrations, fingerprint).await,
            Err(e) => Err(e),
        };
        let mut session = self.role_session.lock().await;
        let unlocked = match session.as_ref() {
            Some(client) => client
                .batch_execute(&format!(
                    "SELECT pg_advisory_unlock({})",
                    self.template_lock_key()
                ))
                .await
                .is_ok(),
            None => true,
        };
        if !unlocked {
            // Closing the session releases the lock for sure.
            *session = None;
        }
        rebuilt
    }

    async fn create_from_template(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        token: &str,
        fingerprint: &str,
        made: &mut Made,
    ) -> std::result::Result<bool, (Step, Error)> {
        let (template, _) = self.template_names();
        // One admin session for the whole clone: the shared lock belongs to it.
        let session = self.admin_session().await.map_err(|e| {
            (
                Step::CreateDatabase,
                admin_error(format!("cannot look up the template database `{template}`"))(e),
            )
        })?;
        let client = session
            .as_ref()
            .expect("admin_session always leaves a client");
        if !self
            .lock_current_template(client, fingerprint)
            .await
            .map_err(|e| (Step::CreateDatabase, e))?
        {
            return Ok(false);
        }
        let result = self.clone_template(client, id, password, token, made).await;
        // A successful clone released the shared lock in its last round trip; otherwise release
        // it here (it also ends with the session, should that be broken).
        if !matches!(result, Ok(true)) {
            unlock_template_shared(client, self.template_lock_key()).await;
        }
        result
    }

    fn supports_spares(&self) -> bool {
        true
    }

    async fn make_spare(
        &self,
        spare: &TenantId,
        token: &str,
        password: &SecretString,
        fingerprint: &str,
    ) -> Result<bool> {
        let (template, _) = self.template_names();
        let (db, role) = (
            self.naming.database_name(spare),
            self.naming.user_name(spare),
        );
        let session = self.admin_session().await.map_err(admin_error(format!(
            "cannot look up the template database `{template}`"
        )))?;
        let client = session
            .as_ref()
            .expect("admin_session always leaves a client");
        if !self.lock_current_template(client, fingerprint).await? {
            return Ok(false);
        }
        let made = async {
            // The role first, with its proof and password in the same transaction (the
            // password in a statement of its own, as `create_role_on` does); no login until a
            // tenant takes it over. Setting a SCRAM verifier costs the server milliseconds:
            // paid here, not at the sign-up.
            let qrole = quote_ident(&role);
            let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
            for sql in [
                format!(
                    "BEGIN; CREATE ROLE {qrole} NOLOGIN; COMMENT ON ROLE {qrole} IS {}",
                    quote_literal(&ownership::mark(token))
                ),
                format!(
                    "ALTER ROLE {qrole} PASSWORD {}; COMMIT",
                    quote_literal(&verifier)
                ),
            ] {
                if let Err(e) = client.batch_execute(&sql).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(admin_error(format!(
                        "cannot create the spare role `{role}`"
                    ))(e));
                }
            }
            crate::failpoint::reached("spare_role_made");
            // Made as `clone_template` makes a tenant's database, but left closed: nobody can
            // connect to it (a database with sessions cannot be renamed).
            let cloned = client
                .batch_execute(&format!(
                    "CREATE DATABASE {} TEMPLATE {} OWNER {qrole} ALLOW_CONNECTIONS false",
                    quote_ident(&db),
                    quote_ident(&template),
                ))
                .await;
            match cloned {
                Ok(()) => {}
                // The template vanished or is in use (being rebuilt): no spare this time; the
                // caller removes the role.
                Err(e)
                    if e.code() == Some(&SqlState::UNDEFINED_DATABASE)
                        || e.code() == Some(&SqlState::OBJECT_IN_USE) =>
                {
                    tracing::info!(template = %template, error = %ServerError(e), "template busy; no spare made");
                    return Ok(false);
                }
                Err(e) => {
                    return Err(admin_error(format!(
                        "cannot clone the template into the spare database `{db}`"
                    ))(e));
                }
            }
            client
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {} FROM PUBLIC",
                    quote_ident(&db)
                ))
                .await
                .map_err(admin_error(format!(
                    "cannot lock down the spare database `{db}`"
                )))
                .map(|()| true)
        }
        .await;
        unlock_template_shared(client, self.template_lock_key()).await;
        made
    }

    async fn take_spare(
        &self,
        spare: &TenantId,
        spare_token: &str,
        id: &TenantId,
        password: Option<&SecretString>,
        token: &str,
    ) -> std::result::Result<bool, (Step, Error)> {
        let (spare_db, spare_role) = (
            self.naming.database_name(spare),
            self.naming.user_name(spare),
        );
        let (db, role) = (self.naming.database_name(id), self.naming.user_name(id));
        let (qdb, qrole) = (quote_ident(&db), quote_ident(&role));
        let session = self.admin_session().await.map_err(|e| {
            (
                Step::CreateUser,
                admin_error(format!("cannot take over the spare `{spare}`"))(e),
            )
        })?;
        let client = session
            .as_ref()
            .expect("admin_session always leaves a client");
        // Renamed objects keep their oids, so the database stays owned by the role and its
        // privileges stay as the spare's lock-down left them: the result is what cloning
        // makes. The proof switches to the tenant's token in the same transaction.
        // First, in the same round trip, that the objects with the spare's names are the
        // spare's: its role carries the spare's proof and owns its database (anything else is
        // treated as a vanished spare: the sign-up clones, the sweep leaves it alone).
        let mut first = format!(
            "BEGIN; DO $tenora$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles r \
             JOIN pg_database d ON d.datdba = r.oid WHERE r.rolname = {} AND d.datname = {} \
             AND shobj_description(r.oid, 'pg_authid') = {}) THEN RAISE EXCEPTION \
             'not the warm spare recorded' USING ERRCODE = 'undefined_object'; END IF; \
             END $tenora$; \
             ALTER ROLE {} RENAME TO {qrole}; ALTER DATABASE {} RENAME TO {qdb}; \
             COMMENT ON ROLE {qrole} IS {}; ALTER DATABASE {qdb} ALLOW_CONNECTIONS true; \
             ALTER ROLE {qrole} LOGIN",
            quote_literal(&spare_role),
            quote_literal(&spare_db),
            quote_literal(&ownership::mark(spare_token)),
            quote_ident(&spare_role),
            quote_ident(&spare_db),
            quote_literal(&ownership::mark(token)),
        );
        if password.is_none() {
            // The spare's own password (set when it was made) is the tenant's.
            first.push_str("; COMMIT");
        }
        if let Err(e) = client.batch_execute(&first).await {
            let _ = client.batch_execute("ROLLBACK").await;
            let code = e.code();
            return if code == Some(&SqlState::DUPLICATE_OBJECT) {
                Err((
                    Step::CreateUser,
                    Error::TenantExists {
                        id: id.clone(),
                        what: format!("the role `{role}` exists on {}", self.server),
                    },
                ))
            } else if code == Some(&SqlState::DUPLICATE_DATABASE) {
                Err((
                    Step::CreateDatabase,
                    Error::TenantExists {
                        id: id.clone(),
                        what: format!("the database `{db}` exists on {}", self.server),
                    },
                ))
            } else if code == Some(&SqlState::UNDEFINED_OBJECT)
                || code == Some(&SqlState::UNDEFINED_DATABASE)
            {
                // Removed behind Tenora's back: clone instead.
                tracing::warn!(spare = %spare, error = %ServerError(e), "spare is gone; cloning instead");
                Ok(false)
            } else {
                Err((
                    Step::CreateDatabase,
                    admin_error(format!("cannot take over the spare `{spare}`"))(e),
                ))
            };
        }
        let Some(password) = password else {
            return Ok(true);
        };
        // A password of the caller's: in a statement of its own (see `create_role_on`), as a
        // SCRAM verifier.
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        if let Err(e) = client
            .batch_execute(&format!(
                "ALTER ROLE {qrole} PASSWORD {}; COMMIT",
                quote_literal(&verifier)
            ))
            .await
        {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err((
                Step::CreateUser,
                admin_error(format!("cannot set the password of the role `{role}`"))(e),
            ));
        }
        Ok(true)
    }

    async fn database_exists(&self, id: &TenantId) -> Result<bool> {
        let db = self.naming.database_name(id);
        if db.len() > MAX_IDENTIFIER {
            // No database can have that name; the server would refuse to even compare it.
            return Ok(false);
        }
        self.admin_exists("SELECT 1 FROM pg_database WHERE datname = $1", &db)
            .await
    }

    async fn session_limits_sql(
        &self,
        lock: Option<std::time::Duration>,
        statement: Option<std::time::Duration>,
    ) -> std::result::Result<String, String> {
        let mut sql = String::new();
        if let Some(lock) = lock {
            sql.push_str(&format!(
                "SET lock_timeout = '{}ms'; ",
                lock.as_millis().max(1)
            ));
        }
        if let Some(statement) = statement {
            sql.push_str(&format!(
                "SET statement_timeout = '{}ms'; ",
                statement.as_millis().max(1)
            ));
        }
        Ok(sql)
    }

    async fn lock_migrations(
        &self,
        _target: Target<'_>,
        conn: &mut AsyncPgConnection,
    ) -> std::result::Result<MigrationLock, BoxError> {
        // A session-level advisory lock, scoped to this database by the server; released by
        // unlock_migrations or, if anything fails, when the session ends.
        // Waiting is bounded (lock_timeout covers advisory locks too), then the session's own
        // setting comes back.
        let locked = conn
            .batch_execute(&format!(
                "SET lock_timeout = '{MIGRATION_LOCK_WAIT_SECS}s'; \
                 SELECT pg_advisory_lock({MIGRATION_LOCK_KEY}); RESET lock_timeout"
            ))
            .await;
        let Err(e) = locked else {
            return Ok(MigrationLock::Session);
        };
        let timed_out = matches!(
            &e,
            diesel::result::Error::DatabaseError(_, info)
                if info.message().contains("lock timeout")
        );
        let _ = conn.batch_execute("RESET lock_timeout").await;
        Err(if timed_out {
            format!(
                "could not take the migration lock of this database within \
                 {MIGRATION_LOCK_WAIT_SECS} s; another migration run may be stuck"
            )
            .into()
        } else {
            e.into()
        })
    }

    async fn unlock_migrations(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> std::result::Result<(), BoxError> {
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PgBouncer checks passwords itself and refuses a wrong one with SQLSTATE 08P01, not the
    /// server's 28P01: still a refused password, so a rotation's old password is tried next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pooler_refusing_the_password_is_an_auth_failure() {
        use tenora_test_support::{PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};
        let Some(admin) = tenora_test_support::server_url("TENORA_TEST_PG_URL", "PostgreSQL")
        else {
            return;
        };
        let options = PgBouncerOptions {
            auth_type: "scram-sha-256",
            ..PgBouncerOptions::default()
        };
        let Some(mut bouncer) = PgBouncer::start(PGBOUNCER_VAR, &admin, &options) else {
            return;
        };
        bouncer
            .allow_with_password(&[("postgres_pw_test", "right")])
            .await;
        let wrong = tokio_postgres::Config::from_str(&format!(
            "postgres://postgres_pw_test:wrong@127.0.0.1:{}/postgres",
            bouncer.port
        ))
        .unwrap();
        let error = match wrong.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("PgBouncer accepted a wrong password"),
            Err(e) => e,
        };
        let message = connect_message(error);
        assert!(message.starts_with(crate::budget::AUTH_FAILED), "{message}");
    }

    #[test]
    fn quoting_doubles_delimiters() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
