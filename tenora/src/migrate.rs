//! Running migrations and seeds on one database, through Diesel's migration harness.
//!
//! Diesel's harness is synchronous, so it runs on a blocking thread with diesel-async's
//! `AsyncConnectionWrapper`: this works on every Tokio runtime flavour (diesel-async's own
//! `AsyncMigrationHarness` uses `block_in_place`, which panics on a current-thread runtime).

use diesel::migration::MigrationVersion;
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use crate::error::{BoxError, Error, Result};
use crate::migrations::{Migrations, Seeds};

/// What to do with a database's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationOp {
    /// Apply every pending migration.
    Up,
    /// Revert the last `steps` applied migrations (fewer if fewer are applied).
    Down {
        /// How many to revert.
        steps: usize,
    },
    /// Revert every applied migration newer than `version` (all of them when `None`): a
    /// rollback whose target was fixed beforehand, so running it again reverts nothing more.
    /// Versions compare as Diesel orders them: by text.
    DownTo {
        /// The version to leave as the newest applied.
        version: Option<String>,
        /// The newest version applied when the target was fixed: a database whose newest
        /// applied version is newer than this changed since (something was migrated after the
        /// rollback began), and is refused rather than reverted further.
        from: Option<String>,
    },
}

fn name_of(migrations: &Migrations, version: &MigrationVersion<'_>) -> String {
    let version = version.to_string();
    migrations
        .iter()
        .find(|m| m.version() == version)
        .map(|m| m.name().to_owned())
        .unwrap_or(version)
}

fn named_failure(what: &str, name: &str, e: &(dyn std::error::Error + Send + Sync)) -> BoxError {
    format!("{what} `{name}` failed: {e}").into()
}

/// The manual step after a failure of a migration that runs outside a transaction: what it did
/// before failing (or before an earlier run was interrupted) stays, and is not recorded.
fn outside_transaction(failure: BoxError) -> BoxError {
    format!(
        "{failure}; it runs outside a transaction (run_in_transaction = false), so it may be \
         partly applied, by this run or by an earlier one that was interrupted: check which of \
         its statements took effect, finish or undo them by hand, then run the migrations again"
    )
    .into()
}

/// How a migration run on one database is guarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Guards {
    /// Build on migrations applied with other contents than this binary's copy.
    pub(crate) allow_drift: bool,
    /// How long each statement may wait for a lock.
    pub(crate) lock_timeout: Option<std::time::Duration>,
    /// How long each statement may run.
    pub(crate) statement_timeout: Option<std::time::Duration>,
}

/// What a migration run did and left.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// The migrations applied or reverted, by name.
    pub touched: Vec<String>,
    /// Every version the database has applied afterwards, oldest first.
    pub applied: Vec<String>,
}

/// What `op` would do to a database that has `applied` (oldest first): the names of the
/// migrations it would apply, or revert (newest first).
pub(crate) fn planned(
    migrations: &Migrations,
    applied: &[String],
    op: &MigrationOp,
) -> Vec<String> {
    let named = |version: &String| {
        migrations
            .iter()
            .find(|m| m.version() == version)
            .map_or_else(|| version.clone(), |m| m.name().to_owned())
    };
    match op {
        MigrationOp::Up => migrations
            .iter()
            .filter(|m| !applied.iter().any(|v| v == m.version()))
            .map(|m| m.name().to_owned())
            .collect(),
        MigrationOp::Down { steps } => applied.iter().rev().take(*steps).map(named).collect(),
        MigrationOp::DownTo { version, .. } => applied
            .iter()
            .rev()
            .take_while(|v| version.as_deref().is_none_or(|keep| v.as_str() > keep))
            .map(named)
            .collect(),
    }
}

