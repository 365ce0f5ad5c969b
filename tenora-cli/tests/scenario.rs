//! The whole operator flow, on each backend.

use crate::project::{Kind, Project};

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

async fn operator_flow(kind: Kind) {
    let Some(p) = Project::new(kind) else { return };
    // First migrate: creates the base database, writes the registry migration (creating the
    // folder) and stops.
    let first = p.ok(&["--create-base", "migrate"]);
    assert!(first.contains("created the base database"), "{first}");
    assert!(
        first.contains("wrote the tenant registry migration"),
        "{first}"
    );
    let registry = p.migration("migrations/base", "_create_tenora_tenants");
    assert!(
        std::fs::read_to_string(registry.join("up.sql"))
            .unwrap()
            .contains("CREATE TABLE tenora_tenants")
    );
    // Second: applies it. Third: nothing to do.
    assert!(p.ok(&["migrate"]).contains("applied 1 base migration"));
    // An existing base database is left alone.
    let again = p.ok(&["--create-base", "tenants", "list"]);
    assert!(!again.contains("created the base database"), "{again}");
    assert!(p.ok(&["migrate:base"]).contains("already up to date"));

    // Tenant schema and seed, generated.
    p.ok(&["make:migration:tenants", "create_users"]);
    p.ok(&["make:migration:tenants", "add_email_to_users"]);
    p.ok(&["make:seed:tenants", "01_admin"]);
    let seed = p.path().join("seeds/tenants/01_admin.sql");
    let mut text = std::fs::read_to_string(&seed).unwrap();
    text.push_str("INSERT INTO users (id, email) VALUES (1, 'admin@example.com');\n");
    std::fs::write(&seed, text).unwrap();

    for id in ["acme", "globex", "initech"] {
        let out = p.ok(&["tenants", "create", id]);
        assert!(
            out.contains(&format!("created tenant `{id}` (active)")),
            "{out}"
        );
    }
    let listed = json(&p.ok(&["--format", "json", "tenants", "list"]));
    let ids: Vec<_> = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["acme", "globex", "initech"]);
    assert!(!listed.to_string().contains("password"));

    // A new tenant migration; globex already has a conflicting table, so it fails there while
    // the others migrate.
    p.ok(&["make:migration:tenants", "create_projects"]);
    p.tenant_sql("globex", "CREATE TABLE projects (x INTEGER)")
        .await;
    let (code, out, err) = p.run(&["migrate:tenants"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("migrate:tenants: 2 applied, 1 failed"),
        "{out}"
    );
    assert!(out.contains("globex: failed"), "{out}");
    assert!(err.contains("failed: globex:"), "{err}");
    assert!(
        err.contains("_create_projects"),
        "the failing migration is named: {err}"
    );
    assert!(err.contains("1 tenant(s) failed"), "{err}");
    // The error is printed once.
    let all = format!("{out}{err}");
    assert_eq!(all.matches("_create_projects` failed").count(), 1, "{all}");
    // -q still names the failing tenant.
    let (code, out, err) = p.run(&["-q", "migrate:tenants"]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("failed: globex:"), "{err}");

    let (code, out, _) = p.run(&["--format", "json", "migrate:tenants"]);
    assert_eq!(code, 1);
    let doc = json(&out);
    assert_eq!(doc["ok"], false);
    let statuses: Vec<_> = doc["result"]["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("acme".into(), "up_to_date".into()),
            ("globex".into(), "failed".into()),
            ("initech".into(), "up_to_date".into())
        ]
    );

    // --fail-fast stops at globex: initech is skipped (--verify: the tenants the registry
    // records as up to date are connected to as well, one at a time).
    let (code, out, _) = p.run(&[
        "--format",
        "json",
        "migrate:tenants",
        "--verify",
        "--fail-fast",
        "--concurrency",
        "1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["result"]["tenants"][2]["status"], "skipped");

    // Without a terminal, a rollback needs --yes: it says what it would revert, and reverts
    // nothing.
    let (code, _, err) = p.run(&["rollback:tenants", "--tenant", "acme", "--step", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("on 1 tenant database(s)")
            && err.contains("_add_email_to_users")
            && err.contains("pass --yes"),
        "{err}"
    );

    // Roll one tenant back two steps (both still applied: the refused run reverted nothing), then everyone forward again.
    let out = p.ok(&[
        "rollback:tenants",
        "--tenant",
        "acme",
        "--step",
        "2",
        "--yes",
        "-v",
    ]);
    assert!(out.contains("acme: reverted 2"), "{out}");
    assert!(out.contains("_add_email_to_users"), "{out}");
    p.tenant_sql("globex", "DROP TABLE projects").await;
    let out = p.ok(&["migrate:tenants"]);
    assert!(
        out.contains("acme: applied 2") && out.contains("globex: applied 1"),
        "{out}"
    );

    // Seeds run on creation and on demand (the seed is not re-runnable: a clear error).
    let (code, _, err) = p.run(&["seed:run:tenants", "--tenant", "initech"]);
    assert_eq!(code, 1);
    assert!(err.contains("seed `01_admin.sql`"), "{err}");
    p.tenant_sql("initech", "DELETE FROM users").await;
    assert!(
        p.ok(&["seed:run:tenants", "--tenant", "initech"])
            .contains("initech: seeded 1")
    );

    // Dropping needs --yes.
    let (code, _, err) = p.run(&["tenants", "drop", "acme"]);
    assert_eq!(code, 2);
    assert!(err.contains("pass --yes"), "{err}");
    p.ok(&["tenants", "drop", "acme", "--yes"]);
    let listed = json(&p.ok(&["--format", "json", "tenants", "list"]));
    assert_eq!(listed["result"].as_array().unwrap().len(), 2);

    // A chosen password through stdin: stored sealed (PostgreSQL); refused where tenants have no
    // users (SQLite).
    let out = p.piped(
        &["tenants", "create", "hooli", "--password-stdin"],
        "Hooli-Pass-123\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    match kind {
        Kind::Postgres | Kind::Mysql => {
            assert!(out.status.success(), "{stderr}");
            let config = tenora::Config::from_path(p.path().join("tenora.toml")).unwrap();
            let key = config.encryption_key().unwrap().unwrap();
            let sealed = p.stored_password("hooli").await;
            let id = tenora::TenantId::new("hooli").unwrap();
            let opened = tenora::secret::decrypt_password(&key, &id, &sealed).unwrap();
            assert_eq!(opened.expose(), "Hooli-Pass-123");
        }
        Kind::Sqlite => {
            assert_eq!(out.status.code(), Some(2));
            assert!(stderr.contains("no database users"), "{stderr}");
        }
    }
    assert!(!stderr.contains("Hooli-Pass-123"));

    // Base rollback reverts the registry migration.
    let (code, _, err) = p.run(&["rollback"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("base database") && err.contains("pass --yes"),
        "{err}"
    );
    assert!(
        p.ok(&["rollback", "--yes"])
            .contains("reverted 1 base migration")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_sqlite() {
    operator_flow(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_postgres() {
    operator_flow(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_mysql() {
    operator_flow(Kind::Mysql).await;
}

#[test]
fn usage_and_config_errors_exit_2_with_the_cause() {
    let p = Project::new(Kind::Sqlite).unwrap();
    let (code, _, err) = p.run(&["--config", "missing.toml", "migrate"]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("tenora")
        .unwrap()
        .current_dir(empty.path())
        .env_remove("TENORA_CONFIG")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenora.toml"));

    std::fs::write(p.path().join("bad.toml"), "[base]\nclient = \"oracle\"\n").unwrap();
    let (code, _, err) = p.run(&["--config", "bad.toml", "migrate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown client `oracle`"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "printed once: {err}");

    let (code, _, err) = p.run(&["tenants", "create", "Bad Id"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid tenant id"), "{err}");

    let (code, _, err) = p.run(&["seed:run"]);
    assert_eq!(code, 2);
    assert!(err.contains("base.seeds_dir is not set"), "{err}");

    let (code, _, err) = p.run(&["migrate:tenants"]);
    assert_eq!(code, 2);
    assert!(err.contains("tenant.migrations_dir"), "{err}");

    let (code, _, err) = p.run(&["make:migration", "Bad-Name"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid name"), "{err}");

    let (code, _, _) = p.run(&["no-such-command"]);
    assert_eq!(code, 2);

    let (code, _, _) = p.run(&["rollback", "--step", "0"]);
    assert_eq!(code, 2);

    let (code, _, err) = p.run(&["migrate:tenants", "--tenant", "Bad"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid tenant id"), "{err}");

    let (code, _, err) = p.run(&["tenants", "drop", "acme"]);
    assert_eq!(code, 2, "checked before connecting");
    assert!(err.contains("--yes"), "{err}");

    std::fs::write(
        p.path().join("secret.toml"),
        "[base]\nclient = \"postgres\"\nuser = \"u\"\npassword = 987654321\n",
    )
    .unwrap();
    let (code, out, err) = p.run(&["--format", "json", "--config", "secret.toml", "migrate"]);
    assert_eq!(code, 2);
    assert!(!format!("{out}{err}").contains("987654321"), "{out}{err}");

    let (code, out, _) = p.run(&["--format", "json", "--config", "bad.toml", "migrate"]);
    assert_eq!(code, 2);
    assert_eq!(json(&out)["ok"], false);
}

#[test]
fn passwords_never_printed() {
    let p = Project::new(Kind::Sqlite).unwrap();
    std::fs::write(
        p.path().join("pg.toml"),
        "[base]\nclient = \"postgres\"\nurl = \"postgres://admin:hunter2secret@127.0.0.1:1/app\"\n",
    )
    .unwrap();
    let (code, out, err) = p.run(&["--config", "pg.toml", "tenants", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(
        !format!("{out}{err}").contains("hunter2secret"),
        "{out}{err}"
    );
}

#[test]
fn completions_for_each_shell() {
    let p = Project::new(Kind::Sqlite).unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = p.ok(&["completions", shell]);
        assert!(out.contains("migrate:tenants"), "{shell}");
    }
}

#[test]
fn embedded_migrations_replace_the_folders() {
    let p = Project::new(Kind::Sqlite).unwrap();
    let config = p.path().join("tenora.toml");
    let run = |args: &[&str]| {
        let mut full = vec!["tenora", "--config", config.to_str().unwrap()];
        full.extend_from_slice(args);
        tenora_cli::run_from(
            full,
            Some(tenora_cli::Embedded {
                base: base_schema::MIGRATIONS,
                tenant: tenant_schema::SQLITE_MIGRATIONS,
                base_seeds: tenora::Seeds::empty(),
                tenant_seeds: tenant_schema::SEEDS,
            }),
        )
    };
    // No migration folders exist in this project: everything comes from the binary.
    assert_eq!(run(&["migrate"]), std::process::ExitCode::SUCCESS);
    assert_eq!(
        run(&["tenants", "create", "acme"]),
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(run(&["migrate:tenants"]), std::process::ExitCode::SUCCESS);
    assert!(!p.path().join("migrations").exists());
    let listed = p.ok(&["tenants", "list"]);
    assert!(
        listed.contains("acme") && listed.contains("active"),
        "{listed}"
    );
}

#[test]
fn config_is_found_in_a_parent_folder_and_paths_are_relative_to_it() {
    let p = Project::new(Kind::Sqlite).unwrap();
    let deep = p.path().join("src/deeper");
    std::fs::create_dir_all(&deep).unwrap();
    let out = p
        .cmd()
        .current_dir(&deep)
        .args(["make:migration", "create_plans"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.migration("migrations/base", "_create_plans");
    assert!(!deep.join("migrations").exists());
}

#[test]
fn three_processes_migrate_the_fleet_at_once() {
    let p = Project::new(Kind::Sqlite).unwrap();
    p.ok(&["migrate"]);
    p.ok(&["migrate"]);
    p.ok(&["make:migration:tenants", "create_users"]);
    p.ok(&["make:seed:tenants", "01_nothing"]);
    for i in 0..5 {
        p.ok(&["tenants", "create", &format!("t{i}")]);
    }
    p.ok(&["make:migration:tenants", "create_projects"]);
    let children: Vec<_> = (0..3)
        .map(|_| {
            p.process()
                .args(["--format", "json", "migrate:tenants", "--concurrency", "2"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for t in json(&text)["result"]["tenants"].as_array().unwrap() {
            applied += t["items"].as_array().unwrap().len();
        }
    }
    assert_eq!(
        applied, 5,
        "every tenant got the new migration exactly once"
    );
}

/// The CLI shows Tenora's log on standard error (warnings by default, more with `-v` or
/// `RUST_LOG`), and refuses to store a password in plain text unless the config says so.
#[test]
fn log_output_and_plaintext_only_on_purpose() {
    let Some(p) = Project::new(Kind::Postgres) else {
        return;
    };
    p.ok(&["--create-base", "migrate"]);
    p.ok(&["migrate"]);
    p.ok(&["make:migration:tenants", "create_users"]);
    p.ok(&["make:seed:tenants", "01_none"]);
    let (code, _, err) = p.run(&["-v", "tenants", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("tenant created"), "-v shows info: {err}");
    let (_, _, err) = p.run(&["tenants", "list"]);
    assert!(!err.contains("INFO"), "default is warnings only: {err}");
    // Machine-readable: one JSON object a line, with the span's tenant.
    let (code, _, err) = p.run(&["--log-format", "json", "-v", "tenants", "create", "initech"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "tenant created"
            && l["span"]["tenant"] == "initech"),
        "{err}"
    );
    let out = p
        .cmd()
        .env("RUST_LOG", "info")
        .args(["tenants", "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connection budget"),
        "RUST_LOG=info shows the budget line"
    );

    // Without a key: refused (exit 2, nothing made), then allowed on purpose, with a warning.
    let path = p.path().join("tenora.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let keyless: String = config
        .lines()
        .filter(|l| !l.starts_with("key = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, &keyless).unwrap();
    let (code, _, err) = p.run(&["tenants", "create", "globex"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allow_plaintext"), "{err}");
    assert!(!p.ok(&["tenants", "list"]).contains("globex"));
    std::fs::write(
        &path,
        keyless.replace("[secrets]\n", "[secrets]\nallow_plaintext = true\n"),
    )
    .unwrap();
    let (code, _, err) = p.run(&["tenants", "create", "globex"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("plain text"),
        "the store is warned about: {err}"
    );
}
