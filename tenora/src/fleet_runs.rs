//! Fleet-run records: every fleet run (migrate, rollback, seeds) gets an id and records each
//! tenant's outcome in the base database as it goes (see `run_log`), so a run that was killed,
//! failed or stopped can be resumed ([`FleetOptions::resume`](crate::FleetOptions::resume))
//! and reviewed ([`Tenora::fleet_runs`], [`Tenora::fleet_run`]).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fleet::{FleetOp, TenantOutcome};
use crate::run_log::{NewRun, RunFilter, RunLogConnection as _, RunRow, RunTenantRow};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// A fleet run's id (1, 2, …, in the order runs started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        s.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(RunId)
            .ok_or_else(|| Error::FleetRun {
                message: format!(
                    "invalid run id {s:?}: a run id is a positive number (see `tenora runs list`)"
                ),
            })
    }
}

/// Which run [`FleetOptions::resume`](crate::FleetOptions::resume) continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The newest unfinished run of the same command.
    Latest,
    /// This run.
    Run(RunId),
}

/// Where a fleet run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not ended: in progress, or its process was killed.
    Running,
    /// Every tenant done.
    Finished,
    /// Ended with failed tenants (or tenants left to do after `only_failed`).
    Failed,
    /// Stopped early (fail-fast, `max_failures`, a failed batch wave): tenants left pending.
    Stopped,
}

impl RunState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            RunState::Running,
            RunState::Finished,
            RunState::Failed,
            RunState::Stopped,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// Where one tenant of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTenantState {
    /// Not started yet.
    Pending,
    /// Started, outcome not recorded: in progress, or the process ended meanwhile (a resume
    /// runs it again: migrations skip what is applied, a rollback stops at its recorded
    /// target).
    Started,
    /// Done.
    Done,
    /// Failed (`detail` says why).
    Failed,
}

impl RunTenantState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTenantState::Pending => "pending",
            RunTenantState::Started => "started",
            RunTenantState::Done => "done",
            RunTenantState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            RunTenantState::Pending,
            RunTenantState::Started,
            RunTenantState::Done,
            RunTenantState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// A recorded fleet run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FleetRun {
    /// Its id.
    pub id: RunId,
    /// What it does on each tenant.
    #[serde(serialize_with = "serialize_op")]
    pub op: FleetOp,
    /// Where it stands.
    pub state: RunState,
    /// Tenants it covered when it started.
    pub tenants: u64,
    /// Of those, tenants already up to date then (a migrate run's registry answer; not listed
    /// per tenant).
    pub up_to_date: u64,
    /// Tenants not started yet.
    pub pending: u64,
    /// Tenants started without a recorded outcome.
    pub started: u64,
    /// Tenants done.
    pub done: u64,
    /// Tenants failed.
    pub failed: u64,
    /// The tenant-migration fingerprint of the binary that started it.
    pub fingerprint: String,
    /// When it started (UTC).
    pub started_at: NaiveDateTime,
    /// When it last changed state (UTC).
    pub updated_at: NaiveDateTime,
}

fn serialize_op<S: serde::Serializer>(op: &FleetOp, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&op.to_string())
}

/// One tenant of a recorded fleet run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunTenant {
    /// The tenant id.
    pub tenant: String,
    /// Its server when the run started.
    pub server: String,
    /// Where it stands.
    pub state: RunTenantState,
    /// A rollback's target: the version left as the newest applied (`""`: none left), fixed
    /// when the tenant started so a resumed rollback never reverts further.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A rollback's starting point: the newest version applied when the target was fixed
    /// (`""`: none). A database migrated past it since is refused, not reverted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_from: Option<String>,
    /// What was applied, reverted or seeded, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How many times it was started.
    pub attempts: u64,
    /// When its row last changed (UTC).
    pub updated_at: NaiveDateTime,
}

impl fmt::Display for FleetOp {
    /// The command: `migrate`, `rollback N` or `seed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetOp::Migrate => f.write_str("migrate"),
            FleetOp::Rollback(steps) => write!(f, "rollback {steps}"),
            FleetOp::Seed => f.write_str("seed"),
        }
    }
}

