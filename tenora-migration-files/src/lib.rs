//! Reads Diesel-layout migration folders and seed folders from disk.
//!
//! This is the one scanner behind Tenora's compile-time embedding (`tenora-macros`), the
//! library's runtime loading and the CLI, so all three agree on what a migration folder means:
//!
//! ```text
//! migrations/
//!   2024-01-01-000000_create_users/   <version>_<name>
//!     up.sql                          required
//!     down.sql                        optional (without it the migration cannot be reverted)
//!     metadata.toml                   optional: `run_in_transaction = false`
//! seeds/
//!   01_users.sql                      every `*.sql` file, run in file-name order
//! ```
//!
//! The version is the part of the folder name before the first `_`, with `-` removed, exactly
//! as Diesel computes it, so Tenora and the `diesel` CLI agree about which migrations a database
//! has run. Entries whose name starts with `.` are ignored, as Diesel does.
//!
//! Every migration and seed carries a SHA-256 [`checksum`] of its `up.sql` (or seed) text, the
//! basis for detecting drift between what was compiled in and what a database ran.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One migration folder, read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// Version as Diesel records it: the folder name before the first `_`, without `-`.
    pub version: String,
    /// The whole folder name, e.g. `2024-01-01-000000_create_users`.
    pub name: String,
    /// Path of `up.sql`.
    pub up_path: PathBuf,
    /// Text of `up.sql`.
    pub up_sql: String,
    /// Path of `down.sql`, when the folder has one.
    pub down_path: Option<PathBuf>,
    /// Text of `down.sql`, when the folder has one.
    pub down_sql: Option<String>,
    /// `false` when `metadata.toml` says `run_in_transaction = false`.
    pub run_in_transaction: bool,
    /// Hex SHA-256 of `up.sql`.
    pub checksum: String,
}

/// One seed file, read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    /// File name, e.g. `01_users.sql`.
    pub name: String,
    /// Path of the file.
    pub path: PathBuf,
    /// Its SQL text.
    pub sql: String,
    /// Hex SHA-256 of the SQL text.
    pub checksum: String,
}

/// Why a migration or seed folder could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// The file or folder at fault.
    pub path: PathBuf,
    /// What is wrong with it, and what to do.
    pub message: String,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ScanError {}

