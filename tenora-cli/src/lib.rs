//! The `tenora` command line tool, as a library.
//!
//! The `tenora` binary is [`main`]. An application can ship the same commands inside its own
//! binary, running its compiled-in migrations instead of the folders named in the config
//! (single-binary deploys: `myapp migrate:tenants`):
//!
//! ```no_run
//! # const BASE: tenora::Migrations = tenora::Migrations::empty();
//! # const TENANT: tenora::Migrations = tenora::Migrations::empty();
//! fn main() -> std::process::ExitCode {
//!     tenora_cli::main_with(tenora_cli::Embedded {
//!         base: BASE,     // tenora::embed_migrations!("migrations/base")
//!         tenant: TENANT, // tenora::embed_migrations!("migrations/tenants")
//!         base_seeds: tenora::Seeds::empty(),
//!         tenant_seeds: tenora::Seeds::empty(),
//!     })
//! }
//! ```
//!
//! Exit codes: 0 success, 1 failed work (including any failed tenant), 2 usage or configuration
//! errors.

mod cli;
mod error;
mod make;
mod output;
mod project;
mod run;
mod runs;
mod spares;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

pub use crate::cli::{Cli, Command, Fleet, Format, TenantsCommand};
pub use crate::error::{CliError, ErrorKind};
pub use crate::run::command_lines;

/// Migrations and seeds compiled into an application, used instead of the config's folders.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Base migrations.
    pub base: tenora::Migrations,
    /// Tenant migrations.
    pub tenant: tenora::Migrations,
    /// Base seeds.
    pub base_seeds: tenora::Seeds,
    /// Tenant seeds.
    pub tenant_seeds: tenora::Seeds,
}

/// Runs the CLI on the process arguments with migrations from the config's folders.
pub fn main() -> ExitCode {
    run_from(std::env::args_os(), None)
}

/// Runs the CLI on the process arguments with compiled-in migrations and seeds.
pub fn main_with(embedded: Embedded) -> ExitCode {
    run_from(std::env::args_os(), Some(embedded))
}

/// Runs the CLI on `args` (the first is the program name); prints results and errors; returns
/// the exit code.
pub fn run_from<I, T>(args: I, embedded: Option<Embedded>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let format = cli.format;
    if let Err(message) = install_logging(cli.quiet, cli.verbose, cli.log_format) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run::run(cli, embedded.as_ref()));
    match result {
        Ok(outcome) => {
            if format == Format::Json && !outcome.json.is_null() {
                let ok = outcome.failed.is_none();
                output::print_stdout(
                    &serde_json::json!({ "ok": ok, "result": outcome.json }).to_string(),
                );
            }
            match outcome.failed {
                None => ExitCode::SUCCESS,
                Some(message) => {
                    eprintln!("error: {message}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            if format == Format::Json {
                output::print_stdout(
                    &serde_json::json!({ "ok": false, "error": e.message }).to_string(),
                );
            }
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Sends Tenora's log to standard error: warnings and errors by default, errors only with
/// `-q`, more with `-v` (info) and `-vv` (debug); `RUST_LOG` (`target=level` pairs, e.g.
/// `tenora=debug,warn`) replaces that. Text lines, or JSON objects with the fields of the
/// enclosing spans (`--log-format json`). Passwords and keys are never logged.
fn install_logging(quiet: bool, verbose: u8, format: cli::LogFormat) -> Result<(), String> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec
            .parse::<Targets>()
            .map_err(|e| format!("RUST_LOG={spec:?} is not a valid log filter: {e}"))?,
        _ => Targets::new().with_default(match (quiet, verbose) {
            (true, _) => LevelFilter::ERROR,
            (false, 0) => LevelFilter::WARN,
            (false, 1) => LevelFilter::INFO,
            _ => LevelFilter::DEBUG,
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(LevelFilter::TRACE);
    // Embedding applications may have installed their own subscriber: keep theirs.
    let _ = match format {
        cli::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .without_time()
            .finish()
            .with(filter)
            .try_init(),
        cli::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init(),
    };
    Ok(())
}
