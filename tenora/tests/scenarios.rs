//! Scenarios written once and run against every backend (see `lib.rs`).

use std::sync::Arc;

use diesel_async::SimpleAsyncConnection as _;
use tenora::{Error, Step, TenantId, TenantState};

use crate::support::assert_err_contains;
use crate::support::backends::{TestBackend, tenora, tenora_with};

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

const FAILING: tenora::Migrations = tenora::embed_migrations!("tests/fixtures/failing_tenant");

pub async fn provision_and_isolation<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let (acme, globex) = (id("acme"), id("globex"));
    let record = t.create_tenant(&acme, None).await.unwrap();
    assert_eq!(record.state, TenantState::Active);
    t.create_tenant(&globex, None).await.unwrap();

    for (tenant, project) in [(&acme, "anvils"), (&globex, "world domination")] {
        let mut conn = t.tenant_conn(tenant).await.unwrap();
        conn.batch_execute(&format!(
            "INSERT INTO projects (owner_id, name) VALUES (1, '{project}')"
        ))
        .await
        .unwrap();
    }
    let mut a = t.tenant_conn(&acme).await.unwrap();
    let mut g = t.tenant_conn(&globex).await.unwrap();
    assert_eq!(B::project_names(&mut a).await, ["anvils"]);
    assert_eq!(B::project_names(&mut g).await, ["world domination"]);

    let listed: Vec<_> = t
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id.to_string(), r.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("acme".to_owned(), TenantState::Active),
            ("globex".to_owned(), TenantState::Active)
        ]
    );
    assert!(t.tenant_database_exists(&acme).await.unwrap());
}

pub async fn invalid_ids_create_nothing<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let long = "a".repeat(64);
    for bad in [
        "",
        long.as_str(),
        "Acme",
        "o'neil",
        "has space",
        "a\"; DROP DATABASE x; --",
        "caf\u{e9}",
        "1abc",
    ] {
        assert_err_contains(t.tenant_id(bad), &["invalid tenant id", "lowercase letter"]);
    }
    // Valid by itself, but too long once the configured prefixes are added: refused, never
    // truncated.
    let max = t.naming().max_id_len();
    if max < TenantId::MAX_LEN {
        let too_long = id(&"b".repeat(max + 1));
        assert_err_contains(t.tenant_id(too_long.as_str()), &["at most"]);
        assert_err_contains(t.create_tenant(&too_long, None).await, &["at most"]);
        assert_err_contains(t.drop_tenant(&too_long).await, &["at most"]);
        assert!(!t.tenant_database_exists(&too_long).await.unwrap());
    }
    assert!(t.list_tenants().await.unwrap().is_empty());
}

pub async fn failing_migration_leaves_nothing<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora_with::<B>(env.config.clone(), FAILING).await;
    let acme = id("acme");
    let err = t.create_tenant(&acme, None).await.unwrap_err();
    match &err {
        Error::Provision {
            id, step, cleanup, ..
        } => {
            assert_eq!(id, &acme);
            assert_eq!(*step, Step::Migrate);
            assert!(cleanup.is_empty(), "{cleanup:?}");
        }
        other => panic!("expected a provisioning error, got {other:?}"),
    }
    let msg = err.to_string();
    for needle in [
        "tenant `acme`",
        "step `migrate`",
        "everything created for it was removed",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(t.list_tenants().await.unwrap().is_empty());
    assert!(!t.tenant_database_exists(&acme).await.unwrap());
    assert_err_contains(t.tenant_conn(&acme).await, &["unknown tenant `acme`"]);

    // Nothing half-made blocks a later, good attempt.
    let good = tenora::<B>(&env).await;
    good.create_tenant(&acme, None).await.unwrap();
    drop(good.tenant_conn(&acme).await.unwrap());
}

