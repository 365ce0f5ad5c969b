//! One test environment per backend, behind [`TestBackend`], so scenarios are written once.

use std::future::Future;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tenant_schema::schema::projects;
use tenora::backend::Backend;
use tenora::{Config, EncryptionKey, Migrations, PooledConn, Tenora};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use tenora_test_support::{Cleanup, Made, Server};

/// A configured, empty place to run one test; its guard removes everything on drop.
pub struct Env {
    /// Config pointing at this test's own base database and tenant names.
    pub config: Config,
    /// The server, its admin URL and this test's names, where there is a server.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    server: Option<(Server, String, Made)>,
    _guard: Box<dyn Send + Sync>,
}

impl Env {
    /// The server's ids of the connections to `database` (`None` on SQLite).
    pub async fn connection_ids(&self, database: &str) -> Option<Vec<u64>> {
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        if let Some((server, url, _)) = &self.server {
            return Some(tenora_test_support::connection_ids(*server, url, database).await);
        }
        let _ = database;
        None
    }

    /// Counts, on the server, the connections to this test's tenant databases (`None` on
    /// SQLite, which has no server).
    pub fn count_tenant_connections(&self) -> Option<tenora_test_support::Counter> {
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        if let Some((server, url, made)) = &self.server {
            let tenants = Made {
                database_prefixes: made.database_prefixes.clone(),
                ..Made::default()
            };
            return Some(tenora_test_support::Counter::start(
                *server,
                url,
                Some(tenants),
            ));
        }
        None
    }
}

/// Removes a test's base database and every tenant database and user named with `token`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn cleanup(server: Server, admin_url: &str, token: &str, base_db: String) -> Cleanup {
    Cleanup {
        server,
        admin_url: admin_url.to_owned(),
        made: Made {
            database_prefixes: vec![format!("t{token}_")],
            databases: vec![base_db],
            user_prefixes: vec![format!("u{token}_")],
        },
    }
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
            #[cfg(any(feature = "postgres", feature = "mysql"))]
            server: None,
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

    pub use tenora_test_support::pg_connect as admin_client;

    /// The admin URL, or `None` after reporting it missing.
    pub fn pg_url() -> Option<String> {
        tenora_test_support::server_url(PG_URL_VAR, "PostgreSQL")
    }

    /// A PostgreSQL env on the server at `admin_url`: own base database, own name prefixes.
    pub fn pg_env_at(admin_url: &str) -> Env {
        let token = crate::support::unique_token();
        let base_db = format!("tenora_base_{token}");
        let (admin, create) = (admin_url.to_owned(), base_db.clone());
        tenora_test_support::block_on(async move {
            admin_client(&admin)
                .await
                .batch_execute(&format!("CREATE DATABASE \"{create}\""))
                .await
                .expect("create the test base database");
        });
        let mut config = Config::postgres(admin_url)
            .tenant_database_prefix(format!("t{token}_"))
            .tenant_user_prefix(format!("u{token}_"))
            .key(EncryptionKey::generate().to_base64().expose());
        config.base.database = Some(base_db.clone());
        let cleanup = cleanup(Server::Postgres, admin_url, &token, base_db);
        Env {
            config,
            server: Some((Server::Postgres, admin_url.to_owned(), cleanup.made.clone())),
            _guard: Box::new(cleanup),
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

    use tenora_test_support::block_on as blocking;
    pub use tenora_test_support::mysql_connect as mysql_admin;

    /// The admin URL, or `None` after reporting it missing.
    pub fn mysql_url() -> Option<String> {
        tenora_test_support::server_url(MYSQL_URL_VAR, "MySQL/MariaDB")
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
        let cleanup = cleanup(Server::Mysql, admin_url, &token, base_db);
        Env {
            config,
            server: Some((Server::Mysql, admin_url.to_owned(), cleanup.made.clone())),
            _guard: Box::new(cleanup),
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
