//! A temporary Tenora project (config + folders) for one backend, cleaned up on drop.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use diesel_async::SimpleAsyncConnection as _;
use tenora_test_support::{Cleanup, Made, Server};

/// Which backend a project uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A project folder with a `tenora.toml`.
pub struct Project {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pg: Option<ServerNames>,
    /// Drops the server objects the project made.
    _cleanup: Option<Cleanup>,
}

/// An admin connection to a project's server.
enum Admin {
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

/// The server objects a PostgreSQL or MySQL project may create (all named by `prefix`).
struct ServerNames {
    kind: Kind,
    admin_url: String,
    base_db: String,
    prefix: String,
}

impl Project {
    /// A new project, or `None` (loudly; a failure under CI) when the server is missing.
    pub fn new(kind: Kind) -> Option<Project> {
        let dir = tempfile::tempdir().unwrap();
        let (config, pg) = match kind {
            Kind::Sqlite => (
                "[base]\nclient = \"sqlite\"\ndatabase = \"data/base.sqlite\"\n\
                 [tenant]\ndatabase_dir = \"data/tenants\"\nseeds_dir = \"seeds/tenants\"\n"
                    .to_owned(),
                None,
            ),
            Kind::Postgres | Kind::Mysql => {
                let (var, client) = match kind {
                    Kind::Postgres => ("TENORA_TEST_PG_URL", "postgres"),
                    _ => ("TENORA_TEST_MYSQL_URL", "mysql"),
                };
                let admin_url = tenora_test_support::server_url(var, client)?;
                let t = tenora_test_support::unique_token();
                let names = ServerNames {
                    kind,
                    admin_url: admin_url.clone(),
                    base_db: format!("tenora_cli_{t}"),
                    prefix: format!("c{t}_"),
                };
                let config = format!(
                    "[base]\nclient = \"{client}\"\nurl = \"{admin_url}\"\ndatabase = \"{}\"\n\
                     [tenant]\ndatabase_prefix = \"{p}\"\nuser_prefix = \"{p}u_\"\n\
                     seeds_dir = \"seeds/tenants\"\n[secrets]\nkey = \"{}\"\n",
                    names.base_db,
                    tenora::EncryptionKey::generate().to_base64().expose(),
                    p = names.prefix,
                );
                (config, Some(names))
            }
        };
        std::fs::write(dir.path().join("tenora.toml"), config).unwrap();
        let cleanup = pg.as_ref().map(|names| Cleanup {
            server: match names.kind {
                Kind::Mysql => Server::Mysql,
                _ => Server::Postgres,
            },
            admin_url: names.admin_url.clone(),
            made: Made {
                database_prefixes: vec![names.prefix.clone()],
                databases: vec![names.base_db.clone()],
                user_prefixes: vec![names.prefix.clone()],
            },
        });
        Some(Project {
            kind,
            dir,
            pg,
            _cleanup: cleanup,
        })
    }

    /// A new project with the base and tenant schema migrated, ready to create tenants (one
    /// tenant migration, one seed; the template built when `template`).
    pub fn ready(kind: Kind, template: bool) -> Option<Project> {
        Project::ready_with(kind, if template { &["template = true"] } else { &[] })
    }

    /// Like [`Project::ready`], with `tenant` lines added to the `[tenant]` table first.
    pub fn ready_with(kind: Kind, tenant: &[&str]) -> Option<Project> {
        let p = Project::new(kind)?;
        for line in tenant {
            p.set_tenant(line);
        }
        p.ok(&["--create-base", "migrate"]);
        p.ok(&["migrate"]);
        p.ok(&["make:migration:tenants", "create_users"]);
        p.ok(&["make:seed:tenants", "01_admin"]);
        // Builds the template, when on.
        p.ok(&["migrate:tenants"]);
        Some(p)
    }

    /// Runs `args` with `input` piped to its standard input.
    pub fn piped(&self, args: &[&str], input: &str) -> std::process::Output {
        self.cmd().args(args).write_stdin(input).output().unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `tenora` binary as a plain process (for running several at once).
    pub fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tenora"));
        cmd.current_dir(self.path())
            .env_remove("TENORA_CONFIG")
            .env_remove("TENORA_BASE_URL")
            .env_remove("TENORA_KEY");
        cmd
    }

