//! Running a parsed command.

use std::io::{IsTerminal as _, Read as _};

use clap::CommandFactory as _;
use serde_json::{Value, json};
use tenora::backend::{Backend, Mysql, Postgres, Sqlite};
use tenora::{
    Client, Config, FleetOp, FleetOptions, Migrations, Seeds, TenantId, TenantOutcome, TenantState,
    Tenora,
};

use crate::Embedded;
use crate::cli::{
    Cli, Command, Fleet, KeysCommand, RunsCommand, ServersCommand, SparesCommand, TenantsCommand,
};
use crate::error::CliError;
use crate::make;
use crate::output::{Out, TenantRun, summary};
use crate::project;

/// The result of a command: what to print as JSON, and whether any part of the work failed.
pub struct Outcome {
    /// The JSON document for `--format json`.
    pub json: Value,
    /// Part of the work failed (exit code 1), e.g. one tenant of a fleet run.
    pub failed: Option<String>,
}

impl Outcome {
    pub(crate) fn ok(json: Value) -> Self {
        Outcome { json, failed: None }
    }
}

/// Runs `cli`.
pub async fn run(cli: Cli, embedded: Option<&Embedded>) -> Result<Outcome, CliError> {
    let out = Out {
        format: cli.format,
        quiet: cli.quiet,
        verbose: cli.verbose > 0,
    };
    match &cli.command {
        Command::List => return Ok(list(&out)),
        Command::GenerateKey => {
            let key = tenora::EncryptionKey::generate().to_base64();
            if out.format == crate::cli::Format::Text {
                println!("{}", key.expose());
            }
            return Ok(Outcome::ok(json!({ "key": key.expose() })));
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "tenora", &mut script);
            crate::output::write_stdout(&script);
            return Ok(Outcome::ok(Value::Null));
        }
        _ => {}
    }
    let config = project::load_config(cli.config.as_deref())?;
    if let Some(outcome) = make_command(&cli.command, &config, &out)? {
        return Ok(outcome);
    }
    match config.base.client {
        Client::Postgres => execute::<Postgres>(&cli, config, embedded, &out).await,
        Client::Sqlite => execute::<Sqlite>(&cli, config, embedded, &out).await,
        Client::Mysql => execute::<Mysql>(&cli, config, embedded, &out).await,
    }
}

/// Every command, one line each (also what `tenora list` prints).
pub fn command_lines() -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for sub in Cli::command().get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let aliases: Vec<&str> = sub.get_visible_aliases().collect();
        if sub.get_name() == "help" {
            continue; // clap's own; listed last below
        }
        // Command groups are listed by their subcommands.
        if sub.has_subcommands() {
            for nested in sub.get_subcommands() {
                let about = nested
                    .get_about()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                lines.push((format!("{} {}", sub.get_name(), nested.get_name()), about));
            }
            continue;
        }
        let name = if aliases.is_empty() {
            sub.get_name().to_owned()
        } else {
            format!("{} ({})", sub.get_name(), aliases.join(", "))
        };
        lines.push((name, about));
    }
    lines.push((
        "help".to_owned(),
        "Print help (also: <command> --help)".to_owned(),
    ));
    lines
}

fn list(out: &Out) -> Outcome {
    let lines = command_lines();
    let width = lines.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, about) in &lines {
        out.line(format!("  {name:<width$}  {about}"));
    }
    Outcome::ok(json!(
        lines
            .iter()
            .map(|(n, a)| json!({"command": n, "description": a}))
            .collect::<Vec<_>>()
    ))
}

/// The generators: they need the config but no database.
fn make_command(cmd: &Command, config: &Config, out: &Out) -> Result<Option<Outcome>, CliError> {
    let client = config.base.client;
    let (name, dir, kind) = match cmd {
        Command::MakeMigration { name } => (name, &config.base.migrations_dir, "base migration"),
        Command::MakeMigrationTenants { name } => {
            (name, &config.tenant.migrations_dir, "tenant migration")
        }
        Command::MakeSeed { name } | Command::MakeSeedTenants { name } => {
            make::check_name(name)?;
            let (key, dir, which) = match cmd {
                Command::MakeSeed { .. } => {
                    ("base.seeds_dir", &config.base.seeds_dir, "base database")
                }
                _ => (
                    "tenant.seeds_dir",
                    &config.tenant.seeds_dir,
                    "tenant databases",
                ),
            };
            let dir = dir.as_ref().ok_or_else(|| {
                CliError::usage(format!(
                    "{key} is not set in the config; add it to make seeds"
                ))
            })?;
            let path = make::write_seed(&project::folder(config, dir), name, which)?;
            out.line(format!("created seed {}", path.display()));
            return Ok(Some(Outcome::ok(
                json!({ "created": path.display().to_string() }),
            )));
        }
        _ => return Ok(None),
    };
    make::check_name(name)?;
    let template = make::infer(name);
    let (up, down) = make::render(&template, client);
    let folder = make::write_migration(&project::folder(config, dir), name, &up, &down)?;
    out.line(format!("created {kind} {}", folder.display()));
    Ok(Some(Outcome::ok(
        json!({ "created": folder.display().to_string() }),
    )))
}

/// What a command needs loaded.
#[derive(Default)]
struct Sources {
    base: Option<Migrations>,
    tenant: Option<Migrations>,
    base_seeds: Option<Seeds>,
    tenant_seeds: Option<Seeds>,
}

