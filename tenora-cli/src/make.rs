//! `make:*` generators: migration folders with a template inferred from the name, seed files,
//! and the registry migration.

use std::path::{Path, PathBuf};

use tenora::Client;

use crate::error::CliError;

/// What a migration name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// `create_users`, `create_users_table`
    CreateTable {
        /// The table.
        table: String,
    },
    /// `add_email_to_users`
    AddColumn {
        /// The column.
        column: String,
        /// The table.
        table: String,
    },
    /// `remove_email_from_users`, `drop_email_from_users`
    RemoveColumn {
        /// The column.
        column: String,
        /// The table.
        table: String,
    },
    /// Anything else.
    Empty,
}

/// Infers the template from a migration name.
pub fn infer(name: &str) -> Template {
    if let Some(rest) = name.strip_prefix("create_") {
        let table = rest.strip_suffix("_table").unwrap_or(rest);
        if !table.is_empty() {
            return Template::CreateTable {
                table: table.to_owned(),
            };
        }
    }
    if let Some((column, table)) = name
        .strip_prefix("add_")
        .and_then(|rest| rest.rsplit_once("_to_"))
        .filter(|(c, t)| !c.is_empty() && !t.is_empty())
    {
        return Template::AddColumn {
            column: column.to_owned(),
            table: table.to_owned(),
        };
    }
    if let Some((column, table)) = name
        .strip_prefix("remove_")
        .or_else(|| name.strip_prefix("drop_"))
        .and_then(|rest| rest.rsplit_once("_from_"))
        .filter(|(c, t)| !c.is_empty() && !t.is_empty())
    {
        return Template::RemoveColumn {
            column: column.to_owned(),
            table: table.to_owned(),
        };
    }
    Template::Empty
}

fn id_column(client: Client) -> &'static str {
    match client {
        Client::Postgres => "id SERIAL PRIMARY KEY",
        Client::Mysql => "id INT AUTO_INCREMENT PRIMARY KEY",
        Client::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL",
    }
}

fn text_type(client: Client) -> &'static str {
    match client {
        Client::Mysql => "VARCHAR(255)",
        Client::Postgres | Client::Sqlite => "TEXT",
    }
}

/// Words that cannot be bare table or column names on some backend.
const RESERVED: &[&str] = &[
    "all",
    "and",
    "as",
    "asc",
    "check",
    "column",
    "constraint",
    "create",
    "default",
    "desc",
    "distinct",
    "drop",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "key",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "primary",
    "references",
    "select",
    "table",
    "to",
    "union",
    "unique",
    "user",
    "where",
    "with",
];

/// `name`, quoted in the backend's style when it is a reserved word.
fn ident(name: &str, client: Client) -> String {
    if !RESERVED.contains(&name) {
        return name.to_owned();
    }
    match client {
        Client::Mysql => format!("`{name}`"),
        Client::Postgres | Client::Sqlite => format!("\"{name}\""),
    }
}

/// The `up.sql` and `down.sql` of a template in a backend's dialect.
pub fn render(template: &Template, client: Client) -> (String, String) {
    let q = |name: &str| ident(name, client);
    match template {
        Template::CreateTable { table } => (
            format!(
                "CREATE TABLE {} (\n    {}\n);\n",
                q(table),
                id_column(client)
            ),
            format!("DROP TABLE {};\n", q(table)),
        ),
        Template::AddColumn { column, table } => (
            format!(
                "ALTER TABLE {} ADD COLUMN {} {};\n",
                q(table),
                q(column),
                text_type(client)
            ),
            format!("ALTER TABLE {} DROP COLUMN {};\n", q(table), q(column)),
        ),
        Template::RemoveColumn { column, table } => (
            format!("ALTER TABLE {} DROP COLUMN {};\n", q(table), q(column)),
            format!(
                "ALTER TABLE {} ADD COLUMN {} {};\n",
                q(table),
                q(column),
                text_type(client)
            ),
        ),
        Template::Empty => (
            "-- Your SQL goes here\n".to_owned(),
            "-- This file should undo anything in `up.sql`\n".to_owned(),
        ),
    }
}

/// Checks a migration or seed name: lowercase letters, digits and `_`.
pub fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "invalid name {name:?}: use 1 to 100 lowercase letters, digits and `_`, e.g. \
             create_users"
        )))
    }
}

/// Diesel's folder timestamp (`YYYY-MM-DD-HHMMSS`) for a new migration in `dir`: now, or one
/// second after the newest existing migration if that is not earlier (two migrations made in
/// the same second would otherwise share a version).
fn next_timestamp(dir: &Path) -> String {
    const FOLDER: &str = "%Y-%m-%d-%H%M%S";
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| tenora_version(&e.file_name().to_string_lossy()))
        .max();
    let now = chrono::Utc::now().naive_utc();
    let now = chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now);
    let at = match newest {
        Some(newest) if newest >= now => newest + chrono::Duration::seconds(1),
        _ => now,
    };
    at.format(FOLDER).to_string()
}

fn tenora_version(folder: &str) -> Option<chrono::NaiveDateTime> {
    let version = folder.split_once('_')?.0.replace('-', "");
    chrono::NaiveDateTime::parse_from_str(&version, "%Y%m%d%H%M%S").ok()
}

