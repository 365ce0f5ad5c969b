//! Resumable fleet runs: a `migrate:tenants` and a `rollback:tenants` killed part-way (a
//! failpoint aborts the process right after a tenant's migrations ran, before its outcome is
//! recorded) and resumed — each migration applied, and reverted, exactly once, read from the
//! tenants' databases — and the run's record complete; `--max-failures`, `--only-failed` and
//! `--batch`.

use serde_json::Value;

use crate::crash::crash;
use crate::project::{Kind, Project};

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The one integer `sql` returns in tenant `tenant`'s database, read with the server's own
/// client; `{db}` in `sql` stands for the database's qualifier (MySQL) or nothing.
async fn tenant_scalar(p: &Project, tenant: &str, sql: &str) -> i64 {
    match p.kind {
        Kind::Sqlite => {
            use diesel::{Connection as _, RunQueryDsl as _};
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let path = p.path().join(format!("data/tenants/{tenant}.sqlite"));
            let mut conn =
                diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
            diesel::sql_query(sql.replace("{db}", ""))
                .get_result::<Row>(&mut conn)
                .unwrap()
                .n
        }
        Kind::Postgres => {
            let database = format!("{}{tenant}", p.prefix());
            p.admin_scalar(Some(&database), &sql.replace("{db}", ""))
                .await
        }
        Kind::Mysql => {
            let qualifier = format!("`{}{tenant}`.", p.prefix());
            p.admin_scalar(None, &sql.replace("{db}", &qualifier)).await
        }
    }
}

/// Run `run` as `tenora runs show` reports it (JSON).
fn run_record(p: &Project, run: &str) -> Value {
    json(&p.ok(&["--format", "json", "runs", "show", run]))["result"].clone()
}

const TENANTS: [&str; 4] = ["ra", "rb", "rc", "rd"];

