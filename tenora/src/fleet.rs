//! Fleet runs: one operation over many tenants, with bounded concurrency and a per-tenant
//! report.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FleetOptions {
    /// Tenants worked on at once **per server**; each holds one connection to its database
    /// while it runs. 0 (the default) derives it from each server's connection budget (a
    /// quarter of it, at least 1, at most [`FleetOptions::default_concurrency`]).
    pub concurrency: usize,
    /// Stop starting tenants after the first failure (the rest are reported as skipped).
    pub fail_fast: bool,
    /// [`FleetOp::Migrate`]: connect to every tenant, also those whose registry row records
    /// this binary's migration fingerprint (which are otherwise reported up to date without
    /// a connection).
    pub verify: bool,
    /// [`FleetOp::Migrate`]: migrate tenants even where a migration was applied with other
    /// contents than this binary's copy (refused otherwise, naming the migration).
    pub allow_drift: bool,
    /// Change nothing: each outcome lists what the run would apply, revert or seed (read from
    /// each tenant's database; tenants the registry records as up to date are not read).
    pub dry_run: bool,
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

    /// Sets the concurrency per server (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets fail-fast.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// Sets dry-run (see [`FleetOptions::dry_run`]).
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Sets allow-drift (see [`FleetOptions::allow_drift`]).
    pub fn allow_drift(mut self, yes: bool) -> Self {
        self.allow_drift = yes;
        self
    }

    /// Sets verify (see [`FleetOptions::verify`]).
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }
}