async fn execute<B: Backend>(
    cli: &Cli,
    config: Config,
    embedded: Option<&Embedded>,
    out: &Out,
) -> Result<Outcome, CliError> {
    // Bad input is reported before anything is loaded or connected.
    match &cli.command {
        Command::Tenants(TenantsCommand::Create {
            id,
            password_stdin,
            server,
        }) => {
            TenantId::new(id)?;
            if let Some(server) = server
                && !config.server_names().contains(&server.as_str())
            {
                return Err(CliError::usage(format!(
                    "--server {server}: no such server; the config has {} (add a \
                     [servers.{server}] table to place tenants there)",
                    config.server_names().join(", ")
                )));
            }
            if *password_stdin && std::io::stdin().is_terminal() {
                return Err(CliError::usage(
                    "--password-stdin reads a password piped in (it would echo on a terminal), \
                     e.g. `printf '%s' \"$PW\" | tenora tenants create acme --password-stdin`",
                ));
            }
        }
        // The id is checked once connected: an invalid one may still name a malformed
        // registry row, which `tenants drop` removes.
        Command::Tenants(TenantsCommand::Drop { id, yes }) if !yes => {
            return Err(CliError::usage(format!(
                "dropping tenant `{id}` deletes its database and all its data; pass --yes to \
                 confirm"
            )));
        }
        Command::MigrateTenants(fleet)
        | Command::RollbackTenants { fleet, .. }
        | Command::SeedRunTenants(fleet) => {
            for id in &fleet.tenants {
                TenantId::new(id)?;
            }
        }
        Command::Tenants(TenantsCommand::Repair { ids, .. }) => {
            for id in ids {
                TenantId::new(id)?;
            }
        }
        Command::Tenants(TenantsCommand::RotatePassword {
            ids,
            password_stdin,
            ..
        }) => {
            for id in ids {
                TenantId::new(id)?;
            }
            if *password_stdin && ids.len() != 1 {
                return Err(CliError::usage(
                    "--password-stdin sets one tenant's password: name exactly one tenant",
                ));
            }
            if *password_stdin && std::io::stdin().is_terminal() {
                return Err(CliError::usage(
                    "--password-stdin reads a password piped in (it would echo on a terminal)",
                ));
            }
        }
        _ => {}
    }
    if cli.create_base && Tenora::<B>::create_base_database(&config).await? {
        out.line("created the base database");
    }
    let mut sources = Sources::default();
    match &cli.command {
        Command::Migrate { dry_run } => {
            let base = match embedded {
                Some(e) => e.base.clone(),
                None => match registry_migration_first(&config, out, *dry_run)? {
                    Ok(migrations) => migrations,
                    Err(generated) => return Ok(generated),
                },
            };
            sources.base = Some(base);
        }
        Command::Rollback { .. } => sources.base = Some(base_migrations(&config, embedded)?),
        Command::MigrateTenants(_) | Command::RollbackTenants { .. } | Command::Status { .. } => {
            sources.tenant = Some(tenant_migrations(&config, embedded)?);
        }
        // The template check compares with the tenant migrations.
        Command::Doctor | Command::Spares(_) | Command::Tenants(TenantsCommand::Repair { .. })
            if config.tenant.template =>
        {
            sources.tenant = Some(tenant_migrations(&config, embedded)?);
        }
        Command::SeedRun => {
            sources.base_seeds = Some(match embedded {
                Some(e) => e.base_seeds.clone(),
                None => {
                    project::seeds(&config, "base.seeds_dir", config.base.seeds_dir.as_deref())?
                }
            });
        }
        Command::SeedRunTenants(_) => {
            sources.tenant_seeds = Some(tenant_seeds(&config, embedded, true)?)
        }
        Command::Tenants(TenantsCommand::Create { .. }) => {
            sources.tenant = Some(tenant_migrations(&config, embedded)?);
            sources.tenant_seeds = Some(tenant_seeds(&config, embedded, false)?);
        }
        _ => {}
    }
    // For the rollback confirmations: the newest migrations, newest first.
    let newest = |migrations: &Option<Migrations>, n: usize| -> String {
        let names: Vec<String> = migrations
            .iter()
            .flat_map(|m| m.iter().map(|m| m.name().to_owned()).collect::<Vec<_>>())
            .collect();
        let list: Vec<&str> = names.iter().rev().take(n).map(String::as_str).collect();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    let newest_base = newest(&sources.base, cli_step(&cli.command));
    let newest_tenant = newest(&sources.tenant, cli_step(&cli.command));
    let tenora = Tenora::<B>::builder(config)
        .base_migrations(sources.base.unwrap_or(Migrations::empty()))
        .tenant_migrations(sources.tenant.unwrap_or(Migrations::empty()))
        .base_seeds(sources.base_seeds.unwrap_or(Seeds::empty()))
        .tenant_seeds(sources.tenant_seeds.unwrap_or(Seeds::empty()))
        .connect()
        .await?;

    match &cli.command {
        Command::Migrate { dry_run: true } => {
            let pending = tenora.plan_base(tenora::MigrationOp::Up).await?;
            report_base(out, "migrate", "apply", &pending, true)
        }
        Command::Migrate { dry_run: false } => {
            let applied = tenora.migrate_base().await?;
            report_base(out, "migrate", "applied", &applied, false)
        }
        Command::Rollback {
            step,
            dry_run: true,
            ..
        } => {
            let op = tenora::MigrationOp::Down {
                steps: *step as usize,
            };
            let reverted = tenora.plan_base(op).await?;
            report_base(out, "rollback", "revert", &reverted, true)
        }
        Command::Rollback { step, yes, .. } => {
            let what = format!(
                "rollback reverts the last {step} migration(s) of the base database (this \
                 binary's newest: {newest_base}), with the data of what they created"
            );
            if !confirmed(*yes, &what)? {
                return Ok(cancelled(out));
            }
            let reverted = tenora.rollback_base(*step as usize).await?;
            report_base(out, "rollback", "reverted", &reverted, false)
        }
        Command::SeedRun => {
            let ran = tenora.run_base_seeds().await?;
            out.line(format!("seed:run: ran {} base seed(s)", ran.len()));
            for s in &ran {
                out.detail(format!("  {s}"));
            }
            Ok(Outcome::ok(json!({ "seeds": ran })))
        }
        Command::MigrateTenants(fleet) => {
            // New tenants clone the template (`tenant.template`): bring it to the fleet's
            // version first.
            if !fleet.dry_run && tenora.prepare_template().await? {
                out.detail("template database up to date");
                if tenora.config().tenant.spares > 0 {
                    // The tenants' migrations matter more than the spares: a failed fill is
                    // reported and the run goes on.
                    match tenora.fill_spares().await {
                        Ok(fill) => crate::spares::report_fill(&fill, out),
                        Err(e) => out.line(format!("warning: could not fill the warm spares: {e}")),
                    }
                }
            }
            run_fleet(&tenora, fleet, Op::Migrate, out).await
        }
        Command::RollbackTenants { fleet, step, yes } => {
            let what = match resume_of(fleet)? {
                Some(which) => {
                    let (run, left) = tenora
                        .resumable_run(which, FleetOp::Rollback(0), fleet.only_failed)
                        .await?;
                    format!(
                        "rollback:tenants continues run {} ({}) on {} tenant database(s), each \
                         reverted down to the version the run fixed for it, with the data of \
                         what the reverted migrations created",
                        run.id,
                        run.op,
                        left.len()
                    )
                }
                None => {
                    let count = match fleet.tenants.len() {
                        0 => tenora
                            .list_tenants()
                            .await?
                            .iter()
                            .filter(|t| t.state == TenantState::Active)
                            .count(),
                        n => n,
                    };
                    format!(
                        "rollback:tenants reverts the last {step} migration(s) on {count} tenant \
                         database(s) (this binary's newest: {newest_tenant}), with the data of \
                         what they created"
                    )
                }
            };
            if !fleet.dry_run && !confirmed(*yes, &what)? {
                return Ok(cancelled(out));
            }
            run_fleet(&tenora, fleet, Op::Rollback(*step as usize), out).await
        }
        Command::SeedRunTenants(fleet) => run_fleet(&tenora, fleet, Op::Seed, out).await,
        Command::Tenants(cmd) => tenants(&tenora, cmd, out).await,
        Command::Doctor => doctor(&tenora, out).await,
        Command::Status {
            verify,
            concurrency,
        } => status(&tenora, *verify, concurrency.map_or(0, usize::from), out).await,
        Command::Keys(KeysCommand::Status) => key_status(&tenora, out).await,
        Command::Keys(KeysCommand::Rotate) => rotate_key(&tenora, out).await,
        Command::Servers(ServersCommand::List) => servers_list(&tenora, out).await,
        Command::Runs(RunsCommand::List { limit }) => crate::runs::list(&tenora, *limit, out).await,
        Command::Runs(RunsCommand::Show { run }) => crate::runs::show(&tenora, run, out).await,
        Command::Spares(SparesCommand::List) => crate::spares::list(&tenora, out).await,
        Command::Spares(SparesCommand::Fill) => crate::spares::fill(&tenora, out).await,
        Command::List
        | Command::GenerateKey
        | Command::Completions { .. }
        | Command::MakeMigration { .. }
        | Command::MakeMigrationTenants { .. }
        | Command::MakeSeed { .. }
        | Command::MakeSeedTenants { .. } => unreachable!("handled before connecting"),
    }
}

fn base_migrations(config: &Config, embedded: Option<&Embedded>) -> Result<Migrations, CliError> {
    match embedded {
        Some(e) => Ok(e.base.clone()),
        None => project::migrations(config, "base.migrations_dir", &config.base.migrations_dir),
    }
}

fn tenant_migrations(config: &Config, embedded: Option<&Embedded>) -> Result<Migrations, CliError> {
    match embedded {
        Some(e) => Ok(e.tenant.clone()),
        None => project::migrations(
            config,
            "tenant.migrations_dir",
            &config.tenant.migrations_dir,
        ),
    }
}

/// Tenant seeds; when not `required`, a missing `tenant.seeds_dir` means no seeds.
fn tenant_seeds(
    config: &Config,
    embedded: Option<&Embedded>,
    required: bool,
) -> Result<Seeds, CliError> {
    match (embedded, config.tenant.seeds_dir.as_deref()) {
        (Some(e), _) => Ok(e.tenant_seeds.clone()),
        (None, None) if !required => Ok(Seeds::empty()),
        (None, dir) => project::seeds(config, "tenant.seeds_dir", dir),
    }
}

/// On the run-time path, `migrate` first makes sure the base migrations create the registry:
/// if none does, it writes the registry migration into the folder (creating the folder) and
/// stops, so the user can review it. Returns the migrations, or the outcome to report.
fn registry_migration_first(
    config: &Config,
    out: &Out,
    dry_run: bool,
) -> Result<Result<Migrations, Outcome>, CliError> {
    let dir = project::folder(config, &config.base.migrations_dir);
    if !dir.is_dir() {
        if dry_run {
            out.line(format!(
                "would create the base migrations folder {}",
                dir.display()
            ));
            return Ok(Ok(Migrations::empty()));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
        out.line(format!(
            "created the base migrations folder {}",
            dir.display()
        ));
    }
    let migrations = Migrations::from_dir(&dir)?;
    let table = &config.registry.table;
    let (name, (up, down)) = if !make::has_registry_migration(&migrations, table) {
        (
            format!("create_{table}"),
            tenora::registry::registry_migration_sql(table),
        )
    } else if !make::has_registry_column(&migrations, table, "token") {
        // A registry made before Tenora 0.2 lacks the column of the ownership tokens.
        (
            format!("add_token_to_{table}"),
            tenora::registry::registry_token_migration_sql(table),
        )
    } else if !make::has_registry_column(&migrations, table, "server") {
        // A registry made before Tenora 0.3 lacks the column of the tenants' servers.
        (
            format!("add_server_to_{table}"),
            tenora::registry::registry_server_migration_sql(table),
        )
    } else if !make::has_registry_column(&migrations, table, "migration_fingerprint") {
        // ... and the columns of each tenant's migration state.
        (
            format!("add_migration_state_to_{table}"),
            tenora::registry::registry_migration_state_sql(table),
        )
    } else {
        return Ok(Ok(migrations));
    };
    if dry_run {
        out.line(format!(
            "would write the tenant registry migration `{name}` into {} first (`tenora \
             migrate` writes it and stops for review)",
            dir.display()
        ));
        return Ok(Ok(migrations));
    }
    let folder = make::write_migration(&dir, &name, &up, &down)?;
    // Shown even with -q: the user has to act on it.
    if out.format == crate::cli::Format::Text {
        crate::output::print_stdout(&format!(
            "wrote the tenant registry migration {}\nreview it (the registry schema is yours to \
             extend) and run `tenora migrate` again",
            folder.display()
        ));
    }
    Ok(Err(Outcome::ok(
        json!({ "generated": folder.display().to_string(), "applied": [] }),
    )))
}

/// A base migration run's report: `verb` is what was done (`applied`), or with `dry_run`
/// what would be done (`apply`; each migration listed without -v too).
fn report_base(
    out: &Out,
    command: &str,
    verb: &str,
    names: &[String],
    dry_run: bool,
) -> Result<Outcome, CliError> {
    let n = names.len();
    let (empty, head, key) = if dry_run {
        (
            format!("{command}: nothing to {verb} (dry run)"),
            format!("{command}: would {verb} {n} base migration(s) (dry run, nothing changed)"),
            format!("would_{verb}"),
        )
    } else {
        (
            format!("{command}: base database already up to date"),
            format!("{command}: {verb} {n} base migration(s)"),
            verb.to_owned(),
        )
    };
    if names.is_empty() {
        out.line(empty);
    } else {
        out.line(head);
        for name in names {
            if dry_run {
                out.line(format!("  {name}"));
            } else {
                out.detail(format!("  {name}"));
            }
        }
    }
    let mut json = serde_json::Map::new();
    json.insert(key, json!(names));
    if dry_run {
        json.insert("dry_run".to_owned(), json!(true));
    }
    Ok(Outcome::ok(Value::Object(json)))
}

#[derive(Clone, Copy)]
enum Op {
    Migrate,
    Rollback(usize),
    Seed,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Migrate => "migrate:tenants",
            Op::Rollback(_) => "rollback:tenants",
            Op::Seed => "seed:run:tenants",
        }
    }

    /// The status of a tenant a dry run would change.
    fn dry_status(self) -> &'static str {
        match self {
            Op::Migrate => "would_apply",
            Op::Rollback(_) => "would_revert",
            Op::Seed => "would_seed",
        }
    }

    fn done_status(self) -> &'static str {
        match self {
            Op::Migrate => "applied",
            Op::Rollback(_) => "reverted",
            Op::Seed => "seeded",
        }
    }
}

