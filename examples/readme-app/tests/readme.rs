//! The README's "Using it" program is this crate's `main.rs`, word for word, and it runs: twice
//! against PostgreSQL (the second run finds its tenant there), configured by a `tenora.toml`
//! found in a parent folder of where it runs.

use std::path::PathBuf;

#[test]
fn main_rs_is_the_readme_snippet() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let start = readme
        .find("```rust\nuse diesel_async::RunQueryDsl;\nuse tenora::{Config, Error, PgTenora};")
        .expect("README has the Using it snippet")
        + "```rust\n".len();
    let end = start + readme[start..].find("```\n").unwrap();
    let main = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
    assert_eq!(
        main,
        &readme[start..end],
        "examples/readme-app/src/main.rs must be README's snippet (copy one into the other)"
    );
}

#[test]
fn the_snippet_runs_twice_against_postgres() {
    use tenora_test_support::{Made, block_on, drop_pg, pg_connect, server_url, unique_token};
    let Some(admin_url) = server_url("TENORA_TEST_PG_URL", "PostgreSQL (TENORA_TEST_PG_URL)")
    else {
        return;
    };
    let token = unique_token();
    let base = format!("readme_{token}");
    let prefix = format!("rd{token}_");
    let (url, create) = (admin_url.clone(), format!("CREATE DATABASE \"{base}\""));
    block_on(async move { pg_connect(&url).await.batch_execute(&create).await.unwrap() });
    let (url_prefix, _) = admin_url.rsplit_once('/').unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tenora.toml"),
        format!(
            "[base]\nclient = \"postgres\"\nurl = \"{url_prefix}/{base}\"\n\
             [tenant]\ndatabase_prefix = \"{prefix}\"\nuser_prefix = \"{prefix}\"\n"
        ),
    )
    .unwrap();
    let below = project.path().join("src");
    std::fs::create_dir_all(&below).unwrap();
    let key = tenora::EncryptionKey::generate().to_base64();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_readme-app"))
            .current_dir(&below)
            .env_remove("TENORA_CONFIG")
            .env_remove("TENORA_BASE_URL")
            .env("TENORA_KEY", key.expose())
            .output()
            .unwrap()
    };
    let outcomes = [run(), run()];
    let mut made = Made::prefixed(prefix);
    made.databases.push(base);
    block_on(async move { drop_pg(&admin_url, &made).await });
    for out in outcomes {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
