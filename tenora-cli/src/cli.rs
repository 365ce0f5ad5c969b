//! Command-line grammar (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Migrate, roll back and seed Tenora's base database and every tenant database; generate
/// migrations and seeds; create, drop and list tenants.
#[derive(Debug, Parser)]
#[command(name = "tenora", version)]
pub struct Cli {
    /// Config file (default: $TENORA_CONFIG, else tenora.toml in this folder or a parent)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Create the base database first if it does not exist
    #[arg(long, global = true)]
    pub create_base: bool,

    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more detail (each migration applied or reverted; -v also logs info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on standard error
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The command to run
    #[command(subcommand)]
    pub command: Command,
}

/// How the log on standard error is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object a line, with the fields of the enclosing spans (e.g. the tenant)
    Json,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines (with a progress bar on a terminal)
    Text,
    /// One JSON document on standard output
    Json,
}

/// Which tenants a fleet command touches, and whether to stop at the first failure.
#[derive(Debug, Clone, Args)]
pub struct Fleet {
    /// Only this tenant (repeatable); default: every active tenant
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,

    /// Stop at the first failing tenant instead of continuing with the others
    #[arg(long)]
    pub fail_fast: bool,

    /// migrate:tenants: connect to every tenant, also those the registry records as up to date
    #[arg(long)]
    pub verify: bool,

    /// migrate:tenants: migrate even where an applied migration was edited since (refused otherwise)
    #[arg(long)]
    pub allow_drift: bool,

    /// Change nothing: show per tenant what would be applied, reverted or seeded
    #[arg(long)]
    pub dry_run: bool,

    /// Tenants worked on at once per server (default: a quarter of each server's connection
    /// budget, at least 1, at most twice the CPU cores or 16)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,

    /// Continue a run that was killed, failed or stopped, skipping its tenants already done
    /// (default: the newest unfinished run of this command; see `tenora runs list`)
    #[arg(
        long,
        value_name = "RUN",
        num_args = 0..=1,
        default_missing_value = "latest",
        conflicts_with = "tenants"
    )]
    pub resume: Option<String>,

    /// Retry only the tenants that failed in a run (--resume RUN, else the newest unfinished one)
    #[arg(long, conflicts_with = "tenants")]
    pub only_failed: bool,

    /// Stop starting tenants after K failures (the rest stay pending, for --resume)
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: Option<u32>,

    /// Run in waves of N tenants, each finished before the next starts (the first is the
    /// canary); a wave with failures stops the run unless --max-failures allows more
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,

    /// Migrations: a tenant fails when a statement waits longer than this for a lock
    /// (e.g. 500ms, 5s, 1m; MySQL rounds up to whole seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<std::time::Duration>,

    /// Migrations: a tenant fails when a statement runs longer than this (PostgreSQL,
    /// MariaDB; MySQL limits only SELECTs; not on SQLite)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub statement_timeout: Option<std::time::Duration>,
}

