//! Fleet runs: one operation over many tenants, with bounded concurrency and a per-tenant
//! report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Instrument as _;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::migrate::MigrationOp;
use crate::registry::TenantState;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// What a fleet run does on each tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetOp {
    /// Apply pending tenant migrations.
    Migrate,
    /// Revert the last `n` tenant migrations.
    Rollback(usize),
    /// Run the tenant seeds.
    Seed,
}

/// How a fleet run proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetOptions {
    /// Tenants worked on at once; each holds one connection to its database while it runs.
    pub concurrency: usize,
    /// Stop starting tenants after the first failure (the rest are reported as skipped).
    pub fail_fast: bool,
}

impl FleetOptions {
    /// The default concurrency: twice the CPU cores, at most 16 (each tenant in flight holds
    /// one database connection).
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .clamp(1, 16)
    }

    /// Sets the concurrency (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets fail-fast.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            concurrency: FleetOptions::default_concurrency(),
            fail_fast: false,
        }
    }
}

/// The outcome of a fleet operation on one tenant.
#[derive(Debug)]
pub struct TenantOutcome {
    /// The tenant.
    pub id: TenantId,
    /// The migrations applied or reverted, or seeds run (empty: already up to date), or why it
    /// failed ([`Error::Skipped`] after an earlier failure with `fail_fast`).
    pub result: Result<Vec<String>>,
}

impl<B: Backend> Tenora<B> {
    /// Applies pending tenant migrations to every `active` tenant, a few at a time. One
    /// tenant's failure does not stop the others; each outcome is reported.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// for outcome in tenora.migrate_all_tenants().await? {
    ///     if let Err(e) = outcome.result {
    ///         eprintln!("tenant {} was not migrated: {e}", outcome.id);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn migrate_all_tenants(&self) -> Result<Vec<TenantOutcome>> {
        // New tenants clone the template: bring it to the same version as the fleet.
        self.prepare_template().await?;
        self.run_fleet(None, FleetOp::Migrate, FleetOptions::default(), |_| {})
            .await
    }

    /// Reverts the last `steps` tenant migrations on every `active` tenant.
    pub async fn rollback_all_tenants(&self, steps: usize) -> Result<Vec<TenantOutcome>> {
        self.run_fleet(
            None,
            FleetOp::Rollback(steps),
            FleetOptions::default(),
            |_| {},
        )
        .await
    }

    /// Runs `op` on `tenants` (default: every `active` tenant) with at most
    /// `options.concurrency` at once, calling `on_done` as each finishes. Returns the outcomes
    /// in the order of the tenants. Each tenant's migrations run under its database's
    /// migration lock, so several processes may run this at once.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// use tenora::{FleetOp, FleetOptions};
    /// let mut options = FleetOptions::default();
    /// options.fail_fast = true;
    /// let outcomes = tenora
    ///     .run_fleet(None, FleetOp::Rollback(1), options, |done| {
    ///         println!("{}: {}", done.id, if done.result.is_ok() { "ok" } else { "failed" });
    ///     })
    ///     .await?;
    /// # let _ = outcomes;
    /// # Ok(()) }
    /// ```
    pub async fn run_fleet(
        &self,
        tenants: Option<&[TenantId]>,
        op: FleetOp,
        options: FleetOptions,
        mut on_done: impl FnMut(&TenantOutcome),
    ) -> Result<Vec<TenantOutcome>> {
        let targets: Vec<TenantId> = match tenants {
            Some(ids) => ids.to_vec(),
            None => self
                .list_tenants()
                .await?
                .into_iter()
                .filter(|t| t.state == TenantState::Active)
                .map(|t| t.id)
                .collect(),
        };
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let failed = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut outcomes: Vec<Option<TenantOutcome>> = Vec::new();
        outcomes.resize_with(targets.len(), || None);
        let mut finish = |index: usize, outcome: TenantOutcome| {
            on_done(&outcome);
            outcomes[index] = Some(outcome);
        };
        for (index, id) in targets.into_iter().enumerate() {
            // Wait for a free slot, reporting tenants that finish meanwhile.
            let permit = loop {
                if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                    break permit;
                }
                if let Some(done) = tasks.join_next().await {
                    let (i, outcome) = done.map_err(join_error)?;
                    finish(i, outcome);
                } else {
                    break Arc::clone(&permits).acquire_owned().await.map_err(|e| {
                        Error::Cancelled {
                            what: "a fleet run".to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                }
            };
            if options.fail_fast && failed.load(Ordering::SeqCst) {
                drop(permit);
                let outcome = TenantOutcome {
                    result: Err(Error::Skipped { id: id.clone() }),
                    id,
                };
                finish(index, outcome);
                continue;
            }
            let this = self.clone();
            let failed = Arc::clone(&failed);
            let span = tracing::info_span!("tenora.fleet", tenant = %id, op = ?op);
            tasks.spawn(
                async move {
                    let result = match op {
                        FleetOp::Migrate => this.run_on_tenant(&id, MigrationOp::Up).await,
                        FleetOp::Rollback(steps) => {
                            this.run_on_tenant(&id, MigrationOp::Down { steps }).await
                        }
                        FleetOp::Seed => this.run_tenant_seeds(&id).await,
                    };
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    drop(permit);
                    (index, TenantOutcome { id, result })
                }
                .instrument(span),
            );
        }
        while let Some(done) = tasks.join_next().await {
            let (i, outcome) = done.map_err(join_error)?;
            finish(i, outcome);
        }
        Ok(outcomes.into_iter().flatten().collect())
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    Error::Cancelled {
        what: "a fleet task".to_owned(),
        reason: e.to_string(),
    }
}
