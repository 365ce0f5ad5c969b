//! `[servers.<name>]`: the database servers tenant databases are placed on.
//!
//! The server of the base database is always there, named [`DEFAULT_SERVER`], with `[base]`'s
//! connection settings. Each `[servers.<name>]` table adds a server with connection settings of
//! its own (the keys of `[base]`, except the base database's). Without any, the default server
//! is the only tenant server; once other servers are listed, the default server takes new
//! tenants only when `[servers.default]` is listed too (it may set `weight`,
//! `max_connections` and `accept_new_tenants`, not connection settings).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Client, Config};
use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::tls::TlsMode;

/// The name of the server that holds the base database.
pub const DEFAULT_SERVER: &str = "default";

/// One `[servers.<name>]` table.
///
/// ```toml
/// [servers.eu-2]
/// url = "postgres://tenora_admin@eu-2.db.internal/postgres"  # or host, port, user, password
/// max_connections = 80          # this server's connection budget (default: derived from it)
/// weight = 2                    # share of new tenants (default 1)
/// accept_new_tenants = true     # false: drain (no new tenants; existing ones stay)
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Connection URL of the server's admin database (PostgreSQL, MySQL).
    #[serde(default)]
    pub url: Option<SecretString>,
    /// Server host, when `url` is not given.
    #[serde(default)]
    pub host: Option<String>,
    /// Server port, when `url` is not given.
    #[serde(default)]
    pub port: Option<u16>,
    /// Admin user, when `url` is not given.
    #[serde(default)]
    pub user: Option<String>,
    /// Admin password, when `url` is not given.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// The database Tenora's administrative sessions use on this server: default the one the
    /// URL names, else `postgres` (PostgreSQL) or `mysql` (MySQL).
    #[serde(default)]
    pub admin_database: Option<String>,
    /// SQLite: the folder of this server's tenant files.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// This server's connection budget; default: derived from the server's own limit, as
    /// `pool_cache.max_connections` is for the default server.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// The server's share of new tenants relative to the others (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Whether new tenants may be placed here (default true); `false` drains the server.
    #[serde(default = "yes")]
    pub accept_new_tenants: bool,
    /// PostgreSQL TLS, as in `[base]`. A server that sets no TLS key (here or in its URL)
    /// uses `[base]`'s `sslmode` and `sslrootcert` (MySQL: `ssl-mode`, `ssl-ca`).
    #[serde(default)]
    pub sslmode: Option<TlsMode>,
    /// PostgreSQL TLS, as in `[base]`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// PostgreSQL TLS, as in `[base]`.
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// PostgreSQL TLS, as in `[base]`.
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
    /// `[servers.<name>.pooler]`: a connection pooler in front of this server for tenant
    /// traffic, as `[pooler]` is for the base database's server (not inherited from it).
    #[serde(default)]
    pub pooler: Option<crate::pooler::PoolerConfig>,
    /// MySQL TLS, as in `[base]`.
    #[serde(default, rename = "ssl-mode")]
    pub ssl_mode: Option<TlsMode>,
    /// MySQL TLS, as in `[base]`.
    #[serde(default, rename = "ssl-ca")]
    pub ssl_ca: Option<PathBuf>,
    /// MySQL TLS, as in `[base]`.
    #[serde(default, rename = "ssl-cert")]
    pub ssl_cert: Option<PathBuf>,
    /// MySQL TLS, as in `[base]`.
    #[serde(default, rename = "ssl-key")]
    pub ssl_key: Option<PathBuf>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or password: they may carry credentials.
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("max_connections", &self.max_connections)
            .field("weight", &self.weight)
            .field("accept_new_tenants", &self.accept_new_tenants)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// A server reached at `url` (its admin database), with weight 1, taking new tenants.
    pub fn url(url: impl Into<String>) -> Self {
        ServerConfig {
            url: Some(SecretString::new(url.into())),
            ..ServerConfig::placement_only()
        }
    }

    /// A SQLite "server": the folder `path` of tenant files.
    pub fn sqlite_folder(path: impl Into<PathBuf>) -> Self {
        ServerConfig {
            path: Some(path.into()),
            ..ServerConfig::placement_only()
        }
    }

    /// Only placement settings (weight 1, taking new tenants): the form of
    /// `[servers.default]`.
    pub fn placement_only() -> Self {
        ServerConfig {
            weight: 1,
            accept_new_tenants: true,
            ..ServerConfig::default()
        }
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets whether the server takes new tenants.
    #[must_use]
    pub fn accept_new_tenants(mut self, accept: bool) -> Self {
        self.accept_new_tenants = accept;
        self
    }

    /// Sets the connection budget.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Whether any TLS key is set, in the table or in its URL.
    fn has_tls_settings(&self) -> bool {
        self.sslmode.is_some()
            || self.sslrootcert.is_some()
            || self.sslcert.is_some()
            || self.sslkey.is_some()
            || self.ssl_mode.is_some()
            || self.ssl_ca.is_some()
            || self.ssl_cert.is_some()
            || self.ssl_key.is_some()
            || self.url.as_ref().is_some_and(|url| {
                let url = url.expose().to_ascii_lowercase();
                [
                    "sslmode",
                    "ssl-mode",
                    "ssl_mode",
                    "sslrootcert",
                    "ssl-ca",
                    "ssl_ca",
                    "sslcert",
                    "sslkey",
                    "ssl-cert",
                    "ssl-key",
                ]
                .iter()
                .any(|key| url.contains(key))
            })
    }

    fn has_connection_settings(&self) -> bool {
        self.url.is_some()
            || self.host.is_some()
            || self.port.is_some()
            || self.user.is_some()
            || self.password.is_some()
            || self.admin_database.is_some()
            || self.path.is_some()
            || self.pooler.is_some()
            || self.has_tls_settings()
    }
}