async fn run_fleet<B: Backend>(
    tenora: &Tenora<B>,
    fleet: &Fleet,
    op: Op,
    out: &Out,
) -> Result<Outcome, CliError> {
    let ids: Option<Vec<TenantId>> = if fleet.tenants.is_empty() {
        None
    } else {
        Some(
            fleet
                .tenants
                .iter()
                .map(|id| tenora.tenant_id(id))
                .collect::<Result<_, _>>()?,
        )
    };
    let fleet_op = match op {
        Op::Migrate => FleetOp::Migrate,
        Op::Rollback(steps) => FleetOp::Rollback(steps),
        Op::Seed => FleetOp::Seed,
    };
    let resume = resume_of(fleet)?;
    // Rows that are not active, or not readable, are not run on; say so instead of staying
    // silent about them.
    let mut unreadable = Vec::new();
    let count = match (&ids, resume) {
        (_, Some(which)) => {
            let (run, left) = tenora
                .resumable_run(which, fleet_op, fleet.only_failed)
                .await?;
            out.line(format!(
                "{}: resuming run {} ({}): {} tenant(s) left",
                op.label(),
                run.id,
                run.op,
                left.len()
            ));
            left.len()
        }
        (Some(ids), None) => ids.len(),
        (None, None) => {
            let (records, malformed) = tenora.list_registry().await?;
            let half_done = records
                .iter()
                .filter(|t| t.state != TenantState::Active)
                .count();
            if half_done > 0 {
                eprintln!(
                    "warning: {half_done} tenant(s) are not active (a creation or drop in progress, \
                     or abandoned by a crash); they are not {}: see `tenora tenants list`, and \
                     run `tenora tenants repair --all` to clear abandoned ones",
                    op.done_status().replace('_', " ")
                );
            }
            unreadable = malformed
                .into_iter()
                .map(|m| TenantRun {
                    tenant: format!("{:?}", m.id),
                    server: String::new(),
                    status: "failed",
                    items: Vec::new(),
                    error: Some(format!(
                        "malformed registry row: {} (remove it with `tenora tenants drop <id> --yes`)",
                        m.problem
                    )),
                })
                .collect();
            records
                .iter()
                .filter(|t| t.state == TenantState::Active)
                .count()
        }
    };
    let mut options = FleetOptions::default()
        .fail_fast(fleet.fail_fast)
        .verify(fleet.verify)
        .allow_drift(fleet.allow_drift)
        .dry_run(fleet.dry_run)
        .only_failed(fleet.only_failed);
    if let Some(n) = fleet.concurrency {
        options = options.concurrency(usize::from(n));
    }
    if let Some(which) = resume {
        options = options.resume(which);
    }
    if let Some(k) = fleet.max_failures {
        options = options.max_failures(k as usize);
    }
    if let Some(n) = fleet.batch {
        options = options.batch(n as usize);
    }
    if let Some(limit) = fleet.lock_timeout {
        options = options.lock_timeout(limit);
    }
    if let Some(limit) = fleet.statement_timeout {
        options = options.statement_timeout(limit);
    }
    let progress = out.progress(count, op.label());
    let to_run = |outcome: &TenantOutcome| match &outcome.result {
        // A newer release migrated it (a rolling deploy): served as it is, nothing changed.
        Ok(items) if items.is_empty() && !outcome.ahead.is_empty() => TenantRun {
            tenant: outcome.id.to_string(),
            server: outcome.server.clone(),
            status: "ahead",
            items: outcome.ahead.clone(),
            error: None,
        },
        Ok(items) => TenantRun {
            tenant: outcome.id.to_string(),
            server: outcome.server.clone(),
            status: if items.is_empty() && !matches!(op, Op::Seed) {
                "up_to_date"
            } else if fleet.dry_run {
                op.dry_status()
            } else {
                op.done_status()
            },
            items: items.clone(),
            error: None,
        },
        Err(tenora::Error::Skipped { .. }) => TenantRun {
            tenant: outcome.id.to_string(),
            server: outcome.server.clone(),
            status: "skipped",
            items: Vec::new(),
            error: None,
        },
        Err(e) => TenantRun {
            tenant: outcome.id.to_string(),
            server: outcome.server.clone(),
            status: "failed",
            items: Vec::new(),
            error: Some(tenora::redact_url(&e.to_string())),
        },
    };
    let report = tenora
        .run_fleet(ids.as_deref(), fleet_op, options, |outcome| {
            progress.done(&to_run(outcome))
        })
        .await?;
    for run in &unreadable {
        progress.done(run);
    }
    progress.finish();
    let mut runs: Vec<TenantRun> = report.outcomes.iter().map(to_run).collect();
    runs.extend(unreadable);
    let failed = summary(out, op.label(), &runs);
    let unfinished = report.state != Some(tenora::RunState::Finished);
    if let Some(run) = report.run {
        if unfinished {
            out.line(format!(
                "run {run} is not finished: see `tenora runs show {run}`; continue it with \
                 `tenora {} --resume {run}` (or --only-failed to retry just the failures)",
                op.label()
            ));
        } else {
            out.detail(format!("run {run} finished"));
        }
    }
    let failure = match (failed, report.stopped) {
        (0, false) => None,
        (0, true) => Some(format!("{}: the run stopped early", op.label())),
        (n, _) => Some(format!("{}: {n} tenant(s) failed", op.label())),
    };
    Ok(Outcome {
        json: json!({
            "run": report.run,
            "state": report.state,
            "stopped": report.stopped,
            "tenants": runs,
            "failed": failed,
        }),
        failed: failure,
    })
}

