//! Tenant password rotation under load: 8 tasks run `tenant_conn` + `SELECT 1` in a loop while
//! the tenant's password is rotated 5 times — 0 failed queries; afterwards only the last
//! password logs in (checked on a private `scram-sha-256` PostgreSQL cluster, and on MariaDB,
//! which checks passwords). Another Tenora (another process) whose pool still has the old
//! password recovers on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use diesel_async::SimpleAsyncConnection as _;
use tenora::{SecretString, TenantId};

use crate::support::backends::{Env, TestBackend, tenora, tenora_with};

/// Waits (yielding, no sleeping) until `counter` has moved `by` past `from`.
async fn advanced(counter: &AtomicUsize, from: usize, by: usize) {
    while counter.load(Ordering::SeqCst) < from + by {
        tokio::task::yield_now().await;
    }
}

/// Rotates tenant `acme`'s password 5 times under load; returns the passwords used, the
/// first being the one it was created with.
async fn rotate_under_load<B: TestBackend>(
    env: &Env,
) -> (tenora::Tenora<B>, TenantId, Vec<String>) {
    let t = tenora::<B>(env).await;
    let acme = TenantId::new("acme").unwrap();
    let passwords: Vec<String> = (0..6).map(|i| format!("Rotation-{i}-Pa55word")).collect();
    t.create_tenant(&acme, Some(SecretString::new(passwords[0].clone())))
        .await
        .unwrap();
    // Another process, whose pool of acme is made now, with the first password.
    let other = tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await;
    drop(other.tenant_conn(&acme).await.unwrap());

    let (ok, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, acme, ok, stop, failures) = (
            t.clone(),
            acme.clone(),
            Arc::clone(&ok),
            Arc::clone(&stop),
            Arc::clone(&failures),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let result = async {
                    let mut conn = t.tenant_conn(&acme).await?;
                    conn.batch_execute("SELECT 1")
                        .await
                        .map_err(|e| tenora::Error::Unsupported(e.to_string()))
                }
                .await;
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        failures.lock().unwrap().push(e.to_string());
                        0
                    }
                };
                tokio::task::yield_now().await;
            }
        }));
    }
    advanced(&ok, 0, 8).await;
    for password in &passwords[1..] {
        t.rotate_tenant_password(&acme, Some(SecretString::new(password.clone())))
            .await
            .unwrap();
        // Traffic runs between rotations: every task gets through at least once more.
        let now = ok.load(Ordering::SeqCst);
        advanced(&ok, now, 16).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(ok.load(Ordering::SeqCst) > 16 * 5);

    // The other process's cached pool has the first password: a new connection of it is
    // refused by the server, and it reads the password again instead of failing.
    let held = other.tenant_conn(&acme).await.unwrap();
    let mut fresh = other.tenant_conn(&acme).await.unwrap();
    fresh.batch_execute("SELECT 1").await.unwrap();
    drop((held, fresh));
    // The registry keeps only the last password (a fresh Tenora logs in with it).
    let again = tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await;
    again.tenant_conn(&acme).await.unwrap();
    assert!(matches!(
        again.repair_tenant(&acme).await.unwrap(),
        tenora::Repair::Healthy
    ));
    (t, acme, passwords)
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_password_rotation_under_load() {
    use tenora::backend::Postgres;
    use tenora_test_support::PgCluster;
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let env = crate::support::backends::pg_env_at(&cluster.admin_url());
    let (t, acme, passwords) = rotate_under_load::<Postgres>(&env).await;
    let naming = t.naming();
    let base = env.config.base.url.as_ref().unwrap().expose();
    for (i, password) in passwords.iter().enumerate() {
        let mut config: tokio_postgres::Config = base.parse().unwrap();
        config
            .user(naming.user_name(&acme))
            .password(password)
            .dbname(naming.database_name(&acme));
        let login = config.connect(tokio_postgres::NoTls).await;
        assert_eq!(login.is_ok(), i == passwords.len() - 1, "password {i}");
    }
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_password_rotation_under_load() {
    use tenora::backend::Mysql;
    let Some(env) = Mysql::env() else { return };
    let (t, acme, passwords) = rotate_under_load::<Mysql>(&env).await;
    let naming = t.naming();
    let admin: mysql_async::Opts = env
        .config
        .base
        .url
        .as_ref()
        .unwrap()
        .expose()
        .parse()
        .unwrap();
    for (i, password) in passwords.iter().enumerate() {
        let opts = mysql_async::OptsBuilder::from_opts(admin.clone())
            .user(Some(naming.user_name(&acme)))
            .pass(Some(password.clone()))
            .db_name(Some(naming.database_name(&acme)));
        let login = mysql_async::Conn::new(opts).await;
        assert_eq!(login.is_ok(), i == passwords.len() - 1, "password {i}");
        if let Ok(conn) = login {
            let _ = conn.disconnect().await;
        }
    }
}

/// SQLite tenants have no database user: rotating says so, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_has_no_password_to_rotate() {
    let Some(env) = tenora::backend::Sqlite::env() else {
        return;
    };
    let t = tenora::<tenora::backend::Sqlite>(&env).await;
    let acme = TenantId::new("acme").unwrap();
    t.create_tenant(&acme, None).await.unwrap();
    crate::support::assert_err_contains(
        t.rotate_tenant_password(&acme, None).await,
        &["no database user of its own", "acme"],
    );
    t.tenant_conn(&acme).await.unwrap();
}

/// Passwords kept outside the registry: the builder's provider and `secrets.password_command`
/// serve `tenant_conn`, migrations and seeds (MariaDB checks each password: the registry's is
/// made wrong first); `None` falls back to the registry; failures and timeouts are clear errors.
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_passwords_serve_every_connection() {
    use tenora::backend::Mysql;
    let Some(env) = Mysql::env() else { return };
    let t = tenora::<Mysql>(&env).await;
    let acme = TenantId::new("acme").unwrap();
    let real = "Vault-Pa55word-1";
    t.create_tenant(&acme, Some(SecretString::new(real)))
        .await
        .unwrap();
    // The registry's copy goes stale (as if only the vault were kept up to date).
    let key = env.config.encryption_key().unwrap().unwrap();
    let stale = tenora::secret::encrypt_password(&key, &acme, "Stale-Pa55word-0");
    t.base_conn()
        .await
        .unwrap()
        .batch_execute(&format!(
            "UPDATE tenora_tenants SET password = '{stale}' WHERE id = 'acme'"
        ))
        .await
        .unwrap();
    let fresh = || {
        tenora::Tenora::<Mysql>::builder(env.config.clone())
            .tenant_migrations(Mysql::tenant_migrations())
            .tenant_seeds(tenant_schema::SEEDS)
    };
    let registry_only = fresh().connect().await.unwrap();
    crate::support::assert_err_contains(
        registry_only.tenant_conn(&acme).await,
        &["the server refused the password"],
    );

    // The builder's provider: every connection as the tenant.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let vault = fresh()
        .passwords(move |id: TenantId| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, std::io::Error>((id.as_str() == "acme").then(|| SecretString::new(real)))
            }
        })
        .connect()
        .await
        .unwrap();
    vault.tenant_conn(&acme).await.unwrap();
    vault.migrate_tenant(&acme).await.unwrap();
    // The seed ran as the tenant (and found its row from the creation).
    crate::support::assert_err_contains(
        vault.run_tenant_seeds(&acme).await,
        &["seed `01_admin_user.sql` on tenant `acme` failed: Duplicate entry"],
    );
    // Verify: connect even though the registry records acme as up to date.
    let outcomes = vault
        .run_fleet(
            None,
            tenora::FleetOp::Migrate,
            tenora::FleetOptions::default().verify(true),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    // Asked when the pool was built and when migrations and seeds connected (not per query).
    assert!(asked.load(Ordering::SeqCst) >= 3, "{asked:?}");

    // A rotation changes the server's password before the vault learns it: the registry's
    // passwords follow the provider's as fallbacks, so connections keep working.
    t.rotate_tenant_password(&acme, None).await.unwrap();
    vault.evict(&acme);
    vault.tenant_conn(&acme).await.unwrap();

    // A provider that fails names itself.
    let broken = fresh()
        .passwords(|_id: TenantId| async { Err::<Option<SecretString>, _>("vault sealed") })
        .connect()
        .await
        .unwrap();
    crate::support::assert_err_contains(
        broken.tenant_conn(&acme).await,
        &["password provider failed for tenant `acme`", "vault sealed"],
    );

    // secrets.password_command: a program, run without a shell, `{id}` filled in.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vault-get");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ \"$1\" = tenants/acme ]; then printf '%s\\n' '{real}'; fi\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with_command = |command: String, timeout: u64| {
        let mut config = env.config.clone().password_command(command);
        config.secrets.password_command_timeout = timeout;
        tenora::Tenora::<Mysql>::builder(config)
            .tenant_migrations(Mysql::tenant_migrations())
            .connect()
    };
    let by_command = with_command(format!("{} tenants/{{id}}", script.display()), 10)
        .await
        .unwrap();
    by_command.tenant_conn(&acme).await.unwrap();
    by_command.migrate_tenant(&acme).await.unwrap();
    let slow = with_command("sleep 30".to_owned(), 1).await.unwrap();
    crate::support::assert_err_contains(
        slow.tenant_conn(&acme).await,
        &["did not finish within 1 s"],
    );
    let failing = with_command("false {id}".to_owned(), 10).await.unwrap();
    crate::support::assert_err_contains(failing.tenant_conn(&acme).await, &["`false` exited with"]);
}