impl FleetOp {
    /// The stored command name (without the steps).
    pub(crate) fn command(self) -> &'static str {
        match self {
            FleetOp::Migrate => "migrate",
            FleetOp::Rollback(_) => "rollback",
            FleetOp::Seed => "seed",
        }
    }

    fn from_stored(command: &str, steps: i64) -> Option<Self> {
        match command {
            "migrate" => Some(FleetOp::Migrate),
            "rollback" => Some(FleetOp::Rollback(usize::try_from(steps).ok()?)),
            "seed" => Some(FleetOp::Seed),
            _ => None,
        }
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl RunRow {
    fn into_run(self) -> Result<FleetRun> {
        let malformed = || Error::FleetRun {
            message: format!(
                "run {} is recorded as `{} {}` in state `{}`, which this version of Tenora \
                 does not know (written by a newer one?)",
                self.id, self.command, self.steps, self.state
            ),
        };
        Ok(FleetRun {
            id: RunId(self.id),
            op: FleetOp::from_stored(&self.command, self.steps).ok_or_else(malformed)?,
            state: RunState::parse(&self.state).ok_or_else(malformed)?,
            tenants: count(self.tenants),
            up_to_date: count(self.up_to_date),
            pending: count(self.pending),
            started: count(self.started),
            done: count(self.done),
            failed: count(self.failed),
            fingerprint: self.fingerprint,
            started_at: self.started_at,
            updated_at: self.updated_at,
        })
    }
}

impl RunTenantRow {
    fn into_tenant(self) -> RunTenant {
        RunTenant {
            // Unknown states (a newer Tenora) read as failed: never as done.
            state: RunTenantState::parse(&self.state).unwrap_or(RunTenantState::Failed),
            tenant: self.tenant,
            server: self.server,
            target: self.target,
            started_from: self.started_from,
            detail: self.detail,
            attempts: count(self.attempts),
            updated_at: self.updated_at,
        }
    }
}

impl<B: Backend> Tenora<B> {
    /// The newest `limit` fleet runs, newest first, with their tenants counted by state.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// for run in tenora.fleet_runs(10).await? {
    ///     println!("run {} ({}): {:?}, {} failed", run.id, run.op, run.state, run.failed);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fleet_runs(&self, limit: usize) -> Result<Vec<FleetRun>> {
        let filter = RunFilter {
            id: None,
            command: None,
            unfinished: false,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        };
        self.read_runs(&filter).await
    }

    /// One fleet run and its tenants (those it had to work on, by id).
    pub async fn fleet_run(&self, id: RunId) -> Result<(FleetRun, Vec<RunTenant>)> {
        let filter = RunFilter {
            id: Some(id.0),
            command: None,
            unfinished: false,
            limit: 1,
        };
        let run = self
            .read_runs(&filter)
            .await?
            .pop()
            .ok_or_else(|| no_such_run(id))?;
        let mut conn = self.base_conn().await?;
        let tenants = conn
            .run_log_tenants(id.0)
            .await
            .map_err(|e| Error::db("cannot read the fleet-run log", e))?;
        Ok((
            run,
            tenants.into_iter().map(RunTenantRow::into_tenant).collect(),
        ))
    }

    async fn read_runs(&self, filter: &RunFilter<'_>) -> Result<Vec<FleetRun>> {
        use crate::registry::RegistryConnection as _;
        let mut conn = self.base_conn().await?;
        let context = "cannot read the fleet-run log";
        // Reading makes nothing: without the log's tables there are no runs.
        let exists = conn
            .table_exists(crate::run_log::RUNS_TABLE)
            .await
            .map_err(|e| self.registry_error_any(e, context))?;
        if !exists {
            return Ok(Vec::new());
        }
        conn.run_log_runs(filter)
            .await
            .map_err(|e| Error::db(context, e))?
            .into_iter()
            .map(RunRow::into_run)
            .collect()
    }

    /// The run that [`FleetOptions::resume`](crate::FleetOptions::resume) would continue for
    /// `op`'s command, with the tenants it has left (by id as recorded) and, for a rollback,
    /// the target and starting version fixed for each (only the failed ones with
    /// `only_failed`). Errors name what to do when there is no such run, it belongs to another
    /// command, or (`Resume::Latest`) it is still marked running.
    pub async fn resumable_run(
        &self,
        which: Resume,
        op: FleetOp,
        only_failed: bool,
    ) -> Result<(FleetRun, Vec<(String, Option<(String, String)>)>)> {
        let filter = RunFilter {
            id: match which {
                Resume::Run(id) => Some(id.0),
                Resume::Latest => None,
            },
            command: Some(op.command()),
            unfinished: which == Resume::Latest,
            limit: 1,
        };
        let found = self.read_runs(&filter).await?.pop();
        if let (Resume::Latest, Some(run)) = (which, &found)
            && run.state == RunState::Running
        {
            return Err(Error::FleetRun {
                message: format!(
                    "run {id} is still marked running: another process may be working on it. \
                     If that process is gone (killed), resume the run by its id: --resume {id} \
                     (FleetOptions::resume(Resume::Run({id})))",
                    id = run.id
                ),
            });
        }
        let Some(run) = found else {
            return Err(match which {
                Resume::Run(id) => match self.fleet_run(id).await {
                    Ok((other, _)) => Error::FleetRun {
                        message: format!(
                            "run {id} is a `{}` run, not a `{}` one: resume it with the \
                             command that started it",
                            other.op.command(),
                            op.command()
                        ),
                    },
                    Err(e) => e,
                },
                Resume::Latest => Error::FleetRun {
                    message: format!(
                        "there is no unfinished `{}` run to resume (see `tenora runs list`)",
                        op.command()
                    ),
                },
            });
        };
        let (_, tenants) = self.fleet_run(run.id).await?;
        let left = tenants
            .into_iter()
            .filter(|t| match t.state {
                RunTenantState::Failed => true,
                RunTenantState::Pending | RunTenantState::Started => !only_failed,
                RunTenantState::Done => false,
            })
            .map(|t| {
                let fixed = t.target.zip(t.started_from);
                (t.tenant, fixed)
            })
            .collect();
        Ok((run, left))
    }

    /// Records a new run of `op` over `tenants` tenants, `up_to_date` of them already done,
    /// with a `pending` row for each of `to_do` (tenant, server).
    pub(crate) async fn start_run(
        &self,
        op: FleetOp,
        tenants: usize,
        up_to_date: usize,
        to_do: &[(String, String)],
    ) -> Result<RunId> {
        let context = "cannot record the fleet run in the base database";
        let mut conn = self.base_conn().await?;
        prepare_log(&mut **conn)
            .await
            .map_err(|e| Error::db(context, e))?;
        let fingerprint = self.tenant_migrations().fingerprint();
        let steps = match op {
            FleetOp::Rollback(steps) => i64::try_from(steps).unwrap_or(i64::MAX),
            FleetOp::Migrate | FleetOp::Seed => 0,
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        // The run and its tenants in one transaction: a failure leaves no partial run. Another
        // process may take the same id at the same moment: the loser tries the next one.
        let mut attempt = 0;
        let id = loop {
            let fingerprint = fingerprint.as_str();
            // The id is read before the transaction, whose first statement writes (SQLite
            // then waits for a writer instead of failing to upgrade a read lock).
            let id = conn
                .run_log_next_id()
                .await
                .map_err(|e| Error::db(context, e))?;
            let recorded = diesel_async::AsyncConnection::transaction(&mut **conn, async |c| {
                let run = NewRun {
                    id,
                    command: op.command(),
                    steps,
                    tenants: count(tenants),
                    up_to_date: count(up_to_date),
                    fingerprint,
                };
                c.run_log_insert_run(&run).await?;
                for chunk in to_do.chunks(crate::run_log::INSERT_CHUNK) {
                    c.run_log_insert_tenants(id, chunk).await?;
                }
                Ok::<_, diesel::result::Error>(id)
            })
            .await;
            match recorded {
                Ok(id) => break id,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) if attempt < 20 => {
                    attempt += 1;
                    let pause = rand::Rng::gen_range(&mut rand::rngs::OsRng, 1..=20u64);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(Error::db(context, e)),
            }
        };
        tracing::info!(run = id, op = %op, tenants, "fleet run started");
        Ok(RunId(id))
    }

    /// Records that tenant `id` of `run` started.
    pub(crate) async fn run_tenant_started(&self, run: RunId, id: &TenantId) {
        self.log_run_tenant(run, id, RunTenantState::Started, None, true)
            .await;
    }

    /// Records that tenant `id` of rollback `run` started, fixing its `target` and `from`
    /// (newest applied) unless the run fixed them already; returns the fixed pair. Unlike the
    /// other records this one must succeed: a rollback is never run without its target on
    /// record (a resume would otherwise revert further).
    pub(crate) async fn claim_rollback(
        &self,
        run: RunId,
        id: &TenantId,
        target: &str,
        from: &str,
    ) -> Result<(String, String)> {
        let context = || format!("cannot record tenant `{id}`'s rollback target in run {run}");
        let mut conn = self.base_conn().await?;
        let stored = conn
            .run_log_claim(run.0, id.as_str(), target, from)
            .await
            .map_err(|e| Error::db(context(), e))?;
        match stored {
            Some((Some(target), Some(from))) => Ok((target, from)),
            _ => Err(Error::FleetRun {
                message: format!(
                    "{}: run {run} has no row for it; nothing reverted",
                    context()
                ),
            }),
        }
    }

    /// Records tenant `id`'s outcome in `run`.
    pub(crate) async fn run_tenant_ended(
        &self,
        run: RunId,
        id: &TenantId,
        outcome: &Result<crate::fleet::Worked>,
    ) {
        let (state, mut detail) = match outcome {
            Ok(worked) => {
                let mut detail = match worked.touched.is_empty() {
                    true => "nothing to do".to_owned(),
                    false => worked.touched.join(", "),
                };
                if !worked.ahead.is_empty() {
                    detail.push_str(&format!(
                        "; the database is ahead of this binary ({})",
                        worked.ahead.join(", ")
                    ));
                }
                (RunTenantState::Done, detail)
            }
            Err(e) => (
                RunTenantState::Failed,
                crate::config::redact_url(&e.to_string()),
            ),
        };
        if detail.chars().count() > crate::run_log::DETAIL_CHARS {
            detail = detail
                .chars()
                .take(crate::run_log::DETAIL_CHARS)
                .chain("…".chars())
                .collect();
        }
        self.log_run_tenant(run, id, state, Some(&detail), false)
            .await;
    }

    /// Records that tenant `tenant` (as the run recorded it) needs nothing: `why`.
    pub(crate) async fn run_tenant_skipped(&self, run: RunId, tenant: &str, why: &str) {
        let logged = async {
            let mut conn = self.base_conn().await?;
            conn.run_log_set_tenant(
                run.0,
                tenant,
                RunTenantState::Done.as_str(),
                Some(why),
                false,
            )
            .await
            .map_err(|e| Error::db("cannot record a tenant's outcome in the fleet-run log", e))
        }
        .await;
        if let Err(e) = logged {
            tracing::warn!(run = run.0, tenant, error = %e, "fleet-run log not updated");
        }
    }

    async fn log_run_tenant(
        &self,
        run: RunId,
        id: &TenantId,
        state: RunTenantState,
        detail: Option<&str>,
        attempt: bool,
    ) {
        let logged = async {
            let mut conn = self.base_conn().await?;
            conn.run_log_set_tenant(run.0, id.as_str(), state.as_str(), detail, attempt)
                .await
                .map_err(|e| Error::db("cannot record a tenant's outcome in the fleet-run log", e))
        }
        .await;
        if let Err(e) = logged {
            tracing::warn!(run = run.0, tenant = %id, error = %e, "fleet-run log not updated");
        }
    }

    /// Sets `run`'s state from its tenants: finished when none is left, else stopped (when the
    /// run stopped early) or failed. Returns the state.
    pub(crate) async fn end_run(
        &self,
        run: RunId,
        stopped: bool,
        outcomes: &[TenantOutcome],
    ) -> RunState {
        let filter = RunFilter {
            id: Some(run.0),
            command: None,
            unfinished: false,
            limit: 1,
        };
        let left = match self.read_runs(&filter).await.map(|mut runs| runs.pop()) {
            Ok(Some(recorded)) => recorded.pending + recorded.started + recorded.failed,
            // The log cannot be read: judge by this attempt's outcomes.
            _ => outcomes.iter().filter(|o| o.result.is_err()).count() as u64,
        };
        let state = match (left, stopped) {
            (0, _) => RunState::Finished,
            (_, true) => RunState::Stopped,
            (_, false) => RunState::Failed,
        };
        let set = async {
            let mut conn = self.base_conn().await?;
            conn.run_log_set_run(run.0, state.as_str())
                .await
                .map_err(|e| Error::db("cannot record the fleet run's end", e))
        }
        .await;
        if let Err(e) = set {
            tracing::warn!(run = run.0, error = %e, "fleet-run log not updated");
        }
        tracing::info!(run = run.0, state = state.as_str(), "fleet run ended");
        state
    }

    /// Marks a resumed `run` as running again.
    pub(crate) async fn reopen_run(&self, run: RunId) -> Result<()> {
        let mut conn = self.base_conn().await?;
        conn.run_log_set_run(run.0, RunState::Running.as_str())
            .await
            .map(|_| ())
            .map_err(|e| Error::db("cannot record the resumed fleet run", e))
    }
}

/// Makes the log's tables if missing. Two processes making them at the same moment can
/// collide in the catalog (PostgreSQL: a duplicate `pg_type` row); the loser's second attempt
/// finds them made.
async fn prepare_log<C: crate::run_log::RunLogConnection>(conn: &mut C) -> diesel::QueryResult<()> {
    match conn.run_log_prepare().await {
        Ok(()) => Ok(()),
        Err(_) => conn.run_log_prepare().await,
    }
}

fn no_such_run(id: RunId) -> Error {
    Error::FleetRun {
        message: format!("there is no fleet run {id} (see `tenora runs list`)"),
    }
}
