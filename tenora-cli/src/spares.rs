//! `tenora spares list|fill`: warm spares (PostgreSQL, `tenant.spares`).

use serde_json::json;
use tenora::backend::Backend;
use tenora::{SpareFill, Tenora};

use crate::error::CliError;
use crate::output::Out;
use crate::run::Outcome;

/// `tenora spares list`: every recorded spare.
pub async fn list<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    let spares = tenora.spares().await?;
    if spares.is_empty() {
        out.line(format!(
            "no warm spares (tenant.spares = {})",
            tenora.config().tenant.spares
        ));
    } else {
        out.line(format!(
            "{:<26}  {:<12}  {:<8}  {:<7}  {:<12}  CREATED (UTC)",
            "SPARE", "SERVER", "STATE", "CURRENT", "CLAIMED_BY"
        ));
        for spare in &spares {
            out.line(format!(
                "{:<26}  {:<12}  {:<8}  {:<7}  {:<12}  {}",
                spare.name,
                spare.server,
                spare
                    .state
                    .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
                if spare.current { "yes" } else { "no" },
                spare.claimed_by.as_deref().unwrap_or("-"),
                spare.created_at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    Ok(Outcome::ok(json!({ "spares": spares })))
}

/// `tenora spares fill`: sweep, then top up.
pub async fn fill<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    let fill = tenora.fill_spares().await?;
    report_fill(&fill, out);
    Ok(Outcome {
        json: json!(fill),
        failed: fill.short.clone(),
    })
}

/// Prints what a fill did.
pub fn report_fill(fill: &SpareFill, out: &Out) {
    out.line(format!(
        "spares: {} made, {} removed, {} ready",
        fill.made,
        fill.removed.len(),
        fill.ready
    ));
    for name in &fill.removed {
        out.detail(format!("  removed {name}"));
    }
    if let Some(short) = &fill.short {
        out.line(format!(
            "spares: fewer than tenant.spares are ready: {short}"
        ));
    }
}
