//! MySQL/MariaDB-only behaviour: users, grants (including `_` wildcards), server errors.

use mysql_async::prelude::Queryable as _;
use tenora::backend::Mysql;
use tenora::{Config, Error, MysqlTenora, TenantId};

use crate::support::assert_err_contains;
use crate::support::backends::{Env, TestBackend, mysql_admin, tenora};

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// Fails if a MySQL user named `user` exists (on any host).
async fn assert_no_user(admin: &mut mysql_async::Conn, user: &str) {
    let users: Vec<String> = admin
        .exec("SELECT user FROM mysql.user WHERE user = ?", (user,))
        .await
        .unwrap();
    assert!(users.is_empty(), "user {user} was left behind");
}

fn admin_url(env: &Env) -> String {
    env.config.base.url.as_ref().unwrap().expose().to_owned()
}

/// Logs in as `role_of`'s tenant user with its stored password, to `db_of`'s database.
async fn login(
    env: &Env,
    t: &MysqlTenora,
    role_of: &TenantId,
    db_of: &TenantId,
) -> Result<mysql_async::Conn, mysql_async::Error> {
    let key = env.config.encryption_key().unwrap().unwrap();
    let mut admin = mysql_admin(&admin_url(env)).await;
    let sealed: String = admin
        .exec_first(
            format!(
                "SELECT password FROM `{}`.tenora_tenants WHERE id = ?",
                env.config.base.database.as_deref().unwrap()
            ),
            (role_of.as_str(),),
        )
        .await
        .unwrap()
        .unwrap();
    let password = tenora::secret::decrypt_password(&key, role_of, &sealed).unwrap();
    let opts =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&admin_url(env)).unwrap())
            .prefer_socket(false)
            .user(Some(t.naming().user_name(role_of)))
            .pass(Some(password.expose().to_owned()))
            .db_name(Some(t.naming().database_name(db_of)));
    mysql_async::Conn::new(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_users_cannot_reach_other_tenants() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    // `a_b` and `axb`: an unescaped `_` in GRANT would let a_b's user into axb's database.
    let (a, b, wild) = (id("acme"), id("globex"), id("a_b"));
    let lookalike = id("axb");
    for tenant in [&a, &b, &wild, &lookalike] {
        t.create_tenant(tenant, None).await.unwrap();
    }

    let mut own = login(&env, &t, &a, &a).await.expect("own database");
    let tables: Vec<String> = own.query("SHOW TABLES").await.unwrap();
    assert!(tables.contains(&"projects".to_owned()), "{tables:?}");
    let databases: Vec<String> = own.query("SHOW DATABASES").await.unwrap();
    let naming = t.naming();
    assert!(databases.contains(&naming.database_name(&a)));
    assert!(
        !databases.contains(&naming.database_name(&b)),
        "{databases:?}"
    );

    let err = login(&env, &t, &a, &b)
        .await
        .expect_err("A must not open B");
    assert!(err.to_string().contains("Access denied"), "{err}");
    let err = login(&env, &t, &wild, &lookalike)
        .await
        .expect_err("a_b must not open axb");
    assert!(err.to_string().contains("Access denied"), "{err}");

    // No global privileges: the only grants are USAGE and the tenant's own database.
    let grants: Vec<String> = own.query("SHOW GRANTS").await.unwrap();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants[0].starts_with("GRANT USAGE ON *.*"), "{grants:?}");
    assert!(
        grants[1].contains(&format!(
            "ON `{}`.*",
            naming.database_name(&a).replace('_', "\\_")
        )),
        "{grants:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_database_is_never_taken_over_or_dropped() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = id("acme");
    let db = t.naming().database_name(&acme);
    let mut admin = mysql_admin(&admin_url(&env)).await;
    admin
        .query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    let err = t.create_tenant(&acme, None).await.unwrap_err();
    assert!(matches!(err, Error::TenantExists { .. }), "{err:?}");
    assert!(t.tenant_database_exists(&acme).await.unwrap());
    assert_no_user(&mut admin, &t.naming().user_name(&acme)).await;
    assert!(t.tenant(&acme).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_provisioning_leaves_no_user() {
    let Some(env) = Mysql::env() else { return };
    const FAILING: tenora::Migrations = tenora::embed_migrations!("tests/fixtures/failing_tenant");
    let t = crate::support::backends::tenora_with::<Mysql>(env.config.clone(), FAILING).await;
    let acme = id("acme");
    assert_err_contains(
        t.create_tenant(&acme, None).await,
        &["step `migrate`", "no_such_table"],
    );
    let mut admin = mysql_admin(&admin_url(&env)).await;
    assert_no_user(&mut admin, &t.naming().user_name(&acme)).await;
    assert!(!t.tenant_database_exists(&acme).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_limit_is_enforced_not_truncated() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let naming = t.naming();
    let max = naming.max_id_len();
    // Database names have 64 characters, user names the server's limit (MySQL 32).
    assert!(max <= 64 - env.config.tenant.database_prefix.len());
    assert!(max <= naming.max_user_len() - env.config.tenant.user_prefix.len());
    assert_err_contains(t.tenant_id(&"z".repeat(max + 1)), &["at most"]);
    t.tenant_id(&"z".repeat(max)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_is_a_clear_error_without_the_password() {
    let Some(_env) = Mysql::env() else { return };
    let config = Config::mysql("mysql://admin:hunter2secret@127.0.0.1:1/app");
    let err = MysqlTenora::builder(config)
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to the MySQL base database `app` on 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");
}

/// A tenant session holding an open transaction does not make the drop hang (MySQL waits a day
/// for the metadata lock by default): the drop ends the tenant's sessions and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_completes_while_a_tenant_transaction_is_open() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let mut session = login(&env, &t, &acme, &acme).await.unwrap();
    session
        .query_drop("START TRANSACTION; INSERT INTO users (id, email, name) VALUES (5, 'a@example.com', 'A')")
        .await
        .unwrap();
    // Bounded only so that a regression fails instead of hanging the suite.
    let dropped = tokio::time::timeout(std::time::Duration::from_secs(120), t.drop_tenant(&acme))
        .await
        .expect("the drop hung on the open transaction");
    dropped.unwrap();
    let mut admin = mysql_admin(&admin_url(&env)).await;
    assert_no_user(&mut admin, &t.naming().user_name(&acme)).await;
    let db: Option<String> = admin
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (t.naming().database_name(&acme),),
        )
        .await
        .unwrap();
    assert_eq!(db, None);
    // The tenant's session was ended.
    assert!(session.query_drop("SELECT 1").await.is_err());
}

/// A pooled connection whose session the server ended (`KILL`, `wait_timeout`) is not handed
/// out: MySQL drivers cannot tell without a round trip, so connections idle for more than
/// `PING_IDLE_AFTER` (1 s) are pinged first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let held = vec![
        t.tenant_conn(&acme).await.unwrap(),
        t.tenant_conn(&acme).await.unwrap(),
    ];
    drop(held);
    let user = t.naming().user_name(&acme);
    let mut admin = mysql_admin(&admin_url(&env)).await;
    let ids: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (&user,),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    for id in ids {
        admin.query_drop(format!("KILL {id}")).await.unwrap();
    }
    // The connections must have been idle past the threshold: that is the condition under
    // test, not an ordering of events.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..4 {
        let mut conn = t.tenant_conn(&acme).await.unwrap();
        diesel_async::SimpleAsyncConnection::batch_execute(&mut *conn, "SELECT 1")
            .await
            .unwrap();
    }
}