/// The run `--resume [RUN]` / `--only-failed` continue, if any.
fn resume_of(fleet: &Fleet) -> Result<Option<tenora::Resume>, CliError> {
    match fleet.resume.as_deref() {
        None | Some("latest") => {
            Ok((fleet.resume.is_some() || fleet.only_failed).then_some(tenora::Resume::Latest))
        }
        Some(run) => Ok(Some(tenora::Resume::Run(run.parse()?))),
    }
}

async fn tenants<B: Backend>(
    tenora: &Tenora<B>,
    cmd: &TenantsCommand,
    out: &Out,
) -> Result<Outcome, CliError> {
    match cmd {
        TenantsCommand::Create {
            id,
            password_stdin,
            server,
        } => {
            let id = tenora.tenant_id(id)?;
            let mut options = tenora::TenantOptions::default();
            if let Some(password) = stdin_password(*password_stdin)? {
                options = options.password(password);
            }
            if let Some(server) = server {
                options = options.server(server);
            }
            let record = tenora.create_tenant_with(&id, options).await?;
            out.line(format!(
                "created tenant `{}` ({}) on server `{}`",
                record.id, record.state, record.server
            ));
            if tenora.config().tenant.spares > 0 {
                // The sign-up started a refill in the background; a one-shot process waits
                // for it (and tops up) rather than abandon it half-way on exit.
                match tenora.fill_spares().await {
                    Ok(fill) => {
                        out.detail(format!("spares: {} made, {} ready", fill.made, fill.ready))
                    }
                    Err(e) => out.line(format!("warning: could not refill the warm spares: {e}")),
                }
            }
            Ok(Outcome::ok(json!(record)))
        }
        TenantsCommand::Drop { id, .. } => {
            if let Err(invalid) = TenantId::new(id) {
                // Not a tenant id, but perhaps a registry row that Tenora cannot read.
                if tenora.forget_malformed_row(id).await? {
                    out.line(format!(
                        "removed the malformed registry row {id:?}; no database or user was \
                         touched (their names cannot be derived from an invalid id)"
                    ));
                    return Ok(Outcome::ok(json!({ "removed_row": id })));
                }
                return Err(invalid.into());
            }
            let id = tenora.tenant_id(id)?;
            let removal = tenora.drop_tenant(&id).await?;
            out.line(format!("dropped tenant `{id}`"));
            left_alone(&removal);
            Ok(Outcome::ok(
                json!({ "dropped": id, "removed": removal.removed, "left_alone": removal.left_alone }),
            ))
        }
        TenantsCommand::Repair { ids, all } => repair(tenora, ids, *all, out).await,
        TenantsCommand::RotatePassword {
            ids,
            all,
            password_stdin,
        } => rotate_passwords(tenora, ids, *all, *password_stdin, out).await,
        TenantsCommand::List => {
            let (records, malformed) = tenora.list_registry().await?;
            let width = records
                .iter()
                .map(|r| r.id.as_str().len())
                .chain(malformed.iter().map(|m| format!("{:?}", m.id).len()))
                .max()
                .unwrap_or(0)
                .max(2);
            let servers = records
                .iter()
                .map(|r| r.server.len())
                .max()
                .unwrap_or(0)
                .max(6);
            out.line(format!(
                "{:<width$}  {:<12}  {:<servers$}  CREATED_AT",
                "ID", "STATE", "SERVER"
            ));
            for r in &records {
                out.line(format!(
                    "{:<width$}  {:<12}  {:<servers$}  {}",
                    r.id.as_str(),
                    r.state.as_str(),
                    r.server,
                    r.created_at.format("%Y-%m-%d %H:%M:%S")
                ));
            }
            let mut rows: Vec<Value> = records.iter().map(|r| json!(r)).collect();
            for m in &malformed {
                // Escaped: the stored id may hold anything.
                out.line(format!(
                    "{:<width$}  {:<12}  ({})",
                    format!("{:?}", m.id),
                    "malformed",
                    m.problem
                ));
                rows.push(json!({ "id": m.id, "state": "malformed", "problem": m.problem }));
            }
            if !malformed.is_empty() {
                eprintln!(
                    "warning: {} malformed registry row(s); remove one with `tenora tenants drop \
                     <id> --yes`",
                    malformed.len()
                );
            }
            Ok(Outcome::ok(json!(rows)))
        }
    }
}

