//! Tenora's benchmark on PostgreSQL: prints each figure and its ratio to the bare baseline,
//! measured side by side in one run. It creates its own databases and roles (all named with a
//! unique prefix) and drops them at the end.
//!
//! ```text
//! cargo bench -p tenora --features postgres --bench tenora            # full sizes
//! cargo bench -p tenora --features postgres --bench tenora -- --quick # small sizes
//! cargo bench -p tenora --features postgres --bench tenora -- --provision-only  # section 3
//! cargo bench -p tenora --features postgres --bench tenora -- --hit-only        # sections 1, 2
//! cargo bench -p tenora --features postgres --bench tenora -- --scale-only      # section 5
//! cargo bench -p tenora --features postgres,blocking --bench tenora -- --blocking-only  # 6
//! cargo bench -p tenora --features postgres --bench tenora -- --fleet-only     # section 4
//! cargo bench -p tenora --features postgres --bench tenora -- --servers-only   # section 7
//! cargo bench -p tenora --features postgres --bench tenora -- --cache-only     # section 8
//! cargo bench -p tenora --features postgres --bench tenora -- --pooler-only    # section 9
//! ```
//!
//! Section 7 starts three private PostgreSQL clusters (as the test helper does) and compares
//! `BENCH_SERVERS_TENANTS` (default 300) tenants on one of them with the same number spread
//! over all three: provisioning rate and a fleet migration.
//!
//! The server is `TENORA_BENCH_PG_URL`, else `TENORA_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres` (an admin URL). Sizes can be set with
//! `BENCH_MIGRATE` (default 200), `BENCH_UP_TO_DATE` (1000) and `BENCH_SCALE` (2000);
//! `BENCH_BUDGET` gives section 5 an explicit `pool_cache.max_connections` instead of the
//! derived default.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use diesel_async::SimpleAsyncConnection as _;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use tenora::{Config, EncryptionKey, FleetOp, FleetOptions, PgTenora, PoolCacheConfig, TenantId};
use tenora_test_support::{pg_connect as admin_client, write_migration};

const HIT_TENANTS: usize = 50;
/// Every object the benchmark makes starts with this; a run first removes what an interrupted
/// earlier run left behind (so do not run two benchmarks against one server at once).
const BENCH_PREFIX: &str = "tenorabench";
const TASKS: usize = 32;
/// Pool size of each of the 50 tenants' pools in the hit-path comparison, on both sides: 50
/// pools must fit under the server's `max_connections` (100 here), else both sides spend the
/// run on refused background connection attempts.
const MANY_POOL_SIZE: u32 = 1;
/// Pool size of the single-pool comparison (bb8's and Tenora's default).
const ONE_POOL_SIZE: u32 = 10;