/// A user that exists already is never dropped by the undo of the creation that met it — not
/// even when the caller chose that user's very password (which is what proves MariaDB users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_the_same_password_is_not_taken_for_ours() {
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = id("acme");
    let user = t.naming().user_name(&acme);
    let mut admin = mysql_admin(&admin_url(&env)).await;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'Same-Pass-123'"
        ))
        .await
        .unwrap();
    assert_err_contains(
        t.create_tenant(&acme, Some(tenora::SecretString::new("Same-Pass-123")))
            .await,
        &["already exists"],
    );
    let users: Vec<String> = admin
        .exec("SELECT User FROM mysql.user WHERE User = ?", (&user,))
        .await
        .unwrap();
    assert_eq!(users, [user]);
    assert!(t.tenant(&acme).await.unwrap().is_none());
}

/// The user-name limit is the server's (MySQL 32; MariaDB 80, or 128 since 10.6), read from
/// the definition of `mysql.user`: a tenant whose user name is longer than MySQL's 32
/// characters is made on MariaDB, and logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_use_the_servers_limit() {
    let Some(env) = Mysql::env() else { return };
    let mut admin = mysql_admin(&admin_url(&env)).await;
    let server_limit: i64 = admin
        .query_first(
            "SELECT CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'user' AND COLUMN_NAME = 'User'",
        )
        .await
        .unwrap()
        .unwrap();
    // A longer user prefix (still under the cleanup's `u<token>_` prefix), 32 characters.
    let prefix = env.config.tenant.user_prefix.clone();
    let long_prefix = format!("{prefix}{}", "x".repeat(32 - prefix.len()));
    let config = env.config.clone().tenant_user_prefix(long_prefix.clone());
    let t =
        crate::support::backends::tenora_with::<Mysql>(config, Mysql::tenant_migrations()).await;
    assert_eq!(t.naming().max_user_len() as i64, server_limit);
    let tenant = id("acme_with_a_longer_id");
    let user = format!("{long_prefix}{tenant}");
    assert!(user.len() > 32);
    if server_limit < user.len() as i64 {
        // MySQL: refused before anything is made, naming the limit.
        assert_err_contains(t.tenant_id(tenant.as_str()), &["user 32"]);
        return;
    }
    t.create_tenant(&tenant, None).await.unwrap();
    let users: Vec<String> = admin
        .exec("SELECT user FROM mysql.user WHERE user = ?", (&user,))
        .await
        .unwrap();
    assert_eq!(users, std::slice::from_ref(&user), "made on the server");
    login(&env, &t, &tenant, &tenant).await.unwrap();
    t.drop_tenant(&tenant).await.unwrap();
    assert_no_user(&mut admin, &user).await;
}

/// The registry's compare-and-swap of a stored password compares exactly: MySQL's default
/// collation would take values differing only in case as equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_swaps_compare_exactly() {
    use tenora::registry::RegistryConnection as _;
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = id("acme");
    let mut conn = t.base_conn().await.unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut *conn,
        "INSERT INTO tenora_tenants (id, password, state, created_at, updated_at) \
         VALUES ('acme', 'plain:Secret-Case-1', 'active', NOW(), NOW())",
    )
    .await
    .unwrap();
    let table = &env.config.registry.table;
    let other_case = conn
        .registry_swap_password(table, &acme, "plain:SECRET-CASE-1", "plain:New-Value-2")
        .await
        .unwrap();
    assert_eq!(other_case, 0, "a value differing in case is another value");
    let same = conn
        .registry_swap_password(table, &acme, "plain:Secret-Case-1", "plain:New-Value-2")
        .await
        .unwrap();
    assert_eq!(same, 1);
}