pub async fn duplicate_create_changes_nothing<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    conn.batch_execute("INSERT INTO projects (owner_id, name) VALUES (1, 'keep me')")
        .await
        .unwrap();
    drop(conn);

    let err = t.create_tenant(&acme, None).await.unwrap_err();
    assert!(matches!(err, Error::TenantExists { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert!(
        err.to_string().contains("registered, in state `active`"),
        "{err}"
    );

    let mut conn = t.tenant_conn(&acme).await.unwrap();
    assert_eq!(B::project_names(&mut conn).await, ["keep me"]);
    assert_eq!(t.list_tenants().await.unwrap().len(), 1);
}

pub async fn drop_removes_everything<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let conn = t.tenant_conn(&acme).await.unwrap();
    drop(conn);
    t.drop_tenant(&acme).await.unwrap();
    assert!(!t.tenant_database_exists(&acme).await.unwrap());
    assert_eq!(t.tenant(&acme).await.unwrap(), None);
    assert_err_contains(t.tenant_conn(&acme).await, &["unknown tenant `acme`"]);
    assert_err_contains(t.drop_tenant(&acme).await, &["not in the registry"]);
    // The id is free again.
    t.create_tenant(&acme, None).await.unwrap();
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    assert!(B::project_names(&mut conn).await.is_empty());
}

pub async fn concurrent_first_calls_share_one_pool<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = Arc::new(tenora::<B>(&env).await);
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let t = Arc::clone(&t);
            let acme = acme.clone();
            tokio::spawn(async move {
                let mut conn = t.tenant_conn(&acme).await.unwrap();
                conn.batch_execute("SELECT 1").await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = t.stats();
    assert_eq!(stats.pools_created, 1, "{stats:?}");
    assert_eq!(stats.cached_pools, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.misses, 32, "{stats:?}");

    assert!(t.evict(&acme));
    drop(t.tenant_conn(&acme).await.unwrap());
    assert_eq!(t.stats().pools_created, 2);
    t.close_all();
    assert_eq!(t.stats().cached_pools, 0);
}

pub async fn unknown_and_unregistered<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    // Before the base migrations, the registry is missing: say so.
    let raw = tenora::Tenora::<B>::builder(env.config.clone())
        .connect()
        .await
        .unwrap();
    assert_err_contains(
        raw.create_tenant(&id("acme"), None).await,
        &[
            "registry table `tenora_tenants` is missing",
            "base migrations",
        ],
    );
    let t = tenora::<B>(&env).await;
    assert_err_contains(
        t.tenant_conn(&id("nobody")).await,
        &["unknown tenant `nobody`", "not in the registry"],
    );
    assert_eq!(t.stats().cached_pools, 0);
}

pub async fn migrate_and_rollback<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    assert!(
        t.migrate_base().await.unwrap().is_empty(),
        "base is up to date"
    );
    let (acme, globex) = (id("acme"), id("globex"));
    t.create_tenant(&acme, None).await.unwrap();
    t.create_tenant(&globex, None).await.unwrap();

    let reverted = t.rollback_tenant(&acme, 1).await.unwrap();
    assert_eq!(reverted, ["2024-01-01-000002_create_projects"]);
    t.evict(&acme);
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    assert!(conn.batch_execute("SELECT * FROM projects").await.is_err());
    drop(conn);

    let applied = t.migrate_tenant(&acme).await.unwrap();
    assert_eq!(applied, ["2024-01-01-000002_create_projects"]);

    let outcomes = t.migrate_all_tenants().await.unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(o.result.as_ref().unwrap().is_empty(), "{o:?}");
    }
    let outcomes = t.rollback_all_tenants(2).await.unwrap();
    for o in &outcomes {
        assert_eq!(o.result.as_ref().unwrap().len(), 2, "{o:?}");
    }
    let outcomes = t.migrate_all_tenants().await.unwrap();
    for o in &outcomes {
        assert_eq!(o.result.as_ref().unwrap().len(), 2, "{o:?}");
    }
    // More steps than applied: stops at none.
    assert_eq!(t.rollback_tenant(&globex, 5).await.unwrap().len(), 2);
    assert!(t.rollback_tenant(&globex, 1).await.unwrap().is_empty());

    // Base rollback removes the registry; migrating again restores it.
    assert_eq!(
        t.rollback_base(4).await.unwrap(),
        [
            "2026-12-04-000000_add_migration_state_to_tenora_tenants",
            "2026-12-03-000000_add_server_to_tenora_tenants",
            "2026-12-02-000000_add_token_to_tenora_tenants",
            "2024-01-01-000000_create_tenora_tenants"
        ]
    );
    assert_err_contains(t.list_tenants().await, &["is missing"]);
    assert_eq!(t.migrate_base().await.unwrap().len(), 4);
    assert!(t.list_tenants().await.unwrap().is_empty());
}