/// The password piped in with `--password-stdin`, or `None` (generate one).
fn stdin_password(from_stdin: bool) -> Result<Option<tenora::SecretString>, CliError> {
    if !from_stdin {
        return Ok(None);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?;
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    text.clear();
    Ok(Some(tenora::SecretString::new(password)))
}

async fn rotate_passwords<B: Backend>(
    tenora: &Tenora<B>,
    ids: &[String],
    all: bool,
    password_stdin: bool,
    out: &Out,
) -> Result<Outcome, CliError> {
    let ids: Vec<TenantId> = if all {
        tenora
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| t.state == tenora::TenantState::Active)
            .map(|t| t.id)
            .collect()
    } else {
        ids.iter()
            .map(|id| tenora.tenant_id(id))
            .collect::<Result<_, _>>()?
    };
    let password = stdin_password(password_stdin)?;
    let (mut report, mut failed) = (Vec::with_capacity(ids.len()), 0);
    for id in &ids {
        match tenora.rotate_tenant_password(id, password.clone()).await {
            Ok(()) => {
                out.line(format!("{id}: password rotated"));
                report.push(json!({ "tenant": id, "rotated": true }));
            }
            Err(e) => {
                failed += 1;
                let message = tenora::redact_url(&e.to_string());
                eprintln!("{id}: password rotation failed: {message}");
                report.push(json!({ "tenant": id, "error": message }));
            }
        }
    }
    let summary = format!(
        "tenants rotate-password: {} rotated, {failed} failed",
        ids.len() - failed
    );
    out.line(&summary);
    Ok(Outcome {
        json: json!({ "tenants": report }),
        failed: (failed > 0).then_some(summary),
    })
}