struct Sizes {
    hit_ops: usize,
    provision: usize,
    migrate: usize,
    up_to_date: usize,
    scale: usize,
}

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            hit_ops: 100_000,
            provision: 5,
            migrate: env_size("BENCH_MIGRATE", 40),
            up_to_date: env_size("BENCH_UP_TO_DATE", 100),
            scale: env_size("BENCH_SCALE", 200),
        }
    } else {
        Sizes {
            hit_ops: 1_000_000,
            provision: 15,
            migrate: env_size("BENCH_MIGRATE", 200),
            up_to_date: env_size("BENCH_UP_TO_DATE", 1000),
            scale: env_size("BENCH_SCALE", 2000),
        }
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Counts live heap bytes, for a per-pool memory figure finer than RSS can show.
#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A tiny deterministic shuffle (xorshift), so runs are comparable.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

struct Bench {
    admin_url: String,
    prefix: String,
    config: Config,
}

impl Bench {
    async fn tenora(&self, migrations: tenora::Migrations, limits: PoolCacheConfig) -> PgTenora {
        PgTenora::builder(self.config.clone().pool_cache(limits))
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(migrations)
            .connect()
            .await
            .expect("connect")
    }

    /// Drops this run's objects, or with `all` every benchmark object (leftovers of
    /// interrupted runs).
    async fn cleanup(&self, all: bool) {
        let prefix = if all { BENCH_PREFIX } else { &self.prefix };
        tenora_test_support::drop_pg(
            &self.admin_url,
            &tenora_test_support::Made::prefixed(prefix),
        )
        .await;
    }
}

/// Waits (up to 10 s) until the server has closed the benchmark's pooled connections, so the
/// next phase has the connection slots it needs.
async fn settle(admin: &tokio_postgres::Client, prefix: &str) {
    let like = format!("{prefix}t_%");
    for attempt in 0..600 {
        if attempt == 599 {
            eprintln!("   (connections of the previous side still open after 30 s)");
        }
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1",
                &[&like],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type BarePool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A warm bb8 pool with the settings Tenora's tenant pools use.
async fn bare_pool(url: String, max_size: u32) -> BarePool {
    let pool = bb8::Pool::builder()
        .max_size(max_size)
        .test_on_check_out(false)
        .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(url))
        .await
        .unwrap();
    drop(pool.get().await.unwrap());
    pool
}

fn id(i: usize) -> TenantId {
    TenantId::new(format!("t{i}")).unwrap()
}

async fn create_tenants(t: &PgTenora, range: std::ops::Range<usize>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (t, next) = (t.clone(), Arc::clone(&next));
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                t.create_tenant(&id(i), None).await.expect("create tenant");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// `TASKS` tasks share `ops` operations; returns wall nanoseconds per operation.
/// [`create_tenants`], printing how long it took.
async fn create_tenants_timed(t: &PgTenora, range: std::ops::Range<usize>) {
    let (count, started) = (range.len(), Instant::now());
    create_tenants(t, range).await;
    println!(
        "\n(set up {count} more tenants in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

async fn run_tasks<F, Fut>(ops: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                op(i).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn tenant_migrations_plus_one() -> (tempfile::TempDir, tenora::Migrations) {
    let dir = tempfile::tempdir().unwrap();
    for m in tenant_schema::POSTGRES_MIGRATIONS.iter() {
        write_migration(dir.path(), m.name(), m.up_sql(), m.down_sql().unwrap_or(""));
    }
    write_migration(
        dir.path(),
        "2024-06-01-000000_create_audit_log",
        "CREATE TABLE audit_log (id SERIAL PRIMARY KEY);",
        "DROP TABLE audit_log;",
    );
    let migrations = tenora::Migrations::from_dir(dir.path()).unwrap();
    (dir, migrations)
}

/// Takes a connection to every tenant in `order` (32 tasks) and runs `SELECT 1` on it,
/// counting failures in `errors`.
async fn touch_in_order(t: &PgTenora, order: Arc<Vec<usize>>, errors: Arc<AtomicUsize>) {
    let tt = t.clone();
    run_tasks(order.len(), move |i| {
        let (tt, ord, errs) = (tt.clone(), Arc::clone(&order), Arc::clone(&errors));
        async move {
            match tt.tenant_conn(&id(ord[i])).await {
                Ok(mut c) => {
                    if c.batch_execute("SELECT 1").await.is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if errs.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("   error: {e}");
                    }
                }
            }
        }
    })
    .await;
}

/// Section 3: `create_tenant` (plain and templated) against the raw SQL floors.
async fn provisioning(bench: &Bench, t: &PgTenora, admin: &tokio_postgres::Client, n: usize) {
    let mut plain = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        t.create_tenant(&id(100_000 + i), None).await.unwrap();
        plain.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut floor = Vec::new();
    for i in 0..n {
        let (db, role) = (
            format!("{}t_raw{i}", bench.prefix),
            format!("{}u_raw{i}", bench.prefix),
        );
        let started = Instant::now();
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{role}\" LOGIN PASSWORD 'Bench-Password-1'"
            ))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER \"{role}\""))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC"))
            .await
            .unwrap();
        floor.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // Template path: clone a migrated template, then hand it to the tenant.
    let mut templated_config = bench.config.clone();
    templated_config.tenant.template = true;
    let templated = PgTenora::builder(templated_config)
        .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
        .connect()
        .await
        .unwrap();
    templated.prepare_template().await.unwrap();
    let mut via_template = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        templated
            .create_tenant(&id(200_000 + i), None)
            .await
            .unwrap();
        via_template.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // 20 sign-ups on the template path, one after another and all at once.
    let burst = env_size("BENCH_CONCURRENT_SIGNUPS", 20);
    let started = Instant::now();
    for i in 0..burst {
        templated
            .create_tenant(&id(300_000 + i), None)
            .await
            .unwrap();
    }
    let sequential = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let signups: Vec<_> = (0..burst)
        .map(|i| {
            let t = templated.clone();
            tokio::spawn(async move { t.create_tenant(&id(400_000 + i), None).await })
        })
        .collect();
    for signup in signups {
        signup.await.unwrap().unwrap();
    }
    let concurrent = started.elapsed().as_secs_f64();
    drop(templated);
    // Warm spares: a spare is ready before each sign-up (the refill a sign-up starts is
    // waited for between sign-ups, untimed), so this is the hand-over alone.
    let mut spare_config = bench.config.clone();
    spare_config.tenant.template = true;
    spare_config.tenant.spares = 2;
    let spared = PgTenora::builder(spare_config)
        .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let fill = spared.fill_spares().await.unwrap();
    assert_eq!(fill.ready, 2, "{fill:?}");
    let fill_each = started.elapsed().as_secs_f64() * 1e3 / fill.made.max(1) as f64;
    let mut via_spare = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        spared.create_tenant(&id(500_000 + i), None).await.unwrap();
        via_spare.push(started.elapsed().as_secs_f64() * 1e3);
        spared.fill_spares().await.unwrap();
    }
    let via_spare_spread = (
        via_spare.iter().cloned().fold(f64::INFINITY, f64::min),
        via_spare.iter().cloned().fold(0.0, f64::max),
    );
    drop(spared);
    let template_db = format!("{}t_tenora_template", bench.prefix);
    let mut clone_floor = Vec::new();
    for i in 0..n {
        let db = format!("{}t_rawclone{i}", bench.prefix);
        let started = Instant::now();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{db}\" TEMPLATE \"{template_db}\""
            ))
            .await
            .unwrap();
        clone_floor.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // The same burst as raw clones on separate sessions: how far the server itself (on these
    // cores) lets clones overlap.
    let raw_sequential = {
        let started = Instant::now();
        for i in 0..burst {
            let db = format!("{}t_rawburst{i}", bench.prefix);
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE \"{db}\" TEMPLATE \"{template_db}\""
                ))
                .await
                .unwrap();
        }
        started.elapsed().as_secs_f64()
    };
    let raw_concurrent = {
        // Sessions opened before the clock starts.
        let mut sessions = Vec::new();
        for _ in 0..burst {
            sessions.push(admin_client(&bench.admin_url).await);
        }
        let started = Instant::now();
        let clones: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let (db, template) = (
                    format!("{}t_rawburstc{i}", bench.prefix),
                    template_db.clone(),
                );
                tokio::spawn(async move {
                    session
                        .batch_execute(&format!("CREATE DATABASE \"{db}\" TEMPLATE \"{template}\""))
                        .await
                        .unwrap();
                })
            })
            .collect();
        for clone in clones {
            clone.await.unwrap();
        }
        started.elapsed().as_secs_f64()
    };
    let (plain, floor) = (median(plain), median(floor));
    let (via_template, clone_floor) = (median(via_template), median(clone_floor));
    println!("\n3. provisioning, median of {}", n);
    println!("   create_tenant, plain (role + db + lock-down + 2 migrations): {plain:.1} ms");
    println!("   raw SQL floor (CREATE ROLE + CREATE DATABASE + REVOKE):       {floor:.1} ms");
    println!("   ratio: {:.2}x", plain / floor);
    println!(
        "   create_tenant, template clone (role, clone it owns, hand-over):      {via_template:.1} ms"
    );
    println!(
        "   raw CREATE DATABASE ... TEMPLATE floor:                              {clone_floor:.1} ms"
    );
    println!(
        "   ratio: {:.2}x (target <= 1.3x); template vs plain: {:.2}x",
        via_template / clone_floor,
        via_template / plain
    );
    let via_spare = median(via_spare);
    println!(
        "   create_tenant with a warm spare ready (rename, adopt its password):  {via_spare:.1} ms \
         (min {:.1}, max {:.1}); making a spare: {fill_each:.1} ms",
        via_spare_spread.0, via_spare_spread.1
    );
    println!(
        "   ratio to the raw clone floor: {:.2}x (targets: median <= 5 ms, <= 0.3x)",
        via_spare / clone_floor
    );
    println!(
        "   {burst} template sign-ups one after another: {sequential:.2} s; all at once: \
         {concurrent:.2} s; ratio {:.2}x (target <= 0.6x)",
        concurrent / sequential
    );
    println!(
        "   the same {burst} as raw clones (own sessions): {raw_sequential:.2} s vs \
         {raw_concurrent:.2} s at once, ratio {:.2}x (what the server allows on these cores)",
        raw_concurrent / raw_sequential
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let provision_only = std::env::args().any(|a| a == "--provision-only");
    let hit_only = std::env::args().any(|a| a == "--hit-only");
    let scale_only = std::env::args().any(|a| a == "--scale-only");
    let blocking_only = std::env::args().any(|a| a == "--blocking-only");
    let fleet_only = std::env::args().any(|a| a == "--fleet-only");
    if std::env::args().any(|a| a == "--cache-only") {
        cache_section(quick).await;
        return;
    }
    if std::env::args().any(|a| a == "--servers-only") {
        let n = env_size("BENCH_SERVERS_TENANTS", if quick { 60 } else { 300 });
        servers_section(n).await;
        return;
    }
    let sizes = sizes(quick);
    let admin_url = std::env::var("TENORA_BENCH_PG_URL")
        .or_else(|_| std::env::var("TENORA_TEST_PG_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let token = format!("{:x}", std::process::id());
    let prefix = format!("{BENCH_PREFIX}{token}");
    let base_db = format!("{prefix}_base");
    let mut config = Config::postgres(&admin_url)
        .tenant_database_prefix(format!("{prefix}t_"))
        .tenant_user_prefix(format!("{prefix}u_"))
        .key(EncryptionKey::generate().to_base64().expose());
    config.base.database = Some(base_db.clone());
    // The bare pools below connect without TLS: so does Tenora here, so both sides measure the
    // same transport (set TENORA_BENCH_TLS=1 to keep the default `prefer`).
    if std::env::var_os("TENORA_BENCH_TLS").is_none() {
        config.base.sslmode = Some(tenora::TlsMode::Disable);
    }
    let bench = Bench {
        admin_url: admin_url.clone(),
        prefix,
        config,
    };
    bench.cleanup(true).await;
    admin_client(&admin_url)
        .await
        .batch_execute(&format!("CREATE DATABASE \"{base_db}\""))
        .await
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Tenora benchmark on PostgreSQL ({} mode, {cores} cores, {TASKS} tasks)",
        if quick { "quick" } else { "full" }
    );

    let t = bench
        .tenora(
            tenant_schema::POSTGRES_MIGRATIONS,
            PoolCacheConfig::default(),
        )
        .await;
    t.migrate_base().await.unwrap();

    if std::env::args().any(|a| a == "--pooler-only") {
        pooler_section(&bench, &t, if quick { 20_000 } else { 200_000 }).await;
        drop(t);
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }
    if blocking_only {
        blocking_section(&bench, &t, if quick { 1_000 } else { 5_000 }).await;
        drop(t);
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }
    if scale_only {
        scale_section(&bench, t, 0, sizes.scale).await;
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }

    if fleet_only {
        fleet_section(&bench, &t, &sizes, 0).await;
        drop(t);
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }

    // --- 3. provisioning -------------------------------------------------------------------
    let admin = admin_client(&admin_url).await;
    if !hit_only {
        provisioning(&bench, &t, &admin, sizes.provision).await;
    }
    if provision_only {
        drop(t);
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }

    // --- 1 + 2. hit path ----------------------------------------------------------------------
    create_tenants(&t, 0..HIT_TENANTS).await;
    let hit_ids: Arc<Vec<TenantId>> = Arc::new((0..HIT_TENANTS).map(id).collect());
    let url_of = |tenant: &TenantId| {
        let mut url = admin_url.rsplit_once('/').unwrap().0.to_owned();
        url.push('/');
        url.push_str(&t.naming().database_name(tenant));
        url
    };
    let tenora_get = |t: PgTenora, ids: Arc<Vec<TenantId>>, ops: usize, select: bool| {
        run_tasks(ops, move |i| {
            let (tt, ids) = (t.clone(), Arc::clone(&ids));
            async move {
                let mut c = tt.tenant_conn(&ids[i % ids.len()]).await.unwrap();
                if select {
                    c.batch_execute("SELECT 1").await.unwrap();
                }
            }
        })
    };
    let bare_get = |pools: Arc<Vec<BarePool>>, ops: usize, select: bool| {
        run_tasks(ops, move |i| {
            let pools = Arc::clone(&pools);
            async move {
                let mut c = pools[i % pools.len()].get().await.unwrap();
                if select {
                    c.batch_execute("SELECT 1").await.unwrap();
                }
            }
        })
    };
    let (ops, select_ops) = (sizes.hit_ops, sizes.hit_ops / 10);
    // Let the server finish the writes of the setup before measuring anything.
    admin.batch_execute("CHECKPOINT").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Each side in turn (the server's connection slots fit one side at a time), four rounds,
    // best round kept (the server shares the 2 cores, so single rounds are noisy). In each, a
    // first pass of each load grows the pools to what it needs (bb8 opens connections in the
    // background, which costs CPU) and the following passes are measured.
    let (mut tenora_ns, mut tenora_sel) = (f64::MAX, f64::MAX);
    let (mut one_ns, mut one_sel) = (f64::MAX, f64::MAX);
    let (mut many_ns, mut many_sel) = (f64::MAX, f64::MAX);
    // The 50-tenant side with the same per-tenant pool size as the 50 bare pools.
    let t_many = PgTenora::builder(bench.config.clone().tenant_pool(tenora::PoolConfig {
        max_size: MANY_POOL_SIZE,
        ..tenora::PoolConfig::default()
    }))
    .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
    .connect()
    .await
    .unwrap();
    // Tenora on one tenant only: the like-for-like match of one bare pool.
    let one_id: Arc<Vec<TenantId>> = Arc::new(vec![hit_ids[0].clone()]);
    let (mut single_ns, mut single_sel) = (f64::MAX, f64::MAX);
    for round in 0..4 {
        // Rotate which side goes first, so no side always runs right after setup.
        for side in (0..4).map(|k| (k + round) % 4) {
            match side {
                3 => {
                    tenora_get(t.clone(), Arc::clone(&one_id), select_ops, true).await;
                    tenora_get(t.clone(), Arc::clone(&one_id), ops, false).await;
                    single_ns =
                        single_ns.min(tenora_get(t.clone(), Arc::clone(&one_id), ops, false).await);
                    single_sel = single_sel
                        .min(tenora_get(t.clone(), Arc::clone(&one_id), select_ops, true).await);

                    t.close_all();
                }
                0 => {
                    tenora_get(t_many.clone(), Arc::clone(&hit_ids), select_ops, true).await;
                    tenora_get(t_many.clone(), Arc::clone(&hit_ids), ops, false).await;
                    tenora_ns = tenora_ns
                        .min(tenora_get(t_many.clone(), Arc::clone(&hit_ids), ops, false).await);
                    tenora_sel = tenora_sel.min(
                        tenora_get(t_many.clone(), Arc::clone(&hit_ids), select_ops, true).await,
                    );
                    t_many.close_all();
                }
                1 => {
                    // One bare pool (the issue's baseline) ...
                    let bare_one =
                        Arc::new(vec![bare_pool(url_of(&hit_ids[0]), ONE_POOL_SIZE).await]);
                    bare_get(Arc::clone(&bare_one), select_ops, true).await;
                    bare_get(Arc::clone(&bare_one), ops, false).await;
                    one_ns = one_ns.min(bare_get(Arc::clone(&bare_one), ops, false).await);
                    one_sel = one_sel.min(bare_get(Arc::clone(&bare_one), select_ops, true).await);
                }
                _ => {
                    // ... and the same 50 databases through 50 bare pools, which separates
                    // Tenora's own overhead from the server's cost of serving many databases.
                    let mut many = Vec::new();
                    for tenant in hit_ids.iter() {
                        many.push(bare_pool(url_of(tenant), MANY_POOL_SIZE).await);
                    }
                    let bare_many = Arc::new(many);
                    bare_get(Arc::clone(&bare_many), select_ops, true).await;
                    bare_get(Arc::clone(&bare_many), ops, false).await;
                    many_ns = many_ns.min(bare_get(Arc::clone(&bare_many), ops, false).await);
                    many_sel =
                        many_sel.min(bare_get(Arc::clone(&bare_many), select_ops, true).await);
                }
            }
            settle(&admin, &bench.prefix).await;
        }
    }

    drop(t_many);
    println!(
        "\n1. hit path, {HIT_TENANTS} warm tenants, {TASKS} tasks, {ops} ops \
         (pool size {MANY_POOL_SIZE} per tenant; one pool: {ONE_POOL_SIZE})"
    );
    println!("   tenant_conn + drop:              {tenora_ns:.0} ns/op");
    println!("   tenant_conn + drop, one tenant:  {single_ns:.0} ns/op");
    println!("   bare bb8 get + drop, one pool:   {one_ns:.0} ns/op");
    println!("   bare bb8 get + drop, 50 pools:   {many_ns:.0} ns/op");
    println!(
        "   ratio to one pool {:.2}x, to 50 bare pools {:.2}x (target <= 1.1x); one tenant to \
         one pool {:.2}x (target <= 1.0x)",
        tenora_ns / one_ns,
        tenora_ns / many_ns,
        single_ns / one_ns
    );

    println!("\n2. SELECT 1 throughput, {TASKS} tasks, {select_ops} ops");
    println!(
        "   tenant_conn + SELECT 1:          {:.0} ops/s",
        1e9 / tenora_sel
    );
    println!(
        "   bare bb8, one pool + SELECT 1:   {:.0} ops/s",
        1e9 / one_sel
    );
    println!(
        "   bare bb8, 50 pools + SELECT 1:   {:.0} ops/s",
        1e9 / many_sel
    );
    println!(
        "   tenant_conn + SELECT 1, one tenant: {:.0} ops/s",
        1e9 / single_sel
    );
    println!(
        "   ratio to one pool {:.2}x, to 50 bare pools {:.2}x (target >= 1.0x); one tenant to \
         one pool {:.2}x",
        one_sel / tenora_sel,
        many_sel / tenora_sel,
        one_sel / single_sel
    );

    if hit_only {
        drop(t);
        bench.cleanup(false).await;
        println!("\ncleaned up");
        return;
    }

    let total = fleet_section(&bench, &t, &sizes, HIT_TENANTS).await;

    // --- 5. scale under the default (derived) connection budget ---------------------------------
    scale_section(&bench, t, total, sizes.scale.max(total)).await;
    bench.cleanup(false).await;
    println!("\ncleaned up");
}

/// Section 5: `scale` tenants (`existing` of them made already) touched in random order by a
/// Tenora with the default config, whose budget is derived from the server.
async fn scale_section(bench: &Bench, t: PgTenora, existing: usize, scale: usize) {
    let admin_url = bench.admin_url.clone();
    create_tenants_timed(&t, existing..scale).await;
    t.close_all();
    drop(t);
    // The default config: the budget is derived from the server at connect (BENCH_BUDGET sets
    // one instead, to compare).
    let limits = PoolCacheConfig {
        max_connections: std::env::var("BENCH_BUDGET")
            .ok()
            .and_then(|b| b.parse().ok()),
        ..PoolCacheConfig::default()
    };
    let rss_before = rss_kib();
    let heap_before = HEAP.allocated();
    let t3 = bench
        .tenora(tenant_schema::POSTGRES_MIGRATIONS, limits)
        .await;
    let plan = t3.budget().clone();
    // Every client connection on the server, counted by the server.
    // Every 20 ms: each sample is a pg_stat_activity query that costs the server CPU.
    let counter = tenora_test_support::Counter::start_every(
        Duration::from_millis(20),
        tenora_test_support::Server::Postgres,
        &admin_url,
        None,
    );
    let mut order: Vec<usize> = (0..scale).collect();
    shuffle(&mut order, 0x9E37_79B9_7F4A_7C15);
    let order = Arc::new(order);
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    touch_in_order(&t3, Arc::clone(&order), Arc::clone(&errors)).await;
    let wall = started.elapsed().as_secs_f64();
    let peak = counter.stop();
    let stats = t3.stats();
    let rss_after = rss_kib();
    let heap_after = HEAP.allocated();
    let open_after = stats.open_connections;
    t3.close_all();
    // Let the pools' connection tasks notice the close and free their buffers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heap_closed = HEAP.allocated();
    // A second pass over every tenant: what stays after closing must not grow with use.
    touch_in_order(&t3, Arc::clone(&order), Arc::clone(&errors)).await;
    t3.close_all();
    tokio::time::sleep(Duration::from_millis(31000)).await;
    let heap_closed_again = HEAP.allocated();
    let server_max: String = admin_client(&admin_url)
        .await
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);
    let config = if plan.source == tenora::BudgetSource::Derived {
        "default config"
    } else {
        "BENCH_BUDGET"
    };
    println!(
        "\n5. {scale} tenants touched in random order, {TASKS} tasks, {config}, server \
         max_connections {server_max}"
    );
    println!("   {plan}");
    println!(
        "   wall {wall:.1} s, errors {} (target 0), busy {}, refused by the server {}",
        errors.load(Ordering::Relaxed),
        stats.busy,
        stats.refused_by_server
    );
    println!(
        "   peak client connections on the server, all clients (pg_stat_activity): {peak} \
         (target < {server_max})"
    );
    println!(
        "   cache: {} pools cached, {} created, {} evictions, {} budget waits",
        stats.cached_pools, stats.pools_created, stats.evictions, stats.waits
    );
    println!(
        "   RSS {} MiB -> {} MiB, {:.1} KiB per cached pool",
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) as f64 / stats.cached_pools.max(1) as f64
    );
    let pools = stats.cached_pools.max(1) as f64;
    println!(
        "   heap held by the cache: {:.1} MiB for {} pools and {open_after} open connections \
         = {:.1} KiB per cached pool; after close_all {:.1} KiB per pool remains",
        heap_after.saturating_sub(heap_before) as f64 / 1048576.0,
        stats.cached_pools,
        heap_after.saturating_sub(heap_before) as f64 / 1024.0 / pools,
        heap_closed.saturating_sub(heap_before) as f64 / 1024.0 / pools,
    );
    println!(
        "   after a second pass over all {scale} tenants, close_all and 31 s (bb8's reaper \
         period: its per-pool tasks keep a closed pool's memory until they wake): heap {:+.1} KiB \
         against the start (errors over both passes: {})",
        (heap_closed_again as f64 - heap_before as f64) / 1024.0,
        errors.load(Ordering::Relaxed)
    );
    drop(t3);
}