pub async fn seeds_run_on_create_and_on_demand<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    // The seed's admin user exists: projects can reference user 1.
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    conn.batch_execute("INSERT INTO projects (owner_id, name) VALUES (1, 'x')")
        .await
        .unwrap();
    drop(conn);
    // Running the seed again violates the unique email: a clear error naming the seed.
    assert_err_contains(
        t.run_tenant_seeds(&acme).await,
        &["seed `01_admin_user.sql`", "tenant `acme`"],
    );
}

pub async fn runtime_migration_folders_match_embedded<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    // Loading the same folder at run time gives the same migrations (names, checksums) as
    // embedding it, and provisions tenants the same way.
    let folder = format!(
        "{}/../tenant-schema/migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        B::NAME
    );
    let loaded = tenora::Migrations::from_dir(&folder).unwrap();
    let embedded = B::tenant_migrations();
    let pairs: Vec<_> = loaded.iter().zip(embedded.iter()).collect();
    assert_eq!(pairs.len(), embedded.len());
    for (l, e) in pairs {
        assert_eq!((l.name(), l.checksum()), (e.name(), e.checksum()));
    }
    let t = tenora_with::<B>(env.config.clone(), loaded).await;
    t.create_tenant(&id("acme"), None).await.unwrap();
    let mut conn = t.tenant_conn(&id("acme")).await.unwrap();
    assert!(B::project_names(&mut conn).await.is_empty());
    assert_err_contains(
        tenora::Migrations::from_dir("/no/such/folder"),
        &["cannot read the folder"],
    );
}

pub async fn cancelled_create_still_finishes<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let acme = id("acme");
    // Give up on the call almost at once: the creation goes on by itself.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(2),
        t.create_tenant(&acme, None),
    )
    .await;
    let mut state = None;
    for _ in 0..200 {
        state = t.tenant(&acme).await.unwrap().map(|r| r.state);
        // Not registered yet (the task has not run its first step) or still provisioning:
        // keep waiting.
        if !matches!(state, None | Some(TenantState::Provisioning)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        state,
        Some(TenantState::Active),
        "the creation must finish after the caller gave up (timed out: {})",
        gave_up.is_err()
    );
    let mut conn = t.tenant_conn(&acme).await.unwrap();
    assert!(B::project_names(&mut conn).await.is_empty());
}

/// A copy of this backend's tenant migrations folder plus one new migration, in a temp dir.
pub fn migrations_plus_one<B: TestBackend>() -> (tempfile::TempDir, tenora::Migrations) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tenant-schema/migrations")
        .join(B::NAME);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
    tenora_test_support::write_migration(
        dir.path(),
        "2024-06-01-000000_create_audit_log",
        "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, note VARCHAR(100));\n",
        "DROP TABLE audit_log;\n",
    );
    let migrations = tenora::Migrations::from_dir(dir.path()).unwrap();
    (dir, migrations)
}

pub async fn concurrent_fleet_runs_apply_each_migration_once<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let ids: Vec<TenantId> = (0..6).map(|i| id(&format!("tenant{i}"))).collect();
    for tenant in &ids {
        t.create_tenant(tenant, None).await.unwrap();
    }
    // Three "replicas" with a new migration start migrating the fleet at the same moment.
    let (_dir, newer) = migrations_plus_one::<B>();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(tenora_with::<B>(env.config.clone(), newer.clone()).await);
    }
    let runs: Vec<_> = replicas
        .into_iter()
        .map(|r| {
            tokio::spawn(async move {
                r.run_fleet(
                    None,
                    tenora::FleetOp::Migrate,
                    tenora::FleetOptions::default().concurrency(3),
                    |_| {},
                )
                .await
                .unwrap()
                .outcomes
            })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        for outcome in run.await.unwrap() {
            let names = outcome
                .result
                .unwrap_or_else(|e| panic!("{}: {e}", outcome.id));
            applied += names.len();
            assert!(
                names.iter().all(|n| n.ends_with("_create_audit_log")),
                "{names:?}"
            );
        }
    }
    assert_eq!(
        applied,
        ids.len(),
        "each tenant got the new migration exactly once"
    );
    // And now every tenant is up to date (one cheap check each).
    let again = tenora_with::<B>(env.config.clone(), newer).await;
    for outcome in again.migrate_all_tenants().await.unwrap() {
        assert!(outcome.result.unwrap().is_empty());
    }
}