/// Warns (on standard error, whatever the format) about objects a drop or repair left alone.
fn left_alone(removal: &tenora::Removal) {
    if !removal.left_alone.is_empty() {
        eprintln!(
            "warning: left alone, as they carry no proof that Tenora made them for this tenant: \
             {} (remove them by hand if you know them to be leftovers)",
            removal.left_alone.join(", ")
        );
    }
}

async fn repair<B: Backend>(
    tenora: &Tenora<B>,
    ids: &[String],
    all: bool,
    out: &Out,
) -> Result<Outcome, CliError> {
    let outcomes = if all {
        tenora.repair_all().await?
    } else {
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let id = tenora.tenant_id(id)?;
            let outcome = tenora.repair_tenant(&id).await;
            outcomes.push((id, outcome));
        }
        outcomes
    };
    if outcomes.is_empty() {
        out.line("repair: every tenant is active; nothing to repair");
    }
    let mut failed = 0;
    let mut busy = 0;
    let mut report = Vec::with_capacity(outcomes.len());
    for (id, outcome) in outcomes {
        match outcome {
            Ok(repair) => {
                out.line(format!("{id}: {repair}"));
                if let tenora::Repair::Undone { removal } | tenora::Repair::Dropped { removal } =
                    &repair
                {
                    left_alone(removal);
                }
                busy += usize::from(repair == tenora::Repair::InProgress);
                report.push(json!({ "tenant": id, "result": repair }));
            }
            Err(e) => {
                failed += 1;
                let message = tenora::redact_url(&e.to_string());
                eprintln!("{id}: repair failed: {message}");
                report.push(json!({ "tenant": id, "error": message }));
            }
        }
    }
    let failed_note = (failed + busy > 0)
        .then(|| format!("repair: {failed} tenant(s) failed, {busy} in progress elsewhere"));
    Ok(Outcome {
        json: json!({ "tenants": report }),
        failed: failed_note,
    })
}