/// Parses `500ms`, `5s`, `1.5s`, `2m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 500ms, 5s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    if !(seconds > 0.0 && seconds.is_finite() && seconds < 86_400.0 * 7.0) {
        return Err(format!(
            "{text:?} is out of range: more than 0 and less than a week"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Every command. The names (and aliases) follow the Node tool this replaces.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending base migrations
    #[command(name = "migrate", visible_alias = "migrate:base")]
    Migrate {
        /// Change nothing: show the migrations that would be applied
        #[arg(long)]
        dry_run: bool,
    },

    /// Revert base migrations (the last one, or --step N)
    #[command(name = "rollback", visible_alias = "rollback:base")]
    Rollback {
        /// How many migrations to revert
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        step: u32,
        /// Confirm without asking (needed when there is no terminal to ask on)
        #[arg(long)]
        yes: bool,
        /// Change nothing: show the migrations that would be reverted (asks nothing)
        #[arg(long)]
        dry_run: bool,
    },

    /// Apply pending tenant migrations to every tenant
    #[command(name = "migrate:tenants")]
    MigrateTenants(#[command(flatten)] Fleet),

    /// Revert tenant migrations on every tenant (the last one, or --step N)
    #[command(name = "rollback:tenants")]
    RollbackTenants {
        /// Which tenants
        #[command(flatten)]
        fleet: Fleet,
        /// How many migrations to revert per tenant
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        step: u32,
        /// Confirm without asking (needed when there is no terminal to ask on)
        #[arg(long)]
        yes: bool,
    },

    /// Create a base migration folder (template inferred from the name)
    #[command(name = "make:migration", visible_alias = "make:migration:base")]
    MakeMigration {
        /// e.g. create_users, add_email_to_users, remove_email_from_users
        name: String,
    },

    /// Create a tenant migration folder (template inferred from the name)
    #[command(name = "make:migration:tenants")]
    MakeMigrationTenants {
        /// e.g. create_projects, add_due_date_to_projects
        name: String,
    },

    /// Create a base seed file
    #[command(name = "make:seed", visible_alias = "make:seed:base")]
    MakeSeed {
        /// Seed name, e.g. 01_plans
        name: String,
    },

    /// Create a tenant seed file
    #[command(name = "make:seed:tenants")]
    MakeSeedTenants {
        /// Seed name, e.g. 01_admin_user
        name: String,
    },

    /// Run the base seeds
    #[command(name = "seed:run", visible_alias = "seed:run:base")]
    SeedRun,

    /// Run the tenant seeds on every tenant
    #[command(name = "seed:run:tenants")]
    SeedRunTenants(#[command(flatten)] Fleet),

    /// List every command with a one-line description
    #[command(name = "list")]
    List,

    /// Check the registry and the server: half-done, missing, unproven and orphaned tenants
    Doctor,
    /// Which tenants are at which migration, from the registry: behind, ahead, differing
    Status {
        /// Read every tenant's database (applied versions and checksums) instead of the
        /// registry, finding drift and gaps; corrects the registry where it was wrong
        #[arg(long)]
        verify: bool,
        /// With --verify: tenants read at once per server (default: from each server's budget)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: Option<u16>,
    },

    /// Create, drop and list tenants
    #[command(name = "tenants", subcommand)]
    Tenants(TenantsCommand),

    /// Which key seals each stored tenant password; re-seal them all with the current key
    #[command(name = "keys", subcommand)]
    Keys(KeysCommand),

    /// The database servers tenants are placed on
    #[command(name = "servers", subcommand)]
    Servers(ServersCommand),

    /// Recorded fleet runs (migrate:tenants, rollback:tenants, seed:run:tenants)
    #[command(name = "runs", subcommand)]
    Runs(RunsCommand),

    /// Warm spares: tenant databases cloned ahead (PostgreSQL, tenant.spares)
    #[command(name = "spares", subcommand)]
    Spares(SparesCommand),

    /// Print a new random encryption key (base64) for TENORA_KEY
    #[command(name = "generate-key")]
    GenerateKey,

    /// Print a shell completion script
    #[command(name = "completions")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `tenora tenants ...`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Provision a tenant: database, user, migrations, seeds, registry row
    Create {
        /// The tenant id (lowercase letter first, then a-z, 0-9, _)
        id: String,
        /// Read the tenant's database password from standard input (default: generate one)
        #[arg(long)]
        password_stdin: bool,
        /// Place it on this server (default: the least loaded one that takes new tenants)
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
    },
    /// Drop a tenant: its database, user and registry row
    Drop {
        /// The tenant id
        id: String,
        /// Confirm: the tenant's data is deleted
        #[arg(long)]
        yes: bool,
    },
    /// List tenants (id, state, server, created_at)
    List,
    /// Give tenants new database passwords, on the server and in the registry, with no failed request
    #[command(name = "rotate-password")]
    RotatePassword {
        /// The tenant ids
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every active tenant
        #[arg(long)]
        all: bool,
        /// Read the new password from standard input (one tenant only; default: generate one)
        #[arg(long, conflicts_with = "all")]
        password_stdin: bool,
    },
    /// Finish or undo tenant creations and drops that a crash left half-done
    Repair {
        /// The tenant ids to repair
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Repair every tenant that is not `active` or whose password rotation was interrupted
        #[arg(long)]
        all: bool,
    },
}

/// `tenora servers ...`
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// Each server: tenants, weight, whether it takes new tenants, budget, reachable now
    List,
}

/// `tenora runs ...`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The newest fleet runs: command, state, tenants done, failed and left
    List {
        /// How many runs
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
    /// One fleet run, tenant by tenant: state, attempts, what was done or why it failed
    Show {
        /// The run id (see `tenora runs list`)
        run: String,
    },
}

/// `tenora spares ...`
#[derive(Debug, Subcommand)]
pub enum SparesCommand {
    /// Each warm spare: server, state, whether built for the current tenant migrations
    List,
    /// Remove abandoned and outdated spares, then clone until tenant.spares are ready
    Fill,
}

/// `tenora keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Count stored passwords per key, plain-text and unreadable ones (exit 1 unless all current)
    Status,
    /// Re-seal every stored password with TENORA_KEY, opening old ones with TENORA_OLD_KEYS
    Rotate,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "0", "-1s", "5h", "s", "1e9", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
