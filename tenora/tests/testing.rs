//! `testing::TestTenant`: made on the server, usable, and gone afterwards — after a panic too.
//! Checked in the server's catalog (`pg_database`, `information_schema.SCHEMATA`) or on disk
//! (SQLite) through `Backend::database_exists`, as the scenarios do, not only in the registry.

use diesel_async::SimpleAsyncConnection as _;
use tenora::testing::TestTenant;

use crate::support::backends::{TestBackend, tenora};

async fn made_used_and_dropped_even_on_panic<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let exists = |id| {
        let t = t.clone();
        async move { t.tenant_database_exists(&id).await.unwrap() }
    };

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
    assert!(exists(id.clone()).await, "made on the server");
    drop(tenant);
    assert!(t.tenant(&id).await.unwrap().is_none());
    assert!(!exists(id).await, "dropped on the server");

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
    assert!(!exists(id).await, "dropped after the panic");

    // drop_now reports.
    let tenant = TestTenant::create(&t).await.unwrap();
    let removal = tenant.drop_now().await.unwrap();
    assert!(!removal.removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_test_tenants_are_dropped() {
    made_used_and_dropped_even_on_panic::<tenora::backend::Mysql>().await
}
