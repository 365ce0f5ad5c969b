//! Schema of Tenora's base database: the tenant registry.
//!
//! [`MIGRATIONS`] creates the registry table (`tenora_tenants`) on PostgreSQL, MySQL and SQLite;
//! pass it to [`tenora::TenoraBuilder::base_migrations`], or copy the folder into your own base
//! migrations and edit it (keep the columns Tenora reads: `id`, `password`, `state`,
//! `created_at`, `updated_at`).

/// The base migrations, embedded at compile time.
pub const MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("migrations");

/// Diesel schema of the base database.
pub mod schema {
    diesel::table! {
        /// The tenant registry. `password` holds a sealed envelope (`tenora:v1:...`), never
        /// a plain password unless no key was configured (`plain:...`).
        tenora_tenants (id) {
            /// The tenant id.
            id -> Text,
            /// The sealed password of the tenant's database user.
            password -> Nullable<Text>,
            /// `provisioning`, `active` or `deleting`.
            state -> Text,
            /// Creation time (UTC).
            created_at -> Timestamp,
            /// Last change (UTC).
            updated_at -> Timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_migration_matches_the_library_template() {
        let (up, down) = tenora::registry::registry_migration_sql("tenora_tenants");
        let migrations = super::MIGRATIONS;
        let m = migrations.iter().next().expect("one migration");
        assert_eq!(m.up_sql(), up);
        assert_eq!(m.down_sql(), Some(down.as_str()));
    }
}