/// Section 6: the blocking facade's cost per query against the async API it wraps, on one
/// tenant: `ops` × (`tenant_conn` + `SELECT 1` through Diesel), by one caller and by four,
/// the two sides alternating, best of five rounds each.
#[cfg(feature = "blocking")]
async fn blocking_section(bench: &Bench, t: &PgTenora, ops: usize) {
    const CALLERS: usize = 4;
    create_tenants(t, 0..1).await;
    let tenant = id(0);
    let async_run = |callers: usize| {
        let (t, tenant) = (t.clone(), tenant.clone());
        async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..callers {
                let (t, tenant) = (t.clone(), tenant.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..ops / callers {
                        let mut c = t.tenant_conn(&tenant).await.unwrap();
                        diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut c)
                            .await
                            .unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            started.elapsed().as_nanos() as f64 / ops as f64
        }
    };
    // The facade blocks, so it runs on blocking threads (inside a task it would panic).
    let config = bench.config.clone();
    let b = tokio::task::spawn_blocking(move || {
        tenora::blocking::Tenora::connect(PgTenora::builder(config)).unwrap()
    })
    .await
    .unwrap();
    let blocking_run = |callers: usize| {
        let (b, tenant) = (b.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..callers {
                    s.spawn(|| {
                        for _ in 0..ops / callers {
                            let mut c = b.tenant_conn(&tenant).unwrap();
                            diesel::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut c)
                                .unwrap();
                        }
                    });
                }
            });
            started.elapsed().as_nanos() as f64 / ops as f64
        })
    };
    // Warm both sides' pools.
    blocking_run(CALLERS).await.unwrap();
    async_run(CALLERS).await;
    let (mut a1, mut a4, mut b1, mut b4) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..5 {
        b1 = b1.min(blocking_run(1).await.unwrap());
        a1 = a1.min(async_run(1).await);
        b4 = b4.min(blocking_run(CALLERS).await.unwrap());
        a4 = a4.min(async_run(CALLERS).await);
    }
    drop(b);
    println!("\n6. blocking facade vs async, one tenant, tenant_conn + SELECT 1, {ops} ops");
    println!("   async, 1 task:                   {:.1} µs/op", a1 / 1e3);
    println!(
        "   blocking, 1 thread:              {:.1} µs/op ({:.2}x)",
        b1 / 1e3,
        b1 / a1
    );
    println!(
        "   async, {CALLERS} tasks:                  {:.1} µs/op",
        a4 / 1e3
    );
    println!(
        "   blocking, {CALLERS} threads:             {:.1} µs/op ({:.2}x)",
        b4 / 1e3,
        b4 / a4
    );
}

