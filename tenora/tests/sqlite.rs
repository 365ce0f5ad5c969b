//! SQLite-only behaviour: file placement and removal.

use tenora::backend::Sqlite;
use tenora::{SecretString, TenantId};

use crate::support::assert_err_contains;
use crate::support::backends::{TestBackend, tenora_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_files_follow_the_name_template_and_drop_removes_them() {
    let Some(env) = Sqlite::env() else { return };
    let dir = env.config.resolve(&env.config.tenant.database_dir);
    let config = env.config.clone().tenant_database_name("tenant_{id}.db");
    let t = tenora_with::<Sqlite>(config, Sqlite::tenant_migrations()).await;
    let acme = TenantId::new("acme").unwrap();
    t.create_tenant(&acme, None).await.unwrap();
    let file = dir.join("tenant_acme.db");
    assert!(file.is_file(), "{}", file.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tenant files are private to the service user");
    }
    // WAL mode leaves -wal/-shm beside the file while connections are open.
    let conn = t.tenant_conn(&acme).await.unwrap();
    drop(conn);
    t.drop_tenant(&acme).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");

    assert_err_contains(
        t.create_tenant(&acme, Some(SecretString::new("Password-123")))
            .await,
        &["has no database users"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenant_file_is_an_error_not_a_new_empty_database() {
    let Some(env) = Sqlite::env() else { return };
    let dir = env.config.resolve(&env.config.tenant.database_dir);
    let t = tenora_with::<Sqlite>(env.config.clone(), Sqlite::tenant_migrations()).await;
    let acme = TenantId::new("acme").unwrap();
    t.create_tenant(&acme, None).await.unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    assert_err_contains(
        t.tenant_conn(&acme).await,
        &["cannot connect to tenant `acme`"],
    );
    assert!(
        !dir.join("acme.sqlite").exists(),
        "no empty database was created"
    );
}

/// A migration that runs outside a transaction and fails half-way keeps what it did; the error
/// names the tenant and the migration and says what to do by hand — on this run and the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_outside_a_transaction_names_the_manual_step() {
    let Some(env) = Sqlite::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    tenora_test_support::write_migration(
        dir.path(),
        "2024-01-01-000000_create_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
        "DROP TABLE notes;",
    );
    tenora_test_support::write_migration(
        dir.path(),
        "2024-01-02-000000_half_done",
        "CREATE TABLE tags (id INTEGER PRIMARY KEY);\nINSERT INTO missing VALUES (1);",
        "DROP TABLE tags;",
    );
    std::fs::write(
        dir.path().join("2024-01-02-000000_half_done/metadata.toml"),
        "run_in_transaction = false\n",
    )
    .unwrap();
    let migrations = tenora::Migrations::from_dir(dir.path()).unwrap();
    let t = tenora_with::<Sqlite>(env.config.clone(), Sqlite::tenant_migrations()).await;
    let acme = TenantId::new("acme").unwrap();
    t.create_tenant(&acme, None).await.unwrap();
    let t = tenora_with::<Sqlite>(env.config.clone(), migrations).await;
    for attempt in ["first run", "rerun"] {
        let err = t.migrate_tenant(&acme).await.unwrap_err().to_string();
        for needle in [
            "tenant `acme`",
            "2024-01-02-000000_half_done",
            "outside a transaction",
            "finish or undo them by hand",
        ] {
            assert!(err.contains(needle), "{attempt}: {needle}: {err}");
        }
    }
}

/// A registry made by Tenora 0.1 (no `token` column) gets an error saying which migration to
/// run, and works once it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_of_an_earlier_version_says_which_migration_to_run() {
    let Some(env) = Sqlite::env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (up, down) = tenora::registry::registry_migration_sql("tenora_tenants");
    let legacy = up.replace(",\n    token VARCHAR(64)", "");
    tenora_test_support::write_migration(dir.path(), "2024-01-01-000000_registry", &legacy, &down);
    let old = tenora::Tenora::<Sqlite>::builder(env.config.clone())
        .base_migrations(tenora::Migrations::from_dir(dir.path()).unwrap())
        .connect()
        .await
        .unwrap();
    old.migrate_base().await.unwrap();
    assert_err_contains(
        old.list_tenants().await,
        &["has no `token` column", "run the base migrations"],
    );
    let (up, down) = tenora::registry::registry_token_migration_sql("tenora_tenants");
    tenora_test_support::write_migration(dir.path(), "2026-12-02-000000_token", &up, &down);
    let upgraded = tenora::Tenora::<Sqlite>::builder(env.config.clone())
        .base_migrations(tenora::Migrations::from_dir(dir.path()).unwrap())
        .tenant_migrations(Sqlite::tenant_migrations())
        .connect()
        .await
        .unwrap();
    upgraded.migrate_base().await.unwrap();
    upgraded
        .create_tenant(&TenantId::new("acme").unwrap(), None)
        .await
        .unwrap();
}
