//! Migration and seed sets: embedded at compile time or read from a folder at run time.
//!
//! Both come in Diesel's layout and run through Diesel's migration harness, which records each
//! applied version in `__diesel_schema_migrations`, so the `diesel` CLI and Tenora agree about
//! every database. Each migration carries the SHA-256 checksum of its `up.sql`.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use diesel::backend::Backend as DieselBackend;
use diesel::connection::BoxableConnection;
use diesel::migration::{
    self, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion,
};

use crate::error::{Error, Result};

/// One SQL migration: a Diesel migration folder's `up.sql`, optional `down.sql` and metadata.
#[derive(Clone)]
pub struct SqlMigration {
    version: Cow<'static, str>,
    name: Cow<'static, str>,
    up: Cow<'static, str>,
    down: Option<Cow<'static, str>>,
    run_in_transaction: bool,
    checksum: Cow<'static, str>,
}

impl SqlMigration {
    #[doc(hidden)]
    pub const fn __embedded(
        version: &'static str,
        name: &'static str,
        up: &'static str,
        down: Option<&'static str>,
        run_in_transaction: bool,
        checksum: &'static str,
    ) -> Self {
        SqlMigration {
            version: Cow::Borrowed(version),
            name: Cow::Borrowed(name),
            up: Cow::Borrowed(up),
            down: match down {
                Some(d) => Some(Cow::Borrowed(d)),
                None => None,
            },
            run_in_transaction,
            checksum: Cow::Borrowed(checksum),
        }
    }

    /// Version as Diesel records it (folder name before the first `_`, without `-`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The folder name, e.g. `2024-01-01-000000_create_users`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `up.sql` text.
    pub fn up_sql(&self) -> &str {
        &self.up
    }

    /// The `down.sql` text, if the migration has one.
    pub fn down_sql(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// Hex SHA-256 of `up.sql`.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// Whether Diesel runs it inside a transaction (`metadata.toml`, default `true`).
    pub fn run_in_transaction(&self) -> bool {
        self.run_in_transaction
    }
}

impl fmt::Debug for SqlMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlMigration")
            .field("name", &self.name)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SqlMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl MigrationName for SqlMigration {
    fn version(&self) -> MigrationVersion<'_> {
        MigrationVersion::from(&*self.version)
    }
}

impl MigrationMetadata for SqlMigration {
    fn run_in_transaction(&self) -> bool {
        self.run_in_transaction
    }
}

impl<DB: DieselBackend> migration::Migration<DB> for SqlMigration {
    fn run(&self, conn: &mut dyn BoxableConnection<DB>) -> migration::Result<()> {
        let started = std::time::Instant::now();
        conn.batch_execute(&self.up)?;
        // Recorded in the ledger in the same transaction where the backend has transactional
        // DDL (and the migration runs in one).
        if let Some(sql) =
            crate::ledger::record_sql(&self.version, &self.checksum, started.elapsed())
        {
            conn.batch_execute(&sql)?;
        }
        Ok(())
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<DB>) -> migration::Result<()> {
        match &self.down {
            Some(down) => {
                conn.batch_execute(down)?;
                if let Some(sql) = crate::ledger::forget_sql(&self.version) {
                    conn.batch_execute(&sql)?;
                }
                Ok(())
            }
            None => Err(Box::new(
                diesel_migrations::MigrationError::NoMigrationRevertFile,
            )),
        }
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self
    }

    fn name(&self) -> &dyn MigrationName {
        self
    }
}

#[derive(Clone)]
enum List<T: 'static> {
    Static(&'static [T]),
    Shared(Arc<[T]>),
}

impl<T> List<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            List::Static(s) => s,
            List::Shared(s) => s,
        }
    }
}

/// An ordered set of migrations for one kind of database (base or tenant).
///
/// Embed a folder at compile time with [`embed_migrations!`](crate::embed_migrations), or read
/// one at run time with [`Migrations::from_dir`]. Cheap to clone.
///
/// ```
/// let none = tenora::Migrations::empty();
/// assert!(none.is_empty());
/// ```
#[derive(Clone)]
pub struct Migrations(List<SqlMigration>);

impl Migrations {
    #[doc(hidden)]
    pub const fn __from_static(migrations: &'static [SqlMigration]) -> Self {
        Migrations(List::Static(migrations))
    }

    /// No migrations.
    pub const fn empty() -> Self {
        Migrations(List::Static(&[]))
    }

