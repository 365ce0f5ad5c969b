//! Crashes at every provisioning and dropping step (a failpoint aborts the `tenora` process),
//! then repair; and names that another application already uses. Checked in the server's
//! catalog (or the files), not in Tenora's bookkeeping.

use serde_json::Value;

use crate::project::{Kind, Project};

/// Steps after which `tenants create` is crashed, with whether the backend reaches them.
pub(crate) const CREATE_POINTS: &[&str] = &[
    "register",
    "create_user",
    "create_database",
    "lock_down",
    "migrate",
    "seed",
];

/// Steps after which `tenants drop` is crashed.
pub(crate) const DROP_POINTS: &[&str] = &["mark_deleting", "drop_database", "drop_user"];

/// Runs `args` with `TENORA_FAILPOINT=point` and asserts that the process aborted there.
pub(crate) fn crash(p: &Project, point: &str, args: &[&str]) {
    let out = p
        .cmd()
        .env("TENORA_FAILPOINT", point)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "tenora {args:?} with failpoint {point} did not abort: {:?}\n{stderr}",
            out.status
        );
    }
    // `point#n` (the n-th time) reports the point's name.
    let name = point.split('#').next().unwrap_or(point);
    assert!(
        stderr.contains(&format!("failpoint `{name}` reached")),
        "{point}: {stderr}"
    );
}