    /// The `tenora` binary, run in the project folder with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("tenora").unwrap();
        cmd.current_dir(self.path())
            .env_remove("TENORA_CONFIG")
            .env_remove("TENORA_BASE_URL")
            .env_remove("TENORA_KEY");
        cmd
    }

    /// Runs `args`; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `args` and asserts success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code, 0,
            "tenora {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// The single migration folder under `dir` whose name ends with `suffix`.
    pub fn migration(&self, dir: &str, suffix: &str) -> PathBuf {
        let found: Vec<_> = std::fs::read_dir(self.path().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    }

    /// The sealed password stored in the registry for tenant `id` (server projects).
    pub async fn stored_password(&self, id: &str) -> String {
        let names = self.pg.as_ref().expect("a server project");
        match names.kind {
            Kind::Mysql => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = mysql_async::Conn::from_url(&names.admin_url).await.unwrap();
                let sql = format!(
                    "SELECT password FROM `{}`.tenora_tenants WHERE id = ?",
                    names.base_db
                );
                conn.exec_first(sql, (id,)).await.unwrap().unwrap()
            }
            _ => {
                let mut config: tokio_postgres::Config = names.admin_url.parse().unwrap();
                config.dbname(&names.base_db);
                let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
                    .query_one("SELECT password FROM tenora_tenants WHERE id = $1", &[&id])
                    .await
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// The tenant objects that exist where the server keeps them (its catalog; the files for
    /// SQLite), e.g. `database c1_acme`, `user c1_u_acme`, `file c1_acme`. The template and
    /// the base database are not listed.
    pub async fn objects(&self) -> Vec<String> {
        let mut found = match &self.pg {
            None => {
                let dir = self.path().join("data/tenants");
                match std::fs::read_dir(&dir) {
                    Ok(entries) => entries
                        .map(|e| format!("file {}", e.unwrap().file_name().to_string_lossy()))
                        .collect(),
                    Err(_) => Vec::new(),
                }
            }
            Some(names) if names.kind == Kind::Mysql => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = mysql_async::Conn::from_url(&names.admin_url).await.unwrap();
                let len = names.prefix.len();
                let mut found: Vec<String> = conn
                    .exec(
                        "SELECT CONCAT('database ', SCHEMA_NAME) FROM information_schema.SCHEMATA \
                         WHERE LEFT(SCHEMA_NAME, ?) = ? \
                         UNION ALL SELECT CONCAT('user ', User) FROM mysql.user \
                         WHERE LEFT(User, ?) = ?",
                        (len, &names.prefix, len, &names.prefix),
                    )
                    .await
                    .unwrap();
                found.retain(|o| !o.contains("tenora_template"));
                let _ = conn.disconnect().await;
                found
            }
            Some(names) => {
                let client = tenora_test_support::pg_connect(&names.admin_url).await;
                client
                    .query(
                        "SELECT 'database ' || datname FROM pg_database \
                         WHERE starts_with(datname, $1) AND datname NOT LIKE '%tenora_template' \
                         UNION ALL SELECT 'user ' || rolname FROM pg_roles \
                         WHERE starts_with(rolname, $1) AND rolname NOT LIKE '%tenora_template'",
                        &[&names.prefix],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            }
        };
        found.sort();
        found
    }

    /// Runs `sql` as the server's admin (PostgreSQL: in `database`, default the admin
    /// database; MySQL: `database` is ignored, qualify names).
    pub async fn admin_sql(&self, database: Option<&str>, sql: &str) {
        use mysql_async::prelude::Queryable as _;
        match self.admin(database).await {
            Admin::Mysql(mut conn) => {
                conn.query_drop(sql).await.unwrap();
                let _ = conn.disconnect().await;
            }
            Admin::Postgres(client) => client.batch_execute(sql).await.unwrap(),
        }
    }

    /// The one integer `sql` returns, run as the server's admin (PostgreSQL: in `database`).
    pub async fn admin_scalar(&self, database: Option<&str>, sql: &str) -> i64 {
        use mysql_async::prelude::Queryable as _;
        match self.admin(database).await {
            Admin::Mysql(mut conn) => {
                let value: Option<i64> = conn.query_first(sql).await.unwrap();
                let _ = conn.disconnect().await;
                value.unwrap()
            }
            Admin::Postgres(client) => client.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// An admin connection to the project's server (PostgreSQL: to `database`, default the
    /// admin database).
    async fn admin(&self, database: Option<&str>) -> Admin {
        let names = self.pg.as_ref().expect("a server project");
        if names.kind == Kind::Mysql {
            return Admin::Mysql(mysql_async::Conn::from_url(&names.admin_url).await.unwrap());
        }
        let mut config: tokio_postgres::Config = names.admin_url.parse().unwrap();
        if let Some(database) = database {
            config.dbname(database);
        }
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Admin::Postgres(client)
    }

    /// The name prefix of this project's tenant databases (users get `<prefix>u_`).
    pub fn prefix(&self) -> &str {
        self.pg.as_ref().map_or("", |n| n.prefix.as_str())
    }

    /// Adds `line` (e.g. `template = true`) to the `[tenant]` table of `tenora.toml`.
    pub fn set_tenant(&self, line: &str) {
        let path = self.path().join("tenora.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let config = config.replacen("[tenant]\n", &format!("[tenant]\n{line}\n"), 1);
        std::fs::write(path, config).unwrap();
    }

    /// Runs `sql` in the base database, through the library.
    pub async fn base_sql(&self, sql: &str) {
        let config = tenora::Config::from_path(self.path().join("tenora.toml")).unwrap();
        match self.kind {
            Kind::Sqlite => sql_on_base::<tenora::backend::Sqlite>(config, sql).await,
            Kind::Postgres => sql_on_base::<tenora::backend::Postgres>(config, sql).await,
            Kind::Mysql => sql_on_base::<tenora::backend::Mysql>(config, sql).await,
        }
    }

    /// Every registry row's (id, stored password), read with a plain query on the base
    /// database.
    pub async fn registry_passwords(&self) -> Vec<(String, Option<String>)> {
        let config = tenora::Config::from_path(self.path().join("tenora.toml")).unwrap();
        match self.kind {
            Kind::Sqlite => sqlite_passwords(config).await,
            Kind::Postgres => pg_passwords(config).await,
            Kind::Mysql => mysql_passwords(config).await,
        }
    }

    /// Runs `sql` in tenant `id`'s database, as the tenant, through the library.
    pub async fn tenant_sql(&self, id: &str, sql: &str) {
        let config = tenora::Config::from_path(self.path().join("tenora.toml")).unwrap();
        match self.kind {
            Kind::Sqlite => sql_as_tenant::<tenora::backend::Sqlite>(config, id, sql).await,
            Kind::Postgres => sql_as_tenant::<tenora::backend::Postgres>(config, id, sql).await,
            Kind::Mysql => sql_as_tenant::<tenora::backend::Mysql>(config, id, sql).await,
        }
    }
}

async fn sql_on_base<B: tenora::backend::Backend>(config: tenora::Config, sql: &str) {
    let t = tenora::Tenora::<B>::builder(config)
        .connect()
        .await
        .unwrap();
    let mut conn = t.base_conn().await.unwrap();
    conn.batch_execute(sql).await.unwrap();
}

/// `passwords::<Backend>(config)`: every registry row's (id, password), by a plain query.
macro_rules! passwords_fn {
    ($($name:ident: $backend:ty),*) => {$(
        async fn $name(config: tenora::Config) -> Vec<(String, Option<String>)> {
            use diesel_async::RunQueryDsl as _;
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                id: String,
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                password: Option<String>,
            }
            let t = tenora::Tenora::<$backend>::builder(config).connect().await.unwrap();
            let mut conn = t.base_conn().await.unwrap();
            let rows: Vec<Row> =
                diesel::sql_query("SELECT id, password FROM tenora_tenants ORDER BY id")
                    .load(&mut conn)
                    .await
                    .unwrap();
            rows.into_iter().map(|r| (r.id, r.password)).collect()
        }
    )*};
}
passwords_fn!(sqlite_passwords: tenora::backend::Sqlite, pg_passwords: tenora::backend::Postgres, mysql_passwords: tenora::backend::Mysql);

async fn sql_as_tenant<B: tenora::backend::Backend>(config: tenora::Config, id: &str, sql: &str) {
    let t = tenora::Tenora::<B>::builder(config)
        .connect()
        .await
        .unwrap();
    let id = t.tenant_id(id).unwrap();
    let mut conn = t.tenant_conn(&id).await.unwrap();
    conn.batch_execute(sql).await.unwrap();
}
