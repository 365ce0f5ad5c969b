//! The example app over real HTTP on 127.0.0.1: SQLite always, PostgreSQL too when
//! `TENORA_TEST_PG_URL` is set (required when `CI` is set).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_app::{ApiKeys, AppBackend, Settings};
use serde_json::{Value, json};
use tenora::backend::{Postgres, Sqlite};
use tenora::resolver::axum::{TenantConn, TenoraLayer};
use tenora::resolver::{Resolver, TenantSource};
use tenora::{Config, PoolConfig, TenantId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ADMIN_TOKEN: &str = "test-admin-token";

fn api_keys() -> ApiKeys {
    ApiKeys::new("a test secret of enough bytes").unwrap()
}

fn key_of(tenant: &str) -> String {
    api_keys().key_of(&TenantId::new(tenant).unwrap())
}

/// A response: status, head (status line and headers) and body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    /// A header's value (names compared without case).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Serves `app` on a random local port for the rest of the test.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Where a test's databases live, and how to remove them afterwards.
struct TestDb {
    config: Config,
    _guard: Box<dyn Send>,
}

fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::sqlite(dir.path().join("base.sqlite"))
        .tenant_database_dir(dir.path().join("tenants"));
    TestDb {
        config,
        _guard: Box::new(dir),
    }
}

mod pg {
    use super::*;
    use tenora_test_support::{Cleanup, Made, Server};

    /// A PostgreSQL config with its own base database and name prefixes, or `None` (loudly)
    /// when `TENORA_TEST_PG_URL` is unset outside CI.
    pub fn db() -> Option<TestDb> {
        let url = tenora_test_support::server_url("TENORA_TEST_PG_URL", "PostgreSQL")?;
        let token = format!("axumapp{}", tenora_test_support::unique_token());
        let mut config = Config::postgres(&url)
            .tenant_database_prefix(format!("{token}t_"))
            .tenant_user_prefix(format!("{token}u_"))
            .key(tenora::EncryptionKey::generate().to_base64().expose());
        config.base.database = Some(format!("{token}_base"));
        Some(TestDb {
            config,
            _guard: Box::new(Cleanup {
                server: Server::Postgres,
                admin_url: url,
                made: Made::prefixed(token),
            }),
        })
    }
}

async fn start_app<B: AppBackend>(db: &TestDb) -> SocketAddr {
    let settings = Settings {
        api_keys: api_keys(),
        admin_token: ADMIN_TOKEN.into(),
        metrics: None,
    };
    serve(
        axum_app::app::<B>(db.config.clone(), settings)
            .await
            .unwrap(),
    )
    .await
}

async fn create(addr: SocketAddr, tenant: &str) -> Reply {
    request(
        addr,
        "POST",
        "/admin/tenants",
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Some(json!({ "id": tenant })),
    )
    .await
}

async fn as_tenant(
    addr: SocketAddr,
    tenant: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let key = key_of(tenant);
    request(
        addr,
        method,
        path,
        &[("X-Tenant", tenant), ("X-Api-Key", &key)],
        body,
    )
    .await
}

