//! Snapshots of help texts and generated SQL, and README's copy of `tenora list`.

use std::path::PathBuf;

use crate::project::{Kind, Project};

/// Compares `actual` with `tests/snapshots/<name>`; rewrites it when
/// `TENORA_UPDATE_SNAPSHOTS=1`.
#[track_caller]
fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("TENORA_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with TENORA_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "snapshot {name} changed; if intended, rerun with TENORA_UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn help_texts() {
    let p = Project::new(Kind::Sqlite).unwrap();
    assert_snapshot("help.txt", &p.ok(&["--help"]));
    assert_snapshot(
        "help-migrate-tenants.txt",
        &p.ok(&["migrate:tenants", "--help"]),
    );
    assert_snapshot("help-tenants.txt", &p.ok(&["tenants", "--help"]));
}

#[test]
fn generated_migrations_per_dialect() {
    for (kind, config) in [
        (
            "sqlite",
            "[base]\nclient = \"sqlite\"\ndatabase = \"b.sqlite\"\n",
        ),
        (
            "postgres",
            "[base]\nclient = \"postgres\"\nurl = \"postgres://u@localhost/app\"\n",
        ),
        (
            "mysql",
            "[base]\nclient = \"mysql\"\nurl = \"mysql://u@localhost/app\"\n",
        ),
    ] {
        let p = Project::new(Kind::Sqlite).unwrap();
        std::fs::write(p.path().join("tenora.toml"), config).unwrap();
        let mut all = String::new();
        for name in [
            "create_users",
            "create_teams_table",
            "add_email_to_users",
            "remove_email_from_users",
            "drop_age_from_users",
            "backfill_names",
        ] {
            let out = p.ok(&["make:migration:tenants", name]);
            assert!(out.contains("created tenant migration"), "{out}");
            let folder = p.migration("migrations/tenants", &format!("_{name}"));
            for file in ["up.sql", "down.sql"] {
                let sql = std::fs::read_to_string(folder.join(file)).unwrap();
                all.push_str(&format!("== {name}/{file}\n{sql}"));
            }
        }
        assert_snapshot(&format!("make-migration-{kind}.txt"), &all);
        p.ok(&["make:migration", "create_plans"]);
        p.migration("migrations/base", "_create_plans");
    }
}

#[test]
fn readme_lists_every_command_exactly() {
    let p = Project::new(Kind::Sqlite).unwrap();
    let listed = p.ok(&["list"]);
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("<!-- tenora list -->\n```text\n")
        .expect("README has a `tenora list` block")
        + "<!-- tenora list -->\n```text\n".len();
    let end = start + readme[start..].find("```").unwrap();
    assert_eq!(
        &readme[start..end],
        listed,
        "README's CLI section must match `tenora list`"
    );
}
