//! `tenora status`: the fleet's migration state from the registry, before and after a new
//! migration, and drift (an applied migration edited afterwards) exits 1.

use crate::project::{Kind, Project};

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn status_behind_up_to_date_and_drift() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    p.ok(&["tenants", "create", "globex"]);
    let out = p.ok(&["status"]);
    assert!(out.contains("status: 2 up to date"), "{out}");

    p.ok(&["make:migration:tenants", "create_notes"]);
    let out = p.ok(&["status"]);
    assert!(out.contains("status: 2 behind"), "{out}");
    let report = json(&p.ok(&["--format", "json", "status"]));
    let tenants = report["result"]["tenants"].as_array().unwrap();
    assert!(
        tenants
            .iter()
            .all(|t| t["status"] == "behind" && t["pending"] == 1),
        "{report}"
    );
    p.ok(&["migrate:tenants"]);
    assert!(p.ok(&["status"]).contains("status: 2 up to date"));
    // Up to date by the registry: nothing to connect to; --verify connects anyway.
    let out = p.ok(&["migrate:tenants", "--verify"]);
    assert!(out.contains("2 up to date"), "{out}");

    // The applied migration edited afterwards: drift, exit 1.
    let notes = p.migration("migrations/tenants", "_create_notes");
    let up = notes.join("up.sql");
    let sql = std::fs::read_to_string(&up).unwrap();
    std::fs::write(&up, format!("{sql}\n-- edited after it was applied\n")).unwrap();
    let (code, out, err) = p.run(&["status"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("2 differs"), "{out}");
    assert!(
        err.contains("differ from this binary's migrations"),
        "{err}"
    );
    // Migrating on top of an edited migration is refused, naming it; --allow-drift goes on.
    let (code, out, err) = p.run(&["migrate:tenants"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("_create_notes") && err.contains("--allow-drift"),
        "{err}"
    );
    p.ok(&["migrate:tenants", "--allow-drift"]);
    // The registry now takes the edited copy as applied; the databases' ledgers know better.
    assert!(p.ok(&["status"]).contains("status: 2 up to date"));
    let (code, out, _) = p.run(&["status", "--verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("acme: `") && out.contains("was applied with other contents"),
        "{out}"
    );
}

/// `--dry-run` says per tenant what would be applied or reverted, and changes nothing.
#[test]
fn dry_runs_change_nothing() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    p.ok(&["make:migration:tenants", "create_notes"]);
    let out = p.ok(&["migrate:tenants", "--dry-run"]);
    assert!(out.contains("acme: would apply 1"), "{out}");
    assert!(out.contains("_create_notes"), "{out}");
    assert!(out.contains("1 would apply"), "{out}");
    assert!(
        p.ok(&["status"]).contains("1 behind"),
        "nothing was applied"
    );
    p.ok(&["migrate:tenants"]);
    // A rollback dry run needs no confirmation: it reverts nothing.
    let out = p.ok(&["rollback:tenants", "--step", "2", "--dry-run"]);
    assert!(out.contains("acme: would revert 2"), "{out}");
    assert!(out.contains("_create_notes"), "{out}");
    assert!(
        p.ok(&["status"]).contains("1 up to date"),
        "nothing was reverted"
    );

    // The base database too: a new base migration would be applied, the newest reverted.
    p.ok(&["make:migration", "create_plans"]);
    let out = p.ok(&["migrate", "--dry-run"]);
    assert!(
        out.contains("would apply 1 base migration(s)") && out.contains("_create_plans"),
        "{out}"
    );
    let out = p.ok(&["rollback", "--dry-run"]);
    assert!(
        out.contains("would revert 1 base migration(s)")
            && !out.contains("_create_plans")
            && out.contains("_create_tenora_tenants"),
        "{out}"
    );
    let out = p.ok(&["migrate", "--dry-run"]);
    assert!(out.contains("would apply 1"), "still pending: {out}");
    p.ok(&["migrate"]);
    let out = p.ok(&["migrate", "--dry-run"]);
    assert!(out.contains("nothing to apply"), "{out}");
}

/// A binary older than the fleet (its newest migration folder is gone) keeps serving the
/// tenants a newer one migrated: `migrate:tenants` reports them ahead, changes nothing,
/// exits 0.
#[test]
fn an_older_binary_reports_tenants_ahead() {
    let Some(p) = Project::ready(Kind::Sqlite, false) else {
        return;
    };
    p.ok(&["tenants", "create", "acme"]);
    p.ok(&["make:migration:tenants", "create_notes"]);
    p.ok(&["migrate:tenants"]);
    let notes = p.migration("migrations/tenants", "_create_notes");
    std::fs::rename(&notes, p.path().join("notes-of-the-newer-release")).unwrap();
    let out = p.ok(&["migrate:tenants"]);
    assert!(
        out.contains("acme: ahead") && out.contains("1 ahead"),
        "{out}"
    );
    let report = json(&p.ok(&["--format", "json", "migrate:tenants"]));
    let tenant = &report["result"]["tenants"][0];
    assert_eq!(tenant["status"], "ahead", "{report}");
    assert_eq!(tenant["items"].as_array().unwrap().len(), 1, "{report}");
    assert!(p.ok(&["status"]).contains("1 ahead"));
}
