//! The smallest Tenora service: on startup it migrates the base database and every registered
//! tenant with the migrations compiled into this binary, then serves. Replicas may start at
//! once: each database is migrated under its own lock, so every migration runs exactly once.
//!
//! Config: `tenora.toml` (or `$TENORA_CONFIG`) with the usual `TENORA_BASE_URL` / `TENORA_KEY`
//! overrides, the same file the `tenora` CLI reads; without one, SQLite files in `./data`.
//! Listens on `APP_ADDR` (default 127.0.0.1:3000).

use std::path::Path;

use tenora::backend::{Mysql, Postgres, Sqlite};
use tenora::{Client, Config, Migrations, Tenora};

/// Migrates base and tenants; returns a one-line summary.
async fn migrate<B: tenora::backend::Backend>(
    config: Config,
    tenant_migrations: Migrations,
) -> Result<String, Box<dyn std::error::Error>> {
    let tenora = Tenora::<B>::builder(config)
        .base_migrations(base_schema::MIGRATIONS)
        .tenant_migrations(tenant_migrations)
        .connect()
        .await?;
    let base = tenora.migrate_base().await?;
    let outcomes = tenora.migrate_all_tenants().await?;
    let applied: usize = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok())
        .map(Vec::len)
        .sum();
    let failed: Vec<&tenora::Error> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    if let Some(first) = failed.first() {
        return Err(format!(
            "tenant migrations failed ({} of {} tenants), first: {first}",
            failed.len(),
            outcomes.len()
        )
        .into());
    }
    Ok(format!(
        "{} base and {applied} tenant migrations applied over {} tenants",
        base.len(),
        outcomes.len()
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = if std::env::var_os("TENORA_CONFIG").is_some() || Path::new("tenora.toml").exists()
    {
        Config::load()?
    } else {
        Config::sqlite("data/base.sqlite").tenant_database_dir("data/tenants")
    };
    let summary = match config.base.client {
        Client::Sqlite => migrate::<Sqlite>(config, tenant_schema::SQLITE_MIGRATIONS).await?,
        Client::Postgres => migrate::<Postgres>(config, tenant_schema::POSTGRES_MIGRATIONS).await?,
        Client::Mysql => migrate::<Mysql>(config, tenant_schema::MYSQL_MIGRATIONS).await?,
    };
    println!("migrated: {summary}");

    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || async move { summary }),
    );
    let addr = std::env::var("APP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
