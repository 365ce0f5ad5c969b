//! Metrics through the [`metrics`] facade. The application installs a recorder (Prometheus,
//! StatsD, OpenTelemetry, …); without one, every call is a no-op.
//!
//! Events are recorded when they happen:
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `tenora_tenant_creations_total` | counter | `outcome` (`ok`, `exists`, `in_progress`, `failed`), `step` (failed step or `none`) |
//! | `tenora_tenant_creation_seconds` | histogram | `outcome` |
//! | `tenora_tenant_drops_total` | counter | `outcome` (`ok`, `unknown`, `in_progress`, `failed`), `step` |
//! | `tenora_tenant_drop_seconds` | histogram | `outcome` |
//! | `tenora_migration_runs_total` | counter | `database` (`base`, `tenant`), `op` (`up`, `down`), `outcome` (`ok`, `failed`) |
//! | `tenora_migration_run_seconds` | histogram | `database`, `op` |
//! | `tenora_migrations_applied_total` | counter | `database`, `op` (migrations applied or reverted) |
//! | `tenora_budget_wait_seconds` | histogram | `slice` (`pools`, `work`, `base`), `outcome` (`ok`, `busy`) |
//! | `tenora_resolver_requests_total` | counter | `outcome` (`ok`, `bad_request`, `forbidden`, `not_found`, `busy`, `unavailable`, `internal`), `status` |
//!
//! The pool cache's figures are kept by the cache itself (so the `tenant_conn` hit path does
//! no metrics work at all) and published by [`Tenora::record_metrics`](crate::Tenora::record_metrics),
//! which an exporter's scrape handler (or a timer) calls: gauges `tenora_cached_pools`,
//! `tenora_open_connections`, `tenora_connection_budget`, counters `tenora_pool_hits_total`,
//! `tenora_pool_misses_total`, `tenora_pools_created_total`, `tenora_pool_evictions_total`,
//! `tenora_budget_waits_total`, `tenora_pool_exhausted_total` (requests answered
//! [`Error::Busy`](crate::Error::Busy)) and `tenora_connections_refused_total` (refused by the
//! server for lack of slots); per database server (label `server`):
//! `tenora_server_open_connections`, `tenora_server_connection_budget`,
//! `tenora_server_connections_refused_total`, `tenora_server_pool_exhausted_total`.
//!
//! Labels never carry tenant ids unless `[metrics] tenant_labels = true` (then creations, drops
//! and migrations get a `tenant` label): with thousands of tenants, one series per tenant is
//! more than most monitoring systems should hold.

use std::time::Duration;

use metrics::{Label, counter, gauge, histogram};

use crate::error::Error;
use crate::migrate::MigrationOp;
use crate::pool_cache::CacheStats;
use crate::tenant_id::TenantId;

/// The labels of one event, with the tenant's when the config asks for it.
fn labels(pairs: &[(&'static str, &'static str)], tenant: Option<&TenantId>) -> Vec<Label> {
    let mut labels: Vec<Label> = pairs
        .iter()
        .map(|&(k, v)| Label::from_static_parts(k, v))
        .collect();
    if let Some(id) = tenant {
        labels.push(Label::new("tenant", id.as_str().to_owned()));
    }
    labels
}

/// A creation's outcome and failed step.
fn creation_outcome(error: Option<&Error>) -> (&'static str, &'static str) {
    match error {
        None => ("ok", "none"),
        Some(Error::TenantExists { .. }) => ("exists", "none"),
        Some(Error::InProgress { .. }) => ("in_progress", "none"),
        Some(Error::Provision { step, .. }) => ("failed", step.key()),
        Some(_) => ("failed", "none"),
    }
}

/// A drop's outcome and failed step.
fn drop_outcome(error: Option<&Error>) -> (&'static str, &'static str) {
    match error {
        None => ("ok", "none"),
        Some(Error::UnknownTenant { .. }) => ("unknown", "none"),
        Some(Error::InProgress { .. }) => ("in_progress", "none"),
        Some(Error::Drop { step, .. }) => ("failed", step.key()),
        Some(_) => ("failed", "none"),
    }
}