#[cfg(not(feature = "blocking"))]
async fn blocking_section(_: &Bench, _: &PgTenora, _: usize) {
    println!("\n6. blocking facade: build with --features postgres,blocking");
}

/// Section 7: `n` tenants on one server vs spread over three (private clusters, trust auth,
/// no TLS on either side): provisioning rate (4 tasks creating) and a fleet migration of one
/// new migration with the default per-server concurrency.
/// Section 9: tenant traffic through PgBouncer (`TENORA_TEST_PGBOUNCER`, transaction mode)
/// against the same tenants connected directly; `ops` checkouts per measurement.
async fn pooler_section(bench: &Bench, t: &PgTenora, ops: usize) {
    use diesel::{ExpressionMethods as _, QueryDsl as _};
    use diesel_async::RunQueryDsl as _;
    use tenant_schema::schema::projects;
    use tenora_test_support::{PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};
    const TENANTS: usize = 20;
    // Two server connections per tenant database: the pooled side never needs more server
    // connections than the direct side's budget allows it.
    let Some(mut bouncer) = PgBouncer::start(
        PGBOUNCER_VAR,
        &bench.admin_url,
        &PgBouncerOptions {
            default_pool_size: 2,
            ..PgBouncerOptions::default()
        },
    ) else {
        println!("\n9. skipped: set {PGBOUNCER_VAR} to a PgBouncer 1.21+ binary");
        return;
    };
    create_tenants(t, 0..TENANTS).await;
    let ids: Arc<Vec<TenantId>> = Arc::new((0..TENANTS).map(id).collect());
    let roles: Vec<String> = ids.iter().map(|i| t.naming().user_name(i)).collect();
    bouncer.allow(&roles).await;
    // Both sides built the same way, the pooler the only difference, with the same pool
    // sizes: at most two connections per tenant, which the warm-up pass opens (a hit's cost
    // depends on finding one idle: with larger pools the side with the slower queries would
    // grow larger pools and win the hit path).
    let pool = tenora::PoolConfig {
        max_size: 2,
        ..tenora::PoolConfig::default()
    };
    let connect = |config: Config| async move {
        PgTenora::builder(config)
            .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
            .connect()
            .await
            .unwrap()
    };
    let config = bench.config.clone().tenant_pool(pool);
    let direct_side = connect(config.clone()).await;
    let pooled = connect(config.pooler(tenora::PoolerConfig::transaction(format!(
        "postgres://127.0.0.1:{}",
        bouncer.port
    ))))
    .await;
    // A checkout and drop; or a checkout and a prepared query (diesel's query builder).
    let side = |t: PgTenora, ops: usize, query: bool| {
        let ids = Arc::clone(&ids);
        run_tasks(ops, move |i| {
            let (t, ids) = (t.clone(), Arc::clone(&ids));
            async move {
                let tenant = &ids[i % ids.len()];
                let mut c = t.tenant_conn(tenant).await.unwrap();
                if query {
                    projects::table
                        .filter(projects::name.ne(tenant.as_str()))
                        .count()
                        .get_result::<i64>(&mut c)
                        .await
                        .unwrap();
                }
            }
        })
    };
    let (mut direct, mut through) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for round in 0..3 {
        for pass in 0..2 {
            let (t, into) = if (round + pass) % 2 == 0 {
                (direct_side.clone(), &mut direct)
            } else {
                (pooled.clone(), &mut through)
            };
            side(t.clone(), ops / 10, true).await; // warm: pools grown, statements prepared
            into.0.push(side(t.clone(), ops, false).await);
            into.1.push(side(t.clone(), ops / 10, true).await);
            t.close_all();
            settle(&admin_client(&bench.admin_url).await, &bench.prefix).await;
        }
    }
    let served: u64 = bouncer.transactions_per_database().await.values().sum();
    let (hit_d, hit_p) = (median(direct.0), median(through.0));
    let (query_d, query_p) = (median(direct.1), median(through.1));
    println!(
        "\n9. behind PgBouncer ({}, transaction mode, default_pool_size 2) vs direct, {TENANTS} \
         tenants, {TASKS} tasks, medians of 3 rounds",
        bouncer.version()
    );
    println!(
        "   tenant_conn + drop:           direct {hit_d:.0} ns/op, through the pooler {hit_p:.0} \
         ns/op: {:.2}x",
        hit_p / hit_d
    );
    println!(
        "   tenant_conn + prepared query: direct {:.0} ops/s, through the pooler {:.0} ops/s: \
         {:.2}x the throughput ({served} transactions counted by PgBouncer)",
        1e9 / query_d,
        1e9 / query_p,
        query_d / query_p
    );
}

