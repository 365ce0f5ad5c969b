//! Finding and loading the project: config file, migration and seed folders.

use std::path::{Path, PathBuf};

use tenora::{Config, Migrations, Seeds};

use crate::error::CliError;

/// The config file to use: `--config`, else `$TENORA_CONFIG`, else `tenora.toml` in the current
/// folder or the nearest parent that has one.
pub fn find_config(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    // The library looks the same way; the CLI adds its own option to the hint.
    Config::find_file().map_err(|e| CliError::usage(format!("{e}, or pass --config PATH")))
}

/// Loads and validates the config.
pub fn load_config(explicit: Option<&Path>) -> Result<Config, CliError> {
    let path = find_config(explicit)?;
    Config::from_path(&path).map_err(|e| {
        // Whatever is wrong with the config file is a configuration error (exit code 2).
        CliError::usage(CliError::from(e).message)
    })
}

/// A configured folder, resolved against the config's folder.
pub fn folder(config: &Config, path: &Path) -> PathBuf {
    config.resolve(path)
}

/// The migrations in the folder at `key` (e.g. `base.migrations_dir`), which must exist.
pub fn migrations(config: &Config, key: &str, dir: &Path) -> Result<Migrations, CliError> {
    let dir = folder(config, dir);
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{key}: the migrations folder {} does not exist; create it or fix the path",
            dir.display()
        )));
    }
    Migrations::from_dir(&dir).map_err(|e| CliError::usage(CliError::from(e).message))
}

/// The seeds in the folder at `key` (e.g. `tenant.seeds_dir`), which must be configured and
/// exist.
pub fn seeds(config: &Config, key: &str, dir: Option<&Path>) -> Result<Seeds, CliError> {
    let Some(dir) = dir else {
        return Err(CliError::usage(format!(
            "{key} is not set in the config; add it to run or make seeds"
        )));
    };
    let dir = folder(config, dir);
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{key}: the seeds folder {} does not exist; create it or fix the path",
            dir.display()
        )));
    }
    Seeds::from_dir(&dir).map_err(|e| CliError::usage(CliError::from(e).message))
}
