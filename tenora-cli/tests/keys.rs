//! `tenora keys status|rotate`: 200 rows sealed with an old key (plus real tenants on the
//! servers, and one row stored unencrypted) move to a new key; a rotation killed part-way
//! leaves every row readable with the key ring and is resumed; a wrong old key changes nothing;
//! a password changed while a rotation runs is never overwritten. Checked on the rows
//! themselves, read with a plain query and opened with the keys — and, on the servers, by
//! connecting as the tenants with the new key alone.

use serde_json::Value;
use tenora::secret::{KeyRing, encrypt_password};
use tenora::{EncryptionKey, TenantId};

use crate::project::{Kind, Project};

const RAW_ROWS: usize = 200;

/// Points the project's `secrets.key` at `key`.
fn set_key(p: &Project, key: &EncryptionKey) {
    let path = p.path().join("tenora.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("key = ") && *l != "[secrets]")
        .collect();
    let text = format!(
        "{}\n[secrets]\nkey = \"{}\"\n",
        kept.join("\n"),
        key.to_base64().expose()
    );
    std::fs::write(path, text).unwrap();
}

/// Opens every stored password with `ring`; returns (id, password) or panics naming the row.
async fn open_all(p: &Project, ring: &KeyRing) -> Vec<(String, String)> {
    p.registry_passwords()
        .await
        .into_iter()
        .filter_map(|(id, stored)| {
            let stored = stored?;
            let tenant = TenantId::new(&id).unwrap();
            let password = match stored.strip_prefix("plain:") {
                Some(plain) => plain.to_owned(),
                None => ring
                    .open(&tenant, &stored)
                    .unwrap_or_else(|e| panic!("row {id}: {e}"))
                    .expose()
                    .to_owned(),
            };
            Some((id, password))
        })
        .collect()
}

/// How many stored passwords carry `key`'s id.
async fn sealed_by(p: &Project, key: &EncryptionKey) -> usize {
    let header = format!("tenora:v2:{}:", key.id());
    p.registry_passwords()
        .await
        .iter()
        .filter(|(_, s)| s.as_deref().is_some_and(|s| s.starts_with(&header)))
        .count()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn rotate_killed_resumed_and_guarded(kind: Kind) {
    let Some(p) = Project::new(kind) else { return };
    let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
    set_key(&p, &old);
    p.ok(&["--create-base", "migrate"]);
    p.ok(&["migrate"]);
    let servers = kind != Kind::Sqlite;
    if servers {
        p.ok(&["make:migration:tenants", "create_notes"]);
        p.ok(&["make:seed:tenants", "01_none"]);
        for id in ["acme", "globex"] {
            p.ok(&["tenants", "create", id]);
        }
    }
    // Rows as an earlier deployment sealed them (registry rows only: the key rotation
    // touches nothing else), and one stored unencrypted.
    let mut sql = String::new();
    for i in 0..RAW_ROWS {
        let id = format!("r{i:03}");
        let sealed = encrypt_password(&old, &TenantId::new(&id).unwrap(), &format!("pw-{id}-x"));
        sql.push_str(&format!(
            "INSERT INTO tenora_tenants (id, password, state, created_at, updated_at) \
             VALUES ('{id}', '{sealed}', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);\n"
        ));
    }
    sql.push_str(
        "INSERT INTO tenora_tenants (id, password, state, created_at, updated_at) \
         VALUES ('zplain', 'plain:zplain-password', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);",
    );
    p.base_sql(&sql).await;
    let before = open_all(&p, &KeyRing::new(Some(old.clone()), [])).await;
    let sealed_rows = RAW_ROWS + if servers { 2 } else { 0 };
    assert_eq!(before.len(), sealed_rows + 1);

    // The new key becomes current; the old one is listed for reading.
    set_key(&p, &new);
    let old_b64 = old.to_base64();
    let status = |p: &Project| {
        let out = p
            .cmd()
            .env("TENORA_OLD_KEYS", old_b64.expose())
            .args(["--format", "json", "keys", "status"])
            .output()
            .unwrap();
        (
            out.status.code(),
            json(&String::from_utf8_lossy(&out.stdout)),
        )
    };
    let (code, report) = status(&p);
    assert_eq!(code, Some(1), "not all current: {report}");
    let keys = report["result"]["keys"].as_array().unwrap();
    assert_eq!(keys[0]["key_id"], new.id());
    assert_eq!(
        (keys[0]["role"].as_str(), keys[0]["rows"].as_u64()),
        (Some("current"), Some(0))
    );
    assert_eq!(keys[1]["key_id"], old.id());
    assert_eq!(keys[1]["rows"].as_u64(), Some(sealed_rows as u64));
    assert_eq!(report["result"]["plaintext"].as_u64(), Some(1));

    // A wrong old key: nothing changes, and the error names the rows it cannot open.
    let stored_before = p.registry_passwords().await;
    let wrong = EncryptionKey::generate().to_base64();
    let out = p
        .cmd()
        .env("TENORA_OLD_KEYS", wrong.expose())
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "cannot open the stored passwords of {sealed_rows} tenant(s)"
        )) && stderr.contains("r000")
            && stderr.contains("TENORA_OLD_KEYS")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(
        p.registry_passwords().await,
        stored_before,
        "nothing changed"
    );

    // Killed after 100 rows: each row is sealed by one key or the other, all open with the
    // ring, and a run again finishes the job.
    let out = p
        .cmd()
        .env("TENORA_OLD_KEYS", old_b64.expose())
        .env("TENORA_FAILPOINT", "key_rotation_row#100")
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(sealed_by(&p, &new).await, 100);
    let ring = KeyRing::new(Some(new.clone()), [old.clone()]);
    assert_eq!(
        open_all(&p, &ring).await,
        before,
        "readable with the ring mid-way"
    );

    let out = p
        .cmd()
        .env("TENORA_OLD_KEYS", old_b64.expose())
        .args(["--format", "json", "keys", "rotate"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = json(&stdout);
    assert_eq!(done["result"]["already_current"].as_u64(), Some(100));
    assert_eq!(
        done["result"]["resealed"].as_u64(),
        Some(sealed_rows as u64 - 100)
    );
    assert_eq!(done["result"]["sealed_plaintext"].as_u64(), Some(1));

    // The new key alone opens everything, and status agrees.
    assert_eq!(sealed_by(&p, &new).await, sealed_rows + 1);
    let only_new = KeyRing::new(Some(new.clone()), []);
    assert_eq!(open_all(&p, &only_new).await, before);
    let (code, report) = status(&p);
    assert_eq!(code, Some(0), "{report}");
    if servers {
        // Tenants connect with the new key alone (MariaDB checks the password it sends).
        for id in ["acme", "globex"] {
            p.tenant_sql(id, "SELECT 1").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_sqlite() {
    rotate_killed_resumed_and_guarded(Kind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_postgres() {
    rotate_killed_resumed_and_guarded(Kind::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_mysql() {
    rotate_killed_resumed_and_guarded(Kind::Mysql).await
}

/// A row whose password another process changes while a rotation is paused after its first
/// row: the rotation's compare-and-swap does not overwrite it; it seals the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_during_rotation_is_kept() {
    use std::io::BufRead as _;
    let Some(p) = Project::new(Kind::Sqlite) else {
        return;
    };
    let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
    set_key(&p, &old);
    p.ok(&["--create-base", "migrate"]);
    p.ok(&["migrate"]);
    let mut sql = String::new();
    for id in ["a1", "a2", "a3"] {
        let sealed = encrypt_password(&old, &TenantId::new(id).unwrap(), "first-password");
        sql.push_str(&format!(
            "INSERT INTO tenora_tenants (id, password, state, created_at, updated_at) \
             VALUES ('{id}', '{sealed}', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);\n"
        ));
    }
    p.base_sql(&sql).await;
    set_key(&p, &new);
    let release = p.path().join("release");
    let mut child = p
        .process()
        .env("TENORA_OLD_KEYS", old.to_base64().expose())
        .env(
            "TENORA_FAILPOINT",
            format!("key_rotation_row:pause={}", release.display()),
        )
        .args(["keys", "rotate"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Barrier: the rotation has read every row and written the first.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = stderr.next().expect("the rotation paused").unwrap();
        if line.contains("failpoint `key_rotation_row` reached") {
            break;
        }
    }
    // Another process changes a3's password (sealed with the old key, as an old binary would).
    let changed = encrypt_password(&old, &TenantId::new("a3").unwrap(), "second-password");
    p.base_sql(&format!(
        "UPDATE tenora_tenants SET password = '{changed}' WHERE id = 'a3'"
    ))
    .await;
    std::fs::write(&release, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let opened = open_all(&p, &KeyRing::new(Some(new.clone()), [])).await;
    assert_eq!(
        opened,
        [
            ("a1".to_owned(), "first-password".to_owned()),
            ("a2".to_owned(), "first-password".to_owned()),
            ("a3".to_owned(), "second-password".to_owned()),
        ]
    );
}

/// `[secrets] password_command`: the CLI's fleet migrations connect as each tenant with the
/// password the command prints, while the registry's copy is stale (MariaDB checks it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_command_serves_the_cli() {
    let Some(p) = Project::ready(Kind::Mysql, false) else {
        return;
    };
    let out = p.piped(
        &["tenants", "create", "acme", "--password-stdin"],
        "Vault-Pa55word-1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = tenora::Config::from_path(p.path().join("tenora.toml")).unwrap();
    let key = config.encryption_key().unwrap().unwrap();
    let stale = encrypt_password(&key, &TenantId::new("acme").unwrap(), "Stale-Pa55word-0");
    p.base_sql(&format!(
        "UPDATE tenora_tenants SET password = '{stale}' WHERE id = 'acme'"
    ))
    .await;
    p.ok(&["make:migration:tenants", "create_tags"]);
    let (code, _, err) = p.run(&["migrate:tenants"]);
    assert_eq!(code, 1, "the stale password is refused: {err}");

    let script = p.path().join("vault-get");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = acme ] && printf '%s\\n' 'Vault-Pa55word-1'\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = p.path().join("tenora.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[secrets]\n",
        &format!(
            "[secrets]\npassword_command = \"{} {{id}}\"\n",
            script.display()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let out = p.ok(&["migrate:tenants"]);
    assert!(out.contains("acme: applied 1"), "{out}");
    assert!(!out.contains("Vault-Pa55word-1"));
}
