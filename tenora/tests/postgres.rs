//! PostgreSQL-only behaviour: roles, grants, passwords, stored secrets, server errors.

use diesel_async::SimpleAsyncConnection as _;
use tenora::backend::Postgres;
use tenora::{Config, EncryptionKey, Error, PgTenora, SecretString, TenantId};

use crate::support::assert_err_contains;
use crate::support::backends::{Env, TestBackend, admin_client, pg_env_at, tenora, tenora_with};
use tenora_test_support::PgCluster;

pub(crate) fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// The admin URL with another database name.
pub(crate) fn url_for(env: &Env, database: &str) -> String {
    let base = env.config.base.url.as_ref().unwrap().expose();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{database}")
}

/// Reads the stored (sealed) password of `id` from the registry.
pub(crate) async fn stored_password(env: &Env, id: &str) -> String {
    let client = admin_client(&url_for(env, env.config.base.database.as_deref().unwrap())).await;
    client
        .query_one("SELECT password FROM tenora_tenants WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Logs in as `role_of`'s tenant role to `db_of`'s tenant database.
async fn login(
    env: &Env,
    naming: &tenora::Naming,
    role_of: &TenantId,
    password: &str,
    db_of: &TenantId,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_as(
        env,
        &naming.user_name(role_of),
        password,
        &naming.database_name(db_of),
    )
    .await
}

/// Fails if the role `role` exists.
async fn assert_no_role(admin: &tokio_postgres::Client, role: &str) {
    let roles = admin
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap();
    assert!(roles.is_empty(), "role {role} was left behind");
}

/// The server's message of a tokio-postgres error.
fn pg_text(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

fn key_of(env: &Env) -> EncryptionKey {
    env.config.encryption_key().unwrap().unwrap()
}

/// Connects with tokio-postgres as `user`/`password` to `database` on the env's server.
async fn connect_as(
    env: &Env,
    user: &str,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let base = env.config.base.url.as_ref().unwrap().expose();
    let mut config: tokio_postgres::Config = base.parse().unwrap();
    config.user(user).password(password).dbname(database);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_roles_cannot_reach_other_tenants() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let (a, b) = (id("acme"), id("globex"));
    t.create_tenant(&a, None).await.unwrap();
    t.create_tenant(&b, None).await.unwrap();
    let naming = t.naming();
    let a_password =
        tenora::secret::decrypt_password(&key_of(&env), &a, &stored_password(&env, "acme").await)
            .unwrap();

    // A's role reaches its own database and owns the tables there...
    let own = login(&env, naming, &a, a_password.expose(), &a)
        .await
        .expect("a tenant connects to its own database");
    let owner: String = own
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'projects'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, naming.user_name(&a));

    // The diesel CLI would agree: the versions are in diesel's own table.
    let versions: Vec<String> = own
        .query(
            "SELECT version FROM __diesel_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, ["20240101000001", "20240101000002"]);

    // ...but not B's.
    let err = login(&env, naming, &a, a_password.expose(), &b)
        .await
        .expect_err("A's role must not connect to B's database");
    assert!(
        pg_text(&err).contains("permission denied for database"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_passwords_are_sealed_and_bound_to_their_tenant() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let (a, b) = (id("acme"), id("globex"));
    let chosen = SecretString::new("Chosen-Passw0rd!");
    t.create_tenant(&a, Some(chosen)).await.unwrap();
    t.create_tenant(&b, None).await.unwrap();

    let sealed_a = stored_password(&env, "acme").await;
    let key_id = key_of(&env).id();
    assert!(
        sealed_a.starts_with(&format!("tenora:v2:{key_id}:")),
        "{sealed_a}"
    );
    assert!(!sealed_a.contains("Chosen-Passw0rd!"));
    let opened = tenora::secret::decrypt_password(&key_of(&env), &a, &sealed_a).unwrap();
    assert_eq!(opened.expose(), "Chosen-Passw0rd!");

    // A wrong key is a clear error, not garbage.
    let wrong = env
        .config
        .clone()
        .key(EncryptionKey::generate().to_base64().expose());
    let t_wrong = tenora_with::<Postgres>(wrong, Postgres::tenant_migrations()).await;
    assert_err_contains(
        t_wrong.tenant_conn(&a).await,
        &[
            &format!("the stored password of tenant `acme` is sealed with key `{key_id}`"),
            "TENORA_OLD_KEYS",
        ],
    );
    // No key at all, for an encrypted row.
    let mut keyless = env.config.clone();
    keyless.secrets.key = None;
    let t_keyless = tenora_with::<Postgres>(keyless, Postgres::tenant_migrations()).await;
    assert_err_contains(
        t_keyless.tenant_conn(&a).await,
        &["no encryption key is configured"],
    );

    // A ciphertext copied into another tenant's row does not open there.
    let client = admin_client(&url_for(&env, env.config.base.database.as_deref().unwrap())).await;
    client
        .execute(
            "UPDATE tenora_tenants SET password = $1 WHERE id = 'globex'",
            &[&sealed_a],
        )
        .await
        .unwrap();
    assert_err_contains(
        t.tenant_conn(&b).await,
        &["cannot decrypt the stored password of tenant `globex`"],
    );
    // A's stays usable.
    let mut conn = t.tenant_conn(&a).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();

    // Plain text only on purpose: without a key, creating a tenant is refused (and leaves
    // nothing) unless the config allows it; a stored plain value is refused once a key is set.
    let mut keyless = env.config.clone();
    keyless.secrets.key = None;
    let t_keyless = tenora_with::<Postgres>(keyless.clone(), Postgres::tenant_migrations()).await;
    assert_err_contains(
        t_keyless.create_tenant(&id("hooli"), None).await,
        &["no encryption key is configured", "allow_plaintext"],
    );
    assert!(t.tenant(&id("hooli")).await.unwrap().is_none());
    let t_plain =
        tenora_with::<Postgres>(keyless.allow_plaintext(true), Postgres::tenant_migrations()).await;
    t_plain.create_tenant(&id("hooli"), None).await.unwrap();
    assert!(stored_password(&env, "hooli").await.starts_with("plain:"));
    assert_err_contains(
        t.tenant_conn(&id("hooli")).await,
        &["not encrypted although an encryption key is configured"],
    );
    let t_both = tenora_with::<Postgres>(
        env.config.clone().allow_plaintext(true),
        Postgres::tenant_migrations(),
    )
    .await;
    let mut conn = t_both.tenant_conn(&id("hooli")).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    drop(conn);

    // Bad caller passwords are refused before anything is made.
    assert_err_contains(
        t.create_tenant(&id("initech"), Some(SecretString::new("it's bad")))
            .await,
        &["unusable password"],
    );
    assert!(t.tenant(&id("initech")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_database_is_never_taken_over_or_dropped() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let acme = id("acme");
    let db = t.naming().database_name(&acme);
    let admin = admin_client(env.config.base.url.as_ref().unwrap().expose()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
        .unwrap();

    let err = t.create_tenant(&acme, None).await.unwrap_err();
    assert!(matches!(err, Error::TenantExists { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("the database `{db}` exists")),
        "{err}"
    );
    // The foreign database survives; our role and row are gone.
    assert!(t.tenant_database_exists(&acme).await.unwrap());
    assert_no_role(&admin, &t.naming().user_name(&acme)).await;
    assert!(t.tenant(&acme).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_provisioning_leaves_no_role() {
    let Some(env) = Postgres::env() else { return };
    const FAILING: tenora::Migrations = tenora::embed_migrations!("tests/fixtures/failing_tenant");
    let t = tenora_with::<Postgres>(env.config.clone(), FAILING).await;
    let acme = id("acme");
    assert_err_contains(
        t.create_tenant(&acme, None).await,
        &["step `migrate`", "no_such_table"],
    );
    let admin = admin_client(env.config.base.url.as_ref().unwrap().expose()).await;
    assert_no_role(&admin, &t.naming().user_name(&acme)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_and_wrong_backend_are_clear_errors() {
    let Some(_env) = Postgres::env() else { return };
    let config = Config::postgres("postgres://admin:hunter2secret@127.0.0.1:1/app");
    let err = PgTenora::builder(config)
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to the PostgreSQL base database `app` on 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");

    let sqlite = Config::sqlite("unused.sqlite");
    assert_err_contains(
        PgTenora::builder(sqlite).connect().await,
        &["base.client", "is `sqlite`"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_by_a_scram_server() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let env = pg_env_at(&cluster.admin_url());
    let t = tenora::<Postgres>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();

    // The stored password works: tenant_conn logs in as the tenant's role.
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    drop(conn);

    // A wrong password is refused by the server.
    let naming = t.naming();
    let err = login(&env, naming, &acme, "WrongPassword123", &acme)
        .await
        .expect_err("a wrong password must be refused");
    assert!(
        pg_text(&err).contains("password authentication failed"),
        "{err}"
    );

    // A chosen password works too.
    let globex = id("globex");
    t.create_tenant(&globex, Some(SecretString::new("Globex-Pa55word")))
        .await
        .unwrap();
    login(&env, naming, &globex, "Globex-Pa55word", &globex)
        .await
        .expect("the chosen password logs in");

    // A resolver's password provider supplies passwords kept outside the registry. It is asked
    // only when a pool is built; `None` falls back to the registry's password.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tenora::resolver::{Rejection, Resolver, TenantSource};
    let (initech, hooli) = (id("initech"), id("hooli"));
    t.create_tenant(&initech, None).await.unwrap();
    t.create_tenant(&hooli, None).await.unwrap();
    t.close_all();
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&asked);
    let resolver = Resolver::builder(
        t.clone(),
        TenantSource::from_fn("the string", |r: &String| Some(r.clone())),
    )
    .passwords(move |id: TenantId| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match id.as_ref() {
                "globex" => Ok(Some(SecretString::new("Globex-Pa55word"))),
                "acme" => Ok(None),
                "initech" => Ok(Some(SecretString::new("Not-The-Pa55word"))),
                _ => Err(std::io::Error::other("the vault is sealed")),
            }
        }
    })
    .build();
    for tenant in ["globex", "acme", "globex"] {
        let resolved = resolver.resolve(&mut tenant.to_owned()).await.unwrap();
        resolved
            .conn()
            .await
            .unwrap()
            .batch_execute("SELECT 1")
            .await
            .unwrap();
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "a cached pool asks no more"
    );
    // A password the server refuses falls back to the registry's (a rotation may have
    // changed the server's before the vault learned it).
    resolver
        .resolve(&mut "initech".to_owned())
        .await
        .unwrap()
        .conn()
        .await
        .unwrap();
    let vault = resolver.resolve(&mut "hooli".to_owned()).await.unwrap_err();
    assert_eq!(Rejection::of(&vault).status(), 503, "{vault}");
    assert!(vault.to_string().contains("the vault is sealed"), "{vault}");

    // A refused `CREATE ROLE` (the name is taken) carries no password verifier: the server
    // logs the failing statement, and the verifier is sent only once the role exists.
    let taken = id("taken");
    let role = naming.user_name(&taken);
    admin_client(&cluster.admin_url())
        .await
        .batch_execute(&format!("CREATE ROLE \"{role}\""))
        .await
        .unwrap();
    assert_err_contains(t.create_tenant(&taken, None).await, &["already exists"]);
    let log = cluster.log();
    assert!(
        log.contains("already exists"),
        "the refusal is logged: {log}"
    );
    assert!(
        !log.contains("SCRAM-SHA-256$"),
        "a verifier reached the log: {log}"
    );

    // Unknown tenants are remembered briefly: 200 requests for one cost at most two registry
    // queries, counted in the server's statement log.
    let base = env.config.base.database.clone().unwrap();
    admin_client(&cluster.admin_url())
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{base}\" SET log_statement = 'all'"
        ))
        .await
        .unwrap();
    let fresh = tenora_with::<Postgres>(env.config.clone(), Postgres::tenant_migrations()).await;
    let lookups = || {
        cluster
            .log()
            .lines()
            .filter(|l| l.contains("\"tenora_tenants\" WHERE id = $1"))
            .count()
    };
    let before = lookups();
    for _ in 0..200 {
        assert_err_contains(fresh.tenant_conn(&id("nobody")).await, &["unknown tenant"]);
    }
    let queries = lookups() - before;
    assert!((1..=2).contains(&queries), "{queries} registry queries");
    // Created in this process: found at once.
    fresh.create_tenant(&id("nobody"), None).await.unwrap();
    fresh.tenant_conn(&id("nobody")).await.unwrap();
    drop(env); // drop the test objects before the cluster stops
}

/// The schema of a tenant database, as catalog rows (owner names normalized to `OWNER`).
pub(crate) async fn catalog(env: &Env, db: &str, owner: &str) -> Vec<String> {
    let client = admin_client(&url_for(env, db)).await;
    let mut rows = Vec::new();
    for sql in [
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
         || ' ' || coalesce(column_default, '') FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY 1",
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "SELECT c.relname::text || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner)::text \
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1",
        "SELECT version FROM __diesel_schema_migrations ORDER BY 1",
    ] {
        for row in client.query(sql, &[]).await.unwrap() {
            let text: String = row.get(0);
            // Template clones own their objects through `pg_database_owner` (the database
            // owner's implicit role), migrated tenants directly: both are the tenant's role.
            rows.push(
                text.replace(owner, "OWNER")
                    .replace("pg_database_owner", "OWNER"),
            );
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_clones_match_migrated_tenants() {
    let Some(env) = Postgres::env() else { return };
    let plain = tenora::<Postgres>(&env).await;
    let mut config = env.config.clone();
    config.tenant.template = true;
    let templated = tenora_with::<Postgres>(config.clone(), Postgres::tenant_migrations()).await;
    assert!(templated.prepare_template().await.unwrap());

    let (cloned, migrated) = (id("acme"), id("globex"));
    templated.create_tenant(&cloned, None).await.unwrap();
    plain.create_tenant(&migrated, None).await.unwrap();
    let naming = plain.naming();
    let a = catalog(
        &env,
        &naming.database_name(&cloned),
        &naming.user_name(&cloned),
    )
    .await;
    let b = catalog(
        &env,
        &naming.database_name(&migrated),
        &naming.user_name(&migrated),
    )
    .await;
    assert!(!a.is_empty());
    assert_eq!(
        a, b,
        "a template clone must be schema-identical to a migrated tenant"
    );
    assert!(a.iter().any(|r| r.starts_with("projects r OWNER")), "{a:?}");

    // The template role keeps no rights in the clone; the tenant works as usual.
    let client = admin_client(&url_for(&env, &naming.database_name(&cloned))).await;
    let template_role = naming.user_name(&id("tenora_template"));
    let can_create: bool = client
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[&template_role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_create);
    // The clone belongs to the tenant's role and is locked down like a plain tenant database.
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, \
             has_database_privilege('public', datname, 'CONNECT') \
             FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), naming.user_name(&cloned));
    assert!(!row.get::<_, bool>(1), "PUBLIC must not connect to a clone");
    let mut conn = templated.tenant_conn(&cloned).await.unwrap();
    conn.batch_execute("INSERT INTO projects (owner_id, name) VALUES (1, 'x')")
        .await
        .unwrap();
    // The tenant's role has an owner's rights on the cloned objects (later migrations need
    // them), and its own new objects sit beside them.
    conn.batch_execute(
        "ALTER TABLE projects ADD COLUMN extra integer; CREATE INDEX ON projects (name); \
         CREATE TABLE later (id integer); DROP TABLE later; ALTER TABLE projects DROP COLUMN extra",
    )
    .await
    .unwrap();
    drop(conn);
    assert_err_contains(templated.tenant_id("tenora_template"), &["reserved"]);

    // A template in use (another process rebuilding it) cannot be cloned: the tenant is
    // created the plain way, with the role made during the attempt, and gets the same schema.
    let template_db = naming.database_name(&id("tenora_template"));
    admin_client(&url_for(&env, "postgres"))
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{template_db}\" ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    let busy = admin_client(&url_for(&env, &template_db)).await;
    let wayne = id("wayne");
    templated.create_tenant(&wayne, None).await.unwrap();
    drop(busy);
    assert_eq!(
        catalog(
            &env,
            &naming.database_name(&wayne),
            &naming.user_name(&wayne)
        )
        .await,
        b,
        "a tenant created while the template was busy is migrated instead"
    );
    let owner: String = admin_client(&url_for(&env, &naming.database_name(&wayne)))
        .await
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'projects'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owner,
        naming.user_name(&wayne),
        "made by migrations, not cloned"
    );

    // The role is made while the database is cloned: when it exists already, the clone is
    // undone and nothing is registered.
    let taken = id("stark");
    let admin = admin_client(&url_for(&env, "postgres")).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{}\" NOLOGIN",
            naming.user_name(&taken)
        ))
        .await
        .unwrap();
    let err = templated.create_tenant(&taken, None).await.unwrap_err();
    assert!(matches!(err, Error::TenantExists { .. }), "{err}");
    assert!(!templated.tenant_database_exists(&taken).await.unwrap());
    assert!(templated.tenant(&taken).await.unwrap().is_none());

    // A stale template is not used: creation falls back to migrations, and migrating the
    // fleet refreshes the template.
    let (_dir, newer) = crate::scenarios::migrations_plus_one::<Postgres>();
    let newer_t = tenora_with::<Postgres>(config.clone(), newer).await;
    let fresh = id("initech");
    newer_t.create_tenant(&fresh, None).await.unwrap();
    let rows = catalog(
        &env,
        &naming.database_name(&fresh),
        &naming.user_name(&fresh),
    )
    .await;
    assert!(
        rows.iter().any(|r| r.starts_with("audit_log.id")),
        "{rows:?}"
    );
    // Two processes (here: two handles, each with its own admin sessions) refreshing the
    // stale template at once: one rebuilds, the other waits and finds it current.
    let (_dir2, newer2) = crate::scenarios::migrations_plus_one::<Postgres>();
    let other = tenora_with::<Postgres>(config.clone(), newer2).await;
    let (a, b2) = tokio::join!(newer_t.prepare_template(), other.prepare_template());
    assert!(a.unwrap() && b2.unwrap());
    for outcome in newer_t.migrate_all_tenants().await.unwrap() {
        outcome.result.unwrap();
    }
    let hooli = id("hooli");
    newer_t.create_tenant(&hooli, None).await.unwrap();
    let via_template = catalog(
        &env,
        &naming.database_name(&hooli),
        &naming.user_name(&hooli),
    )
    .await;
    assert_eq!(
        via_template, rows,
        "the refreshed template has the new migration"
    );
    // Dropping the env cleans up the template (it carries the test's prefixes).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_migrations_may_create_schemas() {
    let Some(env) = Postgres::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    tenora_test_support::write_migration(
        dir.path(),
        "2024-01-01-000000_app_schema",
        "CREATE SCHEMA app; CREATE TABLE app.notes (id integer PRIMARY KEY);",
        "DROP SCHEMA app CASCADE;",
    );
    let migrations = tenora::Migrations::from_dir(dir.path()).unwrap();
    let mut config = env.config.clone();
    config.tenant.template = true;
    // No seeds: they expect the example schema.
    let t = PgTenora::builder(config)
        .base_migrations(base_schema::MIGRATIONS)
        .tenant_migrations(migrations)
        .connect()
        .await
        .unwrap();
    t.migrate_base().await.unwrap();
    assert!(t.prepare_template().await.unwrap());
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    conn.batch_execute(
        "INSERT INTO app.notes VALUES (1); ALTER TABLE app.notes ADD COLUMN body text; \
         CREATE TABLE app.more (id integer)",
    )
    .await
    .unwrap();
    // It was cloned (objects of the template belong to the database owner's role).
    let naming = t.naming();
    let owner: String = admin_client(&url_for(&env, &naming.database_name(&acme)))
        .await
        .query_one(
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "pg_database_owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_dropped_by_another_process_is_looked_up_again() {
    let Some(env) = Postgres::env() else { return };
    let config = env.config.clone().tenant_pool(tenora::PoolConfig {
        connection_timeout: 1,
        ..tenora::PoolConfig::default()
    });
    let here = tenora_with::<Postgres>(config.clone(), Postgres::tenant_migrations()).await;
    let elsewhere = tenora_with::<Postgres>(config, Postgres::tenant_migrations()).await;
    let acme = id("acme");
    here.create_tenant(&acme, None).await.unwrap();
    let mut conn = here.tenant_conn(&acme).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    drop(conn);
    elsewhere.drop_tenant(&acme).await.unwrap();
    // The cached pool cannot connect any more: after a failed attempt it leaves the cache, and
    // the next call finds the tenant gone (404) instead of timing out forever (503).
    let mut last = String::new();
    for _ in 0..5 {
        match here.tenant_conn(&acme).await {
            Err(Error::UnknownTenant { .. }) => return,
            Ok(mut stale) => last = format!("{:?}", stale.batch_execute("SELECT 1").await),
            Err(e) => last = e.to_string(),
        }
    }
    panic!("still not looked up again; last: {last}");
}

/// One tenant cannot block another's deletion: after tenant A's role grants B's role rights
/// on its table, dropping B still completes (the grant goes with it) and A keeps its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_from_another_tenant_does_not_block_a_drop() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let (a, b) = (id("granting"), id("granted"));
    t.create_tenant(&a, Some(SecretString::new("Pass-word-A-123".to_owned())))
        .await
        .unwrap();
    t.create_tenant(&b, None).await.unwrap();
    let naming = t.naming();
    let client = login(&env, naming, &a, "Pass-word-A-123", &a)
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO users (id, email, name) VALUES (11, 'a@example.com', 'A'); GRANT SELECT ON users TO \"{}\"",
            naming.user_name(&b)
        ))
        .await
        .unwrap();
    drop(client);
    let removal = t.drop_tenant(&b).await.unwrap();
    assert_eq!(removal.removed.len(), 2, "{removal:?}");
    let admin = admin_client(&url_for(&env, "postgres")).await;
    assert_no_role(&admin, &naming.user_name(&b)).await;
    // A is untouched.
    let client = login(&env, naming, &a, "Pass-word-A-123", &a)
        .await
        .unwrap();
    let row = client
        .query_one("SELECT count(*) FROM users WHERE id = 11", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    t.drop_tenant(&a).await.unwrap();
}

/// Counts the sessions on `database`, as the server sees them.
async fn sessions_on(admin: &tokio_postgres::Client, database: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// Ends every session on `database` and waits until the server shows none.
async fn terminate_sessions(admin: &tokio_postgres::Client, database: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    while sessions_on(admin, database).await > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The server's goodbye still has to reach the client connections' tasks (no signal of
    // that is observable from outside the pool); under a loaded test run that took longer
    // than the first checkout. Give it a moment: what is tested is that an ended session,
    // once the client knows it, is never handed out.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// A pooled connection whose server session has ended is never handed out (tenant and base
/// pools), and a refusal of the server reaches the caller as soon as the server said it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_connections_are_replaced_and_refusals_fail_fast() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let db = t.naming().database_name(&acme);
    let role = t.naming().user_name(&acme);
    // Four idle connections in the tenant's pool.
    let held = futures_join(&t, &acme, 4).await;
    drop(held);
    let admin = admin_client(&url_for(&env, "postgres")).await;
    assert_eq!(sessions_on(&admin, &db).await, 4);
    terminate_sessions(&admin, &db).await;
    for _ in 0..8 {
        let mut conn = t.tenant_conn(&acme).await.unwrap();
        conn.batch_execute("SELECT 1").await.unwrap();
    }
    // The base pool alike (the registry lookups of `tenant` go through it).
    let base = env.config.base.database.clone().unwrap();
    terminate_sessions(&admin, &base).await;
    for _ in 0..4 {
        assert!(t.tenant(&acme).await.unwrap().is_some());
    }

    // The server refuses the role any connection: the caller learns it from the server at
    // once, not from a pool timeout.
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 0"))
        .await
        .unwrap();
    terminate_sessions(&admin, &db).await;
    let err = t.tenant_conn(&acme).await.unwrap_err();
    assert!(
        err.to_string().contains("too many connections for role"),
        "{err}"
    );
    assert!(
        !matches!(
            err,
            Error::PoolTimeout { .. }
                | Error::Busy {
                    wait: tenora::Wait::Pool,
                    ..
                }
        ),
        "{err}"
    );
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1"))
        .await
        .unwrap();

    // Dropped by another process during traffic: 16 tasks share the pool of 10 connections;
    // once the tenant is gone, each task's next call fails with the cause, not a pool timeout.
    let elsewhere = tenora::<Postgres>(&env).await;
    let started = std::sync::Arc::new(tokio::sync::Barrier::new(17));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (t, acme, started) = (t.clone(), acme.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut waited) = (0, false);
            loop {
                match t.tenant_conn(&acme).await {
                    Ok(mut conn) => {
                        if conn.batch_execute("SELECT pg_sleep(0.005)").await.is_ok() {
                            ok += 1;
                        }
                        drop(conn);
                        if ok == 3 && !waited {
                            waited = true;
                            started.wait().await;
                        }
                    }
                    Err(e) => return (ok, e),
                }
            }
        }));
    }
    started.wait().await;
    elsewhere.drop_tenant(&acme).await.unwrap();
    for task in tasks {
        let (ok, err) = task.await.unwrap();
        assert!(ok >= 3);
        assert!(
            matches!(err, Error::UnknownTenant { .. } | Error::Connect { .. }),
            "{err:?}"
        );
    }
    let err = t.tenant_conn(&acme).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownTenant { .. } | Error::Connect { .. }),
        "{err:?}"
    );
}

/// `n` connections of tenant `id` held at once.
async fn futures_join(t: &PgTenora, id: &TenantId, n: usize) -> Vec<tenora::PgConn> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(t.tenant_conn(id).await.unwrap());
    }
    held
}

/// A sign-up of `tenant` on `t` started while another session holds an uncommitted role of
/// the tenant's role name: returns once the server shows the sign-up's `CREATE ROLE` waiting
/// for that lock (a barrier, not a sleep), with the blocking session (`ROLLBACK` on it lets
/// the sign-up go on) and the sign-up's task.
async fn sign_up_blocked_on_the_server(
    env: &Env,
    t: &PgTenora,
    tenant: &TenantId,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<tenora::Result<tenora::TenantRecord>>,
) {
    let role = t.naming().user_name(tenant);
    let blocker = admin_client(&url_for(env, "postgres")).await;
    blocker
        .batch_execute(&format!("BEGIN; CREATE ROLE \"{role}\""))
        .await
        .unwrap();
    let waiting = {
        let (t, tenant) = (t.clone(), tenant.clone());
        tokio::spawn(async move { t.create_tenant(&tenant, None).await })
    };
    let watcher = admin_client(&url_for(env, "postgres")).await;
    loop {
        let blocked: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND position($1 in query) > 0",
                &[&format!("CREATE ROLE \"{role}\" LOGIN")],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            return (blocker, waiting);
        }
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sign-ups of different tenants run at once: while one waits on the server (another session
/// holds an uncommitted role of the same name, so its `CREATE ROLE` waits for that
/// transaction), another tenant is created from start to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_of_different_tenants_run_at_once() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    let (slow, fast) = (id("slow_a"), id("fast_b"));
    // Barrier: the server shows Tenora's CREATE ROLE waiting for a lock.
    let (blocker, waiting) = sign_up_blocked_on_the_server(&env, &t, &slow).await;
    // Meanwhile another tenant is made in full (with one admin session behind a lock, it would
    // wait for the first forever).
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        t.create_tenant(&fast, None),
    )
    .await
    .expect("the second sign-up waited for the first")
    .unwrap();
    assert!(!waiting.is_finished());
    // The other session gives the name up: the first sign-up completes.
    blocker.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    for tenant in [&slow, &fast] {
        t.drop_tenant(tenant).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_of_one_id_never_overlap() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora::<Postgres>(&env).await;
    // A second handle: another process, as far as its leases and admin sessions go.
    let other = tenora::<Postgres>(&env).await;
    let acme = id("acme");
    let role = t.naming().user_name(&acme);
    // Barrier: the first sign-up is inside its work (its CREATE ROLE waits for the lock).
    let (blocker, first) = sign_up_blocked_on_the_server(&env, &t, &acme).await;
    // Meanwhile the same id, from this process and from another one: refused at once, not
    // run alongside.
    for handle in [&t, &other] {
        let err = handle.create_tenant(&acme, None).await.unwrap_err();
        assert!(matches!(err, Error::InProgress { .. }), "{err:?}");
    }
    assert!(!first.is_finished());
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let record = first.await.unwrap().unwrap();
    assert_eq!(record.state, tenora::TenantState::Active);
    let roles: i64 = blocker
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 1);
    t.drop_tenant(&acme).await.unwrap();
}