/// Runs `op` with Diesel's harness on a blocking thread and hands the connection back. Generic over any connection whose
/// `AsyncConnectionWrapper` Diesel can migrate; each backend calls it with its concrete type.
pub(crate) async fn run_blocking<C>(
    conn: C,
    migrations: Migrations,
    op: MigrationOp,
    file_lock: Option<std::path::PathBuf>,
) -> std::result::Result<(C, Ran), BoxError>
where
    C: AsyncConnection + Send + 'static,
    AsyncConnectionWrapper<C>: MigrationHarness<C::Backend>,
{
    tokio::task::spawn_blocking(move || {
        // Held (when given) until this closure returns.
        let _lock = match &file_lock {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
                file.lock()
                    .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
                Some(file)
            }
            None => None,
        };
        let mut harness = AsyncConnectionWrapper::<C>::from(conn);
        let mut touched = Vec::new();
        match op {
            MigrationOp::Up => {
                // One by one, so a failure names its migration.
                for migration in harness.pending_migrations(migrations.clone())? {
                    let name = migration.name().to_string();
                    let in_transaction = migration.metadata().run_in_transaction();
                    harness.run_migration(&*migration).map_err(|e| {
                        let failure = named_failure("migration", &name, &*e);
                        if in_transaction {
                            failure
                        } else {
                            outside_transaction(failure)
                        }
                    })?;
                    touched.push(name);
                }
            }
            MigrationOp::Down { .. } | MigrationOp::DownTo { .. } => {
                let mut steps_left = match &op {
                    MigrationOp::Down { steps } => *steps,
                    _ => usize::MAX,
                };
                // A fixed rollback target on a database migrated further since it was fixed
                // is refused: reverting to it would undo newer work.
                if let MigrationOp::DownTo {
                    from: Some(from), ..
                } = &op
                    && let Some(newest) = harness.applied_migrations()?.into_iter().max()
                    && newest.to_string().as_str() > from.as_str()
                {
                    return Err(format!(
                        "the database was migrated since this rollback began (newest applied \
                         {newest}, newer than {from}, the newest when the rollback began): \
                         nothing reverted; start a new rollback instead of resuming this one"
                    )
                    .into());
                }
                while steps_left > 0 {
                    steps_left -= 1;
                    let Some(last) = harness.applied_migrations()?.into_iter().max() else {
                        break;
                    };
                    if let MigrationOp::DownTo {
                        version: Some(keep),
                        ..
                    } = &op
                        && last.to_string().as_str() <= keep.as_str()
                    {
                        break;
                    }
                    let name = name_of(&migrations, &last);
                    harness
                        .revert_last_migration(migrations.clone())
                        .map_err(|e| named_failure("reverting migration", &name, &*e))?;
                    touched.push(name);
                }
            }
        }
        // What the database has applied now (for the registry's record of it).
        let mut applied: Vec<String> = harness
            .applied_migrations()?
            .iter()
            .map(ToString::to_string)
            .collect();
        applied.sort();
        Ok((harness.into_inner(), Ran { touched, applied }))
    })
    .await
    .map_err(|e| -> BoxError { format!("the migration task failed: {e}").into() })?
}

/// Runs `op` on `conn` (connected to `target` on `server`) under the database's migration
/// lock: the one runner every backend shares, over the server's lock/unlock hooks. Returns the
/// connection with the names of the migrations touched.
pub(crate) async fn run_locked<B: crate::backend::Backend>(
    server: &B::Server,
    target: crate::backend::Target<'_>,
    mut conn: B::Connection,
    migrations: Migrations,
    op: MigrationOp,
    guards: Guards,
) -> std::result::Result<(B::Connection, Ran), BoxError> {
    use crate::backend::{MigrationLock, Server as _};
    use crate::registry::RegistryConnection as _;
    let lock = server.lock_migrations(target, &mut conn).await?;
    let refused = async {
        // A migration applied with other contents than this binary's copy: never build on it
        // unless asked to.
        if matches!(op, MigrationOp::Up) && !guards.allow_drift {
            let drifted = crate::ledger::drifted(&migrations, &conn.applied_checksums().await);
            if !drifted.is_empty() {
                return Err(BoxError::from(crate::ledger::drift_error(&drifted)));
            }
        }
        // Time limits for this session, set once the migration lock is held (taking it sets
        // and resets PostgreSQL's lock_timeout).
        if guards.lock_timeout.is_some() || guards.statement_timeout.is_some() {
            let sql = server
                .session_limits_sql(guards.lock_timeout, guards.statement_timeout)
                .await?;
            if !sql.is_empty() {
                use diesel_async::SimpleAsyncConnection as _;
                conn.batch_execute(&sql).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = refused {
        if matches!(lock, MigrationLock::Session) {
            let _ = server.unlock_migrations(&mut conn).await;
        }
        return Err(e);
    }
    let (file_lock, session) = match lock {
        MigrationLock::Session => (None, true),
        MigrationLock::File(path) => (Some(path), false),
    };
    let (mut conn, names) = B::run_harness(conn, migrations, op, file_lock).await?;
    // The migrations are applied: a failed unlock does not undo that (a session lock ends with
    // the session at the latest).
    if session && let Err(e) = server.unlock_migrations(&mut conn).await {
        tracing::warn!(error = %e, "could not release the migration lock; it ends with the session");
    }
    Ok((conn, names))
}

/// Runs every seed in order, each in its own transaction; returns the seed names.
pub(crate) async fn run_seeds<C>(conn: &mut C, seeds: &Seeds, database: &str) -> Result<Vec<String>>
where
    C: AsyncConnection + Send,
{
    let mut ran = Vec::with_capacity(seeds.len());
    for seed in seeds.iter() {
        let sql = seed.sql();
        conn.transaction(async |c| c.batch_execute(sql).await)
            .await
            .map_err(|source| Error::Seed {
                database: database.to_owned(),
                seed: seed.name().to_owned(),
                source,
            })?;
        ran.push(seed.name().to_owned());
    }
    Ok(ran)
}