/// The environment variable that replaces server `name`'s connection URL:
/// `TENORA_SERVER_<NAME>_URL`, the name in upper case with `-` as `_`. It keeps passwords out
/// of the config file, as `TENORA_BASE_URL` does for `[base]`; the `[servers.<name>]` table
/// must still exist.
///
/// ```
/// assert_eq!(tenora::server_url_var("eu-2"), "TENORA_SERVER_EU_2_URL");
/// ```
pub fn server_url_var(name: &str) -> String {
    format!(
        "TENORA_SERVER_{}_URL",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether `name` can name a server: 1 to 63 of `a-z 0-9 _ -`, starting with a letter or digit.
pub(crate) fn check_server_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            format!("servers.{name}"),
            "a server name is 1 to 63 of a-z, 0-9, `_` and `-`, starting with a letter or digit",
        ))
    }
}

impl Config {
    /// Adds (or replaces) `[servers.<name>]`.
    #[must_use]
    pub fn server(mut self, name: impl Into<String>, server: ServerConfig) -> Self {
        self.servers.insert(name.into(), server);
        self
    }

    /// The names of the servers tenants can be on: the default server first, then the others
    /// by name.
    pub fn server_names(&self) -> Vec<&str> {
        std::iter::once(DEFAULT_SERVER)
            .chain(
                self.servers
                    .keys()
                    .map(String::as_str)
                    .filter(|n| *n != DEFAULT_SERVER),
            )
            .collect()
    }

    /// Placement settings of server `name`: `(weight, accepts new tenants, max_connections)`.
    pub(crate) fn placement_of(&self, name: &str) -> (u32, bool, Option<u32>) {
        match self.servers.get(name) {
            Some(s) if name == DEFAULT_SERVER => (
                s.weight,
                s.accept_new_tenants,
                s.max_connections.or(self.pool_cache.max_connections),
            ),
            Some(s) => (s.weight, s.accept_new_tenants, s.max_connections),
            // The default server, unlisted: the only tenant server, or none once others are
            // listed.
            None => (1, self.servers.is_empty(), self.pool_cache.max_connections),
        }
    }