/// Records a `create_tenant` call.
pub(crate) fn tenant_created(tenant: Option<&TenantId>, elapsed: Duration, error: Option<&Error>) {
    record_call(
        "tenora_tenant_creations_total",
        "tenora_tenant_creation_seconds",
        creation_outcome(error),
        tenant,
        elapsed,
    );
}

/// Records a `drop_tenant` call.
pub(crate) fn tenant_dropped(tenant: Option<&TenantId>, elapsed: Duration, error: Option<&Error>) {
    record_call(
        "tenora_tenant_drops_total",
        "tenora_tenant_drop_seconds",
        drop_outcome(error),
        tenant,
        elapsed,
    );
}

/// A call's count (by outcome and failed step) and duration (by outcome).
fn record_call(
    count: &'static str,
    seconds: &'static str,
    (outcome, step): (&'static str, &'static str),
    tenant: Option<&TenantId>,
    elapsed: Duration,
) {
    counter!(
        count,
        labels(&[("outcome", outcome), ("step", step)], tenant)
    )
    .increment(1);
    histogram!(seconds, labels(&[("outcome", outcome)], tenant)).record(elapsed.as_secs_f64());
}

/// Records one migration run on one database (`tenant` is `None` for the base database, or
/// when tenant labels are off).
pub(crate) fn migration_run(
    base: bool,
    tenant: Option<&TenantId>,
    op: &MigrationOp,
    elapsed: Duration,
    applied: Option<usize>,
) {
    let database = if base { "base" } else { "tenant" };
    let op = match op {
        MigrationOp::Up => "up",
        MigrationOp::Down { .. } | MigrationOp::DownTo { .. } => "down",
    };
    let outcome = if applied.is_some() { "ok" } else { "failed" };
    counter!(
        "tenora_migration_runs_total",
        labels(
            &[("database", database), ("op", op), ("outcome", outcome)],
            tenant
        )
    )
    .increment(1);
    histogram!(
        "tenora_migration_run_seconds",
        labels(&[("database", database), ("op", op)], tenant)
    )
    .record(elapsed.as_secs_f64());
    if let Some(n) = applied.filter(|&n| n > 0) {
        counter!(
            "tenora_migrations_applied_total",
            labels(&[("database", database), ("op", op)], tenant)
        )
        .increment(n as u64);
    }
}

/// Records how long a caller waited for the connection budget.
pub(crate) fn budget_wait(slice: &'static str, waited: Duration, got_permit: bool) {
    let outcome = if got_permit { "ok" } else { "busy" };
    histogram!("tenora_budget_wait_seconds", "slice" => slice, "outcome" => outcome)
        .record(waited.as_secs_f64());
}

/// Records a resolver outcome (`status`: the HTTP status it maps to).
pub(crate) fn resolved(outcome: &'static str, status: u16) {
    counter!(
        "tenora_resolver_requests_total",
        "outcome" => outcome,
        "status" => status_text(status)
    )
    .increment(1);
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        403 => "403",
        404 => "404",
        503 => "503",
        _ => "500",
    }
}

