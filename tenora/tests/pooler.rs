//! Behind a connection pooler (`[pooler]`): tenant traffic goes through a private PgBouncer,
//! administrative work to the server; a restarted pooler costs no request. PgBouncer's own
//! `SHOW STATS` says which databases it served.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::{ExpressionMethods as _, QueryDsl as _};
use diesel_async::RunQueryDsl as _;
use tenant_schema::schema::projects;
use tenora::backend::Postgres;
use tenora::{PgTenora, PoolerConfig, TenantId};
use tenora_test_support::{PGBOUNCER_OLD_VAR, PGBOUNCER_VAR, PgBouncer, PgBouncerOptions};

use crate::postgres::id;
use crate::support::backends::{Env, TestBackend, tenora_with};

/// Starts PgBouncer (`var`) in front of the env's server, and a Tenora whose tenant traffic
/// goes through it, with `tenants` tenants made (their roles allowed in the pooler).
async fn behind(
    env: &Env,
    config: tenora::Config,
    var: &str,
    options: &PgBouncerOptions,
    pooler: fn(String) -> PoolerConfig,
    tenants: usize,
) -> Option<(PgBouncer, PgTenora, Vec<TenantId>)> {
    let server = env.config.base.url.as_ref().unwrap().expose();
    let mut bouncer = PgBouncer::start(var, server, options)?;
    let config = config.pooler(pooler(format!("postgres://127.0.0.1:{}", bouncer.port)));
    let t = tenora_with::<Postgres>(config, Postgres::tenant_migrations()).await;
    let ids: Vec<TenantId> = (0..tenants).map(|i| id(&format!("pooled{i}"))).collect();
    for tenant in &ids {
        t.create_tenant(tenant, None).await.unwrap();
    }
    let users: Vec<String> = ids.iter().map(|i| t.naming().user_name(i)).collect();
    bouncer.allow(&users).await;
    Some((bouncer, t, ids))
}

/// `ops` requests, `at_once` at a time, over `ids` round-robin: each checks out a tenant
/// connection and runs a prepared query. Returns the errors.
async fn requests(t: &PgTenora, ids: &[TenantId], ops: usize, at_once: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(ids.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..at_once {
        let (t, ids, next) = (t.clone(), Arc::clone(&ids), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return errors;
                }
                let tenant = &ids[i % ids.len()];
                match t.tenant_conn(tenant).await {
                    Ok(mut conn) => {
                        // Diesel's query builder: a prepared statement, cached per connection.
                        let query = projects::table
                            .select(projects::name)
                            .filter(projects::name.ne(tenant.as_str()))
                            .load::<String>(&mut conn)
                            .await;
                        if let Err(e) = query {
                            errors.push(format!("{tenant}: query: {e}"));
                        }
                    }
                    Err(e) => errors.push(format!("{tenant}: checkout: {e}")),
                }
            }
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    errors
}

/// Fails with the first few `errors`, if there are any, saying where they came from.
fn assert_none(errors: &[String], during: &str) {
    assert!(
        errors.is_empty(),
        "{} errors {during}: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

/// Fails unless PgBouncer served transactions on every tenant's database; returns its counts.
async fn assert_served_all(
    bouncer: &PgBouncer,
    t: &PgTenora,
    ids: &[TenantId],
) -> std::collections::BTreeMap<String, u64> {
    let stats = bouncer.transactions_per_database().await;
    for tenant in ids {
        let db = t.naming().database_name(tenant);
        assert!(
            stats.get(&db).is_some_and(|&n| n > 0),
            "no traffic of {db} in SHOW STATS: {stats:?}"
        );
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_traffic_goes_through_the_pooler_and_survives_its_restart() {
    let Some(env) = Postgres::env() else { return };
    let options = PgBouncerOptions {
        default_pool_size: 3,
        ..PgBouncerOptions::default()
    };
    let Some((bouncer, t, ids)) = behind(
        &env,
        env.config.clone(),
        PGBOUNCER_VAR,
        &options,
        PoolerConfig::transaction,
        8,
    )
    .await
    else {
        return;
    };
    let errors = requests(&t, &ids, 2_000, 64).await;
    assert_none(&errors, &format!("through {}", bouncer.version()));
    // PgBouncer served every tenant's database; the base database (registry) and the admin
    // database (DDL) never went through it.
    let stats = assert_served_all(&bouncer, &t, &ids).await;
    let base = env.config.base.database.clone().unwrap();
    assert!(!stats.contains_key(&base), "{stats:?}");
    assert!(!stats.contains_key("postgres"), "{stats:?}");

    // The pooler restarts: every pooled connection Tenora holds is now closed. The next
    // requests get live ones.
    bouncer.restart();
    let errors = requests(&t, &ids, 500, 64).await;
    assert_none(&errors, "after the restart");
    // The restarted PgBouncer (its counts start at zero) served them.
    assert_served_all(&bouncer, &t, &ids).await;
}

/// PgBouncer before 1.21 cannot carry prepared statements in transaction mode; in session
/// mode (what README says to use with it) it serves every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_pooler_in_session_mode_serves_tenants() {
    let Some(env) = Postgres::env() else { return };
    let options = PgBouncerOptions {
        pool_mode: "session",
        default_pool_size: 3,
        ..PgBouncerOptions::default()
    };
    let Some((bouncer, t, ids)) = behind(
        &env,
        env.config.clone(),
        PGBOUNCER_OLD_VAR,
        &options,
        PoolerConfig::session,
        4,
    )
    .await
    else {
        return;
    };
    let errors = requests(&t, &ids, 1_000, 32).await;
    assert_none(&errors, &format!("through {}", bouncer.version()));
    assert_served_all(&bouncer, &t, &ids).await;
}

/// A caller that opens a connection for its pool finishes opening it even when another
/// caller returns one first: counted in PgBouncer's own log, the 20 pools of 2 connections log
/// in about 40 times under load, not once per lost race (166 times before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_being_opened_are_not_abandoned() {
    let Some(env) = Postgres::env() else { return };
    let options = PgBouncerOptions {
        default_pool_size: 2,
        ..PgBouncerOptions::default()
    };
    // An explicit budget above what the pools can use: no reclaim closes a connection.
    let mut config = env.config.clone().tenant_pool(tenora::PoolConfig {
        max_size: 2,
        ..tenora::PoolConfig::default()
    });
    config.pool_cache.max_connections = Some(100);
    let Some((bouncer, t, ids)) = behind(
        &env,
        config,
        PGBOUNCER_VAR,
        &options,
        PoolerConfig::transaction,
        20,
    )
    .await
    else {
        return;
    };
    assert_none(&requests(&t, &ids, 4_000, 32).await, "under load");
    let log = bouncer.log();
    let logins: usize = ids
        .iter()
        .map(|i| {
            log.matches(&format!(
                "login attempt: db={} ",
                t.naming().database_name(i)
            ))
            .count()
        })
        .sum();
    assert!(
        logins <= ids.len() * 2 + 4,
        "{logins} logins for {} pools of at most 2 connections",
        ids.len()
    );
}
