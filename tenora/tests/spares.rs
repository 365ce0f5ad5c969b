//! Warm spares (PostgreSQL): a tenant made from a spare is the tenant cloning makes; spares of
//! other migrations are never handed out; refilling stays within the connection budget.
//! Checked in the server's catalog.

use tenora::backend::Postgres;
use tenora::{Error, PgTenora, Problem, SpareState, TenantId};

use crate::postgres::{catalog, id, url_for};
use crate::support::backends::{Env, TestBackend, admin_client, pg_env_at, tenora_with};

/// The env's config with the template on and `spares` warm spares.
fn with_spares(env: &Env, spares: u32) -> tenora::Config {
    let mut config = env.config.clone();
    config.tenant.template = true;
    config.tenant.spares = spares;
    config
}

async fn admin(env: &Env) -> tokio_postgres::Client {
    admin_client(&url_for(env, "postgres")).await
}

/// The spare databases on the env's server: (name, oid, open to connections).
async fn spare_databases(env: &Env, t: &PgTenora) -> Vec<(String, i64, bool)> {
    spares_on(&url_for(env, "postgres"), t).await
}

/// The spare databases on the server at `admin_url` with `t`'s prefixes: (name, oid, open to
/// connections), by name.
async fn spares_on(admin_url: &str, t: &PgTenora) -> Vec<(String, i64, bool)> {
    let prefix = t.naming().database_name(&id("tenora_spare_"));
    let mut found: Vec<(String, i64, bool)> = admin_client(admin_url)
        .await
        .query(
            "SELECT datname::text, oid::int8, datallowconn FROM pg_database \
             WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    found.sort();
    found
}

/// The spare roles on the server.
async fn spare_roles(env: &Env, t: &PgTenora) -> Vec<String> {
    let prefix = t.naming().user_name(&id("tenora_spare_"));
    admin(env)
        .await
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn database_oid(env: &Env, db: &str) -> Option<i64> {
    admin(env)
        .await
        .query_opt(
            "SELECT oid::int8 FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// What the server records about tenant `tenant`'s role and database that a sign-up decides
/// (names replaced by `OWNER`).
async fn server_facts(env: &Env, t: &PgTenora, tenant: &TenantId) -> Vec<String> {
    let naming = t.naming();
    let (db, role) = (naming.database_name(tenant), naming.user_name(tenant));
    let client = admin(env).await;
    let role_row = client
        .query_one(
            "SELECT concat_ws(' ', rolsuper, rolinherit, rolcreaterole, rolcreatedb, \
             rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil, \
             left(rolpassword, 14), \
             shobj_description(oid, 'pg_authid') ~ '^tenora:[0-9a-f]{32}$') \
             FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    let db_row = client
        .query_one(
            "SELECT concat_ws(' ', datallowconn, datistemplate, datconnlimit, \
             pg_get_userbyid(datdba) = $2, datacl::text) \
             FROM pg_database WHERE datname = $1",
            &[&db, &role],
        )
        .await
        .unwrap();
    let shared = |text: String| text.replace(&role, "OWNER");
    vec![shared(role_row.get(0)), shared(db_row.get(0))]
}

/// The registry token of `tenant` and the comment on its role.
async fn token_and_mark(env: &Env, t: &PgTenora, tenant: &TenantId) -> (String, String) {
    let base = admin_client(&url_for(env, env.config.base.database.as_deref().unwrap())).await;
    let token: String = base
        .query_one(
            "SELECT token FROM tenora_tenants WHERE id = $1",
            &[&tenant.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    let mark: String = admin(env)
        .await
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&t.naming().user_name(tenant)],
        )
        .await
        .unwrap()
        .get(0);
    (token, mark)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_becomes_the_tenant_cloning_makes() {
    let Some(env) = Postgres::env() else { return };
    let spared = tenora_with::<Postgres>(with_spares(&env, 2), Postgres::tenant_migrations()).await;
    let cloning =
        tenora_with::<Postgres>(with_spares(&env, 0), Postgres::tenant_migrations()).await;
    // No table, no spares yet: nothing to list.
    assert!(spared.spares().await.unwrap().is_empty());
    assert!(spared.prepare_template().await.unwrap());
    let fill = spared.fill_spares().await.unwrap();
    assert_eq!(
        (fill.made, fill.ready, &fill.short),
        (2, 2, &None),
        "{fill:?}"
    );
    let before = spare_databases(&env, &spared).await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before.iter().all(|(_, _, open)| !open),
        "spares are closed to connections: {before:?}"
    );
    assert_eq!(spare_roles(&env, &spared).await.len(), 2);
    let listed = spared.spares().await.unwrap();
    assert!(
        listed
            .iter()
            .all(|s| s.state == Some(SpareState::Ready) && s.current && s.server == "default"),
        "{listed:?}"
    );
    // Spare names are reserved.
    let err = spared.tenant_id(&listed[0].name).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");

    let (acme, globex) = (id("acme"), id("globex"));
    spared.create_tenant(&acme, None).await.unwrap();
    cloning.create_tenant(&globex, None).await.unwrap();
    let naming = spared.naming();
    let oid = database_oid(&env, &naming.database_name(&acme))
        .await
        .unwrap();
    assert!(
        before.iter().any(|(_, spare, _)| *spare == oid),
        "acme's database is a spare's, renamed: {oid} not in {before:?}"
    );
    // Indistinguishable from a clone: schema, migration records, owners, role and database
    // attributes, privileges, proof.
    let a = catalog(&env, &naming.database_name(&acme), &naming.user_name(&acme)).await;
    let b = catalog(
        &env,
        &naming.database_name(&globex),
        &naming.user_name(&globex),
    )
    .await;
    assert!(!a.is_empty());
    assert_eq!(a, b, "a spare must be schema-identical to a clone");
    let facts = server_facts(&env, &spared, &acme).await;
    assert_eq!(facts, server_facts(&env, &cloning, &globex).await);
    assert!(facts[0].contains("SCRAM-SHA-256$"), "{facts:?}");
    let (token, mark) = token_and_mark(&env, &spared, &acme).await;
    assert_eq!(
        mark,
        format!("tenora:{token}"),
        "the role carries acme's proof"
    );
    // It works as a tenant: seeded, writable.
    let mut conn = spared.tenant_conn(&acme).await.unwrap();
    let mut other = cloning.tenant_conn(&globex).await.unwrap();
    assert_eq!(
        Postgres::project_names(&mut conn).await,
        Postgres::project_names(&mut other).await
    );
    drop((conn, other));

    // The set refilled in the background (a fill waits for it): two ready again, and the
    // fleet is healthy with its spares listed.
    let fill = spared.fill_spares().await.unwrap();
    assert_eq!(fill.ready, 2, "{fill:?}");
    assert_eq!(spare_databases(&env, &spared).await.len(), 2);
    let health = spared.check().await.unwrap();
    assert!(health.is_healthy(), "{:?}", health.problems);
    assert_eq!(health.spares.len(), 2);

    // A name that another application holds: the spare goes back, intact; nothing of
    // theirs is touched.
    let taken = id("initech");
    let role = naming.user_name(&taken);
    admin(&env)
        .await
        .batch_execute(&format!("CREATE ROLE \"{role}\""))
        .await
        .unwrap();
    let before = spare_databases(&env, &spared).await;
    let err = spared.create_tenant(&taken, None).await.unwrap_err();
    assert!(matches!(err, Error::TenantExists { .. }), "{err:?}");
    assert_eq!(spare_databases(&env, &spared).await, before);
    assert!(spared.tenant(&taken).await.unwrap().is_none());
    let ready = spared.spares().await.unwrap();
    assert!(
        ready.iter().all(|s| s.state == Some(SpareState::Ready)),
        "{ready:?}"
    );
    admin(&env)
        .await
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();

    // A spare whose role lost its proof (changed by hand) is not handed out: the sign-up
    // clones, and the sweep drops its row but leaves the objects alone.
    let client = admin(&env).await;
    let spare_dbs = spare_databases(&env, &spared).await;
    for spare in spared.spares().await.unwrap() {
        let role = naming.user_name(&TenantId::new(&spare.name).unwrap());
        client
            .batch_execute(&format!("COMMENT ON ROLE \"{role}\" IS 'someone else'"))
            .await
            .unwrap();
    }
    let wayne = id("wayne");
    spared.create_tenant(&wayne, None).await.unwrap();
    let oid = database_oid(&env, &naming.database_name(&wayne))
        .await
        .unwrap();
    assert!(
        spare_dbs.iter().all(|(_, spare, _)| *spare != oid),
        "a spare without its proof was handed out"
    );
    spared.fill_spares().await.unwrap();
    let still: Vec<i64> = spare_databases(&env, &spared)
        .await
        .into_iter()
        .map(|(_, oid, _)| oid)
        .collect();
    assert!(
        spare_dbs.iter().all(|(_, spare, _)| still.contains(spare)),
        "objects without the spare's proof are never dropped"
    );

    // A tenant from a spare drops like any other.
    spared.drop_tenant(&acme).await.unwrap();
    assert_eq!(database_oid(&env, &naming.database_name(&acme)).await, None);
    spared.fill_spares().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spares_of_other_migrations_are_never_handed_out() {
    let Some(env) = Postgres::env() else { return };
    let old = tenora_with::<Postgres>(with_spares(&env, 1), Postgres::tenant_migrations()).await;
    assert!(old.prepare_template().await.unwrap());
    assert_eq!(old.fill_spares().await.unwrap().made, 1);
    let old_spare = spare_databases(&env, &old).await;
    assert_eq!(old_spare.len(), 1);

    // A newer binary (one more tenant migration): its template is stale, so it migrates new
    // tenants — the old spare is not handed out.
    let (_dir, newer) = crate::scenarios::migrations_plus_one::<Postgres>();
    let new = tenora_with::<Postgres>(with_spares(&env, 1), newer).await;
    let fresh = id("fresh");
    new.create_tenant(&fresh, None).await.unwrap();
    let naming = new.naming();
    let oid = database_oid(&env, &naming.database_name(&fresh))
        .await
        .unwrap();
    assert_ne!(oid, old_spare[0].1);
    assert!(
        catalog(
            &env,
            &naming.database_name(&fresh),
            &naming.user_name(&fresh)
        )
        .await
        .iter()
        .any(|r| r.starts_with("audit_log.id")),
        "fresh has the newer migration"
    );
    new.fill_spares().await.unwrap();
    assert_eq!(spare_databases(&env, &new).await, old_spare, "untouched");
    let listed = new.spares().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].current, "{listed:?}");
    // Mid-deploy (the template is still the old binary's) it is the old binary's spare, not
    // a problem; a sweep leaves it alone.
    let outdated = |health: &tenora::Health| {
        health.problems.iter().any(|p| {
            matches!(p, Problem::Spare { problem, .. } if problem.contains("other tenant migrations"))
        })
    };
    assert!(!outdated(&new.check().await.unwrap()));
    assert!(new.sweep_spares().await.unwrap().is_empty());
    // The old binary still hands it out... to nobody here; once the template is the new
    // binary's, it is outdated, and the fill replaces it.
    assert!(new.prepare_template().await.unwrap());
    let health = new.check().await.unwrap();
    assert!(outdated(&health), "{:?}", health.problems);
    let fill = new.fill_spares().await.unwrap();
    assert_eq!(fill.removed, vec![listed[0].name.clone()], "{fill:?}");
    assert_eq!((fill.made, fill.ready), (1, 1), "{fill:?}");
    let spares = spare_databases(&env, &new).await;
    assert_eq!(spares.len(), 1);
    assert_ne!(spares[0].1, old_spare[0].1);
    assert_eq!(
        spare_roles(&env, &new).await.len(),
        1,
        "the old role is gone"
    );
    let hooli = id("hooli");
    new.create_tenant(&hooli, None).await.unwrap();
    assert_eq!(
        database_oid(&env, &naming.database_name(&hooli)).await,
        Some(spares[0].1),
        "the current spare is handed out"
    );
    new.fill_spares().await.unwrap();
}

/// On a server that checks passwords (scram-sha-256) with room for 20 connections: tenants
/// made from spares log in with the password the registry holds (the spare's, adopted, or
/// the caller's), and refilling never takes the server past the connection budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_passwords_work_and_refills_stay_within_the_budget() {
    use tenora_test_support::{Counter, PgCluster, PgOptions, Server};
    let options = PgOptions {
        max_connections: Some(20),
        trust: false,
        ..PgOptions::default()
    };
    let Some(cluster) = PgCluster::start_with(&options) else {
        return;
    };
    let env = pg_env_at(&cluster.admin_url());
    let t = tenora_with::<Postgres>(with_spares(&env, 3), Postgres::tenant_migrations()).await;
    let max = t.stats().max_connections.unwrap();
    let counter = Counter::start(Server::Postgres, &cluster.admin_url(), None);
    assert!(t.prepare_template().await.unwrap());
    assert_eq!(t.fill_spares().await.unwrap().ready, 3);
    let spares: Vec<i64> = spare_databases(&env, &t)
        .await
        .into_iter()
        .map(|(_, oid, _)| oid)
        .collect();
    // Sign-ups take spares (each starting a refill) while tenants are used.
    let ids: Vec<TenantId> = (0..6).map(|i| id(&format!("b{i}"))).collect();
    let creates: Vec<_> = ids
        .iter()
        .map(|tenant| {
            let (t, tenant) = (t.clone(), tenant.clone());
            tokio::spawn(async move { t.create_tenant(&tenant, None).await.map(|_| ()) })
        })
        .collect();
    for created in creates {
        created.await.unwrap().unwrap();
    }
    let mut from_spares = 0;
    for tenant in &ids {
        let oid = database_oid(&env, &t.naming().database_name(tenant)).await;
        from_spares += usize::from(spares.contains(&oid.unwrap()));
    }
    assert!(from_spares >= 1, "no sign-up took a spare");
    // A password of the caller's is set on the spare's role.
    assert_eq!(t.fill_spares().await.unwrap().ready, 3);
    let spares: Vec<i64> = spare_databases(&env, &t)
        .await
        .into_iter()
        .map(|(_, oid, _)| oid)
        .collect();
    let chosen = id("chosen");
    t.create_tenant(&chosen, Some("Chosen-Password-123".into()))
        .await
        .unwrap();
    let oid = database_oid(&env, &t.naming().database_name(&chosen)).await;
    assert!(
        spares.contains(&oid.unwrap()),
        "chosen was made from a spare"
    );
    let ids: Vec<TenantId> = ids.into_iter().chain([chosen]).collect();
    let touches: Vec<_> = (0..12)
        .map(|i| {
            let (t, tenant) = (t.clone(), ids[i % ids.len()].clone());
            tokio::spawn(async move {
                let mut conn = t.tenant_conn(&tenant).await.unwrap();
                diesel_async::SimpleAsyncConnection::batch_execute(&mut *conn, "SELECT 1")
                    .await
                    .unwrap();
            })
        })
        .collect();
    for touch in touches {
        touch.await.unwrap();
    }
    assert_eq!(t.fill_spares().await.unwrap().ready, 3);
    let at_peak = counter.at_peak();
    let peak = counter.stop();
    assert!(
        peak <= max,
        "{peak} connections on the server, over the budget of {max}: {at_peak:#?}"
    );
    let refused = cluster.refusals();
    assert!(refused.is_empty(), "the server refused: {refused:?}");
}

/// Two deployments sharing a base database (different registry tables) each see, count,
/// take and sweep only their own spares; `tenant.spares = 0` removes a deployment's spares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_sharing_a_base_database_keep_their_own_spares() {
    let Some(env) = Postgres::env() else { return };
    let a = tenora_with::<Postgres>(with_spares(&env, 2), Postgres::tenant_migrations()).await;
    // Deployment B: its own registry table in the same base database.
    let base = admin_client(&url_for(&env, env.config.base.database.as_deref().unwrap())).await;
    let (up, _) = tenora::registry::registry_migration_sql("other_tenants");
    base.batch_execute(&up).await.unwrap();
    let mut config = with_spares(&env, 1);
    config.registry.table = "other_tenants".to_owned();
    let b = PgTenora::builder(config)
        .tenant_migrations(Postgres::tenant_migrations())
        .connect()
        .await
        .unwrap();
    assert!(a.prepare_template().await.unwrap());
    assert_eq!(a.fill_spares().await.unwrap().made, 2);
    let fill = b.fill_spares().await.unwrap();
    assert_eq!(
        (fill.made, fill.ready, fill.removed.len()),
        (1, 1, 0),
        "{fill:?}"
    );
    assert_eq!(spare_databases(&env, &a).await.len(), 3);
    let (mine, theirs) = (b.spares().await.unwrap(), a.spares().await.unwrap());
    assert_eq!((mine.len(), theirs.len()), (1, 2));
    // B's sign-up takes B's spare.
    let spare_oid = |name: &str| {
        let naming = b.naming();
        let db = naming.database_name(&id(name));
        let env = &env;
        async move { database_oid(env, &db).await.unwrap() }
    };
    let expected = spare_oid(&mine[0].name).await;
    let tenant = id("b_tenant");
    b.create_tenant(&tenant, None).await.unwrap();
    assert_eq!(
        database_oid(&env, &b.naming().database_name(&tenant)).await,
        Some(expected)
    );
    b.fill_spares().await.unwrap();
    // Deployment A turns spares off: its spares go, B's stay.
    let off = tenora_with::<Postgres>(with_spares(&env, 0), Postgres::tenant_migrations()).await;
    let fill = off.fill_spares().await.unwrap();
    assert_eq!(fill.removed.len(), 2, "{fill:?}");
    assert!(a.spares().await.unwrap().is_empty());
    assert_eq!(b.spares().await.unwrap().len(), 1);
    assert_eq!(spare_databases(&env, &a).await.len(), 1);
    // B's spare is known to A's doctor too (it shares the spare table). (B's tenant is an
    // orphan to A: another deployment's tenant with the same prefixes.)
    let health = off.check().await.unwrap();
    assert!(
        !health
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Spare { .. })),
        "{:?}",
        health.problems
    );
}

