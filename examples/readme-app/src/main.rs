use diesel_async::RunQueryDsl;
use tenora::{Config, Error, PgTenora};

const BASE: tenora::Migrations = tenora::embed_migrations!("migrations/base");
const TENANT: tenora::Migrations = tenora::embed_migrations!("migrations/tenants");
const TENANT_SEEDS: tenora::Seeds = tenora::embed_seeds!("seeds/tenants");

// Errors print as sentences when `main` returns one.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tenora.toml (found in this folder or a parent) + TENORA_BASE_URL / TENORA_KEY
    let tenora = PgTenora::builder(Config::load()?)
        .base_migrations(BASE)
        .tenant_migrations(TENANT)
        .tenant_seeds(TENANT_SEEDS)
        .connect()
        .await?;
    tenora.migrate_base().await?; // creates the registry (and your base tables)
    tenora.migrate_all_tenants().await?; // per-tenant outcomes; one failure does not stop the rest

    let acme = tenora.tenant_id("acme")?; // untrusted input → validated TenantId
    // None: generate a strong password. A second run finds the tenant there.
    match tenora.create_tenant(&acme, None).await {
        Ok(_) | Err(Error::TenantExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut conn = tenora.tenant_conn(&acme).await?; // pooled, connects as acme's own role
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}
