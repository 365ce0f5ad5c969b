//! [`Naming`]: how a tenant id becomes database, user and file names, and which names are off
//! limits.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::tenant_id::TenantId;

/// Turns tenant ids into database and user names for one backend and configuration, and
/// refuses ids whose names would be too long (never truncated) or reserved.
#[derive(Debug)]
pub struct Naming {
    database_prefix: String,
    user_prefix: String,
    database_suffix: String,
    max_database_len: usize,
    /// The server's limit once read from it (MySQL 32, MariaDB 80 or 128); until then the
    /// backend's safe default.
    max_user_len: AtomicUsize,
    reserved_databases: Vec<String>,
    reserved_users: Vec<String>,
    reserved_user_prefixes: Vec<String>,
    reserved_id_prefixes: Vec<String>,
}

impl Naming {
    pub(crate) fn new(
        database_prefix: &str,
        user_prefix: &str,
        database_suffix: &str,
        max_database_len: usize,
        max_user_len: usize,
    ) -> Self {
        Naming {
            database_prefix: database_prefix.to_owned(),
            user_prefix: user_prefix.to_owned(),
            database_suffix: database_suffix.to_owned(),
            max_database_len,
            max_user_len: AtomicUsize::new(max_user_len),
            reserved_databases: Vec::new(),
            reserved_users: Vec::new(),
            reserved_user_prefixes: Vec::new(),
            reserved_id_prefixes: Vec::new(),
        }
    }

    pub(crate) fn reserve_databases<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reserved_databases
            .extend(names.into_iter().map(Into::into));
        self
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn reserve_users<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reserved_users
            .extend(names.into_iter().map(Into::into));
        self
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn reserve_user_prefix(mut self, prefix: &str) -> Self {
        self.reserved_user_prefixes.push(prefix.to_owned());
        self
    }

