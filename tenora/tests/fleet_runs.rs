//! Fleet runs recorded in the base database: a run stopped by a failed canary wave, resumed
//! with a failure budget, its last failure retried alone; each migration applied once (read
//! from the tenants' databases); a rollback recording each tenant's target; and the errors of
//! resuming what cannot be resumed.

use diesel_async::SimpleAsyncConnection as _;
use tenora::{
    Error, FleetOp, FleetOptions, Migrations, Resume, RunState, RunTenantState, TenantId, Tenora,
};

use crate::status::migrations_like;
use crate::support::backends::{Env, TestBackend, tenora_with};

/// A Tenora on `env` with the example schema and tenants `names` created, and that schema
/// plus migration `(name, up, down)` written to a folder (kept while the `TempDir` lives).
async fn tenants_and_one_more<B: TestBackend>(
    env: &Env,
    names: &[&str],
    (name, up, down): (&str, &str, &str),
) -> (Tenora<B>, Vec<TenantId>, tempfile::TempDir, Migrations) {
    let t = tenora_with::<B>(env.config.clone(), B::tenant_migrations()).await;
    let ids: Vec<TenantId> = names.iter().map(|n| t.tenant_id(n).unwrap()).collect();
    for id in &ids {
        t.create_tenant(id, None).await.unwrap();
    }
    let (dir, plus_one) = migrations_like(&B::tenant_migrations(), |all| {
        all.push((name.to_owned(), up.to_owned(), down.to_owned()))
    });
    (t, ids, dir, plus_one)
}

async fn sql_on<B: TestBackend>(t: &Tenora<B>, id: &TenantId, sql: &str) {
    let mut conn = t.tenant_conn(id).await.unwrap();
    conn.batch_execute(sql).await.unwrap();
}

/// Whether tenant `id`'s database has a `marks` table, and how many migrations its
/// `__diesel_schema_migrations` records.
async fn state_of<B: TestBackend>(t: &Tenora<B>, id: &TenantId) -> (bool, usize) {
    use tenora::registry::RegistryConnection as _;
    let mut conn = t.tenant_conn(id).await.unwrap();
    let marks = conn.batch_execute("SELECT n FROM marks").await.is_ok();
    (marks, conn.applied_versions().await.unwrap().len())
}

fn states(report: &tenora::FleetReport) -> Vec<&'static str> {
    report
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(_) => "ok",
            Err(Error::Skipped { .. }) => "skipped",
            Err(_) => "failed",
        })
        .collect()
}

