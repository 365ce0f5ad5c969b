//! `cargo run -p axum-app`: serves the example API on `APP_ADDR` (default 127.0.0.1:3000).
//!
//! Environment:
//! - `APP_DATABASE_URL`: a `postgres://` admin URL; unset means SQLite files in `APP_DATA_DIR`
//!   (default `axum-app-data`). PostgreSQL also needs `TENORA_KEY` (`tenora generate-key`).
//! - `ADMIN_TOKEN`: bearer token of `POST /admin/tenants` (random and printed when unset).
//! - `APP_SECRET`: secret the tenants' API keys derive from (random when unset: keys then
//!   last until the process stops).
//! - `APP_POOLER_URL`: a connection pooler (PgBouncer) in front of the PostgreSQL server, as
//!   `postgres://host:port`: tenant requests go through it, administrative work (sign-ups,
//!   migrations, the registry) to `APP_DATABASE_URL`. `APP_POOLER_MODE`: its `pool_mode`,
//!   `transaction` (default) or `session`.
//! - `APP_DB_PREFIX` / `APP_ROLE_PREFIX`: prefixes of tenant database and role names (Tenora's
//!   defaults: none and `user_`), so several apps can share a server.
//! - `RUST_LOG`: log filter as `target=level` pairs (default `info`); colours only on a
//!   terminal.
//!
//! `GET /metrics` serves Tenora's metrics in Prometheus text format.

use std::process::ExitCode;

use axum_app::{ApiKeys, Settings};
use tenora::Config;
use tenora::backend::{Postgres, Sqlite};

#[tokio::main]
async fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = match env("RUST_LOG") {
        Some(spec) => match spec.parse::<Targets>() {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("axum-app: RUST_LOG={spec:?} is not a valid log filter: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Targets::new().with_default(LevelFilter::INFO),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::stdout().is_terminal()),
        )
        .with(filter)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum-app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `APP_DB_PREFIX` / `APP_ROLE_PREFIX`, when set.
fn prefixes(mut config: Config) -> Config {
    if let Some(prefix) = env("APP_DB_PREFIX") {
        config = config.tenant_database_prefix(prefix);
    }
    if let Some(prefix) = env("APP_ROLE_PREFIX") {
        config = config.tenant_user_prefix(prefix);
    }
    config
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let admin_token = env("ADMIN_TOKEN").unwrap_or_else(|| {
        let token = ApiKeys::random().key_of(&tenora::TenantId::new("admin").expect("valid"));
        println!("ADMIN_TOKEN not set; this run's admin token: {token}");
        token
    });
    let api_keys = match env("APP_SECRET") {
        Some(secret) => ApiKeys::new(secret)?,
        None => {
            println!("APP_SECRET not set: tenant API keys are valid until this process stops");
            ApiKeys::random()
        }
    };
    let settings = Settings {
        api_keys,
        admin_token,
        metrics: Some(axum_app::install_metrics()?),
    };
    let app = match env("APP_DATABASE_URL") {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let key = env("TENORA_KEY").ok_or(
                "PostgreSQL tenants' passwords are sealed with TENORA_KEY: set it (create one \
                 with `tenora generate-key`)",
            )?;
            let mut config = prefixes(Config::postgres(url).key(key));
            if let Some(pooler) = env("APP_POOLER_URL") {
                config = config.pooler(match env("APP_POOLER_MODE").as_deref() {
                    None | Some("transaction") => tenora::PoolerConfig::transaction(pooler),
                    Some("session") => tenora::PoolerConfig::session(pooler),
                    Some(other) => {
                        return Err(format!(
                            "APP_POOLER_MODE={other:?}: use `transaction` or `session`"
                        )
                        .into());
                    }
                });
            }
            axum_app::app::<Postgres>(config, settings).await?
        }
        Some(_) => {
            return Err("APP_DATABASE_URL must be a postgres:// URL (or unset for SQLite)".into());
        }
        None => {
            let dir =
                std::path::PathBuf::from(env("APP_DATA_DIR").unwrap_or("axum-app-data".into()));
            let config = prefixes(
                Config::sqlite(dir.join("base.sqlite")).tenant_database_dir(dir.join("tenants")),
            );
            axum_app::app::<Sqlite>(config, settings).await?
        }
    };
    let addr = env("APP_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("axum-app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
