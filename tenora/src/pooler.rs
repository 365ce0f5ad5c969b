//! `[pooler]`: a connection pooler (PgBouncer and the like) in front of a PostgreSQL server.
//!
//! Tenant traffic — [`Tenora::tenant_conn`](crate::Tenora::tenant_conn), the resolver, the
//! pools Tenora caches — connects through the pooler; administrative work (creating and
//! dropping databases and roles, template clones, migrations and their locks, seeds, the
//! registry) always connects to the server itself, as `[base]` (or `[servers.<name>]`) says:
//! a transaction pooler would spread a session-level lock, or a migration's statements, over
//! several server connections.

use serde::Deserialize;

use crate::config::Client;
use crate::error::{Error, Result};
use crate::secret::SecretString;

/// `[pooler]` (for the base database's server) or `[servers.<name>.pooler]`.
///
/// ```toml
/// [pooler]
/// url = "postgres://pgbouncer.internal:6432"  # host and port; the tenant's database, user
///                                             # and password are filled in per tenant
/// mode = "transaction"                        # or "session" (the pooler's pool_mode)
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolerConfig {
    /// The pooler's address as a PostgreSQL URL (`postgres://host:port`) or `host=… port=…`
    /// string. Only its hosts and ports are used: each tenant connects as its own user to its
    /// own database, with its own password, and with the server's TLS settings.
    pub url: SecretString,
    /// The pooler's `pool_mode` for tenant databases. Tenora routes connections the same way
    /// in both modes; the mode records what the pooler does (see [`PoolerMode`] for what each
    /// allows), and messages name it.
    #[serde(default)]
    pub mode: PoolerMode,
}

impl std::fmt::Debug for PoolerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolerConfig")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PoolerConfig {
    /// A pooler at `url` in transaction mode.
    pub fn transaction(url: impl Into<String>) -> Self {
        PoolerConfig {
            url: SecretString::from(url.into()),
            mode: PoolerMode::Transaction,
        }
    }

    /// A pooler at `url` in session mode.
    pub fn session(url: impl Into<String>) -> Self {
        PoolerConfig {
            url: SecretString::from(url.into()),
            mode: PoolerMode::Session,
        }
    }

    /// Checks the table `section` (`pooler`, `servers.<name>.pooler`) for backend `client`.
    pub(crate) fn validate(&self, section: &str, client: Client) -> Result<()> {
        if client != Client::Postgres {
            return Err(Error::config(
                section,
                "a connection pooler is supported for PostgreSQL only; remove the table",
            ));
        }
        if self.url.expose().trim().is_empty() {
            return Err(Error::config(
                format!("{section}.url"),
                "must name the pooler, e.g. \"postgres://pgbouncer.internal:6432\"",
            ));
        }
        #[cfg(feature = "postgres")]
        self.address(section)?;
        Ok(())
    }

    /// The pooler's address: its URL parsed, which may name only hosts and ports. `section`
    /// names the table in errors.
    #[cfg(feature = "postgres")]
    pub(crate) fn address(&self, section: &str) -> Result<tokio_postgres::Config> {
        use std::str::FromStr as _;
        let key = format!("{section}.url");
        let parsed = tokio_postgres::Config::from_str(self.url.expose()).map_err(|e| {
            Error::config(
                key.clone(),
                format!(
                    "not a valid PostgreSQL connection URL ({})",
                    crate::config::redact_url(&e.to_string())
                ),
            )
        })?;
        if parsed.get_user().is_some()
            || parsed.get_password().is_some()
            || parsed.get_dbname().is_some()
        {
            return Err(Error::config(
                key,
                "names a user, password or database; give only the pooler's host and port \
                 (each tenant connects as its own user to its own database)",
            ));
        }
        if parsed.get_hosts().is_empty() {
            return Err(Error::config(
                key,
                "names no host, e.g. \"postgres://pgbouncer.internal:6432\"",
            ));
        }
        Ok(parsed)
    }
}

/// How the pooler hands out server connections (its `pool_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolerMode {
    /// A server connection per transaction: the most sharing, and no session state between
    /// transactions (no session-level locks, `SET`, `LISTEN`). Prepared statements, which
    /// diesel-async uses for every query, need a pooler that keeps track of them (PgBouncer
    /// 1.21 or later with `max_prepared_statements` above 0, the default since 1.22).
    #[default]
    Transaction,
    /// A server connection per client connection, for as long as it stays open.
    Session,
}