    /// Reads a Diesel-layout migrations folder at run time (what the CLI does).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let files = tenora_migration_files::scan_migrations(dir.as_ref()).map_err(|e| {
            Error::Migration {
                database: format!("folder {}", dir.as_ref().display()),
                source: Box::new(e),
            }
        })?;
        let list: Vec<SqlMigration> = files
            .into_iter()
            .map(|f| SqlMigration {
                version: Cow::Owned(f.version),
                name: Cow::Owned(f.name),
                up: Cow::Owned(f.up_sql),
                down: f.down_sql.map(Cow::Owned),
                run_in_transaction: f.run_in_transaction,
                checksum: Cow::Owned(f.checksum),
            })
            .collect();
        Ok(Migrations(List::Shared(list.into())))
    }

    /// The migrations, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &SqlMigration> {
        self.0.as_slice().iter()
    }

    /// How many migrations there are.
    pub fn len(&self) -> usize {
        self.0.as_slice().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.as_slice().is_empty()
    }

    /// A hash of every migration's version and checksum: equal fingerprints mean the same
    /// schema history.
    pub fn fingerprint(&self) -> String {
        let lines: String = self
            .iter()
            .map(|m| format!("{}:{}\n", m.version(), m.checksum()))
            .collect();
        tenora_migration_files::checksum(&lines)
    }

    /// The fingerprint of a database that has applied `applied` (versions), as these
    /// migrations see it: equal to [`fingerprint`](Self::fingerprint) exactly when it has
    /// applied every one of them and nothing else. Versions these migrations do not know
    /// count as unknown.
    pub fn fingerprint_of(&self, applied: &[String]) -> String {
        let mut lines: String = self
            .iter()
            .filter(|m| applied.iter().any(|v| v == m.version()))
            .map(|m| format!("{}:{}\n", m.version(), m.checksum()))
            .collect();
        let mut unknown: Vec<&String> = applied
            .iter()
            .filter(|v| !self.iter().any(|m| m.version() == v.as_str()))
            .collect();
        unknown.sort();
        for version in unknown {
            lines.push_str(&format!("{version}:?\n"));
        }
        tenora_migration_files::checksum(&lines)
    }

    /// Of `applied` (versions a database has applied), those newer than every one of these
    /// migrations: a newer release migrated the database ("ahead of this binary").
    pub fn versions_ahead(&self, applied: &[String]) -> Vec<String> {
        let latest = self.latest_version();
        applied
            .iter()
            .filter(|v| !self.iter().any(|m| m.version() == v.as_str()))
            .filter(|v| latest.is_none_or(|l| v.as_str() > l))
            .cloned()
            .collect()
    }

    /// The newest version of these migrations, if any (Diesel's order: by text).
    pub fn latest_version(&self) -> Option<&str> {
        self.iter().map(|m| m.version()).max()
    }
}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|m| &m.name))
            .finish()
    }
}

impl<DB: DieselBackend> MigrationSource<DB> for Migrations {
    fn migrations(&self) -> migration::Result<Vec<Box<dyn migration::Migration<DB>>>> {
        Ok(self
            .iter()
            .map(|m| Box::new(m.clone()) as Box<dyn migration::Migration<DB>>)
            .collect())
    }
}

/// One seed file.
#[derive(Clone)]
pub struct SeedScript {
    name: Cow<'static, str>,
    sql: Cow<'static, str>,
    checksum: Cow<'static, str>,
}

impl SeedScript {
    #[doc(hidden)]
    pub const fn __embedded(name: &'static str, sql: &'static str, checksum: &'static str) -> Self {
        SeedScript {
            name: Cow::Borrowed(name),
            sql: Cow::Borrowed(sql),
            checksum: Cow::Borrowed(checksum),
        }
    }

    /// File name, e.g. `01_users.sql`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Hex SHA-256 of the SQL text.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }
}

impl fmt::Debug for SeedScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedScript")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An ordered set of seed files, run in file-name order, each in its own transaction.
///
/// Seeds run every time they are asked to (as Knex seeds do), so write them to be re-runnable
/// (e.g. `INSERT ... ON CONFLICT DO NOTHING`) if you run them more than once.
#[derive(Clone)]
pub struct Seeds(List<SeedScript>);

impl Seeds {
    #[doc(hidden)]
    pub const fn __from_static(seeds: &'static [SeedScript]) -> Self {
        Seeds(List::Static(seeds))
    }

    /// No seeds.
    pub const fn empty() -> Self {
        Seeds(List::Static(&[]))
    }

    /// Reads a folder of `*.sql` seed files at run time.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let files =
            tenora_migration_files::scan_seeds(dir.as_ref()).map_err(|e| Error::Migration {
                database: format!("seed folder {}", dir.as_ref().display()),
                source: Box::new(e),
            })?;
        let list: Vec<SeedScript> = files
            .into_iter()
            .map(|f| SeedScript {
                name: Cow::Owned(f.name),
                sql: Cow::Owned(f.sql),
                checksum: Cow::Owned(f.checksum),
            })
            .collect();
        Ok(Seeds(List::Shared(list.into())))
    }

    /// The seeds in run order.
    pub fn iter(&self) -> impl Iterator<Item = &SeedScript> {
        self.0.as_slice().iter()
    }

    /// How many seed files there are.
    pub fn len(&self) -> usize {
        self.0.as_slice().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.as_slice().is_empty()
    }
}

impl fmt::Debug for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|s| &s.name))
            .finish()
    }
}
