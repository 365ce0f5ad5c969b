//! Tenora quick start: two tenants on SQLite, each with its own database file, no setup.
//!
//! Run with `cargo run -p quickstart`. Data goes to `$TMPDIR/tenora-quickstart` (or the folder
//! given as the first argument) and is recreated on every run.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tenant_schema::schema::{projects, users};
use tenora::{Config, SqliteTenora};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tenora-quickstart"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("Tenora quick start (SQLite files in {})", dir.display());

    // 1. Configure: a base database holding the registry, tenant files beside it. A generated
    //    key stands in for TENORA_KEY (SQLite tenants have no passwords to seal anyway).
    let config = Config::sqlite(dir.join("base.sqlite")).tenant_database_dir(dir.join("tenants"));
    let tenora = SqliteTenora::builder(config)
        .base_migrations(base_schema::MIGRATIONS)
        .tenant_migrations(tenant_schema::SQLITE_MIGRATIONS)
        .tenant_seeds(tenant_schema::SEEDS)
        .connect()
        .await?;

    // 2. Create the base database's registry.
    let applied = tenora.migrate_base().await?;
    println!("base migrations applied: {applied:?}");

    // 3. Provision two tenants: database file, tenant migrations, seeds, registry row.
    for name in ["acme", "globex"] {
        let id = tenora.tenant_id(name)?;
        let record = tenora.create_tenant(&id, None).await?;
        println!("created tenant `{}` ({})", record.id, record.state);
    }

    // 4. Write into each tenant through its pooled connection.
    for (name, project) in [("acme", "Rocket skates"), ("globex", "Doomsday device")] {
        let id = tenora.tenant_id(name)?;
        let mut conn = tenora.tenant_conn(&id).await?;
        let admin: i32 = users::table
            .select(users::id)
            .filter(users::email.eq("admin@example.com"))
            .first(&mut conn)
            .await?;
        diesel::insert_into(projects::table)
            .values((projects::owner_id.eq(admin), projects::name.eq(project)))
            .execute(&mut conn)
            .await?;
    }

    // 5. Read back: each tenant sees only its own rows.
    for name in ["acme", "globex"] {
        let id = tenora.tenant_id(name)?;
        let mut conn = tenora.tenant_conn(&id).await?;
        let names: Vec<String> = projects::table
            .select(projects::name)
            .order(projects::id)
            .load(&mut conn)
            .await?;
        println!("tenant `{name}` sees projects: {names:?}");
    }

    let tenants: Vec<String> = tenora
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| format!("{} ({})", t.id, t.state))
        .collect();
    println!("registry: {}", tenants.join(", "));
    let stats = tenora.stats();
    println!(
        "pool cache: {} pools, {} hits, {} misses",
        stats.cached_pools, stats.hits, stats.misses
    );
    Ok(())
}
