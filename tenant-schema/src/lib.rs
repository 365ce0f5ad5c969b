//! Example schema of a Tenora tenant database: `users` and their `projects`.
//!
//! Each backend has its own migration folder (auto-increment keys differ in SQL); the Diesel
//! schema in [`schema`] is the same for both. Seeds are portable SQL.

/// Tenant migrations for SQLite.
pub const SQLITE_MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("migrations/sqlite");

/// Tenant migrations for PostgreSQL.
pub const POSTGRES_MIGRATIONS: tenora::Migrations =
    tenora::embed_migrations!("migrations/postgres");

/// Tenant migrations for MySQL / MariaDB.
pub const MYSQL_MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("migrations/mysql");

/// Seeds run on every new tenant: one admin user.
pub const SEEDS: tenora::Seeds = tenora::embed_seeds!("seeds");

/// Diesel schema of a tenant database.
pub mod schema {
    diesel::table! {
        /// People of one tenant.
        users (id) {
            /// Key.
            id -> Integer,
            /// Unique email.
            email -> Text,
            /// Display name.
            name -> Text,
        }
    }

    diesel::table! {
        /// Projects of one tenant.
        projects (id) {
            /// Key.
            id -> Integer,
            /// The owning user.
            owner_id -> Integer,
            /// Project name.
            name -> Text,
        }
    }

    diesel::joinable!(projects -> users (owner_id));
    diesel::allow_tables_to_appear_in_same_query!(users, projects);
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_embedded_in_order_with_checksums() {
        for set in [
            super::SQLITE_MIGRATIONS,
            super::POSTGRES_MIGRATIONS,
            super::MYSQL_MIGRATIONS,
        ] {
            let names: Vec<_> = set.iter().map(|m| m.name()).collect();
            assert_eq!(
                names,
                [
                    "2024-01-01-000001_create_users",
                    "2024-01-01-000002_create_projects"
                ]
            );
            for m in set.iter() {
                assert_eq!(m.checksum().len(), 64);
                assert!(m.down_sql().is_some());
            }
        }
        assert_eq!(super::SEEDS.len(), 1);
    }
}
