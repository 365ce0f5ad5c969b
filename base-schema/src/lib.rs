//! Schema of Tenora's base database: the tenant registry.
//!
//! [`MIGRATIONS`] creates the registry table (`tenora_tenants`) on PostgreSQL, MySQL and SQLite;
//! pass it to [`tenora::TenoraBuilder::base_migrations`], or copy the folder into your own base
//! migrations and edit it (keep the columns Tenora reads: `id`, `password`, `state`,
//! `created_at`, `updated_at`, `token`, `server`, `migration_version`,
//! `migration_fingerprint`).

/// The base migrations, embedded at compile time.
pub const MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("migrations");

/// Diesel schema of the base database.
pub mod schema {
    diesel::table! {
        /// The tenant registry. `password` holds a sealed envelope (`tenora:v2:...`), never
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
            /// The token that proves which database objects Tenora made for this row.
            token -> Nullable<Text>,
            /// The database server holding the tenant's database (`default`: the base
            /// database's server).
            server -> Text,
            /// The latest migration version Tenora's last run on the tenant left applied.
            migration_version -> Nullable<Text>,
            /// The fingerprint of the migrations applied then.
            migration_fingerprint -> Nullable<Text>,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_migrations_match_the_library_templates() {
        let migrations = super::MIGRATIONS;
        let all: Vec<_> = migrations.iter().collect();
        assert_eq!(all.len(), 4);
        // The first migration is the table as 0.1 made it: the full template less `token` and
        // `server`.
        let (up, down) = tenora::registry::registry_migration_sql("tenora_tenants");
        let legacy = up.replace(
            ",\n    token VARCHAR(64),\n    server VARCHAR(63) NOT NULL DEFAULT 'default',\n    \
             migration_version VARCHAR(64),\n    migration_fingerprint VARCHAR(64)",
            "",
        );
        assert_eq!(all[0].up_sql(), legacy);
        assert_eq!(all[0].down_sql(), Some(down.as_str()));
        let (up, down) = tenora::registry::registry_token_migration_sql("tenora_tenants");
        assert_eq!(all[1].up_sql(), up);
        assert_eq!(all[1].down_sql(), Some(down.as_str()));
        let (up, down) = tenora::registry::registry_server_migration_sql("tenora_tenants");
        assert_eq!(all[2].up_sql(), up);
        assert_eq!(all[2].down_sql(), Some(down.as_str()));
        let (up, down) = tenora::registry::registry_migration_state_sql("tenora_tenants");
        assert_eq!(all[3].up_sql(), up);
        assert_eq!(all[3].down_sql(), Some(down.as_str()));
    }
}