pub async fn fail_fast_skips_the_rest<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let ids: Vec<TenantId> = ["a1", "b2", "c3"].into_iter().map(id).collect();
    for tenant in &ids {
        t.create_tenant(tenant, None).await.unwrap();
    }
    let (_dir, newer) = migrations_plus_one::<B>();
    let mut conn = t.tenant_conn(&ids[0]).await.unwrap();
    conn.batch_execute("CREATE TABLE audit_log (x INTEGER)")
        .await
        .unwrap();
    drop(conn);
    let t2 = tenora_with::<B>(env.config.clone(), newer).await;
    let mut seen = 0;
    let outcomes = t2
        .run_fleet(
            Some(&ids),
            tenora::FleetOp::Migrate,
            tenora::FleetOptions::default()
                .concurrency(1)
                .fail_fast(true),
            |_| seen += 1,
        )
        .await
        .unwrap()
        .outcomes;
    assert_eq!(seen, 3);
    assert!(outcomes[0].result.is_err());
    for o in &outcomes[1..] {
        assert!(matches!(o.result, Err(Error::Skipped { .. })), "{o:?}");
    }
}

fn with_limits(
    config: &tenora::Config,
    max_connections: Option<u32>,
    max_cached_tenants: usize,
    pool_idle_timeout: u64,
) -> tenora::Config {
    let limits = tenora::PoolCacheConfig {
        max_connections,
        max_cached_tenants,
        acquire_timeout: 1,
        pool_idle_timeout,
        ..tenora::PoolCacheConfig::default()
    };
    let pool = tenora::PoolConfig {
        max_size: 2,
        connection_timeout: 2,
        ..tenora::PoolConfig::default()
    };
    config.clone().pool_cache(limits).tenant_pool(pool)
}