/// Writes `<dir>/<timestamp>_<name>/{up.sql,down.sql}`; returns the new folder.
pub fn write_migration(dir: &Path, name: &str, up: &str, down: &str) -> Result<PathBuf, CliError> {
    let folder = dir.join(format!("{}_{name}", next_timestamp(dir)));
    if folder.exists() {
        return Err(CliError::failed(format!(
            "{} already exists; run the command again",
            folder.display()
        )));
    }
    std::fs::create_dir_all(&folder).map_err(|e| write_error(&folder, e))?;
    for (file, text) in [("up.sql", up), ("down.sql", down)] {
        let path = folder.join(file);
        std::fs::write(&path, text).map_err(|e| write_error(&path, e))?;
    }
    Ok(folder)
}

/// Writes `<dir>/<name>.sql` with a short header; refuses to overwrite.
pub fn write_seed(dir: &Path, name: &str, which: &str) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let path = dir.join(format!("{name}.sql"));
    if path.exists() {
        return Err(CliError::failed(format!(
            "{} already exists; pick another name",
            path.display()
        )));
    }
    let text = format!(
        "-- Seed `{name}` for the {which}. Seeds run in file-name order, each in a transaction,\n\
         -- every time seed:run is called: make them safe to run again.\n"
    );
    std::fs::write(&path, text).map_err(|e| write_error(&path, e))?;
    Ok(path)
}

fn write_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::failed(format!("cannot write {}: {e}", path.display()))
}

/// Whether some migration creates the registry `table` (quoted or not, with or without
/// `IF NOT EXISTS` or a schema prefix).
pub fn has_registry_migration(migrations: &tenora::Migrations, table: &str) -> bool {
    migrations.iter().any(|m| {
        let sql = m
            .up_sql()
            .to_ascii_lowercase()
            .replace(['"', '`', '[', ']'], "")
            .replace('(', " (")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("create table if not exists ", "create table ");
        sql.match_indices("create table ").any(|(i, m)| {
            let name = sql[i + m.len()..].split(' ').next().unwrap_or("");
            name.rsplit('.').next() == Some(table)
        })
    })
}

/// Whether a migration gives registry table `table` its column `column` (`token`: Tenora 0.2,
/// `server`: 0.3): the `CREATE TABLE` of a new project, or an `ALTER TABLE` added later.
pub fn has_registry_column(migrations: &tenora::Migrations, table: &str, column: &str) -> bool {
    migrations.iter().any(|m| {
        let sql = m.up_sql().to_ascii_lowercase().replace(['"', '`'], "");
        sql.contains(table)
            && sql
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == column)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_templates_from_names() {
        let table = |t: &str| Template::CreateTable { table: t.into() };
        assert_eq!(infer("create_users"), table("users"));
        assert_eq!(infer("create_users_table"), table("users"));
        assert_eq!(
            infer("add_email_address_to_users"),
            Template::AddColumn {
                column: "email_address".into(),
                table: "users".into()
            }
        );
        for name in ["remove_email_from_users", "drop_email_from_users"] {
            assert_eq!(
                infer(name),
                Template::RemoveColumn {
                    column: "email".into(),
                    table: "users".into()
                }
            );
        }
        for other in ["backfill_names", "create_", "add_to_users", "drop_users"] {
            assert_eq!(infer(other), Template::Empty, "{other}");
        }
    }

    #[test]
    fn migrations_made_in_one_second_get_distinct_versions() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_migration(dir.path(), "a", "", "").unwrap();
        let b = write_migration(dir.path(), "b", "", "").unwrap();
        let c = write_migration(dir.path(), "c", "", "").unwrap();
        let found = tenora::Migrations::from_dir(dir.path()).unwrap();
        assert_eq!(found.len(), 3, "{a:?} {b:?} {c:?}");
    }

    #[test]
    fn reserved_words_are_quoted_per_dialect() {
        let t = infer("create_user");
        assert_eq!(render(&t, Client::Postgres).1, "DROP TABLE \"user\";\n");
        assert_eq!(render(&t, Client::Mysql).1, "DROP TABLE `user`;\n");
        assert_eq!(
            render(&infer("create_users"), Client::Mysql).1,
            "DROP TABLE users;\n"
        );
    }

    #[test]
    fn registry_migrations_are_recognised_in_any_spelling() {
        for sql in [
            "CREATE TABLE tenora_tenants (id TEXT)",
            "create table if not exists \"tenora_tenants\"(id text)",
            "CREATE TABLE IF NOT EXISTS `tenora_tenants` (id TEXT)",
            "CREATE TABLE public.tenora_tenants (id TEXT)",
            "CREATE\n  TABLE\ttenora_tenants\n(id TEXT)",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let m = dir.path().join("2024-01-01-000000_r");
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("up.sql"), sql).unwrap();
            let found = tenora::Migrations::from_dir(dir.path()).unwrap();
            assert!(has_registry_migration(&found, "tenora_tenants"), "{sql}");
            assert!(!has_registry_migration(&found, "tenora_tenant"), "{sql}");
        }
    }

    #[test]
    fn names_are_checked() {
        check_name("create_users").unwrap();
        for bad in ["", "Create", "a-b", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