/// Tells the recorder what each metric means (its `# HELP` line), once per process.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        describe_counter!(
            "tenora_tenant_creations_total",
            "create_tenant calls by outcome and failed step"
        );
        describe_histogram!(
            "tenora_tenant_creation_seconds",
            metrics::Unit::Seconds,
            "create_tenant duration"
        );
        describe_counter!(
            "tenora_tenant_drops_total",
            "drop_tenant calls by outcome and failed step"
        );
        describe_histogram!(
            "tenora_tenant_drop_seconds",
            metrics::Unit::Seconds,
            "drop_tenant duration"
        );
        describe_counter!(
            "tenora_migration_runs_total",
            "migration runs on one database"
        );
        describe_histogram!(
            "tenora_migration_run_seconds",
            metrics::Unit::Seconds,
            "duration of a migration run on one database"
        );
        describe_counter!(
            "tenora_migrations_applied_total",
            "migrations applied or reverted"
        );
        describe_histogram!(
            "tenora_budget_wait_seconds",
            metrics::Unit::Seconds,
            "time waited for the connection budget"
        );
        describe_counter!(
            "tenora_resolver_requests_total",
            "requests resolved, by outcome and HTTP status"
        );
        describe_gauge!("tenora_cached_pools", "tenant pools in the cache");
        describe_gauge!(
            "tenora_open_connections",
            "server connections open (pools, base, direct)"
        );
        describe_gauge!("tenora_connection_budget", "the connection budget now");
        describe_counter!(
            "tenora_pool_hits_total",
            "tenant lookups served by a cached pool"
        );
        describe_counter!(
            "tenora_pool_misses_total",
            "tenant lookups that found no ready pool"
        );
        describe_counter!("tenora_pools_created_total", "tenant pools built");
        describe_counter!("tenora_pool_evictions_total", "tenant pools closed");
        describe_counter!(
            "tenora_budget_waits_total",
            "requests that waited for the connection budget"
        );
        describe_counter!(
            "tenora_pool_exhausted_total",
            "requests answered Busy after waiting out acquire_timeout"
        );
        describe_counter!(
            "tenora_connections_refused_total",
            "connections the server refused for lack of slots"
        );
        describe_gauge!(
            "tenora_server_open_connections",
            "server connections Tenora holds, per database server"
        );
        describe_gauge!(
            "tenora_server_connection_budget",
            "most connections Tenora holds at once, per database server"
        );
        describe_counter!(
            "tenora_server_connections_refused_total",
            "connections a database server refused for lack of slots"
        );
        describe_counter!(
            "tenora_server_pool_exhausted_total",
            "requests answered Busy, per database server"
        );
    });
}

/// Publishes the pool cache's figures (absolute values: the cache keeps the counts).
pub(crate) fn publish(stats: &CacheStats) {
    describe();
    gauge!("tenora_cached_pools").set(stats.cached_pools as f64);
    gauge!("tenora_open_connections").set(stats.open_connections as f64);
    if let Some(max) = stats.max_connections {
        gauge!("tenora_connection_budget").set(f64::from(max));
    }
    counter!("tenora_pool_hits_total").absolute(stats.hits);
    counter!("tenora_pool_misses_total").absolute(stats.misses);
    counter!("tenora_pools_created_total").absolute(stats.pools_created);
    counter!("tenora_pool_evictions_total").absolute(stats.evictions);
    counter!("tenora_budget_waits_total").absolute(stats.waits);
    counter!("tenora_pool_exhausted_total").absolute(stats.busy);
    counter!("tenora_connections_refused_total").absolute(stats.refused_by_server);
}

/// One server's figures for [`publish_server`].
pub(crate) struct ServerFigures<'a> {
    pub(crate) name: &'a str,
    pub(crate) open: u64,
    pub(crate) max: Option<u32>,
    pub(crate) refused: u64,
    pub(crate) busy: u64,
}

/// Publishes one server's connection figures, labelled with its name (servers are few: one
/// series each).
pub(crate) fn publish_server(server: &ServerFigures<'_>) {
    let name = server.name.to_owned();
    gauge!("tenora_server_open_connections", "server" => name.clone()).set(server.open as f64);
    if let Some(max) = server.max {
        gauge!("tenora_server_connection_budget", "server" => name.clone()).set(f64::from(max));
    }
    counter!("tenora_server_connections_refused_total", "server" => name.clone())
        .absolute(server.refused);
    counter!("tenora_server_pool_exhausted_total", "server" => name).absolute(server.busy);
}
