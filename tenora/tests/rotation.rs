//! Tenant password rotation under load: 8 tasks run `tenant_conn` + `SELECT 1` in a loop while
//! the tenant's password is rotated 5 times — 0 failed queries; afterwards only the last
//! password logs in (checked on a private `scram-sha-256` PostgreSQL cluster, and on MariaDB,
//! which checks passwords). Another Tenora (another process) whose pool still has the old
//! password recovers on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use diesel_async::SimpleAsyncConnection as _;
use tenora::backend::Backend;
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
    let naming = t.backend().naming();
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
    let naming = t.backend().naming();
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
