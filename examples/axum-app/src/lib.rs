//! Tenora example: a small JSON API where every tenant has its own database.
//!
//! - `POST /admin/tenants` (bearer admin token) provisions a tenant and returns its API key.
//! - `GET|POST /projects` and `GET /whoami` serve the tenant named by the `x-tenant` header,
//!   after checking its `x-api-key`. The tenant's connection comes from Tenora's pool cache.
//! - `GET /metrics`: Prometheus text format (Tenora's metrics), when [`Settings::metrics`] is
//!   set.
//! - Base and tenant migrations are embedded in the binary and run on startup.
//!
//! SQLite by default; PostgreSQL when `APP_DATABASE_URL` is a `postgres://` URL. See the
//! example's README for curl commands.

pub mod api_keys;
pub mod queries;
mod routes;

use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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
    /// Serves `GET /metrics` from this Prometheus recorder when set (see [`install_metrics`]).
    pub metrics: Option<PrometheusHandle>,
}

/// Installs the process's Prometheus recorder (the `metrics` facade's global; install it
/// before connecting, so start-up migrations are counted). Latency histograms get buckets from
/// 5 ms to 10 s.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    const BUCKETS: [f64; 11] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
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
