//! Fleet status from the registry, and up-to-date tenants that cost no connection: after a
//! partial run, with an edited (drifted) migration, with a binary older than the fleet, and
//! with a tenant made unreachable behind Tenora's back (skipped without `verify`, failing
//! with it).

use diesel_async::SimpleAsyncConnection as _;
use tenora::{FleetOp, FleetOptions, MigrationStatus, Migrations, TenantId, Tenora};

use crate::support::backends::{Env, TestBackend, tenora_with};

/// `base`'s migrations written to a folder, with `edit` applied to the list first.
pub(crate) fn migrations_like(
    base: &Migrations,
    edit: impl FnOnce(&mut Vec<(String, String, String)>),
) -> (tempfile::TempDir, Migrations) {
    let mut all: Vec<(String, String, String)> = base
        .iter()
        .map(|m| {
            (
                m.name().to_owned(),
                m.up_sql().to_owned(),
                m.down_sql().unwrap_or("").to_owned(),
            )
        })
        .collect();
    edit(&mut all);
    let dir = tempfile::tempdir().unwrap();
    for (name, up, down) in &all {
        tenora_test_support::write_migration(dir.path(), name, up, down);
    }
    let migrations = Migrations::from_dir(dir.path()).unwrap();
    (dir, migrations)
}

fn statuses<B: TestBackend>(status: &tenora::FleetStatus) -> Vec<(String, MigrationStatus)> {
    status
        .tenants
        .iter()
        .map(|t| (t.id.to_string(), t.status))
        .collect()
}

/// Makes tenant `id`'s database refuse connections (`on = false`) or accept them again, by
/// the server's own means: SQLite renames its file, PostgreSQL turns `ALLOW_CONNECTIONS` off,
/// MySQL locks the tenant's account.
async fn reachable<B: TestBackend>(env: &Env, t: &Tenora<B>, id: &TenantId, on: bool) {
    let naming = t.naming();
    match B::NAME {
        "sqlite" => {
            let dir = env.config.root.join(&env.config.tenant.database_dir);
            let file = dir.join(naming.database_name(id));
            let away = dir.join(format!("{}.away", naming.database_name(id)));
            let (from, to) = if on { (away, file) } else { (file, away) };
            std::fs::rename(from, to).unwrap();
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = crate::support::backends::pg_url().unwrap();
            crate::support::backends::admin_client(&url)
                .await
                .batch_execute(&format!(
                    "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {on}",
                    naming.database_name(id)
                ))
                .await
                .unwrap();
        }
        #[cfg(feature = "mysql")]
        "mysql" => {
            use mysql_async::prelude::Queryable as _;
            let url = crate::support::backends::mysql_url().unwrap();
            let mut conn = crate::support::backends::mysql_admin(&url).await;
            conn.query_drop(format!(
                "ALTER USER '{}'@'%' ACCOUNT {}",
                naming.user_name(id),
                if on { "UNLOCK" } else { "LOCK" }
            ))
            .await
            .unwrap();
            let _ = conn.disconnect().await;
        }
        other => panic!("no way to make a {other} tenant unreachable"),
    }
}

/// The ledger rows (version, checksum) in tenant `id`'s database, read with the server's own
/// client (not Tenora's).
async fn ledger_of<B: TestBackend>(
    env: &Env,
    t: &Tenora<B>,
    id: &TenantId,
) -> Vec<(String, String)> {
    let database = t.naming().database_name(id);
    let sql = format!(
        "SELECT version, checksum FROM {} ORDER BY version",
        tenora::LEDGER_TABLE
    );
    match B::NAME {
        "sqlite" => {
            use diesel::{Connection as _, RunQueryDsl as _};
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                version: String,
                #[diesel(sql_type = diesel::sql_types::Text)]
                checksum: String,
            }
            let path = env
                .config
                .root
                .join(&env.config.tenant.database_dir)
                .join(&database);
            let mut conn =
                diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
            diesel::sql_query(sql)
                .load::<Row>(&mut conn)
                .unwrap()
                .into_iter()
                .map(|r| (r.version, r.checksum))
                .collect()
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = crate::support::backends::pg_url().unwrap();
            let url = format!("{}/{database}", url.rsplit_once('/').unwrap().0);
            let client = crate::support::backends::admin_client(&url).await;
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        }
        #[cfg(feature = "mysql")]
        "mysql" => {
            use mysql_async::prelude::Queryable as _;
            let url = crate::support::backends::mysql_url().unwrap();
            let mut conn = crate::support::backends::mysql_admin(&url).await;
            let rows: Vec<(String, String)> = conn
                .query(format!(
                    "SELECT version, checksum FROM `{database}`.{} ORDER BY version",
                    tenora::LEDGER_TABLE
                ))
                .await
                .unwrap();
            let _ = conn.disconnect().await;
            rows
        }
        other => panic!("no ledger reader for {other}"),
    }
}