/// The outcome of a fleet operation on one tenant.
#[derive(Debug)]
pub struct TenantOutcome {
    /// The tenant.
    pub id: TenantId,
    /// The server its registry row places it on (empty when it has no row).
    pub server: String,
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
        let records = self.list_tenants().await?;
        let targets: Vec<TenantId> = match tenants {
            Some(ids) => ids.to_vec(),
            None => records
                .iter()
                .filter(|t| t.state == TenantState::Active)
                .map(|t| t.id.clone())
                .collect(),
        };
        let server_of: HashMap<&TenantId, &str> =
            records.iter().map(|r| (&r.id, r.server.as_str())).collect();
        // Tenants whose row records this binary's migrations need no connection to be found
        // up to date (unless asked to verify).
        let wanted = self.tenant_migrations().fingerprint();
        let up_to_date: std::collections::HashSet<&TenantId> = match op {
            FleetOp::Migrate if !options.verify => records
                .iter()
                .filter(|r| {
                    r.state == TenantState::Active
                        && r.migration_fingerprint.as_deref() == Some(wanted.as_str())
                })
                .map(|r| &r.id)
                .collect(),
            _ => Default::default(),
        };
        // One queue and one concurrency limit per server, so a slow or unreachable server
        // holds up only its own tenants.
        let mut queues: BTreeMap<String, VecDeque<(usize, TenantId)>> = BTreeMap::new();
        let mut done_already = Vec::new();
        for (index, id) in targets.into_iter().enumerate() {
            let server = server_of.get(&id).copied().unwrap_or_default().to_owned();
            if up_to_date.contains(&id) {
                done_already.push((index, id, server));
                continue;
            }
            queues.entry(server).or_default().push_back((index, id));
        }
        let total = queues.values().map(VecDeque::len).sum::<usize>() + done_already.len();
        let mut outcomes: Vec<Option<TenantOutcome>> = Vec::new();
        outcomes.resize_with(total, || None);
        let mut finish = |index: usize, outcome: TenantOutcome| {
            on_done(&outcome);
            outcomes[index] = Some(outcome);
        };
        for (index, id, server) in done_already {
            let result = Ok(Vec::new());
            finish(index, TenantOutcome { id, server, result });
        }
        let (allow_drift, dry_run) = (options.allow_drift, options.dry_run);
        self.schedule(
            queues,
            options.concurrency,
            options.fail_fast,
            move |this: Tenora<B>, id: TenantId| async move {
                if dry_run {
                    return this.plan_on_tenant(&id, op).await;
                }
                match op {
                    FleetOp::Migrate => this.run_on_tenant(&id, MigrationOp::Up, allow_drift).await,
                    FleetOp::Rollback(steps) => {
                        this.run_on_tenant(&id, MigrationOp::Down { steps }, false)
                            .await
                    }
                    FleetOp::Seed => this.run_tenant_seeds(&id).await,
                }
            },
            |index, id, server, result| finish(index, TenantOutcome { id, server, result }),
        )
        .await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Runs `work` on the tenants of `queues` (per server: (index, id) in order) with at most
    /// `concurrency` at once per server (0: derived from each server's budget), a tenant of
    /// each server in turn, calling `finish` as each ends. With `fail_fast`, the tenants not
    /// started after a failure end as [`Error::Skipped`].
    pub(crate) async fn schedule<T, W, Fut>(
        &self,
        mut queues: BTreeMap<String, VecDeque<(usize, TenantId)>>,
        concurrency: usize,
        fail_fast: bool,
        work: W,
        mut finish: impl FnMut(usize, TenantId, String, Result<T>),
    ) -> Result<()>
    where
        T: Send + 'static,
        W: Fn(Tenora<B>, TenantId) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let limits: HashMap<String, Arc<Semaphore>> = queues
            .keys()
            .map(|server| {
                let n = match concurrency {
                    0 => self.derived_concurrency(server),
                    n => n,
                };
                let n = n.min(Semaphore::MAX_PERMITS);
                (server.clone(), Arc::new(Semaphore::new(n)))
            })
            .collect();
        let failed = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        while queues.values().any(|q| !q.is_empty()) {
            // Start what the servers' limits allow, a tenant of each server in turn.
            let mut started = false;
            for (server, queue) in &mut queues {
                let Some(&(index, _)) = queue.front() else {
                    continue;
                };
                if fail_fast && failed.load(Ordering::SeqCst) {
                    let (_, id) = queue.pop_front().expect("front exists");
                    let skipped = Err(Error::Skipped { id: id.clone() });
                    finish(index, id, server.clone(), skipped);
                    started = true;
                    continue;
                }
                let Ok(permit) = Arc::clone(&limits[server]).try_acquire_owned() else {
                    continue;
                };
                let (_, id) = queue.pop_front().expect("front exists");
                started = true;
                let (this, work) = (self.clone(), work.clone());
                let failed = Arc::clone(&failed);
                let server = server.clone();
                let span = tracing::info_span!("tenora.fleet", tenant = %id, server = %server);
                tasks.spawn(
                    async move {
                        let result = work(this, id.clone()).await;
                        if result.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        drop(permit);
                        (index, id, server, result)
                    }
                    .instrument(span),
                );
            }
            if !started {
                // Every server with work is at its limit: a finishing tenant frees a slot.
                if let Some(done) = tasks.join_next().await {
                    let (i, id, server, result) = done.map_err(join_error)?;
                    finish(i, id, server, result);
                }
            }
            // Report what finished meanwhile.
            while let Some(done) = tasks.try_join_next() {
                let (i, id, server, result) = done.map_err(join_error)?;
                finish(i, id, server, result);
            }
        }
        while let Some(done) = tasks.join_next().await {
            let (i, id, server, result) = done.map_err(join_error)?;
            finish(i, id, server, result);
        }
        Ok(())
    }

    /// What `op` would do on tenant `id`, read from its database: the migrations it would
    /// apply or revert, or the seeds it would run. Changes nothing.
    pub(crate) async fn plan_on_tenant(&self, id: &TenantId, op: FleetOp) -> Result<Vec<String>> {
        let migrations = self.tenant_migrations();
        let name_of = |version: &str| {
            migrations
                .iter()
                .find(|m| m.version() == version)
                .map_or_else(|| version.to_owned(), |m| m.name().to_owned())
        };
        match op {
            FleetOp::Migrate => {
                let (applied, _) = self.inspect_tenant(id).await?;
                Ok(migrations
                    .iter()
                    .filter(|m| !applied.iter().any(|v| v == m.version()))
                    .map(|m| m.name().to_owned())
                    .collect())
            }
            FleetOp::Rollback(steps) => {
                let (applied, _) = self.inspect_tenant(id).await?;
                Ok(applied
                    .iter()
                    .rev()
                    .take(steps)
                    .map(|v| name_of(v))
                    .collect())
            }
            FleetOp::Seed => {
                // Only that it is there to seed (`active`): seeds change data, not schema.
                self.inspect_tenant(id).await?;
                Ok(self
                    .tenant_seeds()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect())
            }
        }
    }

    /// The default fleet concurrency on `server`: a quarter of its connection budget, at
    /// least 1, at most [`FleetOptions::default_concurrency`].
    fn derived_concurrency(&self, server: &str) -> usize {
        let most = FleetOptions::default_concurrency();
        match self
            .servers()
            .named(server)
            .ok()
            .and_then(|s| s.budget.max())
        {
            Some(max) => usize::try_from(max / 4).unwrap_or(most).clamp(1, most),
            None => most,
        }
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