    pub(crate) fn validate_servers(&self) -> Result<()> {
        let mut vars = std::collections::HashMap::new();
        for (name, server) in &self.servers {
            check_server_name(name)?;
            if let Some(other) = vars.insert(server_url_var(name), name) {
                return Err(Error::config(
                    format!("servers.{name}"),
                    format!(
                        "and servers.{other} share the environment variable {}; rename one",
                        server_url_var(name)
                    ),
                ));
            }
            let key = |k: &str| format!("servers.{name}.{k}");
            if let Some(pooler) = &server.pooler {
                pooler.validate(&key("pooler"), self.base.client)?;
            }
            if server.weight == 0 {
                return Err(Error::config(
                    key("weight"),
                    "must be at least 1 (set accept_new_tenants = false to stop placing tenants \
                     there)",
                ));
            }
            if server.max_connections == Some(0) {
                return Err(Error::config(
                    key("max_connections"),
                    "must be at least 1 (leave it out to derive a budget from the server)",
                ));
            }
            if name == DEFAULT_SERVER {
                if server.has_connection_settings() {
                    return Err(Error::config(
                        format!("servers.{DEFAULT_SERVER}"),
                        "is the server of the base database: its connection settings are \
                         [base]'s; here only weight, max_connections and accept_new_tenants",
                    ));
                }
                continue;
            }
            match self.base.client {
                Client::Sqlite => {
                    if server.path.is_none() {
                        return Err(Error::config(
                            key("path"),
                            "a SQLite server is a folder of tenant files: set path",
                        ));
                    }
                }
                Client::Postgres | Client::Mysql => {
                    if server.path.is_some() {
                        return Err(Error::config(
                            key("path"),
                            "is for SQLite; a database server takes url (or host, port, user, \
                             password)",
                        ));
                    }
                    if server.url.is_none() && server.host.is_none() {
                        return Err(Error::config(
                            key("url"),
                            "set url (or host, port, user, password) of the server",
                        ));
                    }
                }
            }
            self.for_server(name)?
                .tls()
                .map_err(|e| e.under_server(name))?;
        }
        if !self.servers.is_empty()
            && !self
                .server_names()
                .iter()
                .any(|name| self.placement_of(name).1)
        {
            tracing::warn!(
                "no server accepts new tenants (every [servers.*] has accept_new_tenants = false): \
                 creating tenants will fail"
            );
        }
        Ok(())
    }

    /// The config as server `name` sees it: `[base]` carries that server's connection
    /// settings (its home database is its admin database; SQLite: `tenant.database_dir` is its
    /// folder). The default server's is the config itself.
    pub(crate) fn for_server(&self, name: &str) -> Result<Config> {
        if name == DEFAULT_SERVER {
            return Ok(self.clone());
        }
        let server = self.servers.get(name).ok_or_else(|| {
            Error::config(
                format!("servers.{name}"),
                "no such server; the servers are listed in [servers.<name>] tables",
            )
        })?;
        let mut config = self.clone();
        let base = &mut config.base;
        match base.client {
            Client::Sqlite => {
                config.tenant.database_dir = server.path.clone().unwrap_or_default();
            }
            Client::Postgres | Client::Mysql => {
                let admin = server
                    .admin_database
                    .clone()
                    .or_else(|| server.url.as_ref().and_then(|u| url_database(u.expose())))
                    .unwrap_or_else(|| match base.client {
                        Client::Mysql => "mysql".to_owned(),
                        _ => "postgres".to_owned(),
                    });
                // Without TLS settings of its own, the server gets [base]'s mode and CA: a
                // fleet configured for verified TLS never falls back to `prefer` by omission.
                let inherit = !server.has_tls_settings();
                let (base_mode, base_ca) = (base.sslmode, base.sslrootcert.clone());
                let (base_my_mode, base_my_ca) = (base.ssl_mode, base.ssl_ca.clone());
                base.url = server.url.clone();
                base.host = server.host.clone();
                base.port = server.port;
                base.user = server.user.clone();
                base.password = server.password.clone();
                base.database = Some(admin.clone());
                base.admin_database = admin;
                base.sslmode = server.sslmode;
                base.sslrootcert = server.sslrootcert.clone();
                base.sslcert = server.sslcert.clone();
                base.sslkey = server.sslkey.clone();
                base.ssl_mode = server.ssl_mode;
                base.ssl_ca = server.ssl_ca.clone();
                base.ssl_cert = server.ssl_cert.clone();
                base.ssl_key = server.ssl_key.clone();
                if inherit {
                    (base.sslmode, base.sslrootcert) = (base_mode, base_ca);
                    (base.ssl_mode, base.ssl_ca) = (base_my_mode, base_my_ca);
                }
            }
        }
        config.pool_cache.max_connections = server.max_connections;
        // The [pooler] table fronts the base database's server, not this one.
        config.pooler = server.pooler.clone();
        // A tenant-only server has no base pool.
        config.base.pool.max_size = 0;
        config.base.pool.min_idle = None;
        Ok(config)
    }
}