pub async fn status_skips_and_drift<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let t = tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await;
    let ids: Vec<TenantId> = ["sa", "sb", "sc"]
        .iter()
        .map(|n| t.tenant_id(n).unwrap())
        .collect();
    for id in &ids {
        t.create_tenant(id, None).await.unwrap();
    }
    let latest = B::tenant_migrations().latest_version().unwrap().to_owned();
    // Every migration Tenora applied is in the tenant's ledger with this binary's checksum.
    let expected: Vec<(String, String)> = B::tenant_migrations()
        .iter()
        .map(|m| (m.version().to_owned(), m.checksum().to_owned()))
        .collect();
    assert_eq!(ledger_of(&env, &t, &ids[0]).await, expected);
    let status = t.fleet_status().await.unwrap();
    assert_eq!(status.count(MigrationStatus::UpToDate), 3, "{status:?}");
    assert_eq!(status.versions.get(&latest), Some(&3));

    // A binary with one more migration: every tenant is one behind.
    let (_dir, plus_one) = migrations_like(&B::tenant_migrations(), |all| {
        all.push((
            "2030-01-01-000000_create_audit_log".to_owned(),
            "CREATE TABLE audit_log (id INTEGER PRIMARY KEY);".to_owned(),
            "DROP TABLE audit_log;".to_owned(),
        ))
    });
    let t2 = tenora_with::<B>(env.config.clone(), plus_one.clone()).await;
    let status = t2.fleet_status().await.unwrap();
    assert!(
        status
            .tenants
            .iter()
            .all(|s| s.status == MigrationStatus::Behind && s.pending == Some(1)),
        "{status:?}"
    );
    // A dry run reads each database and changes nothing.
    let planned = t2
        .run_fleet(
            None,
            FleetOp::Migrate,
            FleetOptions::default().dry_run(true),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    for outcome in &planned {
        assert_eq!(
            outcome.result.as_ref().unwrap(),
            &["2030-01-01-000000_create_audit_log".to_owned()]
        );
    }
    assert_eq!(
        t2.fleet_status()
            .await
            .unwrap()
            .count(MigrationStatus::Behind),
        3
    );
    // A partial run: the migration fails on `sc`, whose table already exists.
    let mut conn = t.tenant_conn(&ids[2]).await.unwrap();
    conn.batch_execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    drop(conn);
    let report = t2.migrate_all_tenants().await.unwrap();
    let failed: Vec<_> = report.iter().filter(|o| o.result.is_err()).collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    let status = t2.fleet_status().await.unwrap();
    assert_eq!(
        statuses::<B>(&status),
        [
            ("sa".to_owned(), MigrationStatus::UpToDate),
            ("sb".to_owned(), MigrationStatus::UpToDate),
            ("sc".to_owned(), MigrationStatus::Differs),
        ]
    );
    assert!(status.has_drift());
    // Read from the databases: `sc` is merely behind (its failed migration ran in a
    // transaction, or failed before changing anything); the registry is corrected.
    let verified = t2.verify_fleet_status(0).await.unwrap();
    assert_eq!(
        statuses::<B>(&verified),
        [
            ("sa".to_owned(), MigrationStatus::UpToDate),
            ("sb".to_owned(), MigrationStatus::UpToDate),
            ("sc".to_owned(), MigrationStatus::Behind),
        ]
    );
    assert!(verified.tenants[2].corrected && !verified.tenants[0].corrected);
    assert_eq!(verified.tenants[2].pending, Some(1));
    let status = t2.fleet_status().await.unwrap();
    assert_eq!(status.tenants[2].status, MigrationStatus::Behind);

    // Up-to-date tenants need no connection: `sa` refuses connections now, and the run still
    // reports it up to date — unless asked to verify.
    reachable(&env, &t2, &ids[0], false).await;
    t2.close_all();
    let report = t2
        .run_fleet(
            Some(&ids[..1]),
            FleetOp::Migrate,
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    assert!(
        report[0].result.as_ref().is_ok_and(|n| n.is_empty()),
        "{report:?}"
    );
    let verified = t2
        .run_fleet(
            Some(&ids[..1]),
            FleetOp::Migrate,
            FleetOptions::default().verify(true),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    assert!(verified[0].result.is_err(), "{verified:?}");
    reachable(&env, &t2, &ids[0], true).await;

    // The same migration edited after it was applied: drift for the tenants that have it.
    let (_dir2, edited) = migrations_like(&plus_one, |all| {
        let last = all.last_mut().unwrap();
        last.1 = "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at INTEGER);".to_owned();
    });
    let t3 = tenora_with::<B>(env.config.clone(), edited).await;
    let status = t3.fleet_status().await.unwrap();
    assert_eq!(
        statuses::<B>(&status),
        [
            ("sa".to_owned(), MigrationStatus::Differs),
            ("sb".to_owned(), MigrationStatus::Differs),
            ("sc".to_owned(), MigrationStatus::Behind),
        ]
    );
    // Migrating on top of it is refused, naming the migration, unless drift is allowed.
    let refused = t3
        .run_fleet(
            Some(&ids[..2]),
            FleetOp::Migrate,
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    for outcome in &refused {
        let e = outcome.result.as_ref().unwrap_err().to_string();
        assert!(
            e.contains("_create_audit_log") && e.contains("other contents"),
            "{e}"
        );
    }
    let allowed = t3
        .run_fleet(
            Some(&ids[..2]),
            FleetOp::Migrate,
            FleetOptions::default().allow_drift(true),
            |_| {},
        )
        .await
        .unwrap()
        .outcomes;
    assert!(allowed.iter().all(|o| o.result.is_ok()), "{allowed:?}");
    // The registry now records the edited binary's fingerprint, but the databases know
    // better: verifying finds the drift in their ledgers.
    let verified = t3.verify_fleet_status(0).await.unwrap();
    for tenant in &verified.tenants[..2] {
        assert_eq!(tenant.status, MigrationStatus::Differs, "{tenant:?}");
        assert!(
            tenant.problems[0].contains("_create_audit_log"),
            "{tenant:?}"
        );
    }
    // The ledger still holds the checksum the migration was applied with.
    let ledger = ledger_of(&env, &t3, &ids[0]).await;
    assert_eq!(ledger.len(), expected.len() + 1);
    assert_eq!(
        ledger.last().unwrap().1,
        plus_one.iter().last().unwrap().checksum()
    );

    // The older binary sees `sa` and `sb` ahead of it.
    let status = t.fleet_status().await.unwrap();
    assert_eq!(
        statuses::<B>(&status)[..2],
        [
            ("sa".to_owned(), MigrationStatus::Ahead),
            ("sb".to_owned(), MigrationStatus::Ahead),
        ]
    );
    // Its startup migration keeps serving them, reporting them ahead: nothing applied or
    // reverted, no error.
    let newer = plus_one.iter().last().unwrap().version().to_owned();
    let report = t
        .run_fleet(
            Some(&ids[..2]),
            FleetOp::Migrate,
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    for outcome in &report.outcomes {
        assert!(
            outcome.result.as_ref().is_ok_and(|n| n.is_empty()),
            "{outcome:?}"
        );
        assert_eq!(outcome.ahead, std::slice::from_ref(&newer), "{outcome:?}");
    }
    assert_eq!(
        statuses::<B>(&t.fleet_status().await.unwrap())[..2],
        [
            ("sa".to_owned(), MigrationStatus::Ahead),
            ("sb".to_owned(), MigrationStatus::Ahead),
        ]
    );
    let mut conn = t.tenant_conn(&ids[0]).await.unwrap();
    conn.batch_execute("SELECT id FROM audit_log")
        .await
        .unwrap();
    drop(conn);
    for id in &ids {
        t.drop_tenant(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_status_skips_and_drift() {
    status_skips_and_drift::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_status_skips_and_drift() {
    status_skips_and_drift::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_status_skips_and_drift() {
    status_skips_and_drift::<tenora::backend::Mysql>().await
}
