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