/// The database a connection URL names: the path of `scheme://…/db`, or `dbname=` of a
/// key=value string; `None` when it names none.
fn url_database(url: &str) -> Option<String> {
    let db = match url.split_once("://") {
        Some((_, rest)) => {
            // The host part ends at the first `/` after the credentials (which end at the
            // last `@`, as the drivers read them).
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let path = host.split_once('/')?.1;
            path.split(['?', '#']).next()?.to_owned()
        }
        None => url
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix("dbname="))?
            .trim_matches('\'')
            .to_owned(),
    };
    let db = percent_decode(&db);
    (!db.is_empty()).then_some(db)
}

/// `%XX` escapes decoded (invalid ones kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_database_comes_from_the_url() {
        assert_eq!(
            url_database("postgres://u:p@ss@h:5432/defaultdb?sslmode=require").as_deref(),
            Some("defaultdb")
        );
        assert_eq!(url_database("mysql://root@h:3306/").as_deref(), None);
        assert_eq!(url_database("postgres://u@h").as_deref(), None);
        assert_eq!(
            url_database("host=h dbname=admin user=u").as_deref(),
            Some("admin")
        );
        assert_eq!(
            url_database("postgres://u@h/my%20db").as_deref(),
            Some("my db")
        );
        let config = Config::postgres("postgres://u@h/base")
            .server("b", ServerConfig::url("postgres://adm@eu-2/defaultdb"))
            .server("c", ServerConfig::url("postgres://adm@eu-3"));
        assert_eq!(
            config.for_server("b").unwrap().base.admin_database,
            "defaultdb"
        );
        assert_eq!(
            config.for_server("c").unwrap().base.admin_database,
            "postgres"
        );
    }

    #[test]
    fn servers_without_tls_keys_take_the_base_mode_and_ca() {
        let mut config = Config::postgres("postgres://u@h/base")
            .server("b", ServerConfig::url("postgres://adm@eu-2/postgres"))
            .server(
                "c",
                ServerConfig::url("postgres://adm@eu-3/postgres?sslmode=require"),
            );
        config.base.sslmode = Some(TlsMode::VerifyFull);
        config.base.sslrootcert = Some("ca.pem".into());
        let b = config.for_server("b").unwrap();
        assert_eq!(b.base.sslmode, Some(TlsMode::VerifyFull));
        assert_eq!(b.base.sslrootcert, Some(PathBuf::from("ca.pem")));
        // Its own settings win, whole: nothing of [base]'s mixes in.
        let c = config.for_server("c").unwrap();
        assert_eq!((c.base.sslmode, c.base.sslrootcert), (None, None));
    }

    #[test]
    fn server_names_sharing_an_environment_variable_are_refused() {
        let config = Config::sqlite("base.sqlite")
            .server("eu-2", ServerConfig::sqlite_folder("a"))
            .server("eu_2", ServerConfig::sqlite_folder("b"));
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("TENORA_SERVER_EU_2_URL"), "{e}");
    }
}
