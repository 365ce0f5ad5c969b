//! `tenora runs list|show`: the fleet-run log.

use serde_json::json;
use tenora::backend::Backend;
use tenora::{FleetRun, RunId, Tenora};

use crate::error::CliError;
use crate::output::Out;
use crate::run::Outcome;

/// What a run has left: pending, started without an outcome, or failed.
fn left(run: &FleetRun) -> u64 {
    run.pending + run.started + run.failed
}

/// `tenora runs list`: the newest `limit` runs.
pub async fn list<B: Backend>(
    tenora: &Tenora<B>,
    limit: usize,
    out: &Out,
) -> Result<Outcome, CliError> {
    let runs = tenora.fleet_runs(limit).await?;
    if runs.is_empty() {
        out.line("no fleet runs recorded yet");
    } else {
        out.line(format!(
            "{:>5}  {:<12}  {:<8}  {:>7}  {:>10}  {:>6}  {:>6}  {:>6}  STARTED (UTC)",
            "RUN", "COMMAND", "STATE", "TENANTS", "UP_TO_DATE", "DONE", "FAILED", "LEFT"
        ));
        for run in &runs {
            out.line(format!(
                "{:>5}  {:<12}  {:<8}  {:>7}  {:>10}  {:>6}  {:>6}  {:>6}  {}",
                run.id,
                run.op.to_string(),
                run.state.as_str(),
                run.tenants,
                run.up_to_date,
                run.done,
                run.failed,
                left(run),
                run.started_at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    Ok(Outcome::ok(json!({ "runs": runs })))
}

/// `tenora runs show RUN`: one run, tenant by tenant.
pub async fn show<B: Backend>(
    tenora: &Tenora<B>,
    run: &str,
    out: &Out,
) -> Result<Outcome, CliError> {
    let id: RunId = run.parse()?;
    let (run, tenants) = tenora.fleet_run(id).await?;
    out.line(format!(
        "run {} ({}): {}, started {} UTC, last change {} UTC",
        run.id,
        run.op,
        run.state.as_str(),
        run.started_at.format("%Y-%m-%d %H:%M:%S"),
        run.updated_at.format("%Y-%m-%d %H:%M:%S")
    ));
    out.line(format!(
        "{} tenant(s): {} up to date when it started, {} done, {} failed, {} pending, {} started \
         without an outcome",
        run.tenants, run.up_to_date, run.done, run.failed, run.pending, run.started
    ));
    if !tenants.is_empty() {
        let width = tenants
            .iter()
            .map(|t| t.tenant.len())
            .max()
            .unwrap_or(0)
            .max(6);
        out.line(format!(
            "{:<width$}  {:<10}  {:<8}  {:>8}  DETAIL",
            "TENANT", "SERVER", "STATE", "ATTEMPTS"
        ));
        for t in &tenants {
            let mut detail = t.detail.clone().unwrap_or_default();
            if let Some(target) = &t.target {
                let target = if target.is_empty() { "none" } else { target };
                detail = format!("(target {target}) {detail}");
            }
            out.line(format!(
                "{:<width$}  {:<10}  {:<8}  {:>8}  {}",
                t.tenant,
                t.server,
                t.state.as_str(),
                t.attempts,
                detail.trim_end()
            ));
        }
    }
    if left(&run) > 0 && run.state != tenora::RunState::Running {
        let command = match run.op {
            tenora::FleetOp::Migrate => "migrate:tenants",
            tenora::FleetOp::Rollback(_) => "rollback:tenants",
            tenora::FleetOp::Seed => "seed:run:tenants",
        };
        out.line(format!(
            "continue it with `tenora {command} --resume {}`",
            run.id
        ));
    }
    Ok(Outcome::ok(json!({ "run": run, "tenants": tenants })))
}
