//! The applied-migration ledger: a Tenora-owned table in every database Tenora migrates,
//! `__tenora_migrations`, beside Diesel's `__diesel_schema_migrations` (which stays the source
//! of truth the `diesel` CLI reads). Each migration Tenora applies records its version, the
//! SHA-256 checksum of its `up.sql`, when and how long it took — in the migration's own
//! transaction where the backend has transactional DDL. Migrations applied by other tools have
//! no ledger row: their checksum is unknown, which is not an error.

use std::collections::HashMap;
use std::time::Duration;

use crate::migrations::Migrations;

/// The ledger table's name.
pub const LEDGER_TABLE: &str = "__tenora_migrations";

/// Whether `text` can be written into SQL as a literal without quoting concerns (versions are
/// digits, checksums hex; anything else is not recorded).
fn plain(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The statements that record migration `version` with `checksum`: the table is made if
/// missing (portable SQL for PostgreSQL, MySQL and SQLite), an earlier row of the version
/// (reverted by another tool) is replaced.
pub(crate) fn record_sql(version: &str, checksum: &str, took: Duration) -> Option<String> {
    if !plain(version) || !plain(checksum) {
        return None;
    }
    let millis = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
    Some(format!(
        "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (\
             version VARCHAR(50) NOT NULL PRIMARY KEY, \
             checksum VARCHAR(64) NOT NULL, \
             applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             duration_ms BIGINT NOT NULL); \
         DELETE FROM {LEDGER_TABLE} WHERE version = '{version}'; \
         INSERT INTO {LEDGER_TABLE} (version, checksum, duration_ms) \
             VALUES ('{version}', '{checksum}', {millis})"
    ))
}

/// The statement that forgets migration `version` (it was reverted).
pub(crate) fn forget_sql(version: &str) -> Option<String> {
    plain(version).then(|| {
        format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (\
                 version VARCHAR(50) NOT NULL PRIMARY KEY, \
                 checksum VARCHAR(64) NOT NULL, \
                 applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 duration_ms BIGINT NOT NULL); \
             DELETE FROM {LEDGER_TABLE} WHERE version = '{version}'"
        )
    })
}

/// A migration whose applied checksum differs from this binary's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drifted {
    pub(crate) name: String,
    pub(crate) applied: String,
    pub(crate) binary: String,
}

/// The migrations of `migrations` that the ledger (`version` → checksum) records with
/// another checksum.
pub(crate) fn drifted(migrations: &Migrations, ledger: &HashMap<String, String>) -> Vec<Drifted> {
    migrations
        .iter()
        .filter_map(|m| {
            let applied = ledger.get(m.version())?;
            (applied != m.checksum()).then(|| Drifted {
                name: m.name().to_owned(),
                applied: applied.clone(),
                binary: m.checksum().to_owned(),
            })
        })
        .collect()
}

impl std::fmt::Display for Drifted {
    /// "`name` (checksum applied abc…, this binary's def…)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |c: &str| c.chars().take(12).collect::<String>();
        write!(
            f,
            "`{}` (checksum applied {}…, this binary's {}…)",
            self.name,
            short(&self.applied),
            short(&self.binary)
        )
    }
}

/// The error for `drifted` migrations: which, and what to do.
pub(crate) fn drift_error(drifted: &[Drifted]) -> String {
    let list: Vec<String> = drifted.iter().map(ToString::to_string).collect();
    format!(
        "migration(s) {} were applied with other contents than this binary's copy (edited after \
         they ran): restore the files as they were applied and put the change in a new \
         migration, or pass --allow-drift (FleetOptions::allow_drift) to migrate anyway",
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_values_are_written_into_sql() {
        assert!(record_sql("20260101000000", "abc123", Duration::from_millis(5)).is_some());
        assert!(record_sql("2026'; DROP TABLE x; --", "abc", Duration::ZERO).is_none());
        assert!(forget_sql("").is_none());
    }
}
