//! Fleet runs: one operation over many tenants, with bounded concurrency and a per-tenant
//! report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tracing::Instrument as _;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fleet_runs::{Resume, RunId, RunState};
use crate::migrate::{Guards, MigrationOp};
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
    /// Stop starting tenants after the first failure (the rest are reported as skipped); the
    /// same as `max_failures: Some(1)`.
    pub fail_fast: bool,
    /// Stop starting tenants once this many have failed (the rest are reported as skipped and
    /// stay pending in the run's record, for [`FleetOptions::resume`]).
    pub max_failures: Option<usize>,
    /// Run in waves of this many tenants (0: all at once), each wave finished before the next
    /// starts: the first is the canary. A wave with failures stops the run, unless
    /// `max_failures` allows more.
    pub batch: usize,
    /// Continue a recorded run instead of starting one: its tenants not done yet (pending,
    /// started when the process ended, or failed), skipping those done. The run's own
    /// command and steps apply; no tenants may be named.
    pub resume: Option<Resume>,
    /// With `resume` (the newest unfinished run when `None`): retry only the tenants that
    /// failed.
    pub only_failed: bool,
    /// [`FleetOp::Migrate`]: connect to every tenant, also those whose registry row records
    /// this binary's migration fingerprint (which are otherwise reported up to date without
    /// a connection).
    pub verify: bool,
    /// [`FleetOp::Migrate`]: migrate tenants even where a migration was applied with other
    /// contents than this binary's copy (refused otherwise, naming the migration).
    pub allow_drift: bool,
    /// Change nothing: each outcome lists what the run would apply, revert or seed (read from
    /// each tenant's database; tenants the registry records as up to date are not read). A
    /// dry run is not recorded.
    pub dry_run: bool,
    /// Migrations and rollbacks: how long each statement may wait for a lock before the
    /// tenant fails (PostgreSQL `lock_timeout`; MySQL `lock_wait_timeout` and
    /// `innodb_lock_wait_timeout`, whole seconds; SQLite `busy_timeout`), so one locked tenant
    /// cannot hold up a run.
    pub lock_timeout: Option<Duration>,
    /// Migrations and rollbacks: how long each statement may run (PostgreSQL
    /// `statement_timeout`; MariaDB `max_statement_time`; MySQL `max_execution_time`, which
    /// limits only read-only `SELECT`s). SQLite has none: the run is refused.
    pub statement_timeout: Option<Duration>,
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

    /// Sets the failures after which the run stops (at least 1; see
    /// [`FleetOptions::max_failures`]).
    pub fn max_failures(mut self, n: usize) -> Self {
        self.max_failures = Some(n.max(1));
        self
    }

    /// Sets the wave size (see [`FleetOptions::batch`]).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Resumes a recorded run (see [`FleetOptions::resume`]).
    pub fn resume(mut self, which: Resume) -> Self {
        self.resume = Some(which);
        self
    }

    /// Retries only the failed tenants of a recorded run (the newest unfinished one unless
    /// [`FleetOptions::resume`] names one).
    pub fn only_failed(mut self, yes: bool) -> Self {
        self.only_failed = yes;
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

    /// Sets the lock timeout (see [`FleetOptions::lock_timeout`]).
    pub fn lock_timeout(mut self, limit: Duration) -> Self {
        self.lock_timeout = Some(limit);
        self
    }

    /// Sets the statement timeout (see [`FleetOptions::statement_timeout`]).
    pub fn statement_timeout(mut self, limit: Duration) -> Self {
        self.statement_timeout = Some(limit);
        self
    }

    /// Sets verify (see [`FleetOptions::verify`]).
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// Failures after which no more tenants are started (fail-fast: 1), when limited.
    fn failure_limit(&self) -> Option<usize> {
        if self.fail_fast {
            Some(1)
        } else {
            self.max_failures
        }
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
    /// failed ([`Error::Skipped`] when the run stopped before starting it).
    pub result: Result<Vec<String>>,
    /// Migrations: versions the tenant's database has applied that are newer than every
    /// migration of this binary — a newer release migrated it (a rolling deploy). Nothing is
    /// applied or reverted for them; the tenant is served as it is.
    pub ahead: Vec<String>,
}

/// What a fleet run did on one tenant.
pub(crate) struct Worked {
    /// Migrations applied or reverted, or seeds run.
    pub(crate) touched: Vec<String>,
    /// See [`TenantOutcome::ahead`].
    pub(crate) ahead: Vec<String>,
}

impl Worked {
    fn nothing() -> Self {
        Worked {
            touched: Vec::new(),
            ahead: Vec::new(),
        }
    }
}

impl TenantOutcome {
    fn of(id: TenantId, server: String, worked: Result<Worked>) -> Self {
        let (result, ahead) = match worked {
            Ok(w) => (Ok(w.touched), w.ahead),
            Err(e) => (Err(e), Vec::new()),
        };
        TenantOutcome {
            id,
            server,
            result,
            ahead,
        }
    }
}

/// What a fleet run did.
#[derive(Debug)]
#[non_exhaustive]
pub struct FleetReport {
    /// Its id in the fleet-run log (`None` for a dry run, or no tenants).
    pub run: Option<RunId>,
    /// Where the run stands in the log after this attempt (`None` when not recorded): a
    /// resumed run with tenants left (`only_failed`) is not finished even when this attempt
    /// had no failure.
    pub state: Option<RunState>,
    /// What it does (a resumed run's own command).
    pub op: FleetOp,
    /// One outcome per tenant, in the order of the tenants.
    pub outcomes: Vec<TenantOutcome>,
    /// Whether it stopped early (fail-fast, `max_failures`, a failed wave), leaving tenants
    /// not started.
    pub stopped: bool,
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
            .map(|report| report.outcomes)
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
        .map(|report| report.outcomes)
    }

    /// Runs `op` on `tenants` (default: every `active` tenant) with at most
    /// `options.concurrency` at once per server, calling `on_done` as each finishes. Returns
    /// the run's id and the outcomes in the order of the tenants. Each tenant's migrations run
    /// under its database's migration lock, so several processes may run this at once.
    ///
    /// The run is recorded in the base database as it goes (see [`Tenora::fleet_runs`]): a
    /// run that was killed, failed or stopped continues with [`FleetOptions::resume`]. A
    /// rollback fixes each tenant's target version before reverting, so a resumed rollback
    /// never reverts a tenant further than the run meant to.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// use tenora::{FleetOp, FleetOptions, Resume};
    /// let options = FleetOptions::default().max_failures(3).batch(50);
    /// let report = tenora
    ///     .run_fleet(None, FleetOp::Migrate, options, |done| {
    ///         println!("{}: {}", done.id, if done.result.is_ok() { "ok" } else { "failed" });
    ///     })
    ///     .await?;
    /// if report.stopped {
    ///     // Later, after fixing what failed:
    ///     let again = FleetOptions::default().resume(Resume::Latest);
    ///     tenora.run_fleet(None, FleetOp::Migrate, again, |_| {}).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run_fleet(
        &self,
        tenants: Option<&[TenantId]>,
        op: FleetOp,
        options: FleetOptions,
        mut on_done: impl FnMut(&TenantOutcome),
    ) -> Result<FleetReport> {
        let records = self.list_tenants().await?;
        let active: HashSet<&TenantId> = records
            .iter()
            .filter(|t| t.state == TenantState::Active)
            .map(|t| &t.id)
            .collect();
        // Which tenants (with a resumed rollback's fixed targets), of which run.
        let resume = match (options.resume, options.only_failed) {
            (Some(which), _) => Some(which),
            (None, true) => Some(Resume::Latest),
            (None, false) => None,
        };
        let mut gone = Vec::new();
        let (op, resumed, targets, known_targets) = match resume {
            Some(which) => {
                if tenants.is_some() {
                    return Err(Error::FleetRun {
                        message: "a resumed run works on the tenants it has left; do not name \
                                  tenants with --resume or --only-failed"
                            .to_owned(),
                    });
                }
                let (run, left) = self.resumable_run(which, op, options.only_failed).await?;
                let mut ids = Vec::new();
                let mut known = HashMap::new();
                for (recorded, fixed) in left {
                    // A tenant dropped (or no longer active) since the run started has nothing
                    // left to do: say so in the record, so the run can finish.
                    match self.tenant_id(&recorded) {
                        Ok(id) if active.contains(&id) => {
                            if let Some(fixed) = fixed {
                                known.insert(id.clone(), fixed);
                            }
                            ids.push(id);
                        }
                        _ => gone.push(recorded),
                    }
                }
                (run.op, Some(run.id), ids, known)
            }
            None => {
                let mut ids: Vec<TenantId> = match tenants {
                    Some(ids) => ids.to_vec(),
                    None => records
                        .iter()
                        .filter(|t| t.state == TenantState::Active)
                        .map(|t| t.id.clone())
                        .collect(),
                };
                // A tenant named twice runs once.
                let mut seen = HashSet::new();
                ids.retain(|id| seen.insert(id.clone()));
                (op, None, ids, HashMap::new())
            }
        };
        let server_of: HashMap<&TenantId, &str> =
            records.iter().map(|r| (&r.id, r.server.as_str())).collect();
        // Tenants whose row records this binary's migrations need no connection to be found
        // up to date (unless asked to verify).
        let wanted = self.tenant_migrations().fingerprint();
        let up_to_date: HashSet<&TenantId> = match op {
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
        let total = targets.len();
        let mut to_do = Vec::new();
        let mut done_already = Vec::new();
        for (index, id) in targets.into_iter().enumerate() {
            let server = server_of.get(&id).copied().unwrap_or_default().to_owned();
            if up_to_date.contains(&id) {
                done_already.push((index, id, server));
            } else {
                to_do.push((index, id, server));
            }
        }
        // Time limits the servers cannot enforce are refused before anything starts.
        let guards = Guards {
            allow_drift: options.allow_drift,
            lock_timeout: options.lock_timeout,
            statement_timeout: options.statement_timeout,
        };
        if !options.dry_run && op != FleetOp::Seed {
            self.check_guards(guards)?;
        }
        // The run's record: a new one lists the tenants to work on; a resumed one marks those
        // found up to date (or gone) meanwhile as done.
        let run = match (options.dry_run, resumed) {
            // Nothing to record: a dry run, or no tenants at all.
            (true, _) => None,
            (false, None) if total == 0 => None,
            (false, Some(run)) => {
                self.reopen_run(run).await?;
                for (_, id, _) in &done_already {
                    self.run_tenant_ended(run, id, &Ok(Worked::nothing())).await;
                }
                for tenant in &gone {
                    let why = "nothing to do: no longer an active tenant";
                    self.run_tenant_skipped(run, tenant, why).await;
                }
                Some(run)
            }
            (false, None) => {
                let listed: Vec<(String, String)> = to_do
                    .iter()
                    .map(|(_, id, server)| (id.to_string(), server.clone()))
                    .collect();
                Some(
                    self.start_run(op, total, done_already.len(), &listed)
                        .await?,
                )
            }
        };
        let mut outcomes: Vec<Option<TenantOutcome>> = Vec::new();
        outcomes.resize_with(total, || None);
        let mut finish = |index: usize, outcome: TenantOutcome| {
            on_done(&outcome);
            outcomes[index] = Some(outcome);
        };
        for (index, id, server) in done_already {
            finish(index, TenantOutcome::of(id, server, Ok(Worked::nothing())));
        }
        // Inside a wave, only an explicit limit stops starting tenants; between waves, a wave
        // with failures stops the run unless the limit allows more.
        let in_wave = options.failure_limit();
        let between_waves = in_wave.or((options.batch > 0).then_some(1));
        let failures = Arc::new(AtomicUsize::new(0));
        let known_targets = Arc::new(known_targets);
        let dry_run = options.dry_run;
        let work = move |this: Tenora<B>, id: TenantId| {
            let known_targets = Arc::clone(&known_targets);
            async move {
                let fixed = known_targets.get(&id);
                if dry_run {
                    return this.plan_on_tenant(&id, op, fixed).await;
                }
                this.work_on_tenant(run, &id, op, guards, fixed).await
            }
        };
        // Waves of `batch` tenants (one wave when 0), each per server in queues.
        let wave_size = match options.batch {
            0 => to_do.len().max(1),
            n => n,
        };
        let mut waves = to_do.chunks(wave_size).peekable();
        while let Some(wave) = waves.next() {
            let mut queues: BTreeMap<String, VecDeque<(usize, TenantId)>> = BTreeMap::new();
            for (index, id, server) in wave {
                queues
                    .entry(server.clone())
                    .or_default()
                    .push_back((*index, id.clone()));
            }
            self.schedule(
                queues,
                options.concurrency,
                in_wave,
                &failures,
                work.clone(),
                |index, id, server, worked| finish(index, TenantOutcome::of(id, server, worked)),
            )
            .await?;
            let failed = failures.load(Ordering::SeqCst);
            if waves.peek().is_some() && between_waves.is_some_and(|most| failed >= most) {
                // The waves not started end as skipped (pending in the run's record).
                for (index, id, server) in waves.by_ref().flatten() {
                    let skipped = Err(Error::Skipped { id: id.clone() });
                    let outcome = TenantOutcome::of(id.clone(), server.clone(), skipped);
                    finish(*index, outcome);
                }
                break;
            }
        }
        let outcomes: Vec<TenantOutcome> = outcomes.into_iter().flatten().collect();
        // Stopped early: some tenant was never started.
        let stopped = outcomes
            .iter()
            .any(|o| matches!(o.result, Err(Error::Skipped { .. })));
        let state = match run {
            Some(run) => Some(self.end_run(run, stopped, &outcomes).await),
            None => None,
        };
        Ok(FleetReport {
            run,
            state,
            op,
            outcomes,
            stopped,
        })
    }

    /// Runs `op` on tenant `id` for fleet run `run` (recording its start and outcome when
    /// given). A rollback first fixes the version to leave as the newest and the newest
    /// applied now (`fixed`, from the run's record when resumed), on record before anything
    /// is reverted, so running it again never reverts further nor undoes newer work.
    async fn work_on_tenant(
        &self,
        run: Option<RunId>,
        id: &TenantId,
        op: FleetOp,
        guards: Guards,
        fixed: Option<&(String, String)>,
    ) -> Result<Worked> {
        let result = async {
            let result = match op {
                FleetOp::Migrate => {
                    if let Some(run) = run {
                        self.run_tenant_started(run, id).await;
                    }
                    self.run_on_tenant(id, MigrationOp::Up, guards)
                        .await
                        .map(|ran| Worked {
                            ahead: self.tenant_migrations().versions_ahead(&ran.applied),
                            touched: ran.touched,
                        })
                }
                FleetOp::Rollback(steps) => {
                    let (target, from) = match fixed {
                        Some(fixed) => fixed.clone(),
                        None => {
                            let (applied, _) = self.inspect_tenant(id).await?;
                            rollback_target(&applied, steps)
                        }
                    };
                    // On record (or the run's earlier choice taken) before anything changes.
                    let (target, from) = match run {
                        Some(run) => self.claim_rollback(run, id, &target, &from).await?,
                        None => (target, from),
                    };
                    let op = MigrationOp::DownTo {
                        version: Some(target).filter(|t| !t.is_empty()),
                        from: Some(from).filter(|f| !f.is_empty()),
                    };
                    let guards = Guards {
                        allow_drift: false,
                        ..guards
                    };
                    self.run_on_tenant(id, op, guards).await.map(|ran| Worked {
                        touched: ran.touched,
                        ahead: Vec::new(),
                    })
                }
                FleetOp::Seed => {
                    if let Some(run) = run {
                        self.run_tenant_started(run, id).await;
                    }
                    self.run_tenant_seeds(id).await.map(|touched| Worked {
                        touched,
                        ahead: Vec::new(),
                    })
                }
            };
            crate::failpoint::reached("fleet_tenant_ran");
            result
        }
        .await;
        if let Some(run) = run {
            self.run_tenant_ended(run, id, &result).await;
        }
        result
    }

    /// Runs `work` on the tenants of `queues` (per server: (index, id) in order) with at most
    /// `concurrency` at once per server (0: derived from each server's budget), a tenant of
    /// each server in turn, calling `finish` as each ends. Each failure counts in `failures`;
    /// once it reaches `stop_after`, the tenants not started end as [`Error::Skipped`].
    pub(crate) async fn schedule<T, W, Fut>(
        &self,
        mut queues: BTreeMap<String, VecDeque<(usize, TenantId)>>,
        concurrency: usize,
        stop_after: Option<usize>,
        failures: &Arc<AtomicUsize>,
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
        let stopping = || stop_after.is_some_and(|most| failures.load(Ordering::SeqCst) >= most);
        let mut tasks = JoinSet::new();
        while queues.values().any(|q| !q.is_empty()) {
            // Start what the servers' limits allow, a tenant of each server in turn.
            let mut started = false;
            for (server, queue) in &mut queues {
                let Some(&(index, _)) = queue.front() else {
                    continue;
                };
                if stopping() {
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
                let failures = Arc::clone(failures);
                let server = server.clone();
                let span = tracing::info_span!("tenora.fleet", tenant = %id, server = %server);
                tasks.spawn(
                    async move {
                        let result = work(this, id.clone()).await;
                        if result.is_err() {
                            failures.fetch_add(1, Ordering::SeqCst);
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
    pub(crate) async fn plan_on_tenant(
        &self,
        id: &TenantId,
        op: FleetOp,
        fixed: Option<&(String, String)>,
    ) -> Result<Worked> {
        let migrations = self.tenant_migrations();
        let (applied, _) = self.inspect_tenant(id).await?;
        Ok(match (op, fixed) {
            // A resumed rollback: down to the target the run fixed.
            (FleetOp::Rollback(_), Some((target, _))) => {
                let op = MigrationOp::DownTo {
                    version: Some(target.clone()).filter(|t| !t.is_empty()),
                    from: None,
                };
                Worked {
                    touched: crate::migrate::planned(migrations, &applied, &op),
                    ahead: Vec::new(),
                }
            }
            (FleetOp::Migrate, _) => Worked {
                touched: crate::migrate::planned(migrations, &applied, &MigrationOp::Up),
                ahead: migrations.versions_ahead(&applied),
            },
            (FleetOp::Rollback(steps), None) => Worked {
                touched: crate::migrate::planned(
                    migrations,
                    &applied,
                    &MigrationOp::Down { steps },
                ),
                ahead: Vec::new(),
            },
            // Only that it is there to seed (`active`): seeds change data, not schema.
            (FleetOp::Seed, _) => Worked {
                touched: self
                    .tenant_seeds()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect(),
                ahead: Vec::new(),
            },
        })
    }

    /// Refuses time limits a server cannot enforce (SQLite has no statement timeout).
    fn check_guards(&self, guards: Guards) -> Result<()> {
        use crate::backend::Server as _;
        if guards.statement_timeout.is_none() {
            return Ok(());
        }
        match self
            .servers()
            .all()
            .iter()
            .find(|slot| !slot.server.has_statement_timeout())
        {
            Some(slot) => Err(Error::Unsupported(format!(
                "server `{}` has no statement timeout (SQLite): leave out --statement-timeout \
                 (FleetOptions::statement_timeout)",
                slot.name
            ))),
            None => Ok(()),
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

/// The target and starting point of a rollback of `steps` on a database that has `applied`
/// (oldest first): the version to leave as the newest and the newest now (`""`: none).
fn rollback_target(applied: &[String], steps: usize) -> (String, String) {
    let keep = applied.len().checked_sub(steps + 1);
    let target = keep.map_or_else(String::new, |i| applied[i].clone());
    (target, applied.last().cloned().unwrap_or_default())
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
