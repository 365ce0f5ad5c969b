//! Tenants on several database servers: placement by weight, explicit placement, draining,
//! isolation, fleet runs over every server, one server down, `server_status`, and the upgrade
//! of a registry made before the `server` column. Counts are read from each server's catalog
//! (or the files on disk for SQLite), not from Tenora's registry.

use diesel::QueryableByName;
use diesel_async::RunQueryDsl as _;
use tenora::{Config, ServerConfig, TenantId, TenantOptions, Tenora};

use crate::support::assert_err_contains;
use crate::support::backends::{TestBackend, tenora_with};

/// Creates `n` tenants named `<prefix><i>` with default placement; returns their ids.
async fn create_many<B: TestBackend>(t: &Tenora<B>, prefix: &str, n: usize) -> Vec<TenantId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = t.tenant_id(&format!("{prefix}{i}")).unwrap();
        t.create_tenant(&id, None).await.unwrap();
        ids.push(id);
    }
    ids
}

/// Tenants per server name as the registry records them.
async fn placed<B: TestBackend>(t: &Tenora<B>) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for record in t.list_tenants().await.unwrap() {
        *counts.entry(record.server).or_default() += 1;
    }
    counts
}

/// A registry made by the previous release (no `server` column) with tenants in it: Tenora
/// says which migration is missing; the shipped migration upgrades it and every tenant keeps
/// working, placed on the default server.
pub async fn upgrade_from_a_registry_without_servers<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await;
    let ids = create_many(&t, "old", 2).await;
    // Back to the previous release's registry: its last migration is the token column.
    let reverted = t.rollback_base(2).await.unwrap();
    assert_eq!(
        reverted,
        [
            "2026-12-04-000000_add_migration_state_to_tenora_tenants",
            "2026-12-03-000000_add_server_to_tenora_tenants"
        ]
    );
    t.close_all();
    assert_err_contains(
        t.list_tenants().await,
        &["no `server` column", "registry_server_migration_sql"],
    );
    // The shipped base migrations bring it up to date.
    assert_eq!(
        t.migrate_base().await.unwrap(),
        [
            "2026-12-03-000000_add_server_to_tenora_tenants",
            "2026-12-04-000000_add_migration_state_to_tenora_tenants"
        ]
    );
    for record in t.list_tenants().await.unwrap() {
        assert_eq!(record.server, tenora::DEFAULT_SERVER, "{record:?}");
        assert_eq!(record.migration_fingerprint, None, "{record:?}");
    }
    // Their migration state is unknown until a run records it.
    let status = t.fleet_status().await.unwrap();
    assert_eq!(status.count(tenora::MigrationStatus::Unrecorded), 2);
    for id in &ids {
        let mut conn = t.tenant_conn(id).await.unwrap();
        assert!(B::project_names(&mut conn).await.len() <= 10);
    }
    let report = t.migrate_all_tenants().await.unwrap();
    assert!(report.iter().all(|o| o.result.is_ok()), "{report:?}");
    let status = t.fleet_status().await.unwrap();
    assert_eq!(status.count(tenora::MigrationStatus::UpToDate), 2);
    for id in &ids {
        t.drop_tenant(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_upgrade_from_a_registry_without_servers() {
    upgrade_from_a_registry_without_servers::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_upgrade_from_a_registry_without_servers() {
    upgrade_from_a_registry_without_servers::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_upgrade_from_a_registry_without_servers() {
    upgrade_from_a_registry_without_servers::<tenora::backend::Mysql>().await
}

/// Config errors name the server's table and key.
#[test]
fn server_tables_are_checked() {
    let base = || Config::sqlite("base.sqlite");
    let err = |config: Config| config.validate().unwrap_err().to_string();
    let e = err(base().server("Bad Name", ServerConfig::sqlite_folder("x")));
    assert!(e.contains("servers.Bad Name"), "{e}");
    let e = err(base().server("b", ServerConfig::placement_only()));
    assert!(e.contains("servers.b.path"), "{e}");
    let e = err(base().server("b", ServerConfig::sqlite_folder("x").weight(0)));
    assert!(e.contains("servers.b.weight"), "{e}");
    let e = err(base().server(tenora::DEFAULT_SERVER, ServerConfig::sqlite_folder("x")));
    assert!(e.contains("servers.default") && e.contains("[base]"), "{e}");
    let e = err(Config::postgres("postgres://u@h/db").server("b", ServerConfig::placement_only()));
    assert!(e.contains("servers.b.url"), "{e}");
    let toml = r#"
        [base]
        client = "sqlite"
        database = "base.sqlite"
        [servers.b]
        path = "tenants-b"
        weight = 3
        accept_new_tenants = false
        [servers.c]
        path = "tenants-c"
        colour = "blue"
    "#;
    let e = Config::from_toml(toml).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    let config = Config::from_toml(&toml.replace("colour = \"blue\"", "")).unwrap();
    assert_eq!(config.server_names(), ["default", "b", "c"]);
    assert_eq!(config.servers["b"].weight, 3);
    assert!(!config.servers["b"].accept_new_tenants);
}

/// SQLite: a server is a folder of tenant files. 12 tenants over weights 1:2 land 4:8, each
/// file in its server's folder; explicit placement and draining hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_servers_are_folders() {
    let env = tenora::backend::Sqlite::env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let config = env
        .config
        .clone()
        .server("a", ServerConfig::sqlite_folder(&a))
        .server("b", ServerConfig::sqlite_folder(&b).weight(2))
        .server(
            "c",
            ServerConfig::sqlite_folder(&c).accept_new_tenants(false),
        );
    for folder in [&a, &b, &c] {
        std::fs::create_dir_all(folder).unwrap();
    }
    let t = tenora_with::<tenora::backend::Sqlite>(config, tenant_schema::SQLITE_MIGRATIONS).await;
    let ids = create_many(&t, "s", 12).await;
    let files = |folder: &std::path::Path| {
        std::fs::read_dir(folder)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sqlite"))
            .count()
    };
    assert_eq!((files(&a), files(&b), files(&c)), (4, 8, 0));
    let pinned = t.tenant_id("pinned").unwrap();
    let record = t
        .create_tenant_with(&pinned, TenantOptions::default().server("a"))
        .await
        .unwrap();
    assert_eq!(record.server, "a");
    assert_eq!(files(&a), 5);
    let drained = t.tenant_id("drained").unwrap();
    assert_err_contains(
        t.create_tenant_with(&drained, TenantOptions::default().server("c"))
            .await,
        &["servers.c.accept_new_tenants", "draining"],
    );
    assert_err_contains(
        t.create_tenant_with(&drained, TenantOptions::default().server("nowhere"))
            .await,
        &["unknown server `nowhere`", "default, a, b, c"],
    );
    assert!(t.tenant(&drained).await.unwrap().is_none());
    for id in ids.iter().chain([&pinned]) {
        t.drop_tenant(id).await.unwrap();
    }
    assert_eq!((files(&a), files(&b)), (0, 0));
}

/// `[servers.default]` alone: its budget and its drain apply to the base database's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_server_takes_its_own_settings() {
    let env = tenora::backend::Sqlite::env().unwrap();
    let config = env.config.clone().server(
        tenora::DEFAULT_SERVER,
        ServerConfig::placement_only()
            .max_connections(40)
            .accept_new_tenants(false),
    );
    let t = tenora_with::<tenora::backend::Sqlite>(config, tenant_schema::SQLITE_MIGRATIONS).await;
    assert_eq!(t.budget().max_connections, Some(40));
    let id = t.tenant_id("refused").unwrap();
    assert_err_contains(
        t.create_tenant(&id, None).await,
        &["no server accepts new tenants"],
    );
    assert!(t.tenant(&id).await.unwrap().is_none());
    assert!(!t.tenant_database_exists(&id).await.unwrap());
}

/// A row on a server the config no longer lists: every use names the server, nothing is
/// guessed or dropped elsewhere; listing the server again brings the tenant back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_on_an_unlisted_server_is_named_not_guessed() {
    let env = tenora::backend::Sqlite::env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let with_c = env
        .config
        .clone()
        .server(tenora::DEFAULT_SERVER, ServerConfig::placement_only())
        .server("c", ServerConfig::sqlite_folder(&c));
    let t =
        tenora_with::<tenora::backend::Sqlite>(with_c.clone(), tenant_schema::SQLITE_MIGRATIONS)
            .await;
    let gone = t.tenant_id("gone").unwrap();
    t.create_tenant_with(&gone, TenantOptions::default().server("c"))
        .await
        .unwrap();
    drop(t);
    // The same registry, without [servers.c].
    let t = tenora_with::<tenora::backend::Sqlite>(
        env.config.clone(),
        tenant_schema::SQLITE_MIGRATIONS,
    )
    .await;
    assert_err_contains(
        t.tenant_conn(&gone).await,
        &["unknown server `c`", "[servers.c]"],
    );
    assert_err_contains(t.drop_tenant(&gone).await, &["unknown server `c`"]);
    assert!(t.tenant_database_exists(&gone).await.is_ok());
    let health = t.check().await.unwrap();
    assert!(
        health
            .problems
            .iter()
            .any(|p| matches!(p, tenora::Problem::UnknownServer { server, .. } if server == "c")),
        "{health:?}"
    );
    let status = t.server_status().await.unwrap();
    let c_status = status.iter().find(|s| s.name == "c").unwrap();
    assert!(
        !c_status.configured && c_status.tenants == 1,
        "{c_status:?}"
    );
    // Its file is untouched; with [servers.c] back, the tenant works and drops.
    assert!(std::fs::read_dir(&c).unwrap().count() > 0);
    drop(t);
    let t = tenora_with::<tenora::backend::Sqlite>(with_c, tenant_schema::SQLITE_MIGRATIONS).await;
    // The refused drop changed nothing: the tenant is still active.
    let mut conn = t.tenant_conn(&gone).await.unwrap();
    assert!(
        tenora::backend::Sqlite::project_names(&mut conn)
            .await
            .len()
            <= 10
    );
    drop(conn);
    t.drop_tenant(&gone).await.unwrap();
    assert!(!t.tenant_database_exists(&gone).await.unwrap());
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use crate::support::backends::{admin_client, pg_url};
    use tenora::backend::Postgres;
    use tenora_test_support::PgCluster;

    /// Databases with `prefix` on the cluster at `admin_url`, from its catalog.
    async fn databases(admin_url: &str, prefix: &str) -> Vec<String> {
        let client = admin_client(admin_url).await;
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) \
                 ORDER BY 1",
                &[&prefix],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    #[derive(QueryableByName)]
    struct Where {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        port: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        db: String,
    }

    /// Three private clusters beside the default server: 30 tenants spread 10:20 over
    /// weights 1:2, nothing on a draining server or on the unlisted default, explicit
    /// placement, each tenant's connections reach its own cluster, fleet runs over all three,
    /// and with one cluster stopped its tenants fail naming it while the others succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tenants_spread_over_three_clusters() {
        let Some(url) = pg_url() else { return };
        let env = crate::support::backends::pg_env_at(&url);
        // scram-sha-256 clusters: tenants log in with their own passwords.
        let (Some(a), Some(b), Some(c)) =
            (PgCluster::start(), PgCluster::start(), PgCluster::start())
        else {
            return;
        };
        let prefix = env.config.tenant.database_prefix.clone();
        let with = |c_accepts: bool| {
            env.config
                .clone()
                .server("a", ServerConfig::url(a.admin_url()))
                .server("b", ServerConfig::url(b.admin_url()).weight(2))
                .server(
                    "c",
                    ServerConfig::url(c.admin_url()).accept_new_tenants(c_accepts),
                )
        };
        // First, c takes two tenants (explicitly); then the config drains it.
        let setup = tenora_with::<Postgres>(with(true), tenant_schema::POSTGRES_MIGRATIONS).await;
        for name in ["old0", "old1"] {
            let id = setup.tenant_id(name).unwrap();
            let record = setup
                .create_tenant_with(&id, TenantOptions::default().server("c"))
                .await
                .unwrap();
            assert_eq!(record.server, "c");
        }
        drop(setup);
        let t = tenora_with::<Postgres>(with(false), tenant_schema::POSTGRES_MIGRATIONS).await;
        let ids = create_many(&t, "w", 30).await;
        let on = |cluster: &PgCluster| {
            let url = cluster.admin_url();
            let prefix = prefix.clone();
            async move { databases(&url, &prefix).await.len() }
        };
        assert_eq!(
            (on(&a).await, on(&b).await, on(&c).await),
            (10, 20, 2),
            "tenants per cluster, from each catalog"
        );
        assert!(
            databases(&url, &prefix).await.is_empty(),
            "nothing on the default server"
        );
        let counts = placed(&t).await;
        assert_eq!(counts.get("a"), Some(&10));
        assert_eq!(counts.get("b"), Some(&20));

        // Explicit placement, and a draining server refuses it.
        let pinned = t.tenant_id("pinned").unwrap();
        t.create_tenant_with(&pinned, TenantOptions::default().server("b"))
            .await
            .unwrap();
        assert_eq!(on(&b).await, 21);
        let refused = t.tenant_id("refused").unwrap();
        assert_err_contains(
            t.create_tenant_with(&refused, TenantOptions::default().server("c"))
                .await,
            &["servers.c.accept_new_tenants"],
        );

        // Each tenant's connection reaches its own cluster and database.
        for (id, cluster) in [(&ids[0], &a), (&pinned, &b)] {
            let mut conn = t.tenant_conn(id).await.unwrap();
            let here: Where = diesel::sql_query(
                "SELECT inet_server_port() AS port, current_database()::text AS db",
            )
            .get_result(&mut conn)
            .await
            .unwrap();
            let record = t.tenant(id).await.unwrap().unwrap();
            assert_eq!(here.port, i32::from(cluster.port), "{record:?}");
            assert_eq!(here.db, t.naming().database_name(id));
        }
        // A tenant's role exists only on its own cluster: another cluster refuses it.
        let role = t.naming().user_name(&ids[0]);
        let c_client = admin_client(&c.admin_url()).await;
        let roles = c_client
            .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .unwrap();
        assert!(roles.is_empty());

        // Fleet runs over all three.
        let report = t.rollback_all_tenants(1).await.unwrap();
        assert_eq!(report.len(), 33);
        assert!(
            report
                .iter()
                .all(|o| o.result.as_ref().is_ok_and(|n| n.len() == 1)),
            "{report:?}"
        );
        let report = t.migrate_all_tenants().await.unwrap();
        assert!(
            report
                .iter()
                .all(|o| o.result.as_ref().is_ok_and(|n| n.len() == 1)),
            "{report:?}"
        );

        let status = t.server_status().await.unwrap();
        let names: Vec<_> = status
            .iter()
            .map(|s| (s.name.as_str(), s.tenants, s.reachable))
            .collect();
        assert_eq!(
            names,
            [
                ("default", 0, true),
                ("a", 10, true),
                ("b", 21, true),
                ("c", 2, true)
            ]
        );
        assert!(t.check().await.unwrap().is_healthy());

        // One cluster down: its tenants fail, naming it; the others succeed.
        t.close_all();
        b.stop();
        let report = t.rollback_all_tenants(1).await.unwrap();
        let (failed, ok): (Vec<_>, Vec<_>) = report.iter().partition(|o| o.result.is_err());
        assert_eq!((failed.len(), ok.len()), (21, 12));
        for outcome in &failed {
            let e = outcome.result.as_ref().unwrap_err().to_string();
            assert!(e.contains("on server `b`"), "{e}");
        }
        let status = t.server_status().await.unwrap();
        let b_status = status.iter().find(|s| s.name == "b").unwrap();
        assert!(
            !b_status.reachable && b_status.error.is_some(),
            "{b_status:?}"
        );
        assert!(status.iter().filter(|s| s.name != "b").all(|s| s.reachable));
        let health = t.check().await.unwrap();
        assert!(
            health
                .problems
                .iter()
                .any(|p| matches!(p, tenora::Problem::Unreachable { server, .. } if server == "b")),
            "{health:?}"
        );
        // The private clusters go with their tenants; the env drops the base database.
    }
}