async fn servers_section(n: usize) {
    use tenora::ServerConfig;
    use tenora_test_support::{PgCluster, PgOptions};
    let trust = PgOptions {
        trust: true,
        ..PgOptions::default()
    };
    let clusters: Vec<PgCluster> = (0..3)
        .map(|_| PgCluster::start_with(&trust).expect("PostgreSQL server binaries"))
        .collect();
    println!("7. {n} tenants on 1 vs 3 PostgreSQL servers (private clusters on this machine)");
    let (_dir, plus_one) = tenant_migrations_plus_one();
    let mut rows = Vec::new();
    for servers in [1usize, 3] {
        // The base database lives on the first cluster; only [servers.*] take tenants.
        let admin_url = clusters[0].admin_url();
        let base_url = format!(
            "{}/bench_base_{servers}",
            admin_url.strip_suffix("/postgres").expect("an admin URL")
        );
        admin_client(&clusters[0].admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE bench_base_{servers}"))
            .await
            .unwrap();
        let mut config = Config::postgres(base_url)
            .tenant_database_prefix(format!("s{servers}_"))
            .tenant_user_prefix(format!("s{servers}u_"))
            .key(EncryptionKey::generate().to_base64().expose());
        config.base.sslmode = Some(tenora::TlsMode::Disable);
        for (i, cluster) in clusters.iter().take(servers).enumerate() {
            let mut server = ServerConfig::url(cluster.admin_url());
            server.sslmode = Some(tenora::TlsMode::Disable);
            config = config.server(format!("s{i}"), server);
        }
        let t = PgTenora::builder(config.clone())
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
            .connect()
            .await
            .expect("connect");
        t.migrate_base().await.unwrap();
        let started = Instant::now();
        create_tenants(&t, 0..n).await;
        let provision = started.elapsed().as_secs_f64();
        drop(t);
        let t = PgTenora::builder(config)
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(plus_one.clone())
            .connect()
            .await
            .expect("connect");
        let started = Instant::now();
        let outcomes = t.migrate_all_tenants().await.unwrap();
        let migrate = started.elapsed().as_secs_f64();
        assert!(
            outcomes
                .iter()
                .all(|o| o.result.as_ref().is_ok_and(|m| m.len() == 1))
        );
        let per_server: Vec<String> = t
            .server_status()
            .await
            .unwrap()
            .iter()
            .filter(|s| s.tenants > 0)
            .map(|s| format!("{}={}", s.name, s.tenants))
            .collect();
        println!(
            "   {servers} server(s) [{}]: provisioning {:.1} tenants/s ({provision:.1} s), fleet \
             migration {migrate:.2} s ({:.1} ms per tenant)",
            per_server.join(" "),
            n as f64 / provision,
            migrate * 1e3 / n as f64
        );
        rows.push((provision, migrate));
    }
    let (one, three) = (rows[0], rows[1]);
    println!(
        "   3 servers vs 1: provisioning {:.2}x the rate, fleet migration {:.2}x as fast \
         (all clusters share this machine's cores)",
        one.0 / three.0,
        one.1 / three.1
    );
}

/// Section 8: the pool cache's own costs at 1,000 and 20,000 cached tenants, with stand-in
/// pools (no connections): hits, misses that make room, and hit latency while another task
/// evicts continuously.
async fn cache_section(quick: bool) {
    use tenora::__cache_bench::Cache;
    let ops = if quick { 200_000 } else { 1_000_000 };
    const ROUNDS: usize = 5;
    println!(
        "\n8. pool cache costs by size (stand-in pools; {ROUNDS} rounds alternating the sizes, \
         medians)"
    );
    let sizes = [1_000usize, 20_000];
    let mut caches = Vec::new();
    for size in sizes {
        let ids: Vec<TenantId> = (0..size * 2).map(id).collect();
        let cache = Arc::new(Cache::new(size));
        for tenant in &ids[..size] {
            cache.get(tenant).await;
        }
        caches.push((size, cache, ids));
    }
    // Per size: hit (any cached tenant), hit (50 hot), miss + evict; one entry per round. The
    // sizes take turns within each round, so the machine's drift (large on 2 shared cores)
    // falls on both alike.
    let mut figures = vec![(Vec::new(), Vec::new(), Vec::new()); sizes.len()];
    let per_round = ops / ROUNDS;
    for round in 0..ROUNDS {
        for (k, (size, cache, ids)) in caches.iter().enumerate() {
            let size = *size;
            // Random tenants among the cached ones (a cheap xorshift, the same sequence per
            // size and round).
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ round as u64;
            let mut next = move |n: usize| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as usize
            };
            let started = Instant::now();
            for _ in 0..per_round {
                cache.get(&ids[next(size)]).await;
            }
            figures[k]
                .0
                .push(started.elapsed().as_nanos() as f64 / per_round as f64);
            // Hits on 50 hot tenants: what the cache's size alone costs a hit.
            let started = Instant::now();
            for _ in 0..per_round {
                cache.get(&ids[next(50)]).await;
            }
            figures[k]
                .1
                .push(started.elapsed().as_nanos() as f64 / per_round as f64);
            // Misses that make room: cycling through twice as many tenants as fit, every
            // lookup misses and evicts the least recently used.
            let misses = per_round / 10;
            let started = Instant::now();
            for i in round * misses..(round + 1) * misses {
                cache.get(&ids[(size + i) % (2 * size)]).await;
            }
            figures[k]
                .2
                .push(started.elapsed().as_nanos() as f64 / misses as f64);
            // The first `size` tenants cached again for the next round's hits (untimed).
            for tenant in &ids[..size] {
                cache.get(tenant).await;
            }
        }
    }
    let mut rows = Vec::new();
    for ((size, cache, ids), (hits, hots, misses)) in caches.into_iter().zip(figures) {
        let (hit_ns, hot_ns, miss_ns) = (median(hits), median(hots), median(misses));
        // Hit latency, quiet and while another task evicts and rebuilds pools continuously:
        // the first `size` tenants cached again, the evictor taking one of them out and
        // bringing it back at a time.
        for tenant in &ids[..size] {
            cache.get(tenant).await;
        }
        let sample = |cache: Arc<Cache>, ids: Arc<Vec<TenantId>>| async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut y: u64 = 0x2545_F491_4F6C_DD1D;
            for _ in 0..100_000 {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                let tenant = &ids[(y % size as u64) as usize];
                let started = Instant::now();
                cache.get(tenant).await;
                latencies.push(started.elapsed().as_nanos() as u64);
            }
            latencies.sort_unstable();
            latencies[latencies.len() * 99 / 100]
        };
        let shared_ids = Arc::new(ids);
        // Quiet, then while evicting, three rounds each side by side: on 2 cores a single
        // p99 moves 2x between rounds, so the median of the rounds' ratios is reported.
        let (mut quiets, mut busies, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let quiet = sample(Arc::clone(&cache), Arc::clone(&shared_ids)).await;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let evictor = {
                let (cache, ids, stop) = (
                    Arc::clone(&cache),
                    Arc::clone(&shared_ids),
                    Arc::clone(&stop),
                );
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Evict a cached tenant and bring it back (a miss).
                        let tenant = &ids[i % size];
                        cache.evict(tenant);
                        cache.get(tenant).await;
                        i += 7;
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            };
            let busy = tokio::spawn(sample(Arc::clone(&cache), Arc::clone(&shared_ids)))
                .await
                .unwrap();
            stop.store(true, Ordering::Relaxed);
            evictor.await.unwrap();
            ratios.push(busy as f64 / quiet.max(1) as f64);
            quiets.push(quiet as f64);
            busies.push(busy as f64);
        }
        let spread = (
            ratios.iter().cloned().fold(f64::INFINITY, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
        );
        let (quiet, busy, ratio) = (median(quiets), median(busies), median(ratios));
        println!(
            "   {size:>6} cached: hit {hit_ns:.0} ns/op (any tenant) / {hot_ns:.0} ns/op (50 hot), \
             miss + evict {miss_ns:.0} ns/op, hit p99 {quiet:.0} ns quiet / {busy:.0} ns while \
             evicting: {ratio:.2}x (median of 3 rounds; {:.2}-{:.2}x; target <= 2x)",
            spread.0, spread.1
        );
        rows.push((hit_ns, hot_ns, miss_ns));
    }
    println!(
        "   20,000 vs 1,000: hit {:.2}x (any tenant: more memory touched) / {:.2}x (50 hot), \
         miss + evict {:.2}x (target <= 1.2x)",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1,
        rows[1].2 / rows[0].2
    );
}