async fn doctor<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    // Its template check compares with the tenant migrations: they are loaded for it.
    let health = tenora.check().await?;
    for problem in &health.problems {
        out.line(problem.to_string());
    }
    let ready = health
        .spares
        .iter()
        .filter(|s| s.current && s.state == Some(tenora::SpareState::Ready))
        .count();
    if !health.spares.is_empty() {
        out.line(format!(
            "warm spares: {ready} ready of {} recorded (see `tenora spares list`)",
            health.spares.len()
        ));
    }
    let summary = if health.is_healthy() {
        format!("doctor: {} registry row(s), nothing wrong", health.rows)
    } else {
        format!(
            "doctor: {} registry row(s), {} problem(s)",
            health.rows,
            health.problems.len()
        )
    };
    out.line(&summary);
    Ok(Outcome {
        json: json!(health),
        failed: (!health.is_healthy()).then_some(summary),
    })
}

/// Whether the user confirms `what`: `--yes`, else an answer on the terminal. Without a
/// terminal (scripts, CI) and without `--yes`, a usage error that says so.
fn confirmed(yes: bool, what: &str) -> Result<bool, CliError> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{what}; pass --yes to confirm (there is no terminal to ask on)"
        )));
    }
    eprint!("{what}.\nContinue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn cancelled(out: &Out) -> Outcome {
    out.line("cancelled: nothing was reverted");
    Outcome::ok(json!({ "cancelled": true }))
}

/// The `--step` of a rollback command (1 for others).
fn cli_step(command: &Command) -> usize {
    match command {
        Command::Rollback { step, .. } | Command::RollbackTenants { step, .. } => *step as usize,
        _ => 1,
    }
}

async fn status<B: Backend>(
    tenora: &Tenora<B>,
    verify: bool,
    concurrency: usize,
    out: &Out,
) -> Result<Outcome, CliError> {
    use tenora::MigrationStatus as S;
    let status = if verify {
        tenora.verify_fleet_status(concurrency).await?
    } else {
        tenora.fleet_status().await?
    };
    let width = status
        .tenants
        .iter()
        .map(|t| t.id.as_str().len())
        .max()
        .unwrap_or(0)
        .max(2);
    out.line(format!(
        "{:<width$}  {:<12}  {:<10}  {:<16}  {:>7}  STATUS",
        "ID", "STATE", "SERVER", "VERSION", "PENDING"
    ));
    for t in &status.tenants {
        out.line(format!(
            "{:<width$}  {:<12}  {:<10}  {:<16}  {:>7}  {}",
            t.id.as_str(),
            t.state.as_str(),
            t.server,
            t.version.as_deref().unwrap_or("-"),
            t.pending.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            t.status.as_str()
        ));
    }
    for t in &status.tenants {
        for problem in &t.problems {
            out.line(format!("  {}: {problem}", t.id));
        }
    }
    for (version, count) in &status.versions {
        out.line(format!("{count} tenant(s) at {version}"));
    }
    if status.corrected() > 0 {
        out.line(format!(
            "the registry's record was wrong for {} tenant(s): corrected",
            status.corrected()
        ));
    }
    let counts: Vec<String> = [
        S::UpToDate,
        S::Behind,
        S::Ahead,
        S::Differs,
        S::Unrecorded,
        S::Failed,
    ]
    .into_iter()
    .filter_map(|s| {
        let n = status.count(s);
        (n > 0).then(|| format!("{n} {}", s.as_str().replace('_', " ")))
    })
    .collect();
    let summary = format!(
        "status: {} (this binary's newest migration: {})",
        if counts.is_empty() {
            "no tenants".to_owned()
        } else {
            counts.join(", ")
        },
        status.latest.as_deref().unwrap_or("none")
    );
    out.line(&summary);
    if status.count(S::Unrecorded) > 0 {
        eprintln!(
            "note: tenants made before Tenora recorded migration state show as unrecorded; \
             `tenora migrate:tenants --verify` records them"
        );
    }
    Ok(Outcome {
        json: json!(status),
        failed: status.has_drift().then(|| {
            format!(
                "status: {} tenant(s) differ from this binary's migrations (a changed \
                 migration, a gap, or a failed last run) and {} could not be read; see \
                 `tenora status --verify`",
                status.count(S::Differs),
                status.count(S::Failed)
            )
        }),
    })
}