impl std::fmt::Display for PoolerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolerMode::Transaction => "transaction",
            PoolerMode::Session => "session",
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn pg(extra: &str) -> crate::Result<Config> {
        Config::from_toml(&format!(
            "[base]\nclient = \"postgres\"\nurl = \"postgres://adm@db/app\"\n{extra}"
        ))
    }

    #[test]
    fn the_pooler_table_parses_and_defaults_to_transaction_mode() {
        let config = pg("[pooler]\nurl = \"postgres://bouncer:6432\"\n").unwrap();
        let pooler = config.pooler.unwrap();
        assert_eq!(pooler.mode, super::PoolerMode::Transaction);
        assert_eq!(pooler.url.expose(), "postgres://bouncer:6432");
        let config = pg("[pooler]\nurl = \"postgres://b\"\nmode = \"session\"\n").unwrap();
        assert_eq!(config.pooler.unwrap().mode, super::PoolerMode::Session);
        let err = pg("[pooler]\nurl = \"postgres://b\"\nmode = \"statement\"\n").unwrap_err();
        assert!(err.to_string().contains("statement"), "{err}");
        let err = pg("[pooler]\nurl = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("pooler.url"), "{err}");
    }

    #[test]
    fn a_pooler_is_refused_for_other_backends() {
        let err = Config::from_toml(
            "[base]\nclient = \"mysql\"\nurl = \"mysql://root@db/mysql\"\n\
             [pooler]\nurl = \"mysql://proxysql:6033\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("PostgreSQL only"), "{err}");
    }

    #[test]
    fn each_server_has_its_own_pooler_or_none() {
        let config = pg("[pooler]\nurl = \"postgres://b0:6432\"\n\
             [servers.eu]\nurl = \"postgres://adm@eu/postgres\"\n\
             [servers.eu.pooler]\nurl = \"postgres://b1:6432\"\nmode = \"session\"\n\
             [servers.us]\nurl = \"postgres://adm@us/postgres\"\n")
        .unwrap();
        let eu = config.for_server("eu").unwrap().pooler.unwrap();
        assert_eq!(eu.url.expose(), "postgres://b1:6432");
        assert_eq!(eu.mode, super::PoolerMode::Session);
        // Not inherited: [pooler] fronts the base database's server.
        assert!(config.for_server("us").unwrap().pooler.is_none());
        let default = config.for_server(crate::DEFAULT_SERVER).unwrap();
        assert_eq!(default.pooler.unwrap().url.expose(), "postgres://b0:6432");
        // The default server's pooler is [pooler], not a [servers.default] key.
        let err = pg("[servers.default.pooler]\nurl = \"postgres://b:6432\"\n\
             [servers.eu]\nurl = \"postgres://adm@eu/postgres\"\n")
        .unwrap_err();
        assert!(err.to_string().contains("servers.default"), "{err}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_bad_pooler_url_is_refused_when_the_config_is_read_naming_its_table() {
        let err = pg("[servers.eu]\nurl = \"postgres://adm@eu/postgres\"\n\
             [servers.eu.pooler]\nurl = \"postgres://app:hunter2@b1:6432\"\n")
        .unwrap_err()
        .to_string();
        assert!(err.contains("servers.eu.pooler.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn the_pooler_url_names_only_hosts_and_ports() {
        use crate::backend::Backend;
        use crate::backend::server::Server as _;
        type Pg = <crate::backend::Postgres as Backend>::Server;
        let built = |url: &str| {
            let config = pg(&format!("[pooler]\nurl = \"{url}\"\n"))?;
            Pg::from_config(&config).map(|_| ())
        };
        built("postgres://bouncer:6432").unwrap();
        built("host=bouncer port=6432").unwrap();
        for bad in [
            "postgres://app:secret@bouncer:6432",
            "postgres://bouncer:6432/app",
            "host=bouncer user=app",
        ] {
            let err = built(bad).unwrap_err().to_string();
            assert!(
                err.contains("only the pooler's host and port"),
                "{bad}: {err}"
            );
            assert!(!err.contains("secret"), "{err}");
        }
        let err = built("postgres://bouncer:notaport")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pooler.url"), "{err}");
    }
}