#[cfg(feature = "mysql")]
mod my {
    use mysql_async::prelude::Queryable as _;

    use super::*;
    use crate::support::backends::{mysql_admin, mysql_url};
    use tenora::backend::Mysql;
    use tenora_test_support::MariaDbServer;

    /// Databases with `prefix` on the server at `admin_url`, from its catalog.
    async fn databases(admin_url: &str, prefix: &str) -> Vec<String> {
        let mut conn = mysql_admin(admin_url).await;
        let names: Vec<String> = conn
            .exec(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
                 WHERE LEFT(SCHEMA_NAME, CHAR_LENGTH(?)) = ? ORDER BY 1",
                (prefix, prefix),
            )
            .await
            .unwrap();
        let _ = conn.disconnect().await;
        names
    }

    #[derive(QueryableByName)]
    struct Port {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        port: i64,
    }

    /// The shared MariaDB and a private one started by the test: 6 tenants over weights 1:2
    /// land 2:4 (read from each server's catalog), explicit placement holds, and each
    /// tenant's connections reach its own server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tenants_spread_over_two_mariadb_servers() {
        let Some(url) = mysql_url() else { return };
        let env = crate::support::backends::mysql_env_at(&url);
        let Some(b) = MariaDbServer::start(100) else {
            return;
        };
        let prefix = env.config.tenant.database_prefix.clone();
        let config = env
            .config
            .clone()
            .server(tenora::DEFAULT_SERVER, ServerConfig::placement_only())
            .server("b", ServerConfig::url(b.admin_url()).weight(2));
        let t = tenora_with::<Mysql>(config, tenant_schema::MYSQL_MIGRATIONS).await;
        let ids = create_many(&t, "m", 6).await;
        assert_eq!(
            (
                databases(&url, &prefix).await.len(),
                databases(&b.admin_url(), &prefix).await.len()
            ),
            (2, 4),
            "tenants per server, from each catalog"
        );
        let pinned = t.tenant_id("pinned").unwrap();
        t.create_tenant_with(&pinned, TenantOptions::default().server("b"))
            .await
            .unwrap();
        assert_eq!(databases(&b.admin_url(), &prefix).await.len(), 5);
        let mut conn = t.tenant_conn(&pinned).await.unwrap();
        let here: Port = diesel::sql_query("SELECT CAST(@@port AS SIGNED) AS port")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(here.port, i64::from(b.port));
        drop(conn);
        let report = t.rollback_all_tenants(1).await.unwrap();
        assert!(report.iter().all(|o| o.result.is_ok()), "{report:?}");
        let report = t.migrate_all_tenants().await.unwrap();
        assert!(report.iter().all(|o| o.result.is_ok()), "{report:?}");
        assert!(t.check().await.unwrap().is_healthy());
        for id in ids.iter().chain([&pinned]) {
            t.drop_tenant(id).await.unwrap();
        }
        assert!(databases(&b.admin_url(), &prefix).await.is_empty());
        assert!(databases(&url, &prefix).await.is_empty());
    }
}