/// A spare whose row was deleted by hand: `doctor` reports its role and database (they carry
/// Tenora's proof), and nothing removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_without_its_row_is_reported_and_kept() {
    let Some(env) = Postgres::env() else { return };
    let t = tenora_with::<Postgres>(with_spares(&env, 1), Postgres::tenant_migrations()).await;
    assert!(t.prepare_template().await.unwrap());
    assert_eq!(t.fill_spares().await.unwrap().made, 1);
    let lost = spare_databases(&env, &t).await;
    let base = admin_client(&url_for(&env, env.config.base.database.as_deref().unwrap())).await;
    base.batch_execute("DELETE FROM __tenora_spares")
        .await
        .unwrap();
    let health = t.check().await.unwrap();
    let reported: Vec<String> = health
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Spare { name, problem, .. } if problem.contains("no warm-spare row") => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    let role = spare_roles(&env, &t).await;
    let mut expected = vec![lost[0].0.clone(), role[0].clone()];
    expected.sort();
    assert_eq!(reported, expected, "{:?}", health.problems);
    // Repairs and fills leave them: Tenora cannot prove they are this deployment's.
    t.repair_all().await.unwrap();
    t.fill_spares().await.unwrap();
    let databases = spare_databases(&env, &t).await;
    assert!(databases.iter().any(|d| d.1 == lost[0].1), "{databases:?}");
    assert!(spare_roles(&env, &t).await.contains(&role[0]));
}

