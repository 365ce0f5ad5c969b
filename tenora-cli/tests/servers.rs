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
    let (code, out, err) = p.run(&["migrate:tenants"]);
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
