//! One test environment per backend, behind [`TestBackend`], so scenarios are written once.

use std::future::Future;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tenant_schema::schema::projects;
use tenora::backend::Backend;
use tenora::{Config, EncryptionKey, Migrations, PooledConn, Tenora};

/// A configured, empty place to run one test; its guard removes everything on drop.
pub struct Env {
    /// Config pointing at this test's own base database and tenant names.
    pub config: Config,
    _guard: Box<dyn Send + Sync>,
}

/// What a scenario needs to know about a backend.
pub trait TestBackend: Backend {
    /// Backend name for messages.
    const NAME: &'static str;
    /// The example tenant migrations (users, projects) for this backend.
    fn tenant_migrations() -> Migrations;
    /// A fresh environment, or `None` (after a loud message) when the server is unavailable.
    fn env() -> Option<Env>;
    /// Names of the `projects` rows visible on `conn`.
    fn project_names(conn: &mut PooledConn<Self>) -> impl Future<Output = Vec<String>> + Send;
}

/// Connects a Tenora on `env` with the example schema, and migrates the base database.
pub async fn tenora<B: TestBackend>(env: &Env) -> Tenora<B> {
    tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await
}

/// Like [`tenora`], with another config or tenant migrations.
pub async fn tenora_with<B: TestBackend>(config: Config, tenant: Migrations) -> Tenora<B> {
    let t = Tenora::<B>::builder(config)
        .base_migrations(base_schema::MIGRATIONS)
        .tenant_migrations(tenant)
        .tenant_seeds(tenant_schema::SEEDS)
        .connect()
        .await
        .expect("connect");
    t.migrate_base().await.expect("migrate base");
    t
}

impl TestBackend for tenora::backend::Sqlite {
    const NAME: &'static str = "sqlite";

    fn tenant_migrations() -> Migrations {
        tenant_schema::SQLITE_MIGRATIONS
    }

    fn env() -> Option<Env> {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config::sqlite(dir.path().join("base.sqlite"))
            .tenant_database_dir(dir.path().join("tenants"))
            .key(EncryptionKey::generate().to_base64().expose());
        Some(Env {
            config,
            _guard: Box::new(dir),
        })
    }

    async fn project_names(conn: &mut PooledConn<Self>) -> Vec<String> {
        projects::table
            .select(projects::name)
            .order(projects::id)
            .load(conn)
            .await
            .expect("load projects")
    }
}

#[cfg(feature = "postgres")]
pub use pg::*;

#[cfg(feature = "postgres")]
mod pg {
    use super::*;

    /// Env var with the admin URL of the test PostgreSQL server.
    pub const PG_URL_VAR: &str = "TENORA_TEST_PG_URL";

    /// Drops this test's base database and every tenant database and role it made.
    pub struct PgCleanup {
        pub admin_url: String,
        pub token: String,
        pub base_db: String,
    }

    impl Drop for PgCleanup {
        fn drop(&mut self) {
            let admin_url = self.admin_url.clone();
            let db_prefix = format!("t{}_", self.token);
            let role_prefix = format!("u{}_", self.token);
            let base_db = self.base_db.clone();
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let client = admin_client(&admin_url).await;
                    let dbs = client
                        .query(
                            "SELECT datname FROM pg_database \
                             WHERE starts_with(datname, $1) OR datname = $2",
                            &[&db_prefix, &base_db],
                        )
                        .await
                        .expect("list test databases");
                    for row in dbs {
                        let name: String = row.get(0);
                        client
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await
                            .expect("drop test database");
                    }
                    let roles = client
                        .query(
                            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
                            &[&role_prefix],
                        )
                        .await
                        .expect("list test roles");
                    for row in roles {
                        let name: String = row.get(0);
                        client
                            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                            .await
                            .expect("drop test role");
                    }
                });
            });
            if cleanup.join().is_err() && !std::thread::panicking() {
                panic!("cleaning up PostgreSQL test objects failed");
            }
        }
    }

    /// A plain tokio-postgres client for test-side checks, connected to `url`.
    pub async fn admin_client(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL server");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// The admin URL, or `None` after reporting it missing.
    pub fn pg_url() -> Option<String> {
        match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                crate::support::missing(&format!("PostgreSQL ({PG_URL_VAR})"));
                None
            }
        }
    }

    /// A PostgreSQL env on the server at `admin_url`: own base database, own name prefixes.
    pub fn pg_env_at(admin_url: &str) -> Env {
        let token = crate::support::unique_token();
        let base_db = format!("tenora_base_{token}");
        let admin = admin_url.to_owned();
        let create = base_db.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    admin_client(&admin)
                        .await
                        .batch_execute(&format!("CREATE DATABASE \"{create}\""))
                        .await
                        .expect("create the test base database");
                })
        })
        .join()
        .expect("create base database");
        let mut config = Config::postgres(admin_url)
            .tenant_database_prefix(format!("t{token}_"))
            .tenant_user_prefix(format!("u{token}_"))
            .key(EncryptionKey::generate().to_base64().expose());
        config.base.database = Some(base_db.clone());
        Env {
            config,
            _guard: Box::new(PgCleanup {
                admin_url: admin_url.to_owned(),
                token,
                base_db,
            }),
        }
    }

    impl TestBackend for tenora::backend::Postgres {
        const NAME: &'static str = "postgres";

        fn tenant_migrations() -> Migrations {
            tenant_schema::POSTGRES_MIGRATIONS
        }

        fn env() -> Option<Env> {
            pg_url().map(|url| pg_env_at(&url))
        }

        async fn project_names(conn: &mut PooledConn<Self>) -> Vec<String> {
            projects::table
                .select(projects::name)
                .order(projects::id)
                .load(conn)
                .await
                .expect("load projects")
        }
    }
}