/// With several servers, each server that takes new tenants keeps its own spares (none on
/// the unlisted default, which takes none), and a tenant placed on a server gets that
/// server's spare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_keeps_its_own_spares() {
    use tenora::{ServerConfig, TenantOptions};
    use tenora_test_support::PgCluster;
    let Some(env) = Postgres::env() else { return };
    let (Some(a), Some(b)) = (PgCluster::start(), PgCluster::start()) else {
        return;
    };
    let config = with_spares(&env, 1)
        .server("a", ServerConfig::url(a.admin_url()))
        .server("b", ServerConfig::url(b.admin_url()));
    let t = tenora_with::<Postgres>(config, Postgres::tenant_migrations()).await;
    assert!(t.prepare_template().await.unwrap());
    let fill = t.fill_spares().await.unwrap();
    assert_eq!((fill.made, fill.ready), (2, 2), "{fill:?}");
    assert!(
        spare_databases(&env, &t).await.is_empty(),
        "none on the default"
    );
    for (server, cluster) in [("a", &a), ("b", &b)] {
        let spares = spares_on(&cluster.admin_url(), &t).await;
        assert_eq!(spares.len(), 1, "{server}");
        let tenant = id(&format!("on_{server}"));
        let record = t
            .create_tenant_with(&tenant, TenantOptions::default().server(server))
            .await
            .unwrap();
        assert_eq!(record.server, server);
        let oid: i64 = admin_client(&cluster.admin_url())
            .await
            .query_one(
                "SELECT oid::int8 FROM pg_database WHERE datname = $1",
                &[&t.naming().database_name(&tenant)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            oid, spares[0].1,
            "the tenant on {server} was made from its spare"
        );
        // It logs in with the password the registry holds (a scram-sha-256 cluster).
        let mut conn = t.tenant_conn(&tenant).await.unwrap();
        Postgres::project_names(&mut conn).await;
    }
    assert_eq!(t.fill_spares().await.unwrap().ready, 2);
    for cluster in [&a, &b] {
        assert_eq!(spares_on(&cluster.admin_url(), &t).await.len(), 1);
    }
}