async fn servers_list<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    let status = tenora.server_status().await?;
    let width = status
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    out.line(format!(
        "{:<width$}  {:>7}  {:>6}  {:<11}  {:>10}  REACHABLE",
        "SERVER", "TENANTS", "WEIGHT", "NEW_TENANTS", "BUDGET"
    ));
    for s in &status {
        let budget = s
            .max_connections
            .map_or_else(|| "none".to_owned(), |max| max.to_string());
        let taking = if !s.configured {
            "-"
        } else if s.accepts_new_tenants {
            "yes"
        } else {
            "no (drain)"
        };
        let reachable = match &s.error {
            None => "yes".to_owned(),
            Some(e) => format!("NO: {}", tenora::redact_url(e)),
        };
        out.line(format!(
            "{:<width$}  {:>7}  {:>6}  {:<11}  {:>10}  {reachable}",
            s.name, s.tenants, s.weight, taking, budget
        ));
    }
    let down: Vec<&str> = status
        .iter()
        .filter(|s| !s.reachable)
        .map(|s| s.name.as_str())
        .collect();
    let json_status: Vec<Value> = status
        .iter()
        .map(|s| {
            let mut v = json!(s);
            v["error"] = json!(s.error.as_deref().map(tenora::redact_url));
            v
        })
        .collect();
    Ok(Outcome {
        json: json!({ "servers": json_status }),
        failed: (!down.is_empty()).then(|| format!("servers: not reachable: {}", down.join(", "))),
    })
}

async fn key_status<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    let status = tenora.key_status().await?;
    for key in &status.keys {
        let role = match key.role {
            tenora::KeyRole::Current => "current",
            tenora::KeyRole::Old => "old",
            _ => "NOT CONFIGURED",
        };
        let v1 = if key.v1_rows > 0 {
            format!(" ({} in the v1 format)", key.v1_rows)
        } else {
            String::new()
        };
        out.line(format!(
            "key {} ({role}): {} row(s){v1}",
            key.key_id, key.rows
        ));
    }
    if status.plaintext > 0 {
        out.line(format!("plain text: {} row(s)", status.plaintext));
    }
    if status.without_password > 0 {
        out.line(format!("no password: {} row(s)", status.without_password));
    }
    for (id, why) in &status.unreadable {
        out.line(format!("unreadable: {id}: {why}"));
    }
    if status.spares_current + status.spares_other_key + status.spares_unreadable > 0 {
        out.line(format!(
            "warm spares: {} on the current key, {} on another key or plain text, {} unreadable \
             (taking one of those sets the tenant's own password)",
            status.spares_current, status.spares_other_key, status.spares_unreadable
        ));
    }
    let summary = if status.all_current() {
        format!(
            "keys: {} registry row(s), every password sealed with the current key",
            status.rows
        )
    } else {
        format!(
            "keys: {} registry row(s), not all sealed with the current key: run `tenora keys \
             rotate`{}",
            status.rows,
            if status.unreadable_count > 0 {
                format!(
                    " after configuring the keys of {} unreadable row(s)",
                    status.unreadable_count
                )
            } else {
                String::new()
            }
        )
    };
    out.line(&summary);
    Ok(Outcome {
        json: json!(status),
        failed: (!status.all_current()).then_some(summary),
    })
}

async fn rotate_key<B: Backend>(tenora: &Tenora<B>, out: &Out) -> Result<Outcome, CliError> {
    let report = tenora.rotate_key().await?;
    for bad in &report.malformed {
        out.line(format!("skipped {bad}"));
    }
    let summary = format!(
        "keys rotate: {} row(s) now sealed with key {}: {} re-sealed, {} plain text sealed, {} \
         already current, {} changed meanwhile by another process, {} without password",
        report.resealed + report.sealed_plaintext + report.already_current,
        report.key_id,
        report.resealed,
        report.sealed_plaintext,
        report.already_current,
        report.changed_meanwhile,
        report.without_password
    );
    out.line(&summary);
    if report.spares_resealed > 0 || report.spares_unreadable > 0 {
        out.line(format!(
            "keys rotate: {} warm spare(s) re-sealed, {} whose password no configured key opens \
             (left as they are: taking one sets the tenant's own password)",
            report.spares_resealed, report.spares_unreadable
        ));
    }
    Ok(Outcome {
        json: json!(report),
        failed: (!report.malformed.is_empty()).then(|| {
            format!(
                "{} malformed registry row(s) skipped",
                report.malformed.len()
            )
        }),
    })
}