    /// Reserves every id starting with `prefix` (names Tenora gives its own objects, such as
    /// warm spares).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn reserve_id_prefix(mut self, prefix: &str) -> Self {
        self.reserved_id_prefixes.push(prefix.to_owned());
        self
    }

    /// Sets the longest user name, as the server reports it.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn set_max_user_len(&self, max: usize) {
        self.max_user_len.store(max, Ordering::Relaxed);
    }

    /// The longest user name the server accepts.
    pub fn max_user_len(&self) -> usize {
        self.max_user_len.load(Ordering::Relaxed)
    }

    /// The longest tenant id this configuration accepts.
    pub fn max_id_len(&self) -> usize {
        let by_db = self
            .max_database_len
            .saturating_sub(self.database_prefix.len() + self.database_suffix.len());
        let by_user = self.max_user_len().saturating_sub(self.user_prefix.len());
        by_db.min(by_user).min(TenantId::MAX_LEN)
    }

    /// The tenant's database name (for SQLite: its file name).
    pub fn database_name(&self, id: &TenantId) -> String {
        format!("{}{}{}", self.database_prefix, id, self.database_suffix)
    }

    /// The tenant's database user / role name.
    pub fn user_name(&self, id: &TenantId) -> String {
        format!("{}{}", self.user_prefix, id)
    }

    /// The tenant whose database is `name`, if a valid id (not reserved) maps to it.
    pub fn id_of_database(&self, name: &str) -> Option<TenantId> {
        self.id_in(name, false).filter(|id| self.check(id).is_ok())
    }

    /// The tenant whose user is `name`, if a valid id (not reserved) maps to it.
    pub fn id_of_user(&self, name: &str) -> Option<TenantId> {
        self.id_in(name, true).filter(|id| self.check(id).is_ok())
    }

    /// The id a user (`is_user`) or database name is made of, if it fits the naming, reserved
    /// or not.
    fn id_in(&self, name: &str, is_user: bool) -> Option<TenantId> {
        let id = if is_user {
            name.strip_prefix(&self.user_prefix)?
        } else {
            name.strip_prefix(&self.database_prefix)?
                .strip_suffix(&self.database_suffix)?
        };
        TenantId::new(id).ok()
    }

    /// Whether `name` is a user (`is_user`) or database name of a reserved id: a warm spare's.
    #[cfg(feature = "postgres")]
    pub(crate) fn is_spare_name(&self, name: &str, is_user: bool) -> bool {
        self.id_in(name, is_user).is_some_and(|id| {
            self.reserved_id_prefixes
                .iter()
                .any(|p| id.as_str().starts_with(p.as_str()))
        })
    }

    /// The prefix of every tenant database name.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn database_prefix(&self) -> &str {
        &self.database_prefix
    }

    /// The prefix of every tenant user name.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn user_prefix(&self) -> &str {
        &self.user_prefix
    }

    /// Fails unless `id`'s names fit the backend's limits and are not reserved.
    pub fn check(&self, id: &TenantId) -> Result<()> {
        let invalid = |reason: String| Error::InvalidTenantId {
            id: id.to_string(),
            reason,
        };
        let max = self.max_id_len();
        if id.as_str().len() > max {
            return Err(invalid(format!(
                "it is {} characters long, but with the configured prefixes \
                 (database {:?}, user {:?}) and the server's name limits (database {}, user {}) \
                 tenant ids may have at most {max} characters so that names are never truncated",
                id.as_str().len(),
                self.database_prefix,
                self.user_prefix,
                self.max_database_len,
                self.max_user_len(),
            )));
        }
        if let Some(prefix) = self
            .reserved_id_prefixes
            .iter()
            .find(|p| id.as_str().starts_with(p.as_str()))
        {
            return Err(invalid(format!(
                "ids starting with `{prefix}` are reserved for Tenora's own databases"
            )));
        }
        let database = self.database_name(id);
        if self.reserved_databases.contains(&database) {
            return Err(invalid(format!(
                "its database name `{database}` is reserved (a system database or the base \
                 database)"
            )));
        }
        let user = self.user_name(id);
        if self.reserved_users.contains(&user)
            || self
                .reserved_user_prefixes
                .iter()
                .any(|p| user.starts_with(p.as_str()))
        {
            return Err(invalid(format!(
                "its user name `{user}` is reserved (a system role or the admin user)"
            )));
        }
        Ok(())
    }
}

impl Clone for Naming {
    fn clone(&self) -> Self {
        Naming {
            database_prefix: self.database_prefix.clone(),
            user_prefix: self.user_prefix.clone(),
            database_suffix: self.database_suffix.clone(),
            max_database_len: self.max_database_len,
            max_user_len: AtomicUsize::new(self.max_user_len()),
            reserved_databases: self.reserved_databases.clone(),
            reserved_users: self.reserved_users.clone(),
            reserved_user_prefixes: self.reserved_user_prefixes.clone(),
            reserved_id_prefixes: self.reserved_id_prefixes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn lengths_account_for_prefixes() {
        let n = Naming::new("t_", "user_", "", 63, 63);
        assert_eq!(n.max_id_len(), 58);
        n.check(&id(&"a".repeat(58))).unwrap();
        let e = n.check(&id(&"a".repeat(59))).unwrap_err().to_string();
        assert!(e.contains("at most 58 characters"), "{e}");
        assert_eq!(n.database_name(&id("acme")), "t_acme");
        assert_eq!(n.user_name(&id("acme")), "user_acme");
    }

    #[test]
    fn reserved_names_are_refused() {
        let n = Naming::new("", "", "", 63, 63)
            .reserve_databases(["postgres", "template1", "app"])
            .reserve_users(["postgres"])
            .reserve_user_prefix("pg_");
        for bad in ["postgres", "template1", "app", "pg_x"] {
            let e = n.check(&id(bad)).unwrap_err().to_string();
            assert!(e.contains("reserved"), "{bad}: {e}");
        }
        n.check(&id("acme")).unwrap();
    }
}
