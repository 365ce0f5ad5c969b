//! The default connection budget against servers started for the test with a low
//! `max_connections`: derived from the server, never overrun (counted by the server itself),
//! and a full server answered with `Error::Busy` and a smaller budget, never a raw error.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection as _;
use tenora::{BudgetPlan, BudgetSource, Error, TenantId, Tenora, Wait};

use crate::support::backends::{TestBackend, tenora};

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// `tasks` tasks each take a connection to a tenant of `ids` `rounds` times, all at once;
/// every call must succeed.
async fn touch_concurrently<B: TestBackend>(t: &Tenora<B>, ids: &[TenantId], tasks: usize) {
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (t, ids) = (t.clone(), ids.to_vec());
        set.spawn(async move {
            for round in 0..5 {
                let tenant = &ids[(task * 7 + round * 3) % ids.len()];
                let mut conn = t.tenant_conn(tenant).await.unwrap_or_else(|e| {
                    panic!("task {task} round {round}, {tenant}: {e}");
                });
                conn.batch_execute("SELECT 1").await.unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
}

/// Creates ten tenants, then has 24 tasks use them at once while `counter` counts every
/// client connection on the server: the peak stays within the budget `max`. Returns the ids.
async fn load_within_budget<B: TestBackend>(
    t: &Tenora<B>,
    max: u32,
    count: impl FnOnce() -> tenora_test_support::Counter,
) -> Vec<TenantId> {
    let ids: Vec<TenantId> = (0..10).map(|i| id(&format!("l{i}"))).collect();
    for tenant in &ids {
        t.create_tenant(tenant, None).await.unwrap();
    }
    let counter = count();
    touch_concurrently(t, &ids, 24).await;
    let at_peak = counter.at_peak();
    let peak = counter.stop();
    assert!(
        peak <= max,
        "{peak} connections on the server, over the budget of {max}: {at_peak:#?}"
    );
    ids
}

/// Checks the derived plan against what the server was started with.
fn check_plan(plan: &BudgetPlan, max_connections: u32, reserved: u32, admin: u32) -> u32 {
    assert_eq!(plan.source, BudgetSource::Derived, "{plan}");
    let server = plan.server.expect("the server's limits");
    assert_eq!(
        (server.max_connections, server.reserved),
        (max_connections, reserved),
        "{plan}"
    );
    let max = plan.max_connections.unwrap();
    let share = (max_connections - reserved) * 3 / 4;
    assert!(
        max <= share && max >= BudgetPlan::minimum(admin, 4),
        "{plan}"
    );
    max
}

/// Once the server is full, a tenant without a pool gets `Busy` (the server's wait), the
/// budget shrinks; once the other client leaves, the tenant is served again.
async fn full_server_is_busy<B: TestBackend, H>(
    t: &Tenora<B>,
    tenant: &TenantId,
    hog: impl std::future::Future<Output = H>,
) {
    t.close_all();
    let before = t.stats().max_connections.unwrap();
    let hogs = hog.await;
    let err = match t.tenant_conn(tenant).await {
        Ok(_) => panic!("expected the full server to refuse a new connection"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            Error::Busy {
                wait: Wait::Server,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no free connection slots"),
        "{err}"
    );
    let stats = t.stats();
    assert_eq!(stats.refused_by_server, 1, "{stats:?}");
    assert!(
        stats.max_connections.unwrap() < before,
        "the budget shrank: {stats:?}"
    );
    drop(hogs);
    // The server frees the other client's slots as its sessions end.
    let start = Instant::now();
    loop {
        match t.tenant_conn(tenant).await {
            Ok(mut conn) => {
                conn.batch_execute("SELECT 1").await.unwrap();
                break;
            }
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                assert!(matches!(e, Error::Busy { .. }), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("still refused after the other client left: {e}"),
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::support::backends::pg_env_at;
    use tenora::backend::Postgres;
    use tenora_test_support::{Counter, PgCluster, PgOptions, Server};

    /// Superuser sessions until the server refuses one (superusers may use every slot).
    async fn hog(url: String) -> Vec<tokio_postgres::Client> {
        let mut clients = Vec::new();
        while let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            clients.push(client);
            assert!(clients.len() < 100, "the server never said it was full");
        }
        clients
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn derived_budget_keeps_a_small_server_from_overrunning() {
        let options = PgOptions {
            max_connections: Some(20),
            trust: true,
            ..PgOptions::default()
        };
        let Some(cluster) = PgCluster::start_with(&options) else {
            return;
        };
        let env = pg_env_at(&cluster.admin_url());
        let t = tenora::<Postgres>(&env).await;
        let max = check_plan(t.budget(), 20, 3, 2);
        assert_eq!(t.stats().budget_source, BudgetSource::Derived);
        let ids = load_within_budget(&t, max, || {
            Counter::start(Server::Postgres, &cluster.admin_url(), None)
        })
        .await;
        let refused = cluster.refusals();
        assert!(refused.is_empty(), "the server refused: {refused:?}");

        full_server_is_busy(&t, &ids[0], hog(cluster.admin_url())).await;
    }
}

#[cfg(feature = "mysql")]
mod my {
    use mysql_async::prelude::Queryable as _;

    use super::*;
    use crate::support::backends::mysql_env_at;
    use tenora::backend::Mysql;
    use tenora_test_support::{Counter, MariaDbServer, Server};

    /// Connections the server refused because it was full, by its own count.
    async fn refused(url: &str) -> u64 {
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        let row: Option<(String, u64)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Connection_errors_max_connections'")
            .await
            .unwrap();
        let _ = conn.disconnect().await;
        row.unwrap().1
    }

    /// Root sessions until the server refuses one.
    async fn hog(url: String) -> Vec<mysql_async::Conn> {
        let mut conns = Vec::new();
        while let Ok(conn) = mysql_async::Conn::from_url(&url).await {
            conns.push(conn);
            assert!(conns.len() < 100, "the server never said it was full");
        }
        conns
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn derived_budget_keeps_a_small_server_from_overrunning() {
        let Some(server) = MariaDbServer::start(20) else {
            return;
        };
        let url = server.admin_url();
        let env = mysql_env_at(&url);
        let t = tenora::<Mysql>(&env).await;
        let max = check_plan(t.budget(), 20, 0, 1);
        let ids = load_within_budget(&t, max, || Counter::start(Server::Mysql, &url, None)).await;
        assert_eq!(refused(&url).await, 0, "the server refused connections");

        full_server_is_busy(&t, &ids[0], hog(url.clone())).await;
    }
}