/// The registry rows, as (id, state).
fn rows(p: &Project) -> Vec<(String, String)> {
    let out = p.ok(&["--format", "json", "tenants", "list"]);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    list["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn reaches(kind: Kind, template: bool, point: &str) -> bool {
    // SQLite has no users; a clone of the template needs no migration.
    !(kind == Kind::Sqlite && matches!(point, "create_user" | "drop_user")
        || template && point == "migrate")
}

/// Every crash point of create and drop leaves what repair (or a retried create) clears:
/// 0 orphans, 0 rows that are not `active`, and the id can be created again.
async fn crash_and_repair(kind: Kind, template: bool) {
    let Some(p) = Project::ready(kind, template) else {
        return;
    };
    if template {
        // `migrate:tenants` built the template the creates below clone.
        let built = p
            .admin_scalar(
                None,
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{}tenora_template'",
                    p.prefix()
                ),
            )
            .await;
        assert_eq!(built, 1);
    }
    for (n, point) in CREATE_POINTS.iter().enumerate() {
        if !reaches(kind, template, point) {
            continue;
        }
        let id = format!("c{n}");
        crash(&p, point, &["tenants", "create", &id]);
        assert_eq!(
            rows(&p),
            [(id.clone(), "provisioning".to_owned())],
            "{point}"
        );
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 1, "{point}: {out}");
        assert!(
            out.contains(&format!("{id}: provisioning since")),
            "{point}: {out}"
        );
        assert!(out.contains("abandoned"), "{point}: {out}");
        // Half of the crashes are repaired, the other half simply retried.
        if n % 2 == 0 {
            let out = p.ok(&["tenants", "repair", "--all"]);
            assert!(out.contains("abandoned creation undone"), "{point}: {out}");
            assert_eq!(p.objects().await, Vec::<String>::new(), "{point}: orphans");
            assert!(rows(&p).is_empty(), "{point}");
            p.ok(&["tenants", "create", &id]);
        } else {
            p.ok(&["tenants", "create", &id]);
        }
        assert_eq!(rows(&p), [(id.clone(), "active".to_owned())], "{point}");
        // The tenant works: the seed ran as the tenant's own user.
        p.tenant_sql(&id, "INSERT INTO users (id) VALUES (2)").await;
        p.ok(&["tenants", "drop", &id, "--yes"]);
        assert_eq!(
            p.objects().await,
            Vec::<String>::new(),
            "{point}: left behind"
        );
        assert!(rows(&p).is_empty());
    }
    for (n, point) in DROP_POINTS.iter().enumerate() {
        if !reaches(kind, template, point) {
            continue;
        }
        let id = format!("d{n}");
        p.ok(&["tenants", "create", &id]);
        crash(&p, point, &["tenants", "drop", &id, "--yes"]);
        assert_eq!(rows(&p), [(id.clone(), "deleting".to_owned())], "{point}");
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 1, "{point}: {out}");
        assert!(
            out.contains(&format!("{id}: deleting since")),
            "{point}: {out}"
        );
        // A create of a tenant being dropped says what to run.
        let (code, _, err) = p.run(&["tenants", "create", &id]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("tenora tenants repair"), "{err}");
        let out = p.ok(&["tenants", "repair", &id]);
        assert!(out.contains("abandoned drop finished"), "{point}: {out}");
        assert_eq!(p.objects().await, Vec::<String>::new(), "{point}: orphans");
        assert!(rows(&p).is_empty(), "{point}");
    }
    // Nothing left to repair.
    assert!(
        p.ok(&["tenants", "repair", "--all"])
            .contains("nothing to repair")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_repair_sqlite() {
    crash_and_repair(Kind::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_repair_postgres() {
    crash_and_repair(Kind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_repair_postgres_template() {
    crash_and_repair(Kind::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_repair_mysql() {
    crash_and_repair(Kind::Mysql, false).await;
}

/// How many of `objects` are warm spares' databases and roles.
fn spare_objects(objects: &[String]) -> usize {
    objects
        .iter()
        .filter(|o| o.contains("tenora_spare_"))
        .count()
}

/// `objects` without the warm spares'.
fn tenant_objects(objects: &[String]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| !o.contains("tenora_spare_"))
        .cloned()
        .collect()
}

/// Crashes while a warm spare is handed over (claimed; renamed) or made (role only; cloned)
/// leave what repair, a retried create or the next fill clears, checked in the catalog; the
/// spare set comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_repair_postgres_spares() {
    let Some(p) = Project::ready_with(Kind::Postgres, &["template = true", "spares = 2"]) else {
        return;
    };
    // `migrate:tenants` built the template and filled the spares: two databases, two roles.
    assert_eq!(spare_objects(&p.objects().await), 4);
    let prefix = p.prefix().to_owned();
    for (n, point) in ["spare_claimed", "spare_taken"].into_iter().enumerate() {
        let id = format!("s{n}");
        crash(&p, point, &["tenants", "create", &id]);
        assert_eq!(
            rows(&p),
            [(id.clone(), "provisioning".to_owned())],
            "{point}"
        );
        // Claimed: nothing has the tenant's names yet. Taken: the renamed spare has them.
        let expected = match point {
            "spare_claimed" => Vec::new(),
            _ => vec![
                format!("database {prefix}{id}"),
                format!("user {prefix}u_{id}"),
            ],
        };
        assert_eq!(tenant_objects(&p.objects().await), expected, "{point}");
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 1, "{point}: {out}");
        assert!(
            out.contains(&format!("{id}: provisioning since")),
            "{point}: {out}"
        );
        assert!(
            out.contains("warm spare") && out.contains("`claimed` and no process works on it"),
            "{point}: {out}"
        );
        if n == 0 {
            let out = p.ok(&["tenants", "repair", "--all"]);
            assert!(out.contains("abandoned creation undone"), "{point}: {out}");
            assert_eq!(tenant_objects(&p.objects().await), Vec::<String>::new());
        }
        // Retried (after repair, or straight away): made from the other spare, then refilled.
        p.ok(&["tenants", "create", &id]);
        assert_eq!(rows(&p), [(id.clone(), "active".to_owned())], "{point}");
        p.tenant_sql(&id, "INSERT INTO users (id) VALUES (2)").await;
        let objects = p.objects().await;
        assert_eq!(spare_objects(&objects), 4, "{point}: {objects:?}");
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 0, "{point}: {out}");
        assert!(
            out.contains("warm spares: 2 ready of 2 recorded"),
            "{point}: {out}"
        );
        p.ok(&["tenants", "drop", &id, "--yes"]);
    }
    // A refill that dies with the spare's role made, or with the spare cloned but not yet
    // ready: the sweep of `tenants repair --all` or `spares fill` removes it.
    for (n, point) in ["spare_role_made", "spare_made"].into_iter().enumerate() {
        let id = format!("r{n}");
        crash(&p, point, &["tenants", "create", &id]);
        assert_eq!(rows(&p), [(id.clone(), "active".to_owned())], "{point}");
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 1, "{point}: {out}");
        assert!(
            out.contains("`making` and no process works on it"),
            "{point}: {out}"
        );
        let out = if n == 0 {
            p.ok(&["tenants", "repair", "--all"]);
            p.ok(&["spares", "fill"])
        } else {
            p.ok(&["spares", "fill"])
        };
        assert!(out.contains("2 ready"), "{point}: {out}");
        let objects = p.objects().await;
        assert_eq!(spare_objects(&objects), 4, "{point}: {objects:?}");
        assert_eq!(p.run(&["doctor"]).0, 0, "{point}: {}", p.run(&["doctor"]).1);
        p.ok(&["tenants", "drop", &id, "--yes"]);
    }
    let listed = p.ok(&["spares", "list"]);
    assert_eq!(listed.matches(" ready ").count(), 2, "{listed}");
    assert!(
        p.ok(&["tenants", "repair", "--all"])
            .contains("nothing to repair")
    );
}

/// A database and user that another application made with the very names tenant `acme`
/// would get, holding data.
async fn foreign_objects(p: &Project) -> Vec<String> {
    let prefix = p.prefix();
    let (db, user) = (format!("{prefix}acme"), format!("{prefix}u_acme"));
    match p.kind {
        Kind::Mysql => {
            p.admin_sql(
                None,
                &format!(
                    "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.orders (id INT); \
                     INSERT INTO `{db}`.orders VALUES (7); \
                     CREATE USER '{user}'@'%' IDENTIFIED BY 'Their-Own-Pass-123'"
                ),
            )
            .await
        }
        _ => {
            p.admin_sql(None, &format!("CREATE ROLE \"{user}\" LOGIN"))
                .await;
            p.admin_sql(None, &format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""))
                .await;
            p.admin_sql(
                Some(&db),
                "CREATE TABLE orders (id int); INSERT INTO orders VALUES (7)",
            )
            .await;
        }
    }
    vec![format!("database {db}"), format!("user {user}")]
}

/// Another application's database and user are never touched: not by a create that meets
/// them, nor by drop, repair or a retried create after a crash.
async fn foreign_names_are_never_touched(kind: Kind) {
    let Some(p) = Project::ready(kind, false) else {
        return;
    };
    let foreign = foreign_objects(&p).await;
    let (code, _, err) = p.run(&["tenants", "create", "acme"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(p.objects().await, foreign);
    assert!(rows(&p).is_empty());

    // A crash right after claiming the id: every remedy leaves the foreign objects alone.
    crash(&p, "register", &["tenants", "create", "acme"]);
    let (code, out, err) = p.run(&["tenants", "drop", "acme", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("left alone"), "{err}");
    assert_eq!(p.objects().await, foreign);
    assert!(rows(&p).is_empty());

    crash(&p, "register", &["tenants", "create", "acme"]);
    let out = p.ok(&["tenants", "repair", "acme"]);
    assert!(out.contains("left alone"), "{out}");
    assert_eq!(p.objects().await, foreign);

    crash(&p, "register", &["tenants", "create", "acme"]);
    let (code, _, err) = p.run(&["tenants", "create", "acme"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(p.objects().await, foreign);
    assert!(rows(&p).is_empty());

    // The foreign data is intact.
    let db = format!("{}acme", p.prefix());
    let rows_left = match kind {
        Kind::Mysql => {
            p.admin_scalar(
                None,
                &format!("SELECT COUNT(*) FROM `{db}`.orders WHERE id = 7"),
            )
            .await
        }
        _ => {
            p.admin_scalar(Some(&db), "SELECT count(*) FROM orders WHERE id = 7")
                .await
        }
    };
    assert_eq!(rows_left, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_are_never_touched_postgres() {
    foreign_names_are_never_touched(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_are_never_touched_mysql() {
    foreign_names_are_never_touched(Kind::Mysql).await;
}

/// Work a live process is doing is never undone or raced: while a `tenants create` is paused
/// half-way, repair leaves it alone, and a second create or a drop of the id says it is in
/// progress. Then the paused create finishes.
async fn live_work_is_left_alone(kind: Kind) {
    use std::io::{BufRead as _, BufReader};
    let Some(p) = Project::ready(kind, false) else {
        return;
    };
    let release = p.path().join("release");
    let mut child = p
        .process()
        .env(
            "TENORA_FAILPOINT",
            format!("create_database:pause={}", release.display()),
        )
        .args(["tenants", "create", "acme"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Barrier: the child says it reached the point.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("failpoint `create_database` reached") {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "the child ended early"
        );
    }
    let (code, out, err) = p.run(&["tenants", "repair", "--all"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("acme: being created or dropped by a live process"),
        "{out}"
    );
    if kind == Kind::Postgres {
        // Another process configured with another admin database sees the lease too (it lives
        // on the base database).
        let config = std::fs::read_to_string(p.path().join("tenora.toml")).unwrap();
        std::fs::write(
            p.path().join("other.toml"),
            config.replacen("[base]\n", "[base]\nadmin_database = \"template1\"\n", 1),
        )
        .unwrap();
        let (code, out, err) = p.run(&["--config", "other.toml", "tenants", "repair", "--all"]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains("acme: being created or dropped by a live process"),
            "{out}"
        );
    }
    for args in [
        &["tenants", "create", "acme"][..],
        &["tenants", "drop", "acme", "--yes"][..],
    ] {
        let (code, _, err) = p.run(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("by another process right now"),
            "{args:?}: {err}"
        );
    }
    std::fs::write(&release, "").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rows(&p), [("acme".to_owned(), "active".to_owned())]);
    p.ok(&["tenants", "drop", "acme", "--yes"]);
    assert_eq!(p.objects().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_work_is_left_alone_sqlite() {
    live_work_is_left_alone(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_work_is_left_alone_postgres() {
    live_work_is_left_alone(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_work_is_left_alone_mysql() {
    live_work_is_left_alone(Kind::Mysql).await;
}

/// Malformed registry rows (an invalid id, an unknown state) are failures of their own row:
/// listing and fleet runs report them and carry on, and `tenants drop` removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_fail_alone_and_can_be_dropped() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    p.ok(&["tenants", "create", "globex"]);
    p.base_sql(
        "INSERT INTO tenora_tenants (id, state) VALUES ('Bad-Id', 'active'); \
         INSERT INTO tenora_tenants (id, state) VALUES ('zombie1', 'zombie')",
    )
    .await;
    let (code, out, err) = p.run(&["tenants", "list"]);
    assert_eq!(code, 0, "{err}");
    for needle in ["acme", "globex", "\"Bad-Id\"", "\"zombie1\"", "malformed"] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(err.contains("2 malformed registry row(s)"), "{err}");

    let (code, out, err) = p.run(&["migrate:tenants"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("2 up to date, 2 failed"), "{out}");
    assert!(err.contains("\"Bad-Id\": malformed registry row"), "{err}");

    let out = p.ok(&["tenants", "drop", "Bad-Id", "--yes"]);
    assert!(out.contains("removed the malformed registry row"), "{out}");
    p.ok(&["tenants", "drop", "zombie1", "--yes"]);
    // Unknown invalid ids are still refused as such.
    let (code, _, err) = p.run(&["tenants", "drop", "Bad-Id", "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid tenant id"), "{err}");
    assert_eq!(
        rows(&p),
        [
            ("acme".to_owned(), "active".to_owned()),
            ("globex".to_owned(), "active".to_owned())
        ]
    );
    assert!(p.ok(&["migrate:tenants"]).contains("2 up to date"));
}

/// `tenora doctor` reports what is wrong — an abandoned creation, an active tenant whose
/// database is gone, an orphan carrying a Tenora proof, a malformed row — with exit code 1,
/// in text and JSON, and nothing once it is cleared.
async fn doctor_reports_what_is_wrong(kind: Kind) {
    let Some(p) = Project::ready(kind, false) else {
        return;
    };
    assert!(p.ok(&["doctor"]).contains("nothing wrong"));
    p.ok(&["tenants", "create", "acme"]);
    p.ok(&["tenants", "create", "globex"]);
    crash(&p, "create_database", &["tenants", "create", "initech"]);
    crash(&p, "create_database", &["tenants", "create", "hooli"]);
    p.base_sql("DELETE FROM tenora_tenants WHERE id = 'hooli'")
        .await;
    p.base_sql("INSERT INTO tenora_tenants (id, state) VALUES ('Bad-Id', 'active')")
        .await;
    let globex_db = format!("{}globex", p.prefix());
    match kind {
        Kind::Sqlite => std::fs::remove_file(p.path().join("data/tenants/globex.sqlite")).unwrap(),
        Kind::Mysql => {
            p.admin_sql(None, &format!("DROP DATABASE `{globex_db}`"))
                .await
        }
        Kind::Postgres => {
            p.admin_sql(None, &format!("DROP DATABASE \"{globex_db}\""))
                .await
        }
    }

    let (code, out, _) = p.run(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    for needle in [
        "initech: provisioning since",
        "abandoned; run `tenora tenants repair initech`",
        &format!("globex: active, but its database `{globex_db}"),
        &format!("database `{}hooli", p.prefix()),
        "carries a Tenora proof that no registry row knows",
        "registry row \"Bad-Id\"",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(!out.contains("acme"), "{out}");
    let (code, out, _) = p.run(&["--format", "json", "doctor"]);
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    let mut kinds: Vec<&str> = json["result"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["malformed", "missing", "not_active", "orphan"],
        "{out}"
    );

    // Cleared: repaired, dropped, forgotten; the orphan removed by hand (Tenora never does).
    p.ok(&["tenants", "repair", "initech"]);
    p.ok(&["tenants", "drop", "globex", "--yes"]);
    p.ok(&["tenants", "drop", "Bad-Id", "--yes"]);
    let hooli = format!("{}hooli", p.prefix());
    match kind {
        Kind::Sqlite => {
            for entry in std::fs::read_dir(p.path().join("data/tenants")).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hooli")
                {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        Kind::Mysql => {
            p.admin_sql(
                None,
                &format!(
                    "DROP DATABASE `{hooli}`; DROP USER '{}u_hooli'@'%'",
                    p.prefix()
                ),
            )
            .await
        }
        Kind::Postgres => {
            p.admin_sql(None, &format!("DROP DATABASE \"{hooli}\""))
                .await;
            p.admin_sql(None, &format!("DROP ROLE \"{}u_hooli\"", p.prefix()))
                .await;
        }
    }
    let out = p.ok(&["doctor"]);
    assert!(out.contains("1 registry row(s), nothing wrong"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_what_is_wrong_sqlite() {
    doctor_reports_what_is_wrong(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_what_is_wrong_postgres() {
    doctor_reports_what_is_wrong(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_what_is_wrong_mysql() {
    doctor_reports_what_is_wrong(Kind::Mysql).await;
}

/// A password rotation crashed after each step leaves the tenant reachable (MariaDB checks the
/// password it is sent) and `tenants repair --all` finishes it; then rotations run to the end,
/// with a generated or a piped-in password, for one tenant or all.
async fn rotation_crash_and_repair(kind: Kind) {
    let Some(p) = Project::ready(kind, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    for point in ["rotate_registered", "rotate_server"] {
        crash(&p, point, &["tenants", "rotate-password", "acme"]);
        assert!(
            p.stored_password("acme")
                .await
                .starts_with("tenora:rotating:"),
            "{point}: the registry holds both passwords"
        );
        p.tenant_sql("acme", "SELECT 1").await;
        let (code, out, _) = p.run(&["doctor"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("acme: a password rotation was interrupted"),
            "{point}: {out}"
        );
        let out = p.ok(&["tenants", "repair", "--all"]);
        assert!(
            out.contains("acme: interrupted password rotation finished"),
            "{point}: {out}"
        );
        assert!(p.stored_password("acme").await.starts_with("tenora:v2:"));
        p.tenant_sql("acme", "SELECT 1").await;
        p.ok(&["doctor"]);
    }
    let before = p.stored_password("acme").await;
    p.ok(&["tenants", "rotate-password", "acme"]);
    let out = p.piped(
        &["tenants", "rotate-password", "acme", "--password-stdin"],
        "Chosen-Pa55word\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Chosen-Pa55word"));
    p.tenant_sql("acme", "SELECT 1").await;
    assert_ne!(p.stored_password("acme").await, before);
    p.ok(&["tenants", "create", "globex"]);
    let out = p.ok(&["tenants", "rotate-password", "--all"]);
    assert!(out.contains("2 rotated, 0 failed"), "{out}");
    p.tenant_sql("globex", "SELECT 1").await;
    // Bad input: a piped password for several tenants; a password breaking the rule.
    let (code, _, err) = p.run(&[
        "tenants",
        "rotate-password",
        "acme",
        "globex",
        "--password-stdin",
    ]);
    assert_eq!(code, 2, "{err}");
    let out = p.piped(
        &["tenants", "rotate-password", "acme", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unusable password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.tenant_sql("acme", "SELECT 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_crash_and_repair_postgres() {
    rotation_crash_and_repair(Kind::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_crash_and_repair_mysql() {
    rotation_crash_and_repair(Kind::Mysql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tenants_have_no_password_to_rotate() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    let (code, _, err) = p.run(&["tenants", "rotate-password", "acme"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no database user of its own"), "{err}");
}
