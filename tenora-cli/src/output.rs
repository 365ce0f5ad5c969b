//! Printing: text lines or one JSON document, progress on a terminal, per-tenant summaries.

use std::io::{IsTerminal as _, Write as _};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::Format;

/// Writes a line to standard output, quietly ignoring a closed pipe (`tenora list | head -1`).
pub fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

/// Writes raw bytes to standard output, ignoring a closed pipe.
pub fn write_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// Where and how much to print.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Text or JSON.
    pub format: Format,
    /// Only errors.
    pub quiet: bool,
    /// Extra detail.
    pub verbose: bool,
}

impl Out {
    /// A line of normal output (text mode, not quiet).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.format == Format::Text && !self.quiet {
            print_stdout(text.as_ref());
        }
    }

    /// A line shown only with `-v`.
    pub fn detail(&self, text: impl AsRef<str>) {
        if self.verbose {
            self.line(text);
        }
    }

    /// Progress over `len` tenants: a bar on a terminal, nothing otherwise (the per-tenant
    /// lines are printed by [`Progress::done`]).
    pub fn progress(&self, len: usize, label: &str) -> Progress {
        let bar = (self.format == Format::Text && !self.quiet && std::io::stderr().is_terminal())
            .then(|| {
                let bar = ProgressBar::new(len as u64);
                if let Ok(style) =
                    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(label.to_owned());
                bar
            });
        Progress { out: *self, bar }
    }
}

/// What happened on one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRun {
    /// The tenant id.
    pub tenant: String,
    /// The server its registry row places it on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// `applied`, `reverted`, `seeded`, `up_to_date`, `ahead` (a newer release migrated it;
    /// `items` are its versions this binary does not know), `failed` or `skipped`.
    pub status: &'static str,
    /// Migrations applied or reverted, or seeds run.
    pub items: Vec<String>,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Progress of a fleet run.
pub struct Progress {
    out: Out,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Records one tenant's result.
    pub fn done(&self, run: &TenantRun) {
        // The error itself is printed once, in the summary.
        let text = match run.items.len() {
            0 => format!("{}: {}", run.tenant, run.status.replace('_', " ")),
            n => format!("{}: {} {n}", run.tenant, run.status.replace('_', " ")),
        };
        // A dry run is read for its details: shown without -v.
        let details = self.out.verbose || run.status.starts_with("would_");
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(run.tenant.clone());
                if details {
                    bar.println(text);
                    for item in &run.items {
                        bar.println(format!("  {item}"));
                    }
                }
            }
            None => {
                self.out.line(text);
                for item in &run.items {
                    if details {
                        self.out.line(format!("  {item}"));
                    } else {
                        self.out.detail(format!("  {item}"));
                    }
                }
            }
        }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints the per-tenant summary (failures on standard error, even with `-q`); returns how
/// many failed.
pub fn summary(out: &Out, command: &str, runs: &[TenantRun]) -> usize {
    let count = |status: &str| runs.iter().filter(|r| r.status == status).count();
    let failed = count("failed");
    let mut parts = Vec::new();
    for status in [
        "applied",
        "reverted",
        "seeded",
        "would_apply",
        "would_revert",
        "would_seed",
        "up_to_date",
        "ahead",
        "failed",
        "skipped",
    ] {
        let n = count(status);
        if n > 0 {
            parts.push(format!("{n} {}", status.replace('_', " ")));
        }
    }
    if parts.is_empty() {
        parts.push("no tenants".to_owned());
    }
    out.line(format!("{command}: {}", parts.join(", ")));
    // With tenants on several servers, a line per server: an unreachable one stands out.
    let mut servers: Vec<&str> = runs.iter().map(|r| r.server.as_str()).collect();
    servers.sort_unstable();
    servers.dedup();
    if servers.len() > 1 {
        for server in servers.iter().filter(|s| !s.is_empty()) {
            let on: Vec<&TenantRun> = runs.iter().filter(|r| r.server == *server).collect();
            let failed = on.iter().filter(|r| r.status == "failed").count();
            out.line(format!(
                "  server {server}: {} tenant(s), {} ok, {failed} failed",
                on.len(),
                on.len() - failed - on.iter().filter(|r| r.status == "skipped").count()
            ));
        }
    }
    if out.format == Format::Text {
        for run in runs.iter().filter(|r| r.status == "failed") {
            eprintln!(
                "failed: {}: {}",
                run.tenant,
                run.error.as_deref().unwrap_or("")
            );
        }
    }
    failed
}