/// Section 4: fleet migrations over `sizes` tenants (`existing` of them made already);
/// returns how many tenants exist afterwards.
async fn fleet_section(bench: &Bench, t: &PgTenora, sizes: &Sizes, existing: usize) -> usize {
    // --- 4. fleet migrations --------------------------------------------------------------------
    let total = sizes.up_to_date.max(sizes.migrate).max(existing);
    // Without a budget the 50 warm pools hold many connections: close them first.
    t.close_all();
    create_tenants_timed(t, existing..total).await;
    t.close_all();
    let (_dir, newer) = tenant_migrations_plus_one();
    let t2 = bench.tenora(newer, PoolCacheConfig::default()).await;
    let migrate_ids: Vec<TenantId> = (0..sizes.migrate).map(id).collect();
    let mut walls = Vec::new();
    for concurrency in [1, FleetOptions::default_concurrency()] {
        let started = Instant::now();
        let outcomes = t2
            .run_fleet(
                Some(&migrate_ids),
                FleetOp::Migrate,
                FleetOptions::default().concurrency(concurrency),
                |_| {},
            )
            .await
            .unwrap()
            .outcomes;
        let wall = started.elapsed().as_secs_f64();
        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
        walls.push((concurrency, wall, failed));
        // Re-pend the migration for the next run.
        t2.run_fleet(
            Some(&migrate_ids),
            FleetOp::Rollback(1),
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    }
    println!(
        "\n4. migrate {} tenants with one new migration",
        sizes.migrate
    );
    for (c, wall, failed) in &walls {
        println!("   concurrency {c:>2}: {wall:.2} s ({failed} failed)");
    }
    println!("   speed-up: {:.2}x", walls[0].1 / walls[1].1);
    let all: Vec<TenantId> = (0..total).map(id).collect();
    let started = Instant::now();
    let outcomes = t
        .run_fleet(
            Some(&all),
            FleetOp::Migrate,
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    let up_to_date = outcomes
        .iter()
        .filter(|o| o.result.as_ref().is_ok_and(|n| n.is_empty()))
        .count();
    println!(
        "   all up to date over {total} tenants, by the registry: {:.3} s ({up_to_date} up to \
         date, {:.3} ms each; target <= 0.5 s for 1,000)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e3 / total as f64
    );
    let started = Instant::now();
    let outcomes = t
        .run_fleet(
            Some(&all),
            FleetOp::Migrate,
            FleetOptions::default().verify(true),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    let verified = outcomes
        .iter()
        .filter(|o| o.result.as_ref().is_ok_and(|n| n.is_empty()))
        .count();
    println!(
        "   the same with --verify (a connection each): {:.2} s ({verified} up to date, {:.2} ms \
         each)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e3 / total as f64
    );
    // `tenora status --verify`: every tenant's applied versions and ledger, read from it.
    let started = Instant::now();
    let verified = t.verify_fleet_status(0).await.unwrap();
    println!(
        "   status --verify over {total} tenants (reads each database): {:.2} s ({} up to date)",
        started.elapsed().as_secs_f64(),
        verified.count(tenora::MigrationStatus::UpToDate)
    );
    // `tenora status` from the registry over 10,000 rows: the real tenants plus registry rows
    // written directly (the registry answer reads only rows; no database is behind them).
    let rows = env_size("BENCH_STATUS_ROWS", 10_000);
    let extra = rows.saturating_sub(total);
    let base_url = format!(
        "{}/{}",
        bench.admin_url.rsplit_once('/').unwrap().0,
        bench.config.base.database.as_deref().unwrap()
    );
    let base = admin_client(&base_url).await;
    let migrations = tenant_schema::POSTGRES_MIGRATIONS;
    base.batch_execute(&format!(
        "INSERT INTO tenora_tenants (id, state, created_at, updated_at, server, \
         migration_version, migration_fingerprint) \
         SELECT 'zz_status_' || g, 'active', now(), now(), 'default', '{}', '{}' \
         FROM generate_series(1, {extra}) g",
        migrations.latest_version().unwrap(),
        migrations.fingerprint()
    ))
    .await
    .unwrap();
    let mut times = Vec::new();
    let mut counted = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let status = t.fleet_status().await.unwrap();
        times.push(started.elapsed().as_secs_f64());
        counted = status.tenants.len();
    }
    println!(
        "   status over {counted} registry rows (one query): median {:.3} s of 5 (target well under 1 s)",
        median(times)
    );
    base.batch_execute("DELETE FROM tenora_tenants WHERE id LIKE 'zz_status_%'")
        .await
        .unwrap();
    drop(t2);
    total
}