async fn tenants_are_isolated_and_failures_are_mapped<B: AppBackend>(db: TestDb) {
    let addr = start_app::<B>(&db).await;
    assert_eq!(request(addr, "GET", "/health", &[], None).await.body, "ok");

    // The admin endpoint.
    let created = create(addr, "acme").await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["api_key"], key_of("acme"));
    assert_eq!(create(addr, "globex").await.status, 201);
    assert_eq!(create(addr, "acme").await.status, 409);
    assert_eq!(create(addr, "Not Valid").await.status, 400);
    let anonymous = request(
        addr,
        "POST",
        "/admin/tenants",
        &[],
        Some(json!({ "id": "x" })),
    )
    .await;
    assert_eq!(anonymous.status, 401);

    // Each tenant sees only its own rows.
    for (tenant, project) in [("acme", "anvils"), ("globex", "world domination")] {
        let reply = as_tenant(
            addr,
            tenant,
            "POST",
            "/projects",
            Some(json!({ "name": project })),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.json()["name"], project);
    }
    for (tenant, project) in [("acme", "anvils"), ("globex", "world domination")] {
        let reply = as_tenant(addr, tenant, "GET", "/projects", None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let names: Vec<Value> = reply.json().as_array().unwrap().clone();
        assert_eq!(names.len(), 1, "{}", reply.body);
        assert_eq!(names[0]["name"], project);
    }
    let whoami = as_tenant(addr, "globex", "GET", "/whoami", None).await;
    assert_eq!(whoami.json(), json!({ "tenant": "globex" }));

    // Failures: status and a body that names no tenant.
    let acme_key = key_of("acme");
    let nobody_key = key_of("nobody");
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers<'_>, u16, &str); 6] = [
        (&[], 400, "missing or invalid tenant id"),
        (
            &[("X-Tenant", "../../etc"), ("X-Api-Key", &acme_key)],
            400,
            "missing or invalid tenant id",
        ),
        (&[("X-Tenant", "acme")], 403, "forbidden"),
        // acme's key does not open globex
        (
            &[("X-Tenant", "globex"), ("X-Api-Key", &acme_key)],
            403,
            "forbidden",
        ),
        // without the right key, an unknown tenant is refused like a known one
        (
            &[("X-Tenant", "nobody"), ("X-Api-Key", &acme_key)],
            403,
            "forbidden",
        ),
        (
            &[("X-Tenant", "nobody"), ("X-Api-Key", &nobody_key)],
            404,
            "unknown tenant",
        ),
    ];
    for (headers, status, message) in cases {
        let reply = request(addr, "GET", "/projects", headers, None).await;
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.body);
        assert_eq!(reply.json(), json!({ "error": message }), "{headers:?}");
        for name in ["acme", "globex", "nobody", "etc"] {
            assert!(!reply.body.contains(name), "{} leaks {name}", reply.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tenants_are_isolated_and_failures_are_mapped() {
    tenants_are_isolated_and_failures_are_mapped::<Sqlite>(sqlite_db()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tenants_are_isolated_and_failures_are_mapped() {
    let Some(db) = pg::db() else { return };
    tenants_are_isolated_and_failures_are_mapped::<Postgres>(db).await;
}

async fn concurrent_requests_across_tenants<B: AppBackend>(db: TestDb, tenants: usize) {
    let addr = start_app::<B>(&db).await;
    let names: Vec<String> = (0..tenants).map(|i| format!("t{i:02}")).collect();
    for name in &names {
        assert_eq!(create(addr, name).await.status, 201);
    }
    // Every tenant writes three projects and reads them back, all at once.
    let mut tasks = tokio::task::JoinSet::new();
    for name in names.clone() {
        tasks.spawn(async move {
            for n in 0..3 {
                let reply = as_tenant(
                    addr,
                    &name,
                    "POST",
                    "/projects",
                    Some(json!({ "name": format!("{name}-{n}") })),
                )
                .await;
                assert_eq!(reply.status, 201, "{}", reply.body);
            }
            let reply = as_tenant(addr, &name, "GET", "/projects", None).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let got: Vec<String> = reply
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            let want: Vec<String> = (0..3).map(|n| format!("{name}-{n}")).collect();
            assert_eq!(got, want, "tenant {name} must see exactly its own rows");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_requests_across_50_tenants() {
    concurrent_requests_across_tenants::<Sqlite>(sqlite_db(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_requests_across_50_tenants() {
    let Some(db) = pg::db() else { return };
    concurrent_requests_across_tenants::<Postgres>(db, 50).await;
}

/// How an app tests its own queries: each test gets a tenant of its own (`TestTenant`), which
/// is dropped with it — database and user too, checked in the catalog (or on disk).
async fn queries_on_test_tenants<B: AppBackend>(db: TestDb) {
    use tenora::testing::TestTenant;
    let tenora = axum_app::start::<B>(db.config.clone()).await.unwrap();
    let (first, second) = (
        TestTenant::create(&tenora).await.unwrap(),
        TestTenant::create(&tenora).await.unwrap(),
    );
    let mut conn = first.conn().await.unwrap();
    assert!(B::list_projects(&mut conn).await.unwrap().is_empty());
    let added = B::add_project(&mut conn, "Rocket skates".into())
        .await
        .unwrap();
    let listed = B::list_projects(&mut conn).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), [added.id]);
    drop(conn);
    let mut other = second.conn().await.unwrap();
    assert!(
        B::list_projects(&mut other).await.unwrap().is_empty(),
        "isolated"
    );
    drop(other);

    let ids = [first.id().clone(), second.id().clone()];
    drop((first, second));
    for id in &ids {
        assert!(
            tenora.tenant(id).await.unwrap().is_none(),
            "{id} unregistered"
        );
        assert!(
            !tenora.tenant_database_exists(id).await.unwrap(),
            "{id}'s database dropped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queries_on_test_tenants() {
    queries_on_test_tenants::<Sqlite>(sqlite_db()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_queries_on_test_tenants() {
    let Some(db) = pg::db() else { return };
    queries_on_test_tenants::<Postgres>(db).await;
}

/// Holds a tenant connection for a while.
async fn hold(conn: TenantConn<Sqlite>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(conn);
    "held"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_pools_answer_503_and_routes_without_the_layer_500() {
    let db = sqlite_db();
    // One connection per tenant pool, and a short wait for it.
    let config = db.config.clone().tenant_pool(PoolConfig {
        max_size: 1,
        connection_timeout: 1,
        ..PoolConfig::default()
    });
    let tenora = axum_app::start::<Sqlite>(config).await.unwrap();
    let acme = tenora.tenant_id("acme").unwrap();
    tenora.create_tenant(&acme, None).await.unwrap();
    let resolver = Resolver::builder(tenora.clone(), TenantSource::header("x-tenant")).build();
    let app = Router::new()
        .route("/hold", get(hold))
        .layer(TenoraLayer::new(resolver))
        .route("/unlayered", get(hold));
    let addr = serve(app).await;

    let first =
        tokio::spawn(
            async move { request(addr, "GET", "/hold", &[("X-Tenant", "acme")], None).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The layer's default responses are plain text.
    let busy = request(addr, "GET", "/hold", &[("X-Tenant", "acme")], None).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.body, "tenant database busy, retry shortly");
    assert_eq!(busy.header("retry-after"), Some("1"), "{}", busy.head);
    assert_eq!(first.await.unwrap().body, "held");

    let unlayered = request(addr, "GET", "/unlayered", &[("X-Tenant", "acme")], None).await;
    assert_eq!(unlayered.status, 500);
    assert_eq!(unlayered.body, "internal error");
}

/// The promise of the example's README: with its default config, on a PostgreSQL that allows
/// only 40 connections, 70 tenants created and used in turn all work, and a burst of 400
/// requests (64 at a time) is answered with 200 or 503 + `Retry-After` — never a 500 — while
/// the server, which counts for itself, is never overrun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_default_config_serves_70_tenants_on_a_40_connection_server() {
    use tenora_test_support::{Counter, PgCluster, PgOptions, Server};
    let options = PgOptions {
        max_connections: Some(40),
        trust: true,
        ..PgOptions::default()
    };
    let Some(cluster) = PgCluster::start_with(&options) else {
        return;
    };
    let admin = cluster.admin_url();
    // Every client connection but the counter's own, counted by the server.
    let counter = Counter::start(Server::Postgres, &admin, None);
    // The example's own config (see main.rs): the URL and a key, nothing else.
    let (server, _) = admin.rsplit_once('/').unwrap();
    let config = Config::postgres(format!("{server}/app"))
        .key(tenora::EncryptionKey::generate().to_base64().expose());
    let addr = start_app::<Postgres>(&TestDb {
        config,
        _guard: Box::new(()),
    })
    .await;

    let names: Vec<String> = (0..70).map(|i| format!("w{i:02}")).collect();
    for name in &names {
        let created = create(addr, name).await;
        assert_eq!(created.status, 201, "create {name}: {}", created.body);
        let listed = as_tenant(addr, name, "GET", "/projects", None).await;
        assert_eq!(
            listed.status, 200,
            "GET /projects as {name}: {}",
            listed.body
        );
    }

    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut burst = tokio::task::JoinSet::new();
    let mut pick: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        let name = names[(pick % names.len() as u64) as usize].clone();
        let permit = std::sync::Arc::clone(&limit).acquire_owned().await.unwrap();
        burst.spawn(async move {
            let reply = as_tenant(addr, &name, "GET", "/projects", None).await;
            drop(permit);
            reply
        });
    }
    let (mut ok, mut busy) = (0, 0);
    while let Some(reply) = burst.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            200 => ok += 1,
            503 => {
                assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.head);
                busy += 1;
            }
            other => panic!("status {other}: {}", reply.body),
        }
    }
    assert!(ok * 10 >= 400 * 9, "{ok} of 400 answered 200 ({busy} busy)");

    let at_peak = counter.at_peak();
    let peak = counter.stop();
    let refusals = cluster.refusals();
    assert!(
        refusals.is_empty(),
        "the server refused {} connections (peak {peak}, {ok} ok, {busy} busy): {:?}; at the \
         peak: {at_peak:#?}",
        refusals.len(),
        &refusals[..refusals.len().min(5)]
    );
    println!("burst: {ok} × 200, {busy} × 503; peak {peak} client connections on the server");
    // 40 less the 3 slots PostgreSQL keeps for superusers.
    assert!(
        peak < 37,
        "{peak} client connections on a server that allows 37"
    );
    assert!(peak > 10, "the counter saw the load: {peak}");
}

/// The value of the Prometheus sample `series` (name with its labels, as rendered), or 0.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// The example binary in its own process (its own metrics recorder), on SQLite: `/metrics`
/// counts what the requests did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_requests_did() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_axum-app"))
        .env("APP_DATA_DIR", dir.path())
        .env("APP_ADDR", "127.0.0.1:0")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("APP_SECRET", "a test secret of enough bytes")
        .env("APP_DB_PREFIX", "m_")
        .env("RUST_LOG", "warn")
        .env_remove("APP_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the example");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let child = Kill(child);
    let addr: SocketAddr = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("axum-app listening on http://")
                .map(|a| a.parse().unwrap())
        })
        .expect("the example prints its address");

    assert_eq!(create(addr, "acme").await.status, 201);
    assert!(
        dir.path().join("tenants/m_acme.sqlite").is_file(),
        "APP_DB_PREFIX is used"
    );
    assert_eq!(create(addr, "acme").await.status, 409);
    for _ in 0..3 {
        assert_eq!(
            as_tenant(addr, "acme", "GET", "/projects", None)
                .await
                .status,
            200
        );
    }
    let wrong_key = request(
        addr,
        "GET",
        "/projects",
        &[("X-Tenant", "acme"), ("X-Api-Key", "nope")],
        None,
    )
    .await;
    assert_eq!(wrong_key.status, 403);
    assert_eq!(
        as_tenant(addr, "nobody", "GET", "/whoami", None)
            .await
            .status,
        404
    );

    let reply = request(addr, "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let m = &reply.body;
    let resolved = |outcome: &str, status: &str| {
        sample(
            m,
            &format!("tenora_resolver_requests_total{{outcome=\"{outcome}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(resolved("ok", "200"), 3.0, "{m}");
    assert_eq!(resolved("forbidden", "403"), 1.0, "{m}");
    assert_eq!(resolved("not_found", "404"), 1.0, "{m}");
    let creations = |outcome: &str| {
        sample(
            m,
            &format!("tenora_tenant_creations_total{{outcome=\"{outcome}\",step=\"none\"}}"),
        )
    };
    assert_eq!(creations("ok"), 1.0, "{m}");
    assert_eq!(creations("exists"), 1.0, "{m}");
    assert_eq!(
        sample(m, "tenora_tenant_creation_seconds_count{outcome=\"ok\"}"),
        1.0,
        "{m}"
    );
    // The tenant's migrations ran once, at creation; the base's at start.
    assert_eq!(
        sample(
            m,
            "tenora_migration_runs_total{database=\"tenant\",op=\"up\",outcome=\"ok\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        sample(
            m,
            "tenora_migrations_applied_total{database=\"base\",op=\"up\"}"
        ) >= 1.0
    );
    // The pool cache, published on scrape: one pool, built on the first request, then hits.
    assert_eq!(sample(m, "tenora_cached_pools"), 1.0, "{m}");
    assert_eq!(sample(m, "tenora_pools_created_total"), 1.0, "{m}");
    assert!(sample(m, "tenora_pool_hits_total") >= 2.0, "{m}");
    assert!(
        !m.contains("acme"),
        "no tenant ids in labels by default: {m}"
    );
    drop(child);
}

/// `ops` tenant requests (`GET /projects`), `at_once` at a time, over `tenants` round-robin;
/// returns the failed ones (status and body).
async fn burst(addr: SocketAddr, tenants: &[String], ops: usize, at_once: usize) -> Vec<String> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tenants = std::sync::Arc::new(tenants.to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..at_once {
        let (next, tenants) = (next.clone(), tenants.clone());
        tasks.spawn(async move {
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    return failed;
                }
                let tenant = &tenants[i % tenants.len()];
                let reply = as_tenant(addr, tenant, "GET", "/projects", None).await;
                if reply.status != 200 {
                    failed.push(format!("{tenant}: {} {}", reply.status, reply.body));
                }
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failed.extend(done.unwrap());
    }
    failed
}

/// Behind PgBouncer 1.25.2 in transaction mode (`APP_POOLER_URL`): 2,000 requests over 50
/// tenants and 1,000 over 5 of them, 64 at a time, with 0 errors, the tenant traffic counted
/// by PgBouncer itself; then PgBouncer restarts and the next 500 requests have 0 errors too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_requests_through_pgbouncer_in_transaction_mode() {
    use tenora_test_support::{PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};
    let Some(mut db) = pg::db() else { return };
    let url = db.config.base.url.as_ref().unwrap().expose().to_owned();
    // One server connection per tenant database: 50 of them fit the test server's 100 slots,
    // which other tests use at the same time (the library's pooler test runs several per
    // database, so statements move between server connections there).
    let Some(mut bouncer) = PgBouncer::start(
        PGBOUNCER_VAR,
        &url,
        &PgBouncerOptions {
            default_pool_size: 1,
            ..PgBouncerOptions::default()
        },
    ) else {
        return;
    };
    db.config = db
        .config
        .clone()
        .pooler(tenora::PoolerConfig::transaction(format!(
            "postgres://127.0.0.1:{}",
            bouncer.port
        )));
    let addr = start_app::<Postgres>(&db).await;
    let names: Vec<String> = (0..50).map(|i| format!("b{i:02}")).collect();
    for name in &names {
        assert_eq!(create(addr, name).await.status, 201);
    }
    let roles: Vec<String> = names
        .iter()
        .map(|n| format!("{}{n}", db.config.tenant.user_prefix))
        .collect();
    bouncer.allow(&roles).await;

    let no_failures = |failed: Vec<String>, during: &str| {
        assert!(
            failed.is_empty(),
            "{during}: {} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    };
    no_failures(burst(addr, &names, 2_000, 64).await, "50 tenants");
    no_failures(burst(addr, &names[..5], 1_000, 64).await, "5 tenants");
    let stats = bouncer.transactions_per_database().await;
    for name in &names {
        let database = format!("{}{name}", db.config.tenant.database_prefix);
        assert!(
            stats.get(&database).is_some_and(|&n| n > 0),
            "{database} not served by PgBouncer: {stats:?}"
        );
    }

    bouncer.restart();
    no_failures(burst(addr, &names, 500, 64).await, "after the restart");
}
