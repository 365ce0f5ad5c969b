//! Tenora example: a small JSON API where every tenant has its own database.
//!
//! - `POST /admin/tenants` (bearer admin token) provisions a tenant and returns its API key.
//! - `GET|POST /projects` and `GET /whoami` serve the tenant named by the `x-tenant` header,
//!   after checking its `x-api-key`. The tenant's connection comes from Tenora's pool cache.
//! - Base and tenant migrations are embedded in the binary and run on startup.
//!
//! SQLite by default; PostgreSQL when `APP_DATABASE_URL` is a `postgres://` URL. See the
//! example's README for curl commands.

pub mod api_keys;
pub mod queries;
mod routes;

use axum::Router;
use tenora::{Config, Tenora};

pub use api_keys::ApiKeys;
pub use queries::AppBackend;
pub use routes::router;

/// The app's own settings (Tenora's are in [`Config`]).
#[derive(Clone)]
pub struct Settings {
    /// Derives and checks the tenants' API keys.
    pub api_keys: ApiKeys,
    /// The bearer token of the admin endpoint.
    pub admin_token: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").finish_non_exhaustive()
    }
}

/// Connects to the base database (creating it on PostgreSQL if needed), runs the embedded base
/// migrations and every tenant's pending migrations, and returns the Tenora handle. A tenant
/// whose migrations fail is logged; the app still serves the others.
pub async fn start<B: AppBackend>(config: Config) -> tenora::Result<Tenora<B>> {
    Tenora::<B>::create_base_database(&config).await?;
    let tenora = Tenora::<B>::builder(config)
        .base_migrations(base_schema::MIGRATIONS)
        .tenant_migrations(B::TENANT_MIGRATIONS)
        .tenant_seeds(tenant_schema::SEEDS)
        .connect()
        .await?;
    for name in tenora.migrate_base().await? {
        tracing::info!(migration = %name, "base migration applied");
    }
    for outcome in tenora.migrate_all_tenants().await? {
        match outcome.result {
            Ok(applied) if !applied.is_empty() => {
                tracing::info!(tenant = %outcome.id, ?applied, "tenant migrated");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(tenant = %outcome.id, %error, "tenant migration failed"),
        }
    }
    Ok(tenora)
}

/// [`start`], then the app's router.
pub async fn app<B: AppBackend>(config: Config, settings: Settings) -> tenora::Result<Router> {
    Ok(router(start::<B>(config).await?, settings))
}
