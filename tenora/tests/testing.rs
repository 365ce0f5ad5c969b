//! `testing::TestTenant`: made on the server, usable, and gone afterwards — after a panic too.
//! Checked in the server's catalog (PostgreSQL) and on disk (SQLite), not only the registry.

use diesel_async::SimpleAsyncConnection as _;
use tenora::testing::TestTenant;

use crate::support::backends::{TestBackend, tenora};

async fn made_used_and_dropped_even_on_panic<B: TestBackend>(
    exists: impl Fn(&tenora::Config, &tenora::TenantId) -> bool,
) {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;

    let tenant = TestTenant::create(&t).await.unwrap();
    let id = tenant.id().clone();
    assert!(id.as_str().starts_with("test_"));
    tenant
        .conn()
        .await
        .unwrap()
        .batch_execute("SELECT 1")
        .await
        .unwrap();
    assert!(exists(&t.config().clone(), &id), "made on the server");
    drop(tenant);
    assert!(t.tenant(&id).await.unwrap().is_none());
    assert!(!exists(&t.config().clone(), &id), "dropped on the server");

    // A test that panics while holding one.
    let (tt, seen) = (t.clone(), std::sync::Arc::new(std::sync::Mutex::new(None)));
    let seen_in = std::sync::Arc::clone(&seen);
    let panicked = tokio::spawn(async move {
        let tenant = TestTenant::create(&tt).await.unwrap();
        *seen_in.lock().unwrap() = Some(tenant.id().clone());
        panic!("a failing test");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let id = seen.lock().unwrap().clone().unwrap();
    assert!(t.tenant(&id).await.unwrap().is_none());
    assert!(!exists(&t.config().clone(), &id), "dropped after the panic");

    // drop_now reports.
    let tenant = TestTenant::create(&t).await.unwrap();
    let removal = tenant.drop_now().await.unwrap();
    assert!(!removal.removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Sqlite>(|config, id| {
        config
            .tenant
            .database_dir
            .join(format!("{}{}", id, config.tenant.database_suffix))
            .exists()
    })
    .await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Postgres>(|config, id| {
        let admin = std::env::var("TENORA_TEST_PG_URL").unwrap();
        let db = format!("{}{}", config.tenant.database_prefix, id);
        tenora_test_support::block_on(async move {
            tenora_test_support::pg_connect(&admin)
                .await
                .query_one(
                    "SELECT count(*) FROM pg_database WHERE datname = $1",
                    &[&db],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        })
    })
    .await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Mysql>(|config, id| {
        use mysql_async::prelude::Queryable as _;
        let admin = std::env::var("TENORA_TEST_MYSQL_URL").unwrap();
        let db = format!("{}{}", config.tenant.database_prefix, id);
        tenora_test_support::block_on(async move {
            let mut conn = tenora_test_support::mysql_connect(&admin).await;
            let n: Option<i64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                    (db,),
                )
                .await
                .unwrap();
            n == Some(1)
        })
    })
    .await
}