/// The env's spare rows: (spare id, sealed password), by id.
async fn spare_passwords(env: &Env) -> Vec<(String, String)> {
    let base = env.config.base.database.as_deref().unwrap();
    admin_client(&url_for(env, base))
        .await
        .query(
            "SELECT name, password FROM __tenora_spares ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A key rotation re-seals the spares' passwords too: once the old key is gone, a spare is
/// still handed over with its own password (adopted, not replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reseals_spare_passwords() {
    let Some(env) = Postgres::env() else { return };
    let (old_key, new_key) = (
        tenora::EncryptionKey::generate(),
        tenora::EncryptionKey::generate(),
    );
    let mut before = with_spares(&env, 1);
    before.secrets.key = Some(old_key.to_base64());
    before.secrets.old_keys = Vec::new();
    let t = tenora_with::<Postgres>(before.clone(), Postgres::tenant_migrations()).await;
    assert!(t.prepare_template().await.unwrap());
    assert_eq!(t.fill_spares().await.unwrap().made, 1);
    let sealed_old = spare_passwords(&env).await;
    assert_eq!(sealed_old.len(), 1);
    assert!(
        sealed_old[0].1.contains(&old_key.id()),
        "sealed with the old key"
    );
    drop(t);

    // The new key current, the old one still readable: the rotation moves the spare too.
    let mut during = before.clone();
    during.secrets.key = Some(new_key.to_base64());
    during.secrets.old_keys = vec![old_key.to_base64()];
    let t = tenora_with::<Postgres>(during, Postgres::tenant_migrations()).await;
    let status = t.key_status().await.unwrap();
    assert_eq!(
        (
            status.spares_current,
            status.spares_other_key,
            status.spares_unreadable
        ),
        (0, 1, 0),
        "{status:?}"
    );
    assert!(
        !status.all_current(),
        "the old key still seals a spare: not safe to remove"
    );
    let report = t.rotate_key().await.unwrap();
    assert_eq!(
        (report.spares_resealed, report.spares_unreadable),
        (1, 0),
        "{report:?}"
    );
    let sealed_new = spare_passwords(&env).await;
    assert_eq!(sealed_new[0].0, sealed_old[0].0);
    assert!(sealed_new[0].1.contains(&new_key.id()));
    assert!(!sealed_new[0].1.contains(&old_key.id()));
    // Run again: nothing left to move.
    assert_eq!(t.rotate_key().await.unwrap().spares_resealed, 0);
    let status = t.key_status().await.unwrap();
    assert_eq!(
        (status.spares_current, status.spares_other_key),
        (1, 0),
        "{status:?}"
    );
    assert!(status.all_current(), "{status:?}");
    drop(t);

    // A key that never sealed it: the spare is counted unreadable (and still usable).
    let mut stranger = before.clone();
    stranger.secrets.key = Some(tenora::EncryptionKey::generate().to_base64());
    stranger.secrets.old_keys = Vec::new();
    let t = tenora_with::<Postgres>(stranger, Postgres::tenant_migrations()).await;
    let status = t.key_status().await.unwrap();
    assert_eq!(
        (
            status.spares_current,
            status.spares_other_key,
            status.spares_unreadable
        ),
        (0, 0, 1),
        "{status:?}"
    );
    drop(t);

    // The old key removed: the spare's password still opens, so the sign-up adopts it — the
    // tenant's registry row holds the spare's password, sealed for the tenant with the new key.
    let mut after = before;
    after.secrets.key = Some(new_key.to_base64());
    after.secrets.old_keys = Vec::new();
    let t = tenora_with::<Postgres>(after, Postgres::tenant_migrations()).await;
    let spare = spare_databases(&env, &t).await;
    let tenant = id("rotated");
    t.create_tenant(&tenant, None).await.unwrap();
    assert_eq!(
        database_oid(&env, &t.naming().database_name(&tenant)).await,
        Some(spare[0].1),
        "the spare was handed over"
    );
    let keys = tenora::secret::KeyRing::new(Some(new_key), Vec::new());
    let spare_password = keys.open(&id(&sealed_new[0].0), &sealed_new[0].1).unwrap();
    let stored = crate::postgres::stored_password(&env, "rotated").await;
    let tenant_password = keys.open(&tenant, &stored).unwrap();
    assert_eq!(
        tenant_password.expose(),
        spare_password.expose(),
        "adopted, not replaced"
    );
    t.fill_spares().await.unwrap();
}
