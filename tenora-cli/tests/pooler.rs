//! The CLI with a `[pooler]` in front of the server (PgBouncer 1.25.2, transaction mode): its
//! administrative work goes to the server, so two fleet migrations started at once apply each
//! migration exactly once per tenant, and every command (seeds too) exits 0 without a
//! transaction through the pooler.

use tenora_test_support::{PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};

use crate::project::{Kind, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_commands_with_a_transaction_pooler() {
    let Some(p) = Project::new(Kind::Postgres) else {
        return;
    };
    let admin = std::env::var("TENORA_TEST_PG_URL").unwrap();
    let Some(bouncer) = PgBouncer::start(
        PGBOUNCER_VAR,
        &admin,
        &PgBouncerOptions {
            default_pool_size: 20,
            ..PgBouncerOptions::default()
        },
    ) else {
        return;
    };
    let config = p.path().join("tenora.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[pooler]\nurl = \"postgres://127.0.0.1:{}\"\nmode = \"transaction\"\n",
        bouncer.port
    ));
    std::fs::write(&config, text).unwrap();

    p.ok(&["--create-base", "migrate"]);
    p.ok(&["migrate"]);
    p.ok(&["make:migration:tenants", "create_users"]);
    p.ok(&["make:seed:tenants", "01_nothing"]);
    p.ok(&["migrate:tenants"]);
    let tenants: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    for id in &tenants {
        p.ok(&["tenants", "create", id]);
    }
    // A migration that would fail if it ran twice, and counts its runs.
    p.ok(&["make:migration:tenants", "count_runs"]);
    let dir = p.migration("migrations/tenants", "_count_runs");
    std::fs::write(
        dir.join("up.sql"),
        "CREATE TABLE runs (n int);\nINSERT INTO runs VALUES (1);\n",
    )
    .unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE runs;\n").unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            p.process()
                .args(["migrate:tenants", "--concurrency", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in &tenants {
        let db = format!("{}{id}", p.prefix());
        assert_eq!(
            p.admin_scalar(Some(&db), "SELECT count(*) FROM runs").await,
            1,
            "{id}: the migration ran once"
        );
    }
    p.ok(&["seed:run:tenants"]);
    p.ok(&["rollback:tenants", "--yes"]);
    p.ok(&["migrate:tenants"]);
    let list = p.ok(&["tenants", "list"]);
    assert!(
        tenants.iter().all(|id| list.contains(id.as_str())),
        "{list}"
    );
    // None of it went through the pooler: PgBouncer served no transaction at all.
    let stats = bouncer.transactions_per_database().await;
    assert!(
        stats.iter().all(|(db, &n)| db == "pgbouncer" || n == 0),
        "administrative work went through the pooler: {stats:?}"
    );
}
