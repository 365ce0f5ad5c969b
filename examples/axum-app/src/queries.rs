//! The app's queries, written once with Diesel's DSL and compiled for each backend the app
//! can run on (Diesel queries are typed by their backend).

use std::future::Future;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use tenant_schema::schema::{projects, users};
use tenora::PooledConn;
use tenora::backend::{Backend, Postgres, Sqlite};

/// A project, as the API returns it.
#[derive(Debug, Serialize, Queryable, Selectable)]
#[diesel(table_name = projects)]
pub struct Project {
    /// Key.
    pub id: i32,
    /// Name.
    pub name: String,
}

/// A Tenora backend the app can run on: its tenant migrations and its queries.
pub trait AppBackend: Backend {
    /// Tenant migrations for this backend.
    const TENANT_MIGRATIONS: tenora::Migrations;

    /// Every project of the tenant, oldest first.
    fn list_projects(
        conn: &mut PooledConn<Self>,
    ) -> impl Future<Output = QueryResult<Vec<Project>>> + Send;

    /// Adds a project owned by the tenant's first user (the seeded admin).
    fn add_project(
        conn: &mut PooledConn<Self>,
        name: String,
    ) -> impl Future<Output = QueryResult<Project>> + Send;
}

macro_rules! app_backend {
    ($backend:ty, $migrations:expr) => {
        impl AppBackend for $backend {
            const TENANT_MIGRATIONS: tenora::Migrations = $migrations;

            async fn list_projects(conn: &mut PooledConn<Self>) -> QueryResult<Vec<Project>> {
                projects::table
                    .select(Project::as_select())
                    .order(projects::id)
                    .load(conn)
                    .await
            }

            async fn add_project(
                conn: &mut PooledConn<Self>,
                name: String,
            ) -> QueryResult<Project> {
                let owner: i32 = users::table
                    .select(users::id)
                    .order(users::id)
                    .first(conn)
                    .await?;
                diesel::insert_into(projects::table)
                    .values((projects::owner_id.eq(owner), projects::name.eq(name)))
                    .returning(Project::as_returning())
                    .get_result(conn)
                    .await
            }
        }
    };
}

app_backend!(Sqlite, tenant_schema::SQLITE_MIGRATIONS);
app_backend!(Postgres, tenant_schema::POSTGRES_MIGRATIONS);