fn err(path: &Path, message: impl Into<String>) -> ScanError {
    ScanError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Hex-encoded SHA-256 of a migration's or seed's SQL text.
pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Diesel's version of a migration folder name: the part before the first `_`, without `-`.
///
/// Returns `None` when the name has no `_<name>` part or the version is not made of ASCII
/// digits and `-` (Diesel would accept more; we refuse names that would sort surprisingly).
pub fn version_of(folder_name: &str) -> Option<String> {
    let (version, rest) = folder_name.split_once('_')?;
    let valid = !rest.is_empty()
        && version.bytes().any(|b| b.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    valid.then(|| version.replace('-', ""))
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ScanError> {
    let read = fs::read_dir(dir).map_err(|e| {
        err(
            dir,
            format!("cannot read the folder ({e}); check the path in your configuration"),
        )
    })?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| err(dir, format!("cannot list the folder: {e}")))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(err(
                &entry.path(),
                "file name is not valid UTF-8; rename it",
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        out.push((name.to_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, ScanError> {
    fs::read_to_string(path).map_err(|e| err(path, format!("cannot read the file: {e}")))
}

fn read_run_in_transaction(path: &Path) -> Result<bool, ScanError> {
    // metadata.toml holds at most `run_in_transaction = <bool>`; a full TOML parser would be a
    // heavy dependency for the proc macro, so accept exactly that key and reject anything else.
    let text = read_text(path)?;
    let mut value = true;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("run_in_transaction", "true")) => value = true,
            Some(("run_in_transaction", "false")) => value = false,
            _ => {
                return Err(err(
                    path,
                    format!(
                        "unsupported line `{line}`: metadata.toml may only contain \
                         `run_in_transaction = true|false`"
                    ),
                ));
            }
        }
    }
    Ok(value)
}

/// Reads every migration folder under `dir`, sorted by version.
///
/// Fails with the offending path when the folder is unreadable, a migration folder has a name
/// that is not `<version>_<name>`, lacks `up.sql`, has an unreadable file, or two folders share
/// a version.
pub fn scan_migrations(dir: &Path) -> Result<Vec<MigrationFile>, ScanError> {
    let mut migrations = Vec::new();
    for (name, path) in entries(dir)? {
        if !path.is_dir() {
            // Diesel tolerates stray files (e.g. `.keep`, README) beside migration folders.
            continue;
        }
        let version = version_of(&name).ok_or_else(|| {
            err(
                &path,
                "migration folder names must be `<version>_<name>`, with a version of digits \
                 and `-` such as `2024-01-31-120000_create_users`",
            )
        })?;
        let up_path = path.join("up.sql");
        if !up_path.is_file() {
            return Err(err(
                &up_path,
                "missing up.sql: every migration folder needs one",
            ));
        }
        let up_sql = read_text(&up_path)?;
        let down = path.join("down.sql");
        let (down_path, down_sql) = if down.is_file() {
            let sql = read_text(&down)?;
            (Some(down), Some(sql))
        } else {
            (None, None)
        };
        let meta = path.join("metadata.toml");
        let run_in_transaction = if meta.is_file() {
            read_run_in_transaction(&meta)?
        } else {
            true
        };
        migrations.push(MigrationFile {
            version,
            name,
            checksum: checksum(&up_sql),
            up_path,
            up_sql,
            down_path,
            down_sql,
            run_in_transaction,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
    for pair in migrations.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(err(
                dir,
                format!(
                    "migrations `{}` and `{}` share the version {}; give one of them a new \
                     timestamp",
                    pair[0].name, pair[1].name, pair[0].version
                ),
            ));
        }
    }
    Ok(migrations)
}

/// Reads every `*.sql` seed file in `dir`, sorted by file name.
pub fn scan_seeds(dir: &Path) -> Result<Vec<SeedFile>, ScanError> {
    let mut seeds = Vec::new();
    for (name, path) in entries(dir)? {
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let sql = read_text(&path)?;
        seeds.push(SeedFile {
            checksum: checksum(&sql),
            name,
            path,
            sql,
        });
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tenora-mf-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn version_matches_diesel() {
        assert_eq!(
            version_of("2024-01-31-120000_create_users").as_deref(),
            Some("20240131120000")
        );
        assert_eq!(
            version_of("00000000000000_diesel_initial_setup").as_deref(),
            Some("00000000000000")
        );
        assert_eq!(version_of("create_users"), None);
        assert_eq!(version_of("2024_"), None);
        assert_eq!(version_of("v1_users"), None);
    }

    #[test]
    fn scans_sorted_with_checksums_and_metadata() {
        let dir = temp_dir("ok");
        write(
            &dir.join("2024-02-01-000000_b/up.sql"),
            "CREATE TABLE b (id INT);",
        );
        write(
            &dir.join("2024-02-01-000000_b/metadata.toml"),
            "run_in_transaction = false\n",
        );
        write(
            &dir.join("2024-01-01-000000_a/up.sql"),
            "CREATE TABLE a (id INT);",
        );
        write(&dir.join("2024-01-01-000000_a/down.sql"), "DROP TABLE a;");
        write(&dir.join(".keep"), "");
        let found = scan_migrations(&dir).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "2024-01-01-000000_a");
        assert_eq!(found[0].down_sql.as_deref(), Some("DROP TABLE a;"));
        assert!(found[0].run_in_transaction);
        assert!(!found[1].run_in_transaction);
        assert_eq!(found[1].down_sql, None);
        assert_eq!(found[0].checksum, checksum("CREATE TABLE a (id INT);"));
        assert_ne!(found[0].checksum, found[1].checksum);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_missing_up_and_duplicates_and_bad_names() {
        let dir = temp_dir("bad");
        write(&dir.join("2024-01-01-000000_a/down.sql"), "");
        let e = scan_migrations(&dir).unwrap_err();
        assert!(e.message.contains("missing up.sql"), "{e}");
        assert!(e.path.ends_with("up.sql"));

        fs::remove_dir_all(&dir).unwrap();
        write(&dir.join("2024-01-01-000000_a/up.sql"), "");
        write(&dir.join("20240101000000_b/up.sql"), "");
        let e = scan_migrations(&dir).unwrap_err();
        assert!(
            e.message.contains("share the version 20240101000000"),
            "{e}"
        );

        fs::remove_dir_all(&dir).unwrap();
        write(&dir.join("users/up.sql"), "");
        let e = scan_migrations(&dir).unwrap_err();
        assert!(e.message.contains("<version>_<name>"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let e = scan_migrations(Path::new("/definitely/not/here")).unwrap_err();
        assert!(e.to_string().contains("cannot read the folder"), "{e}");
    }

    #[test]
    fn seeds_in_name_order() {
        let dir = temp_dir("seeds");
        write(&dir.join("02_b.sql"), "SELECT 2;");
        write(&dir.join("01_a.sql"), "SELECT 1;");
        write(&dir.join("README.md"), "not a seed");
        let seeds = scan_seeds(&dir).unwrap();
        let names: Vec<_> = seeds.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["01_a.sql", "02_b.sql"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