pub async fn connection_budget_is_never_exceeded<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let setup = tenora::<B>(&env).await;
    let ids: Vec<TenantId> = (0..8).map(|i| id(&format!("b{i}"))).collect();
    for tenant in &ids {
        setup.create_tenant(tenant, None).await.unwrap();
    }
    drop(setup);
    // Too small for the administrative sessions, the base pool, migrations and one tenant.
    let base = env.config.base.pool.max_size;
    let least = tenora::BudgetPlan::minimum(B::ADMIN_CONNECTIONS, base);
    assert_err_contains(
        tenora::Tenora::<B>::builder(with_limits(&env.config, Some(least - 1), 100, 0))
            .connect()
            .await,
        &["pool_cache.max_connections", &format!("at least {least}")],
    );
    // Three connections for tenant pools, besides the slices kept for the administrative
    // sessions, the base pool and migrations.
    let budget = least - 1 + 3;
    let mut config = with_limits(&env.config, Some(budget), 100, 0);
    config.pool_cache.acquire_timeout = 2;
    let t = tenora_with::<B>(config, B::tenant_migrations()).await;
    assert_eq!(t.budget().pools, Some(3), "{}", t.budget());
    // Counted on the server, where the limit is real (SQLite has none), once the set-up's
    // connections have closed.
    let counter = env.count_tenant_connections();
    if let Some(counter) = &counter {
        counter.settle(std::time::Duration::from_secs(10));
    }
    // Sixteen tasks want connections to eight tenants at once: they wait their turn.
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (t, ids) = (t.clone(), ids.clone());
            tokio::spawn(async move {
                for round in 0..4 {
                    let tenant = &ids[(task + round) % ids.len()];
                    let mut conn = t.tenant_conn(tenant).await.unwrap_or_else(|e| {
                        panic!("task {task} round {round}, {tenant}: {e}");
                    });
                    conn.batch_execute("SELECT 1").await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = t.stats();
    if let Some(counter) = &counter {
        // A closed connection leaves the server a moment after its permit is free (MySQL
        // disconnects on a task of its own): allow one such close in flight. Without the
        // budget, this load holds 13 to 22 connections.
        let peak = counter.peak();
        assert!(
            peak <= 3 + 1,
            "{peak} tenant connections on the server, over the 3 of the budget: {stats:?}"
        );
        assert!(peak > 0, "the counter saw the load");
    }
    assert!(
        stats.evictions > 0,
        "cold tenants closed idle pools: {stats:?}"
    );
    assert!(stats.waits > 0, "tasks waited for the budget: {stats:?}");
    assert_eq!(stats.max_connections, Some(budget));
    assert_eq!(stats.budget_source, tenora::BudgetSource::Configured);

    // Every tenant connection busy: a cold tenant waits out acquire_timeout, then is told the
    // database is busy (not broken), and which wait ran out.
    let held_a = t.tenant_conn(&ids[0]).await.unwrap();
    let held_b = t.tenant_conn(&ids[0]).await.unwrap();
    let held_c = t.tenant_conn(&ids[1]).await.unwrap();
    let err = match t.tenant_conn(&ids[2]).await {
        Ok(_) => panic!("expected the budget to be used up"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            Error::Busy {
                wait: tenora::Wait::Budget,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("pool_cache.acquire_timeout"),
        "{err}"
    );
    assert_eq!(t.stats().busy, 1);
    // Administrative work has its own slice: migrations and sign-ups still go through.
    t.migrate_tenant(&ids[3]).await.unwrap();
    let late = id("b_late");
    t.create_tenant(&late, None).await.unwrap();
    t.drop_tenant(&late).await.unwrap();
    if let Some(counter) = counter {
        assert!(
            counter.stop() <= 4,
            "three pool connections and one for work"
        );
    }
    drop((held_a, held_b, held_c));
    // Released connections make room again.
    drop(t.tenant_conn(&ids[2]).await.unwrap());

    drop(t);

    // An idle connection of a pool that is also in use goes back to the budget as well: on a
    // fresh handle, b0 keeps one connection busy and one idle, b1 one busy; b2 gets b0's idle
    // one's permit.
    let t = tenora_with::<B>(
        with_limits(&env.config, Some(budget), 100, 0),
        B::tenant_migrations(),
    )
    .await;
    let busy_a = t.tenant_conn(&ids[0]).await.unwrap();
    drop(t.tenant_conn(&ids[0]).await.unwrap());
    let busy_b = t.tenant_conn(&ids[1]).await.unwrap();
    let mut third = t.tenant_conn(&ids[2]).await.unwrap_or_else(|e| {
        panic!("b0's idle connection should have made room: {e}");
    });
    third.batch_execute("SELECT 1").await.unwrap();
    drop((busy_a, busy_b, third));
}

pub async fn cached_pools_are_bounded_and_idle_ones_close<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let setup = tenora::<B>(&env).await;
    let ids: Vec<TenantId> = (0..4).map(|i| id(&format!("c{i}"))).collect();
    for tenant in &ids {
        setup.create_tenant(tenant, None).await.unwrap();
    }
    drop(setup);
    let t = tenora_with::<B>(with_limits(&env.config, None, 2, 1), B::tenant_migrations()).await;
    for tenant in &ids {
        drop(t.tenant_conn(tenant).await.unwrap());
        assert!(t.stats().cached_pools <= 2, "{:?}", t.stats());
    }
    // Evicted tenants reconnect transparently.
    let mut conn = t.tenant_conn(&ids[0]).await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    drop(conn);
    // Idle pools close after pool_idle_timeout (1 s here).
    let mut cached = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        cached = t.stats().cached_pools;
        if cached == 0 {
            break;
        }
    }
    assert_eq!(cached, 0, "{:?}", t.stats());
    // Closed means closed where it counts: the server holds no tenant connection any more.
    if let Some(counter) = env.count_tenant_connections() {
        let left = counter.wait_for(std::time::Duration::from_secs(10), |n| n == 0);
        assert_eq!(left, 0, "tenant connections left open on the server");
    }
}

/// A request as a framework-agnostic resolver sees it.
pub struct FakeRequest {
    pub tenant: Option<String>,
    pub api_key: &'static str,
    pub attached: Option<String>,
}

fn request(tenant: Option<&str>, api_key: &'static str) -> FakeRequest {
    FakeRequest {
        tenant: tenant.map(str::to_owned),
        api_key,
        attached: None,
    }
}

pub async fn resolver_validates_authorizes_and_looks_up<B: TestBackend>() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tenora::resolver::{Denied, Rejection, Resolver, TenantSource};

    let Some(env) = B::env() else { return };
    let t = tenora::<B>(&env).await;
    let acme = id("acme");
    t.create_tenant(&acme, None).await.unwrap();
    let authorized = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&authorized);
    let resolver = Resolver::builder(
        t.clone(),
        TenantSource::from_fn("the test's tenant field", |r: &FakeRequest| {
            r.tenant.clone()
        }),
    )
    .authorize(move |id, r: &FakeRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        let ok = r.api_key == "open sesame" || (id.as_ref() == "acme" && r.api_key == "acme-key");
        async move {
            if ok {
                Ok(())
            } else {
                Err(Denied::new("wrong API key"))
            }
        }
    })
    .attach(|id, r: &mut FakeRequest| r.attached = Some(id.to_string()))
    .build();

    // Resolved: the attach step ran, no connection is taken until asked for.
    let mut req = request(Some("acme"), "acme-key");
    let resolved = resolver.resolve(&mut req).await.unwrap();
    assert_eq!(resolved.id(), &acme);
    assert_eq!(req.attached.as_deref(), Some("acme"));
    let mut conn = resolved.conn().await.unwrap();
    conn.batch_execute("INSERT INTO projects (owner_id, name) VALUES (1, 'via resolver')")
        .await
        .unwrap();
    assert_eq!(B::project_names(&mut conn).await, ["via resolver"]);
    drop(conn);
    // Warm now: resolving again is a cache hit that opens nothing, and no connection is taken
    // until `conn()` is called.
    let (open, created) = (t.stats().open_connections, t.stats().pools_created);
    let acme_db = t.naming().database_name(&acme);
    let on_server = env.connection_ids(&acme_db).await;
    let again = resolver
        .resolve(&mut request(Some("acme"), "acme-key"))
        .await
        .unwrap();
    assert_eq!(t.stats().open_connections, open);
    assert_eq!(t.stats().pools_created, created);
    // The server agrees: no session was opened in between (one closing meanwhile is fine).
    if let (Some(before), Some(after)) = (on_server, env.connection_ids(&acme_db).await) {
        let opened: Vec<_> = after.iter().filter(|id| !before.contains(id)).collect();
        assert!(
            opened.is_empty(),
            "sessions opened by a warm resolve: {opened:?}"
        );
        assert!(
            !after.is_empty(),
            "the warm pool's session is on the server"
        );
    }
    drop(again);

    let status = |r: tenora::Result<tenora::resolver::Resolved<B>>| {
        Rejection::of(&r.expect_err("must not resolve")).status()
    };
    // No id, a malformed one (never reaches the authorizer), a refused one (never reaches the
    // registry), an unknown one.
    let before = authorized.load(Ordering::SeqCst);
    assert_err_contains(
        resolver.resolve(&mut request(None, "acme-key")).await,
        &["names no tenant", "the test's tenant field"],
    );
    assert_eq!(status(resolver.resolve(&mut request(None, "")).await), 400);
    for bad in ["../etc", "Acme", "acme;drop", ""] {
        assert_eq!(
            status(
                resolver
                    .resolve(&mut request(Some(bad), "open sesame"))
                    .await
            ),
            400,
            "{bad:?}"
        );
    }
    assert_eq!(authorized.load(Ordering::SeqCst), before);
    let denied = resolver
        .resolve(&mut request(Some("acme"), "globex-key"))
        .await;
    assert_err_contains(denied, &["access to tenant `acme` denied", "wrong API key"]);
    // A refused unknown tenant is 403, not 404: refusals do not reveal which tenants exist.
    assert_eq!(
        status(resolver.resolve(&mut request(Some("nobody"), "x")).await),
        403
    );
    let pools = t.stats().pools_created;
    assert_eq!(
        status(
            resolver
                .resolve(&mut request(Some("nobody"), "open sesame"))
                .await
        ),
        404
    );
    assert_eq!(
        t.stats().pools_created,
        pools,
        "no pool for unknown tenants"
    );
    // The attach step runs only for resolved requests.
    let mut unknown = request(Some("nobody"), "open sesame");
    assert!(resolver.resolve(&mut unknown).await.is_err());
    assert_eq!(unknown.attached, None);
}
