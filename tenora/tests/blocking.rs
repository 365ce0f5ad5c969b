//! `blocking::Tenora`: a synchronous Diesel program (plain `#[test]`s, no runtime of their
//! own) creates tenants, queries them with Diesel's sync `RunQueryDsl` and transactions from
//! several threads, and drops them — checked in the server's catalog (or on disk) through
//! `Backend::database_exists`, as the scenarios do.

use diesel::prelude::*;
use tenant_schema::schema::{projects, users};
use tenora::blocking;

use crate::support::backends::TestBackend;

/// The test, once per backend (Diesel's sync query traits need the concrete connection type).
macro_rules! sync_diesel_app {
    ($B:ty) => {{
        let Some(env) = <$B>::env() else { return };
        // min_idle: a connection dropped broken makes bb8 start a replacement task, which
        // must find the facade's runtime (checked by the panicking transaction below).
        let config = env.config.clone().tenant_pool(tenora::PoolConfig {
            min_idle: Some(1),
            ..tenora::PoolConfig::default()
        });
        let builder = tenora::Tenora::<$B>::builder(config)
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(<$B>::tenant_migrations())
            .tenant_seeds(tenant_schema::SEEDS);
        let t = blocking::Tenora::connect(builder).expect("connect");
        t.migrate_base().expect("migrate base");
        let (acme, globex) = (t.tenant_id("acme").unwrap(), t.tenant_id("globex").unwrap());
        t.create_tenant(&acme, None).unwrap();
        t.create_tenant(&globex, None).unwrap();
        let exists =
            |id: &tenora::TenantId| t.block_on(t.as_async().tenant_database_exists(id)).unwrap();
        assert!(exists(&acme) && exists(&globex), "made on the server");

        // Diesel's synchronous API on a pooled tenant connection: the seed's user, an insert in a
        // transaction that commits and one that rolls back.
        let mut conn = t.tenant_conn(&acme).unwrap();
        let admin: i32 = users::table
            .select(users::id)
            .filter(users::email.eq("admin@example.com"))
            .first(&mut conn)
            .expect("the seed ran");
        conn.transaction(|c| {
            diesel::insert_into(projects::table)
                .values((projects::owner_id.eq(admin), projects::name.eq("kept")))
                .execute(c)
        })
        .unwrap();
        let rolled_back: QueryResult<()> = conn.transaction(|c| {
            diesel::insert_into(projects::table)
                .values((projects::owner_id.eq(admin), projects::name.eq("undone")))
                .execute(c)?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(rolled_back.is_err());
        // A panic inside a transaction: the connection is dropped broken while unwinding, and
        // the tenant keeps working.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = conn.transaction(|c| -> QueryResult<()> {
                diesel::insert_into(projects::table)
                    .values((projects::owner_id.eq(admin), projects::name.eq("panicked")))
                    .execute(c)?;
                panic!("a bug in the closure");
            });
        }));
        assert!(panicked.is_err());
        drop(conn);

        // Threads share the handle; each tenant sees only its own rows.
        std::thread::scope(|s| {
            for i in 0..4 {
                let (t, acme, globex) = (&t, &acme, &globex);
                s.spawn(move || {
                    for _ in 0..10 {
                        let tenant = if i % 2 == 0 { acme } else { globex };
                        let mut conn = t.tenant_conn(tenant).unwrap();
                        let names: Vec<String> = projects::table
                            .select(projects::name)
                            .order(projects::id)
                            .load(&mut conn)
                            .unwrap();
                        let expected: &[&str] = if tenant == acme { &["kept"] } else { &[] };
                        assert_eq!(names, expected, "{tenant}");
                    }
                });
            }
        });

        // A connection outlives the handle it came from (it keeps the runtime running).
        let mut late = t.tenant_conn(&globex).unwrap();
        let t2 = t.clone();
        drop(t);
        let n: i64 = projects::table.count().get_result(&mut late).unwrap();
        assert_eq!(n, 0);
        drop(late);

        let listed: Vec<String> = t2
            .list_tenants()
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(listed, ["acme", "globex"]);
        for id in [&acme, &globex] {
            t2.drop_tenant(id).unwrap();
            assert!(
                !t2.block_on(t2.as_async().tenant_database_exists(id))
                    .unwrap(),
                "{id} dropped on the server"
            );
        }
        // Unknown tenants are errors, not panics.
        assert!(matches!(
            t2.tenant_conn(&acme),
            Err(tenora::Error::UnknownTenant { .. })
        ));
        // Dropping the last handle inside an async context neither blocks nor panics.
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        outer.block_on(async move { drop(t2) });
    }};
}

/// The handle is shared across threads, and so are its connections' owners.
#[test]
fn the_handle_is_clone_send_and_sync() {
    fn shareable<T: Clone + Send + Sync>() {}
    fn movable<T: Send>() {}
    shareable::<blocking::Tenora<tenora::backend::Sqlite>>();
    movable::<blocking::Conn<tenora::backend::Sqlite>>();
}

#[test]
fn sqlite_sync_diesel_app() {
    sync_diesel_app!(tenora::backend::Sqlite)
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_sync_diesel_app() {
    sync_diesel_app!(tenora::backend::Postgres)
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_sync_diesel_app() {
    sync_diesel_app!(tenora::backend::Mysql)
}