pub async fn runs_stop_resume_and_record<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let (t, ids, _dir, plus_one) = tenants_and_one_more::<B>(
        &env,
        &["ua", "ub", "uc", "ud"],
        (
            "2030-01-01-000000_create_marks",
            "CREATE TABLE marks (n INTEGER NOT NULL);\nINSERT INTO marks (n) VALUES (1);",
            "DROP TABLE marks;",
        ),
    )
    .await;
    // `ub` and `ud` already have a `marks` table: the migration fails there.
    sql_on(&t, &ids[1], "CREATE TABLE marks (x INTEGER)").await;
    sql_on(&t, &ids[3], "CREATE TABLE marks (x INTEGER)").await;
    let t2 = tenora_with::<B>(env.config.clone(), plus_one).await;

    // Waves of 2, one at a time: the first wave fails on `ub`, so the second never starts.
    let options = FleetOptions::default().concurrency(1).batch(2);
    let report = t2
        .run_fleet(None, FleetOp::Migrate, options, |_| {})
        .await
        .unwrap();
    assert_eq!(states(&report), ["ok", "failed", "skipped", "skipped"]);
    assert!(report.stopped);
    let run = report.run.expect("recorded");
    let (recorded, tenants) = t2.fleet_run(run).await.unwrap();
    assert_eq!(recorded.state, RunState::Stopped);
    assert_eq!(
        (
            recorded.done,
            recorded.failed,
            recorded.pending,
            recorded.tenants
        ),
        (1, 1, 2, 4)
    );
    assert_eq!(tenants[1].state, RunTenantState::Failed);
    assert!(
        tenants[1].detail.as_deref().unwrap_or("").contains("marks"),
        "{tenants:?}"
    );

    // What cannot be resumed says why.
    let named = t2
        .run_fleet(
            Some(&ids),
            FleetOp::Migrate,
            FleetOptions::default().resume(Resume::Latest),
            |_| {},
        )
        .await;
    assert!(
        matches!(&named, Err(Error::FleetRun { message }) if message.contains("do not name")),
        "{named:?}"
    );
    let other = t2
        .run_fleet(
            None,
            FleetOp::Rollback(1),
            FleetOptions::default().resume(Resume::Run(run)),
            |_| {},
        )
        .await;
    assert!(
        matches!(&other, Err(Error::FleetRun { message }) if message.contains("is a `migrate` run")),
        "{other:?}"
    );

    // `ub` fixed: resumed with room for failures, `ud` fails and the rest go on.
    sql_on(&t, &ids[1], "DROP TABLE marks").await;
    let options = FleetOptions::default()
        .resume(Resume::Latest)
        .max_failures(5);
    let report = t2
        .run_fleet(None, FleetOp::Migrate, options, |_| {})
        .await
        .unwrap();
    assert_eq!(report.run, Some(run));
    assert_eq!(states(&report), ["ok", "ok", "failed"]);
    let (recorded, _) = t2.fleet_run(run).await.unwrap();
    assert_eq!(recorded.state, RunState::Failed);
    assert_eq!((recorded.done, recorded.failed), (3, 1));

    // `ud` fixed: only the failure is retried, and the run is finished.
    sql_on(&t, &ids[3], "DROP TABLE marks").await;
    let options = FleetOptions::default().only_failed(true);
    let report = t2
        .run_fleet(None, FleetOp::Migrate, options, |_| {})
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 1);
    assert_eq!(report.outcomes[0].id, ids[3]);
    let (recorded, _) = t2.fleet_run(run).await.unwrap();
    assert_eq!(recorded.state, RunState::Finished);
    assert_eq!(
        (recorded.done, recorded.failed, recorded.pending),
        (4, 0, 0)
    );
    let base = B::tenant_migrations().iter().count();
    for id in &ids {
        assert_eq!(state_of(&t2, id).await, (true, base + 1), "tenant {id}");
    }
    let none = t2
        .run_fleet(
            None,
            FleetOp::Migrate,
            FleetOptions::default().resume(Resume::Latest),
            |_| {},
        )
        .await;
    assert!(
        matches!(&none, Err(Error::FleetRun { message }) if message.contains("no unfinished")),
        "{none:?}"
    );

    // A rollback records each tenant's target (the version before `marks`).
    let report = t2
        .run_fleet(None, FleetOp::Rollback(1), FleetOptions::default(), |_| {})
        .await
        .unwrap();
    assert!(
        report.outcomes.iter().all(|o| o.result.is_ok()),
        "{report:?}"
    );
    let back = report.run.unwrap();
    assert!(back > run);
    let (recorded, tenants) = t2.fleet_run(back).await.unwrap();
    assert_eq!(recorded.state, RunState::Finished);
    let previous = B::tenant_migrations().latest_version().unwrap().to_owned();
    assert!(
        tenants
            .iter()
            .all(|r| r.target.as_deref() == Some(previous.as_str())),
        "{tenants:?}"
    );
    for id in &ids {
        assert_eq!(state_of(&t2, id).await, (false, base), "tenant {id}");
    }
    let listed = t2.fleet_runs(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [back, run],
        "newest first"
    );
    for id in &ids {
        t.drop_tenant(id).await.unwrap();
    }
}