#[cfg(feature = "mysql")]
pub use my::*;

#[cfg(feature = "mysql")]
mod my {
    use mysql_async::prelude::Queryable as _;

    use super::*;

    /// Env var with the admin URL of the test MySQL / MariaDB server.
    pub const MYSQL_URL_VAR: &str = "TENORA_TEST_MYSQL_URL";

    /// Runs `f` on a fresh current-thread runtime in another thread (usable from `Drop` and
    /// from inside a test's runtime).
    fn blocking<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .expect("MySQL test helper");
    }

    /// A connection to the test server as its admin.
    pub async fn mysql_admin(url: &str) -> mysql_async::Conn {
        mysql_async::Conn::from_url(url)
            .await
            .expect("connect to the test MySQL server")
    }

    /// Drops this test's base database and every tenant database and user it made.
    pub struct MysqlCleanup {
        pub admin_url: String,
        pub token: String,
        pub base_db: String,
    }

    impl Drop for MysqlCleanup {
        fn drop(&mut self) {
            let url = self.admin_url.clone();
            let db_prefix = format!("t{}_", self.token);
            let user_prefix = format!("u{}_", self.token);
            let base_db = self.base_db.clone();
            blocking(async move {
                let mut conn = mysql_admin(&url).await;
                let dbs: Vec<String> = conn
                    .exec(
                        "SELECT schema_name FROM information_schema.schemata \
                         WHERE LEFT(schema_name, ?) = ? OR schema_name = ?",
                        (db_prefix.len(), db_prefix.as_str(), base_db.as_str()),
                    )
                    .await
                    .unwrap();
                for db in dbs {
                    conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                        .await
                        .unwrap();
                }
                let users: Vec<(String, String)> = conn
                    .exec(
                        "SELECT user, host FROM mysql.user WHERE LEFT(user, ?) = ?",
                        (user_prefix.len(), user_prefix.as_str()),
                    )
                    .await
                    .unwrap();
                for (user, host) in users {
                    conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'{host}'"))
                        .await
                        .unwrap();
                }
                let _ = conn.disconnect().await;
            });
        }
    }

    /// The admin URL, or `None` after reporting it missing.
    pub fn mysql_url() -> Option<String> {
        match std::env::var(MYSQL_URL_VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                crate::support::missing(&format!("MySQL/MariaDB ({MYSQL_URL_VAR})"));
                None
            }
        }
    }

    /// A MySQL env: own base database, own name prefixes.
    pub fn mysql_env_at(admin_url: &str) -> Env {
        let token = crate::support::unique_token();
        let base_db = format!("tenora_base_{token}");
        let (url, db) = (admin_url.to_owned(), base_db.clone());
        blocking(async move {
            let mut conn = mysql_admin(&url).await;
            conn.query_drop(format!("CREATE DATABASE `{db}`"))
                .await
                .unwrap();
            let _ = conn.disconnect().await;
        });
        let mut config = Config::mysql(admin_url)
            .tenant_database_prefix(format!("t{token}_"))
            .tenant_user_prefix(format!("u{token}_"))
            .key(EncryptionKey::generate().to_base64().expose());
        config.base.database = Some(base_db.clone());
        Env {
            config,
            _guard: Box::new(MysqlCleanup {
                admin_url: admin_url.to_owned(),
                token,
                base_db,
            }),
        }
    }

    impl TestBackend for tenora::backend::Mysql {
        const NAME: &'static str = "mysql";

        fn tenant_migrations() -> Migrations {
            tenant_schema::MYSQL_MIGRATIONS
        }

        fn env() -> Option<Env> {
            mysql_url().map(|url| mysql_env_at(&url))
        }

        async fn project_names(conn: &mut PooledConn<Self>) -> Vec<String> {
            projects::table
                .select(projects::name)
                .order(projects::id)
                .load(conn)
                .await
                .expect("load projects")
        }
    }
}