async fn killed_runs_resume_exactly_once(kind: Kind) {
    let Some(p) = Project::ready(kind, false) else {
        return;
    };
    for id in TENANTS {
        p.ok(&["tenants", "create", id]);
    }
    let applied_sql = "SELECT COUNT(*) AS n FROM {db}__diesel_schema_migrations";
    let before = tenant_scalar(&p, "ra", applied_sql).await;
    // A migration whose effect shows how often it ran: one row per application.
    let marks = p.ok(&["make:migration:tenants", "create_marks"]);
    assert!(marks.contains("create_marks"), "{marks}");
    let dir = p.migration("migrations/tenants", "_create_marks");
    std::fs::write(
        dir.join("up.sql"),
        "CREATE TABLE marks (n INTEGER NOT NULL);\nINSERT INTO marks (n) VALUES (1);\n",
    )
    .unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE marks;\n").unwrap();

    // Killed right after the second tenant's migration ran, before its outcome was recorded.
    crash(
        &p,
        "fleet_tenant_ran#2",
        &["migrate:tenants", "--concurrency", "1"],
    );
    let record = run_record(&p, "1");
    assert_eq!(record["run"]["state"], "running", "{record}");
    assert_eq!(record["run"]["done"], 1, "{record}");
    assert_eq!(record["run"]["started"], 1, "{record}");
    assert_eq!(record["run"]["pending"], 2, "{record}");
    let out = p.ok(&["runs", "list"]);
    assert!(out.contains("migrate") && out.contains("running"), "{out}");

    // A run still marked running may have a live process: not resumed as "the latest", only
    // by its id.
    let (code, _, err) = p.run(&["migrate:tenants", "--resume"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("run 1 is still marked running") && err.contains("--resume 1"),
        "{err}"
    );
    // --verify: the killed tenant is connected to (not taken as up to date from the registry),
    // and its migration is found applied.
    let out = p.ok(&["migrate:tenants", "--resume", "1", "--verify"]);
    assert!(
        out.contains("resuming run 1 (migrate): 3 tenant(s) left"),
        "{out}"
    );
    for id in TENANTS {
        let marks = tenant_scalar(&p, id, "SELECT COUNT(*) AS n FROM {db}marks").await;
        assert_eq!(marks, 1, "tenant {id}: the migration ran {marks} times");
        assert_eq!(tenant_scalar(&p, id, applied_sql).await, before + 1, "{id}");
    }
    let record = run_record(&p, "1");
    assert_eq!(record["run"]["state"], "finished", "{record}");
    assert_eq!(record["run"]["done"], 4, "{record}");
    let tenants = record["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 4, "{record}");
    // The tenant killed right after its migration was started again and found nothing to do.
    assert!(
        tenants
            .iter()
            .any(|t| t["tenant"] == "rb" && t["attempts"] == 2 && t["detail"] == "nothing to do"),
        "{record}"
    );
    let (code, _, err) = p.run(&["migrate:tenants", "--resume"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no unfinished `migrate` run to resume"),
        "{err}"
    );

    // A rollback killed the same way reverts each tenant exactly one step once resumed.
    crash(
        &p,
        "fleet_tenant_ran#3",
        &["rollback:tenants", "--yes", "--concurrency", "1"],
    );
    let (code, _, err) = p.run(&["rollback:tenants", "--resume", "1", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run 1 is a `migrate` run"), "{err}");
    let out = p.ok(&["rollback:tenants", "--resume", "2", "--yes"]);
    assert!(
        out.contains("resuming run 2 (rollback 1): 2 tenant(s) left"),
        "{out}"
    );
    for id in TENANTS {
        assert_eq!(
            tenant_scalar(&p, id, applied_sql).await,
            before,
            "tenant {id} was not reverted exactly one step"
        );
    }
    let record = run_record(&p, "2");
    assert_eq!(record["run"]["state"], "finished", "{record}");
    // Each tenant's target and starting point were on record before it was reverted.
    assert!(
        record["tenants"].as_array().unwrap().iter().all(|t| {
            let (target, from) = (t["target"].as_str(), t["started_from"].as_str());
            target.is_some_and(|v| !v.is_empty()) && from.is_some_and(|f| Some(f) > target)
        }),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_runs_resume_exactly_once() {
    killed_runs_resume_exactly_once(Kind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_runs_resume_exactly_once() {
    killed_runs_resume_exactly_once(Kind::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_runs_resume_exactly_once() {
    killed_runs_resume_exactly_once(Kind::Mysql).await
}

/// `--max-failures`, `--only-failed`, `--batch` and their record, on SQLite.
#[test]
fn failures_stop_retry_and_waves() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    for id in ["wa", "wb", "wc", "wd", "we"] {
        p.ok(&["tenants", "create", id]);
    }
    p.ok(&["make:migration:tenants", "create_notes"]);
    let dir = p.migration("migrations/tenants", "_create_notes");
    std::fs::write(dir.join("up.sql"), "CREATE TABLE notes (n INTEGER);\n").unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE notes;\n").unwrap();
    // `wb` and `wd` already have a `notes` table: the migration fails there.
    let block = |id: &str, on: bool| {
        use diesel::{Connection as _, RunQueryDsl as _};
        let path = p.path().join(format!("data/tenants/{id}.sqlite"));
        let mut conn =
            diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        let sql = if on {
            "CREATE TABLE notes (x INTEGER)"
        } else {
            "DROP TABLE notes"
        };
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    };
    block("wb", true);
    block("wd", true);

    let (code, out, err) = p.run(&[
        "migrate:tenants",
        "--concurrency",
        "1",
        "--max-failures",
        "1",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("1 applied, 1 failed, 3 skipped"), "{out}");
    assert!(out.contains("tenora migrate:tenants --resume 1"), "{out}");
    let record = run_record(&p, "1");
    assert_eq!(record["run"]["state"], "stopped", "{record}");
    assert_eq!(
        (
            &record["run"]["done"],
            &record["run"]["failed"],
            &record["run"]["pending"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(3)),
        "{record}"
    );

    // Retry only the failure, once fixed: the pending tenants stay pending.
    block("wb", false);
    let out = p.ok(&["migrate:tenants", "--only-failed"]);
    assert!(
        out.contains("1 tenant(s) left") && out.contains("1 applied"),
        "{out}"
    );
    let record = run_record(&p, "1");
    assert_eq!(record["run"]["pending"], 3, "{record}");

    // Waves of 2: `wc` and `wd` first; `wd` fails, so `we` is not started.
    let (code, out, _) = p.run(&["migrate:tenants", "--resume", "1", "--batch", "2"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 applied, 1 failed, 1 skipped"), "{out}");
    block("wd", false);
    let out = p.ok(&["migrate:tenants", "--resume"]);
    assert!(out.contains("2 applied"), "{out}");
    let record = run_record(&p, "1");
    assert_eq!(record["run"]["state"], "finished", "{record}");
    assert_eq!(record["run"]["done"], 5, "{record}");
    let out = p.ok(&["runs", "show", "1"]);
    assert!(out.contains("5 done, 0 failed, 0 pending"), "{out}");

    // A new run: everything up to date by the registry, counted, not listed.
    let out = p.ok(&["migrate:tenants"]);
    assert!(out.contains("5 up to date"), "{out}");
    let list = json(&p.ok(&["--format", "json", "runs", "list"]));
    let runs = list["result"]["runs"].as_array().unwrap();
    assert_eq!(runs[0]["id"], 2, "{list}");
    assert_eq!(runs[0]["up_to_date"], 5, "{list}");
    assert_eq!(runs[0]["state"], "finished", "{list}");
    // Bad input is named.
    let (code, _, err) = p.run(&["runs", "show", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid run id \"nope\""), "{err}");
    let (code, _, err) = p.run(&["runs", "show", "99"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("there is no fleet run 99"), "{err}");
    let (code, _, err) = p.run(&["migrate:tenants", "--resume", "--tenant", "wa"]);
    assert_eq!(code, 2, "{err}");
}
