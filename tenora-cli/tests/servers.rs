//! Tenants on two servers from the command line: `--server`, the SERVER column, `servers
//! list`, and a fleet run with one server down (exit 1, a summary line per server).

use std::io::Write as _;

use crate::project::{Kind, Project};
use tenora_test_support::PgCluster;

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn tenants_on_two_servers() {
    let Some(p) = Project::ready(Kind::Postgres, false) else {
        return;
    };
    let Some(a) = PgCluster::start() else { return };
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(p.path().join("tenora.toml"))
        .unwrap();
    write!(
        config,
        "\n[servers.default]\n\n[servers.a]\nurl = \"{}\"\n",
        a.admin_url()
    )
    .unwrap();
    drop(config);

    let created = p.ok(&["tenants", "create", "x1", "--server", "a"]);
    assert!(created.contains("on server `a`"), "{created}");
    // Least loaded: the default server.
    let created = p.ok(&["tenants", "create", "x2"]);
    assert!(created.contains("on server `default`"), "{created}");
    let (code, _, err) = p.run(&["tenants", "create", "x3", "--server", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no such server") && err.contains("default, a"),
        "{err}"
    );

    let list = p.ok(&["tenants", "list"]);
    assert!(list.contains("SERVER"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("x1 ") && l.contains(" a ")),
        "{list}"
    );
    let servers = json(&p.ok(&["--format", "json", "servers", "list"]));
    let servers = servers["result"]["servers"].as_array().unwrap().clone();
    let row = |name: &str| {
        servers
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {servers:?}"))
            .clone()
    };
    assert_eq!(row("a")["tenants"], 1);
    assert_eq!(row("default")["tenants"], 1);
    assert_eq!(row("a")["reachable"], true);
    // The admin password of server a is never printed.
    assert!(!format!("{servers:?}").contains(&a.password));

    // TENORA_SERVER_A_URL replaces the table's connection settings.
    let out = p
        .cmd()
        .args(["servers", "list"])
        .env(
            "TENORA_SERVER_A_URL",
            "postgres://postgres@127.0.0.1:1/postgres",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("a ") && l.contains(":1")),
        "{text}"
    );

    a.stop();
    // --verify: x1 is up to date by the registry, and would need no connection otherwise.
    let (code, out, err) = p.run(&["migrate:tenants", "--verify"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("server a: 1 tenant(s), 0 ok, 1 failed"),
        "{out}"
    );
    assert!(
        out.contains("server default: 1 tenant(s), 1 ok, 0 failed"),
        "{out}"
    );
    assert!(err.contains("x1") && err.contains("on server `a`"), "{err}");
    let (code, out, _) = p.run(&["servers", "list"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("a ") && l.contains("NO: ")),
        "{out}"
    );
    p.ok(&["tenants", "drop", "x2", "--yes"]);
}

/// Tenant objects with the project's prefix on the cluster at `admin_url`, from its catalog.
async fn objects_on(admin_url: &str, prefix: &str) -> Vec<String> {
    let client = tenora_test_support::pg_connect(admin_url).await;
    let mut found: Vec<String> = client
        .query(
            "SELECT 'database ' || datname FROM pg_database WHERE starts_with(datname, $1) \
             UNION ALL SELECT 'user ' || rolname FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    found.sort();
    found
}

/// Crashes at every step of creating and dropping tenants placed on a second server, then
/// `tenants repair --all`: the second server's catalog holds exactly the tenants that were
/// created in full, and the default server holds none (placement was recorded first, so
/// repair works where the tenant was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_on_a_second_server_are_repaired_there() {
    let Some(p) = Project::ready(Kind::Postgres, false) else {
        return;
    };
    let Some(a) = PgCluster::start() else { return };
    std::fs::OpenOptions::new()
        .append(true)
        .open(p.path().join("tenora.toml"))
        .and_then(|mut f| write!(f, "\n[servers.a]\nurl = \"{}\"\n", a.admin_url()))
        .unwrap();
    for point in crate::crash::CREATE_POINTS {
        crate::crash::crash(&p, point, &["tenants", "create", &format!("c_{point}")]);
    }
    p.ok(&["tenants", "create", "kept"]);
    for point in crate::crash::DROP_POINTS {
        let id = format!("d_{point}");
        p.ok(&["tenants", "create", &id]);
        crate::crash::crash(&p, point, &["tenants", "drop", &id, "--yes"]);
    }
    assert!(
        objects_on(&a.admin_url(), p.prefix()).await.len() > 2,
        "the crashes left objects on server a"
    );
    p.ok(&["tenants", "repair", "--all"]);
    let prefix = p.prefix();
    assert_eq!(
        objects_on(&a.admin_url(), prefix).await,
        [
            format!("database {prefix}kept"),
            format!("user {prefix}u_kept")
        ]
    );
    assert!(
        p.objects().await.is_empty(),
        "nothing on the default server"
    );
    let list = p.ok(&["tenants", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    // Exit 0: nothing wrong on either server.
    p.ok(&["doctor"]);
}