/// A rollback whose target was fixed is not resumed on a tenant migrated further since:
/// reverting down to that target would undo the newer migration.
pub async fn a_resumed_rollback_never_undoes_newer_work<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let (t, ids, _dir, plus_one) = tenants_and_one_more::<B>(
        &env,
        &["na", "nb"],
        (
            "2030-01-01-000000_create_marks",
            "CREATE TABLE marks (n INTEGER NOT NULL);",
            "DROP TABLE marks;",
        ),
    )
    .await;
    let t2 = tenora_with::<B>(env.config.clone(), plus_one.clone()).await;
    // Named twice, run once.
    let twice = [ids[0].clone(), ids[0].clone(), ids[1].clone()];
    let report = t2
        .run_fleet(
            Some(&twice),
            FleetOp::Migrate,
            FleetOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 2, "{report:?}");
    // `nb`'s table is moved away: reverting its migration fails there.
    sql_on(&t, &ids[1], "ALTER TABLE marks RENAME TO marks_moved").await;
    let report = t2
        .run_fleet(None, FleetOp::Rollback(1), FleetOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(states(&report), ["ok", "failed"]);
    assert_eq!(report.state, Some(RunState::Failed));
    let rollback = report.run.unwrap();
    // A newer release migrates every tenant further meanwhile.
    let (_dir2, plus_two) = migrations_like(&plus_one, |all| {
        all.push((
            "2030-01-02-000000_create_later".to_owned(),
            "CREATE TABLE later (n INTEGER);".to_owned(),
            "DROP TABLE later;".to_owned(),
        ))
    });
    let t3 = tenora_with::<B>(env.config.clone(), plus_two).await;
    let migrated = t3.migrate_all_tenants().await.unwrap();
    assert!(migrated.iter().all(|o| o.result.is_ok()), "{migrated:?}");
    sql_on(&t, &ids[1], "ALTER TABLE marks_moved RENAME TO marks").await;
    // Resuming the old rollback: `nb` is refused, nothing reverted.
    let resumed = t3
        .run_fleet(
            None,
            FleetOp::Rollback(1),
            FleetOptions::default().resume(Resume::Run(rollback)),
            |_| {},
        )
        .await
        .unwrap();
    let message = resumed.outcomes[0].result.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("was migrated since this rollback began"),
        "{message}"
    );
    let base = B::tenant_migrations().iter().count();
    assert_eq!(state_of(&t3, &ids[1]).await, (true, base + 2));
    let mut conn = t3.tenant_conn(&ids[1]).await.unwrap();
    conn.batch_execute("SELECT n FROM later").await.unwrap();
    drop(conn);
    for id in &ids {
        t.drop_tenant(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_a_resumed_rollback_never_undoes_newer_work() {
    a_resumed_rollback_never_undoes_newer_work::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_resumed_rollback_never_undoes_newer_work() {
    a_resumed_rollback_never_undoes_newer_work::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_a_resumed_rollback_never_undoes_newer_work() {
    a_resumed_rollback_never_undoes_newer_work::<tenora::backend::Mysql>().await
}

/// A tenant dropped after its run started is recorded as done when the run is resumed, so
/// the run can finish.
pub async fn a_tenant_dropped_since_does_not_hold_a_run_open<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let (t, ids, _dir, plus_one) = tenants_and_one_more::<B>(
        &env,
        &["da", "db"],
        (
            "2030-01-01-000000_create_marks",
            "CREATE TABLE marks (n INTEGER NOT NULL);",
            "DROP TABLE marks;",
        ),
    )
    .await;
    sql_on(&t, &ids[0], "CREATE TABLE marks (x INTEGER)").await;
    let t2 = tenora_with::<B>(env.config.clone(), plus_one).await;
    let options = FleetOptions::default().concurrency(1).fail_fast(true);
    let report = t2
        .run_fleet(None, FleetOp::Migrate, options, |_| {})
        .await
        .unwrap();
    assert_eq!(states(&report), ["failed", "skipped"]);
    let run = report.run.unwrap();
    // `db` goes before the run is resumed; `da` is fixed.
    t.drop_tenant(&ids[1]).await.unwrap();
    sql_on(&t, &ids[0], "DROP TABLE marks").await;
    let resumed = t2
        .run_fleet(
            None,
            FleetOp::Migrate,
            FleetOptions::default().resume(Resume::Latest),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(states(&resumed), ["ok"]);
    assert_eq!(resumed.state, Some(RunState::Finished));
    let (recorded, tenants) = t2.fleet_run(run).await.unwrap();
    assert_eq!((recorded.done, recorded.pending), (2, 0));
    let dropped = tenants.iter().find(|r| r.tenant == "db").unwrap();
    assert_eq!(dropped.state, RunTenantState::Done);
    assert!(
        dropped
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("no longer an active tenant")),
        "{dropped:?}"
    );
    t.drop_tenant(&ids[0]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_a_tenant_dropped_since_does_not_hold_a_run_open() {
    a_tenant_dropped_since_does_not_hold_a_run_open::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_tenant_dropped_since_does_not_hold_a_run_open() {
    a_tenant_dropped_since_does_not_hold_a_run_open::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_a_tenant_dropped_since_does_not_hold_a_run_open() {
    a_tenant_dropped_since_does_not_hold_a_run_open::<tenora::backend::Mysql>().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_runs_stop_resume_and_record() {
    runs_stop_resume_and_record::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_runs_stop_resume_and_record() {
    runs_stop_resume_and_record::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_runs_stop_resume_and_record() {
    runs_stop_resume_and_record::<tenora::backend::Mysql>().await
}

/// Holds a lock on tenant `id`'s `users` table from another session (as the server's admin),
/// until the returned guard is dropped.
async fn lock_users<B: TestBackend>(
    env: &crate::support::backends::Env,
    t: &Tenora<B>,
    id: &TenantId,
) -> Box<dyn std::any::Any + Send> {
    let database = t.naming().database_name(id);
    match B::NAME {
        "sqlite" => {
            use diesel::Connection as _;
            let path = env
                .config
                .root
                .join(&env.config.tenant.database_dir)
                .join(&database);
            let mut conn =
                diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
            diesel::connection::SimpleConnection::batch_execute(&mut conn, "BEGIN IMMEDIATE")
                .unwrap();
            Box::new(std::sync::Mutex::new(conn))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = crate::support::backends::pg_url().unwrap();
            let url = format!("{}/{database}", url.rsplit_once('/').unwrap().0);
            let client = crate::support::backends::admin_client(&url).await;
            client
                .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            Box::new(client)
        }
        #[cfg(feature = "mysql")]
        "mysql" => {
            use mysql_async::prelude::Queryable as _;
            let url = crate::support::backends::mysql_url().unwrap();
            let mut conn = crate::support::backends::mysql_admin(&url).await;
            // An open transaction that read the table holds its metadata lock: ALTER waits.
            conn.query_drop(format!(
                "START TRANSACTION; SELECT COUNT(*) FROM `{database}`.users"
            ))
            .await
            .unwrap();
            Box::new(conn)
        }
        other => panic!("no way to lock a {other} table"),
    }
}

pub async fn lock_and_statement_timeouts<B: TestBackend>() {
    let Some(env) = B::env() else { return };
    let (t, ids, _dir, plus_one) = tenants_and_one_more::<B>(
        &env,
        &["la", "lb"],
        (
            "2030-01-01-000000_add_nick_to_users",
            "ALTER TABLE users ADD COLUMN nick VARCHAR(20);",
            "ALTER TABLE users DROP COLUMN nick;",
        ),
    )
    .await;
    let t2 = tenora_with::<B>(env.config.clone(), plus_one.clone()).await;

    // `la`'s table is locked by another session: with a lock timeout, `la` fails (naming the
    // lock) and `lb` is migrated.
    let held = lock_users(&env, &t, &ids[0]).await;
    let options = FleetOptions::default().lock_timeout(std::time::Duration::from_millis(300));
    let report = t2
        .run_fleet(None, FleetOp::Migrate, options, |_| {})
        .await
        .unwrap();
    let message = report.outcomes[0].result.as_ref().unwrap_err().to_string();
    let expected = match B::NAME {
        "sqlite" => "database is locked",
        "postgres" => "lock timeout",
        _ => "Lock wait timeout exceeded",
    };
    assert!(message.contains(expected), "{message}");
    assert!(report.outcomes[1].result.is_ok(), "{report:?}");
    drop(held);
    let retried = t2
        .run_fleet(
            None,
            FleetOp::Migrate,
            FleetOptions::default().only_failed(true),
            |_| {},
        )
        .await
        .unwrap();
    assert!(retried.outcomes[0].result.is_ok(), "{retried:?}");

    // A statement that runs too long.
    let slow = match B::NAME {
        "postgres" => Some("SELECT pg_sleep(5);"),
        "mysql" => Some("SELECT SLEEP(5);"),
        _ => None,
    };
    let limit = FleetOptions::default().statement_timeout(std::time::Duration::from_millis(200));
    match slow {
        None => {
            // SQLite has no statement timeout: refused before anything starts or is recorded.
            let runs = t2.fleet_runs(100).await.unwrap().len();
            let refused = t2.run_fleet(None, FleetOp::Migrate, limit, |_| {}).await;
            assert!(
                matches!(&refused, Err(Error::Unsupported(m)) if m.contains("statement timeout")),
                "{refused:?}"
            );
            assert_eq!(t2.fleet_runs(100).await.unwrap().len(), runs);
        }
        Some(sql) => {
            let (_dir3, plus_two) = migrations_like(&plus_one, |all| {
                all.push((
                    "2030-01-02-000000_slow".to_owned(),
                    sql.to_owned(),
                    String::new(),
                ))
            });
            let t3 = tenora_with::<B>(env.config.clone(), plus_two).await;
            let report = t3
                .run_fleet(Some(&ids[..1]), FleetOp::Migrate, limit, |_| {})
                .await
                .unwrap();
            let message = report.outcomes[0].result.as_ref().unwrap_err().to_string();
            assert!(
                message.contains("statement timeout") || message.contains("max_statement_time"),
                "{message}"
            );
        }
    }
    for id in &ids {
        t.drop_tenant(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_lock_and_statement_timeouts() {
    lock_and_statement_timeouts::<tenora::backend::Sqlite>().await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_lock_and_statement_timeouts() {
    lock_and_statement_timeouts::<tenora::backend::Postgres>().await
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_lock_and_statement_timeouts() {
    lock_and_statement_timeouts::<tenora::backend::Mysql>().await
}
