//! [`Config`]: typed configuration, loaded from `tenora.toml` or built in code.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::secret::{EncryptionKey, KeyRing, SecretString};
use crate::tls::{self, TlsMode, TlsSettings};

/// Environment variable naming the config file (default `tenora.toml`).
pub const ENV_CONFIG: &str = "TENORA_CONFIG";
/// Environment variable overriding `base.url`.
pub const ENV_BASE_URL: &str = "TENORA_BASE_URL";
/// Environment variable overriding `secrets.key` (see [`EncryptionKey`] for the format).
pub const ENV_KEY: &str = "TENORA_KEY";
/// Environment variable overriding `secrets.old_keys`: old keys, separated by commas or
/// whitespace, accepted for reading values they sealed (see [`KeyRing`]).
pub const ENV_OLD_KEYS: &str = "TENORA_OLD_KEYS";

/// Which database server (or engine) holds the base and tenant databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite files.
    Sqlite,
}

impl Client {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Client::Postgres => "postgres",
            Client::Mysql => "mysql",
            Client::Sqlite => "sqlite",
        }
    }

    fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "postgres" | "postgresql" | "pg" => Ok(Client::Postgres),
            "mysql" | "mariadb" => Ok(Client::Mysql),
            "sqlite" | "sqlite3" => Ok(Client::Sqlite),
            "mssql" | "sqlserver" | "tedious" => Err(format!(
                "`{s}` (SQL Server) is not supported: Diesel has no SQL Server backend; \
                 supported clients are postgres, mysql and sqlite"
            )),
            other => Err(format!(
                "unknown client `{other}`; supported clients are postgres, mysql and sqlite"
            )),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Client {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Client::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Connection pool settings (`[tenant.pool]`, `[base.pool]`). Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Most connections a pool holds (default 10).
    pub max_size: u32,
    /// Idle connections a pool keeps open (default none: connections open on demand).
    pub min_idle: Option<u32>,
    /// Seconds to wait for a connection before giving up (default 30).
    pub connection_timeout: u64,
    /// Seconds an idle connection stays open (default 600; 0 keeps them forever).
    pub idle_timeout: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 10,
            min_idle: None,
            connection_timeout: 30,
            idle_timeout: 600,
        }
    }
}

impl PoolConfig {
    pub(crate) fn connection_timeout(&self) -> Duration {
        Duration::from_secs(self.connection_timeout)
    }

    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }

    fn validate(&self, section: &str) -> Result<()> {
        if self.max_size == 0 {
            return Err(Error::config(
                format!("{section}.max_size"),
                "must be at least 1",
            ));
        }
        if self.min_idle.is_some_and(|m| m > self.max_size) {
            return Err(Error::config(
                format!("{section}.min_idle"),
                "must not exceed max_size",
            ));
        }
        if self.connection_timeout == 0 {
            return Err(Error::config(
                format!("{section}.connection_timeout"),
                "must be at least 1 second",
            ));
        }
        Ok(())
    }
}

/// `[base]`: where the base database (with the tenant registry) lives.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseConfig {
    /// The database server kind.
    pub client: Client,
    /// Connection URL of the base database (`postgres://user:pass@host:port/db`). For SQLite,
    /// a file path. Overridden by `TENORA_BASE_URL`.
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
    /// Base database name; for SQLite, the path of the base database file.
    #[serde(default)]
    pub database: Option<String>,
    /// Database that `CREATE DATABASE` runs from (PostgreSQL; default `postgres`).
    #[serde(default = "default_admin_database")]
    pub admin_database: String,
    /// Folder of base migrations (used by the CLI; apps usually embed them).
    #[serde(default = "default_base_migrations")]
    pub migrations_dir: PathBuf,
    /// Folder of base seeds.
    #[serde(default)]
    pub seeds_dir: Option<PathBuf>,
    /// Pool of base-database connections.
    #[serde(default = "base_pool_default")]
    pub pool: PoolConfig,
    /// PostgreSQL: TLS mode, libpq's names: `disable`, `prefer` (default), `require`,
    /// `verify-ca`, `verify-full`. Also `sslmode` in the URL. See [`crate::tls`].
    #[serde(default)]
    pub sslmode: Option<TlsMode>,
    /// PostgreSQL: PEM file of the CA(s) that sign the server's certificate (default: the
    /// built-in web PKI roots). Also `sslrootcert` in the URL.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// PostgreSQL: PEM file of a client certificate to log in with (`hostssl … cert`).
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// PostgreSQL: PEM file of the client certificate's private key.
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
    /// MySQL / MariaDB: TLS mode, MySQL's names: `DISABLED`, `PREFERRED` (default), `REQUIRED`,
    /// `VERIFY_CA`, `VERIFY_IDENTITY`. Also `ssl-mode` in the URL.
    #[serde(default, rename = "ssl-mode")]
    pub ssl_mode: Option<TlsMode>,
    /// MySQL / MariaDB: PEM file of the CA(s) that sign the server's certificate.
    #[serde(default, rename = "ssl-ca")]
    pub ssl_ca: Option<PathBuf>,
    /// MySQL / MariaDB: PEM file of a client certificate.
    #[serde(default, rename = "ssl-cert")]
    pub ssl_cert: Option<PathBuf>,
    /// MySQL / MariaDB: PEM file of the client certificate's key (RSA, PKCS#1).
    #[serde(default, rename = "ssl-key")]
    pub ssl_key: Option<PathBuf>,
}

/// The most warm spares `tenant.spares` may ask for, per server.
const MAX_SPARES: u32 = 1000;

/// `[tenant]`: how tenant databases are named, placed and pooled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Folder of tenant migrations (used by the CLI; apps usually embed them).
    pub migrations_dir: PathBuf,
    /// Folder of tenant seeds.
    pub seeds_dir: Option<PathBuf>,
    /// Prefix of each tenant's database user/role (default `user_`).
    pub user_prefix: String,
    /// Prefix of each tenant's database name (default empty).
    pub database_prefix: String,
    /// SQLite: folder holding tenant database files (default `.`).
    pub database_dir: PathBuf,
    /// SQLite: file name suffix of tenant databases (default `.sqlite`).
    pub database_suffix: String,
    /// Explicit tenant database name template with one `{id}`, e.g. `"tenant_{id}.db"`;
    /// overrides `database_prefix` and (SQLite) `database_suffix`.
    pub database_name: Option<String>,
    /// MySQL: host pattern of tenant users, `'<user>'@'<user_host>'` (default `%`).
    pub user_host: String,
    /// PostgreSQL: provision tenants by cloning a template database kept migrated to the
    /// latest tenant migrations (default `false`).
    pub template: bool,
    /// PostgreSQL with `template`: how many warm spares (tenants cloned ahead, handed over by
    /// renaming) to keep ready on each server that takes new tenants (default 0: none).
    pub spares: u32,
    /// Pool settings of each tenant pool.
    pub pool: PoolConfig,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            migrations_dir: PathBuf::from("migrations/tenants"),
            seeds_dir: None,
            user_prefix: "user_".to_owned(),
            database_prefix: String::new(),
            database_dir: PathBuf::from("."),
            database_suffix: ".sqlite".to_owned(),
            database_name: None,
            user_host: "%".to_owned(),
            template: false,
            spares: 0,
            pool: PoolConfig::default(),
        }
    }
}

/// `[metrics]`: what Tenora's metrics carry (see the README's "Observability").
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Label tenant creations, drops and migrations with the tenant id. Off by default: one
    /// series per tenant is too many for most monitoring systems beyond a small fleet.
    pub tenant_labels: bool,
}

/// `[pool_cache]`: how many tenant pools and server connections Tenora keeps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolCacheConfig {
    /// Most tenant pools kept open; the least recently used is closed to make room
    /// (default 1000).
    pub max_cached_tenants: usize,
    /// Most server connections open at once across every tenant pool, the base pool, the
    /// administrative sessions and migration/provisioning connections. Default: derived from
    /// the server at connect — three quarters of the slots that are free then (PostgreSQL:
    /// `max_connections` less the reserved slots and other clients' connections; MySQL:
    /// `max_connections` less other clients, at most the account's `max_user_connections`),
    /// divided by `replicas`; SQLite has no limit. An explicit value always wins.
    pub max_connections: Option<u32>,
    /// Processes (replicas of one app) that share the server: a derived budget is divided by
    /// this (default 1). Replicas cannot see each other's connections at start.
    pub replicas: u32,
    /// Seconds a request waits for the connection budget before failing with
    /// [`Error::Busy`](crate::Error::Busy) (default 30).
    pub acquire_timeout: u64,
    /// Seconds after which an unused tenant pool is closed (default 600; 0 keeps them).
    pub pool_idle_timeout: u64,
    /// Seconds a tenant found unknown (or not `active`) is remembered, so repeated requests for
    /// it cost no registry query (default 2; 0 remembers nothing). `create_tenant` in this
    /// process forgets it at once; a tenant another process creates is seen within this time.
    pub unknown_tenant_ttl: u64,
}

impl Default for PoolCacheConfig {
    fn default() -> Self {
        PoolCacheConfig {
            max_cached_tenants: 1000,
            max_connections: None,
            replicas: 1,
            acquire_timeout: 30,
            pool_idle_timeout: 600,
            unknown_tenant_ttl: 2,
        }
    }
}

/// `[registry]`: the tenant table in the base database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Table name (default `tenora_tenants`).
    pub table: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            table: "tenora_tenants".to_owned(),
        }
    }
}

/// `[secrets]`: the key that encrypts tenant passwords at rest.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32-byte key, base64 or hex (see [`EncryptionKey`]). Overridden by `TENORA_KEY`.
    #[serde(default)]
    pub key: Option<SecretString>,
    /// Store tenant passwords unencrypted when no key is configured (warned on every store),
    /// and read unencrypted values although a key is configured. Off by default: without a
    /// key, creating a tenant with a password fails.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Old keys (same format as `key`), accepted only for reading the values they sealed, while
    /// `tenora keys rotate` re-seals them with `key`. Overridden by `TENORA_OLD_KEYS`.
    #[serde(default)]
    pub old_keys: Vec<SecretString>,
    /// A command whose standard output is a tenant's database password, for passwords kept in
    /// a vault: every `{id}` in it becomes the tenant id, it is split at whitespace and run
    /// without a shell, and its output is never logged. Empty output means "use the
    /// registry's". Serves every connection Tenora opens as a tenant (see
    /// [`TenoraBuilder::passwords`](crate::TenoraBuilder::passwords)).
    #[serde(default)]
    pub password_command: Option<String>,
    /// Seconds `password_command` may take (default 10).
    #[serde(default = "default_password_command_timeout")]
    pub password_command_timeout: u64,
}

fn default_password_command_timeout() -> u64 {
    10
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            key: None,
            allow_plaintext: false,
            old_keys: Vec::new(),
            password_command: None,
            password_command_timeout: default_password_command_timeout(),
        }
    }
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("allow_plaintext", &self.allow_plaintext)
            .field(
                "old_keys",
                &format_args!("<{} redacted>", self.old_keys.len()),
            )
            // Its arguments may carry a token: only whether it is set.
            .field("password_command", &self.password_command.is_some())
            .field("password_command_timeout", &self.password_command_timeout)
            .finish()
    }
}

/// Tenora's whole configuration.
///
/// Load it from TOML with [`Config::load`] / [`Config::from_path`] / [`Config::from_toml`], or
/// build it in code:
///
/// ```
/// use tenora::Config;
/// let config = Config::sqlite("data/base.sqlite").tenant_database_dir("data/tenants");
/// assert_eq!(config.base.client, tenora::Client::Sqlite);
/// ```
///
/// Relative paths are resolved against the config file's folder (or the current folder for
/// configs built in code). Unknown keys and bad values fail at load with the key's name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The base database.
    pub base: BaseConfig,
    /// Tenant databases.
    #[serde(default)]
    pub tenant: TenantConfig,
    /// The registry table.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// The encryption key.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Pool cache and connection budget.
    #[serde(default)]
    pub pool_cache: PoolCacheConfig,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[pooler]`: a connection pooler in front of the base database's server that tenant
    /// traffic goes through (PostgreSQL; see [`PoolerConfig`](crate::PoolerConfig)).
    /// Administrative work always connects to the server directly.
    #[serde(default)]
    pub pooler: Option<crate::pooler::PoolerConfig>,
    /// `[servers.<name>]`: more database servers for tenant databases (see
    /// [`ServerConfig`](crate::ServerConfig)); empty: the base database's server holds every
    /// tenant.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, crate::server_config::ServerConfig>,
    /// Folder that relative paths are resolved against.
    #[serde(skip)]
    pub root: PathBuf,
}

fn default_admin_database() -> String {
    "postgres".to_owned()
}
fn default_base_migrations() -> PathBuf {
    PathBuf::from("migrations/base")
}
fn base_pool_default() -> PoolConfig {
    PoolConfig {
        max_size: 4,
        ..PoolConfig::default()
    }
}

impl fmt::Debug for BaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseConfig")
            .field("client", &self.client)
            .field("url", &self.url.as_ref().map(|u| redact_url(u.expose())))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("admin_database", &self.admin_database)
            .field("migrations_dir", &self.migrations_dir)
            .field("seeds_dir", &self.seeds_dir)
            .field("pool", &self.pool)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .field("ssl_cert", &self.ssl_cert)
            .field("ssl_key", &self.ssl_key)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base", &self.base)
            .field("tenant", &self.tenant)
            .field("registry", &self.registry)
            .field("secrets", &self.secrets)
            .field("pool_cache", &self.pool_cache)
            .field("metrics", &self.metrics)
            .field("servers", &self.servers)
            .field("root", &self.root)
            .finish()
    }
}

/// Hides the password in a connection string: the `password` of a
/// `scheme://user:password@host/...` URL (up to the last `@`, as tokio-postgres reads it),
/// `password=` query parameters, and `password=` in `key=value` connection strings all become
/// `***`. Errs on the side of hiding too much.
pub fn redact_url(url: &str) -> String {
    let mut out = match url.find("://") {
        Some(scheme_end) => {
            let (head, rest) = url.split_at(scheme_end + 3);
            match rest.rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    match userinfo.find(':') {
                        Some(colon) => format!("{head}{}:***{}", &userinfo[..colon], &rest[at..]),
                        None => url.to_owned(),
                    }
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    out = redact_password_params(&out);
    out
}

/// Replaces the value after every `password=` (any case, optional spaces around `=`, quoted or
/// not) with `***`.
fn redact_password_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("password") {
        let key_end = pos + found + "password".len();
        let after = &text[key_end..];
        let trimmed = after.trim_start();
        if !trimmed.starts_with('=') {
            out.push_str(&text[pos..key_end]);
            pos = key_end;
            continue;
        }
        let value_start = key_end + (after.len() - trimmed.len()) + 1;
        let value = &text[value_start..];
        let lead = value.len() - value.trim_start().len();
        let value = value.trim_start();
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            // Quoted: up to the closing quote (backslash escapes allowed), or the end.
            let mut len = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        len = i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            1 + len
        } else {
            value
                .find(|c: char| c == '&' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        out.push_str(&text[pos..value_start + lead]);
        out.push_str("***");
        pos = value_start + lead + value_len;
    }
    out.push_str(&text[pos..]);
    out
}

impl Config {
    fn with_client(client: Client) -> Self {
        Config {
            base: BaseConfig {
                client,
                url: None,
                host: None,
                port: None,
                user: None,
                password: None,
                database: None,
                admin_database: default_admin_database(),
                migrations_dir: default_base_migrations(),
                seeds_dir: None,
                pool: base_pool_default(),
                sslmode: None,
                sslrootcert: None,
                sslcert: None,
                sslkey: None,
                ssl_mode: None,
                ssl_ca: None,
                ssl_cert: None,
                ssl_key: None,
            },
            tenant: TenantConfig::default(),
            registry: RegistryConfig::default(),
            secrets: SecretsConfig::default(),
            pool_cache: PoolCacheConfig::default(),
            pooler: None,
            metrics: MetricsConfig::default(),
            servers: Default::default(),
            root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// A SQLite config whose base database is the file at `base_path`.
    pub fn sqlite(base_path: impl Into<PathBuf>) -> Self {
        let mut c = Config::with_client(Client::Sqlite);
        c.base.database = Some(base_path.into().to_string_lossy().into_owned());
        c
    }

    /// A PostgreSQL config whose base database is at `url`
    /// (`postgres://user:password@host:port/database`).
    pub fn postgres(url: impl Into<String>) -> Self {
        let mut c = Config::with_client(Client::Postgres);
        c.base.url = Some(SecretString::new(url.into()));
        c
    }

    /// A MySQL / MariaDB config whose base database is at `url`
    /// (`mysql://user:password@host:port/database`).
    pub fn mysql(url: impl Into<String>) -> Self {
        let mut c = Config::with_client(Client::Mysql);
        c.base.url = Some(SecretString::new(url.into()));
        c
    }

    /// Sets the SQLite folder of tenant database files.
    pub fn tenant_database_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tenant.database_dir = dir.into();
        self
    }

    /// Sets the prefix of tenant database names.
    pub fn tenant_database_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.tenant.database_prefix = prefix.into();
        self
    }

    /// Sets the prefix of tenant user/role names.
    pub fn tenant_user_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.tenant.user_prefix = prefix.into();
        self
    }

    /// Sets an explicit tenant database name template containing `{id}` once.
    pub fn tenant_database_name(mut self, template: impl Into<String>) -> Self {
        self.tenant.database_name = Some(template.into());
        self
    }

    /// Sets the tenant pool settings.
    pub fn tenant_pool(mut self, pool: PoolConfig) -> Self {
        self.tenant.pool = pool;
        self
    }

    /// Sends tenant traffic through a connection pooler (`[pooler]`, PostgreSQL); see
    /// [`PoolerConfig`](crate::PoolerConfig).
    pub fn pooler(mut self, pooler: crate::pooler::PoolerConfig) -> Self {
        self.pooler = Some(pooler);
        self
    }

    /// Sets the registry table name.
    pub fn registry_table(mut self, table: impl Into<String>) -> Self {
        self.registry.table = table.into();
        self
    }

    /// Sets the pool cache and connection budget.
    pub fn pool_cache(mut self, pool_cache: PoolCacheConfig) -> Self {
        self.pool_cache = pool_cache;
        self
    }

    /// Sets the encryption key (same format as `TENORA_KEY`).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.secrets.key = Some(SecretString::new(key.into()));
        self
    }

    /// Sets the command that gives tenants' passwords (see
    /// [`SecretsConfig::password_command`]).
    pub fn password_command(mut self, command: impl Into<String>) -> Self {
        self.secrets.password_command = Some(command.into());
        self
    }

    /// Adds old keys accepted for reading (see [`SecretsConfig::old_keys`]).
    pub fn old_keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.secrets
            .old_keys
            .extend(keys.into_iter().map(|k| SecretString::new(k.into())));
        self
    }

    /// Allows storing tenant passwords unencrypted when no key is set (see
    /// [`SecretsConfig::allow_plaintext`]).
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.secrets.allow_plaintext = allow;
        self
    }

    /// Sets the folder relative paths are resolved against.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Loads the config file [`find_file`](Self::find_file) finds, then applies the
    /// environment overrides `TENORA_BASE_URL` and `TENORA_KEY`, then validates.
    ///
    /// ```no_run
    /// # fn main() -> tenora::Result<()> {
    /// let config = tenora::Config::load()?;
    /// # Ok(()) }
    /// ```
    pub fn load() -> Result<Self> {
        Config::from_path(Config::find_file()?)
    }

    /// The config file to load: `$TENORA_CONFIG` when set, else `tenora.toml` in the current
    /// folder or the nearest parent folder that has one (as the `tenora` CLI looks), so an app
    /// run from a subfolder of its project finds it too. The error says where it looked.
    pub fn find_file() -> Result<PathBuf> {
        if let Some(path) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let cwd = std::env::current_dir().map_err(|e| Error::Io {
            context: "cannot read the current folder".to_owned(),
            path: PathBuf::from("."),
            source: e,
        })?;
        cwd.ancestors()
            .map(|dir| dir.join("tenora.toml"))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                Error::config(
                    "config file",
                    format!(
                        "no tenora.toml in {} or any parent folder; create one or set \
                         {ENV_CONFIG}",
                        cwd.display()
                    ),
                )
            })
    }

    /// Loads the TOML file at `path`, applies environment overrides and validates.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            context: "cannot read the config file".to_owned(),
            path: path.to_path_buf(),
            source: e,
        })?;
        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::parse_toml(&text, &path.display().to_string())?;
        config.root = root;
        config.apply_env()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (without environment overrides), validates, and resolves relative
    /// paths against the current folder.
    ///
    /// ```
    /// let config = tenora::Config::from_toml(
    ///     r#"
    ///     [base]
    ///     client = "postgres"
    ///     url = "postgres://app_admin@db.internal:5432/app?sslmode=verify-full"
    ///     sslrootcert = "/etc/ssl/db-ca.pem"
    ///     [tenant]
    ///     database_prefix = "t_"
    ///     "#,
    /// )?;
    /// assert_eq!(config.tls()?.mode, tenora::TlsMode::VerifyFull);
    /// # Ok::<(), tenora::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Self> {
        let config = Config::parse_toml(text, "config")?;
        config.validate()?;
        Ok(config)
    }

    fn parse_toml(text: &str, origin: &str) -> Result<Self> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = without_values(e.message());
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            Error::config(origin, format!("{message}{at}"))
        })?;
        config.root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Ok(config)
    }

    /// Applies `TENORA_BASE_URL`, `TENORA_KEY` and `TENORA_OLD_KEYS` when they are set (and
    /// not empty). `TENORA_BASE_URL` replaces all of `[base]`'s connection settings (`url`,
    /// `host`, `port`, `user`, `password`, `database`); `TENORA_OLD_KEYS` replaces
    /// `secrets.old_keys`.
    pub fn apply_env(&mut self) -> Result<()> {
        let base_url = env_var(ENV_BASE_URL)?;
        let key = env_var(ENV_KEY)?;
        let old_keys = env_var(ENV_OLD_KEYS)?;
        if key.is_some() || old_keys.is_some() {
            self.check_file_key()?;
        }
        self.apply_overrides(base_url, key);
        if let Some(old_keys) = old_keys {
            self.secrets.old_keys = split_keys(&old_keys);
        }
        for (name, server) in &mut self.servers {
            if name == crate::server_config::DEFAULT_SERVER {
                continue;
            }
            if let Some(url) = env_var(&crate::server_config::server_url_var(name))? {
                // As TENORA_BASE_URL: the whole connection, nothing mixed in from the file.
                server.url = Some(SecretString::new(url));
                server.host = None;
                server.port = None;
                server.user = None;
                server.password = None;
            }
        }
        Ok(())
    }

    fn apply_overrides(&mut self, base_url: Option<String>, key: Option<String>) {
        if let Some(url) = base_url {
            // The environment's URL replaces every connection setting of the file, so nothing
            // from the file silently mixes into it.
            self.base.url = Some(SecretString::new(url));
            self.base.host = None;
            self.base.port = None;
            self.base.user = None;
            self.base.password = None;
            self.base.database = None;
        }
        if let Some(key) = key {
            self.secrets.key = Some(SecretString::new(key));
        }
    }

    /// Fails when the file's `secrets.key` is not a valid key, even if `TENORA_KEY` replaces
    /// it: a broken setting is reported, not silently shadowed.
    fn check_file_key(&self) -> Result<()> {
        if let Some(key) = &self.secrets.key {
            EncryptionKey::parse(key.expose()).map_err(|e| {
                Error::config(
                    "secrets.key",
                    format!("{e} (in the config file; TENORA_KEY does not excuse it)"),
                )
            })?;
        }
        for (i, key) in self.secrets.old_keys.iter().enumerate() {
            EncryptionKey::parse(key.expose()).map_err(|e| {
                Error::config(
                    format!("secrets.old_keys[{i}]"),
                    format!("{e} (in the config file; TENORA_OLD_KEYS does not excuse it)"),
                )
            })?;
        }
        Ok(())
    }

    /// Checks every value; errors name the key at fault.
    pub fn validate(&self) -> Result<()> {
        self.base.pool.validate("base.pool")?;
        self.tenant.pool.validate("tenant.pool")?;
        check_name_part("tenant.user_prefix", &self.tenant.user_prefix)?;
        check_name_part("tenant.database_prefix", &self.tenant.database_prefix)?;
        check_identifier("registry.table", &self.registry.table)?;
        self.validate_database_name()?;
        let budget = &self.pool_cache;
        if budget.max_cached_tenants == 0 {
            return Err(Error::config(
                "pool_cache.max_cached_tenants",
                "must be at least 1",
            ));
        }
        // The smallest workable budget depends on the backend: checked at connect.
        if budget.max_connections == Some(0) {
            return Err(Error::config(
                "pool_cache.max_connections",
                "must be at least 1 (leave it out to derive a budget from the server)",
            ));
        }
        if budget.replicas == 0 {
            return Err(Error::config("pool_cache.replicas", "must be at least 1"));
        }
        if self.tenant.user_host.is_empty()
            || !self
                .tenant
                .user_host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".%_-:".contains(&b))
        {
            return Err(Error::config(
                "tenant.user_host",
                "must be a MySQL host pattern of letters, digits and `.%_-:`, e.g. \"%\" or \
                 \"10.0.%\"",
            ));
        }
        self.validate_spares()?;
        if let Some(pooler) = &self.pooler {
            pooler.validate("pooler", self.base.client)?;
        }
        if self.tenant.database_suffix.contains(['/', '\\']) {
            return Err(Error::config(
                "tenant.database_suffix",
                "must not contain a path separator",
            ));
        }
        match self.base.client {
            Client::Sqlite => {
                if self.base.database.is_none() && self.base.url.is_none() {
                    return Err(Error::config(
                        "base.database",
                        "SQLite needs the path of the base database file, e.g. \
                         database = \"data/base.sqlite\"",
                    ));
                }
            }
            Client::Postgres | Client::Mysql => {
                if self.base.url.is_none() && self.base.database.is_none() {
                    return Err(Error::config(
                        "base.url",
                        format!(
                            "set url (or host, port, user, password, database), or the \
                             {ENV_BASE_URL} environment variable"
                        ),
                    ));
                }
            }
        }
        self.key_ring()?;
        if let Some(command) = &self.secrets.password_command {
            if command.split_whitespace().next().is_none() {
                return Err(Error::config(
                    "secrets.password_command",
                    "is empty; name a program (e.g. \"vault-get tenants/{id}\") or remove it",
                ));
            }
            if self.secrets.password_command_timeout == 0 {
                return Err(Error::config(
                    "secrets.password_command_timeout",
                    "must be at least 1 second",
                ));
            }
        }
        self.tls()?;
        self.validate_servers()?;
        Ok(())
    }

    /// The TLS settings of the base server, from `[base]`'s keys and the URL's query
    /// parameters (see [`crate::tls`]); files are not read here.
    pub fn tls(&self) -> Result<TlsSettings> {
        Ok(self.base_url_and_tls()?.1)
    }

    /// The base URL without its TLS parameters (the drivers do not know them all), and the
    /// server's TLS settings.
    pub(crate) fn base_url_and_tls(&self) -> Result<(Option<SecretString>, TlsSettings)> {
        let vocabulary = match self.base.client {
            Client::Mysql => tls::Vocabulary::Mysql,
            Client::Postgres | Client::Sqlite => tls::Vocabulary::Libpq,
        };
        let (url, params) = match (&self.base.url, self.base.client) {
            (Some(url), Client::Postgres | Client::Mysql) => {
                let (url, params) = tls::split_tls_params(url.expose(), vocabulary)?;
                (Some(SecretString::new(url)), params)
            }
            (url, _) => (url.clone(), Vec::new()),
        };
        let settings = tls::resolve(&self.base, self.base.client, &params, &self.root)?;
        Ok((url, settings))
    }

    /// The prefix and suffix around the tenant id in tenant database names: from
    /// `tenant.database_name` when set, else `database_prefix` and (SQLite only)
    /// `database_suffix`.
    pub fn database_affixes(&self) -> (String, String) {
        if let Some((prefix, suffix)) = self
            .tenant
            .database_name
            .as_deref()
            .and_then(|t| t.split_once("{id}"))
        {
            return (prefix.to_owned(), suffix.to_owned());
        }
        let suffix = match self.base.client {
            Client::Sqlite => self.tenant.database_suffix.clone(),
            Client::Postgres | Client::Mysql => String::new(),
        };
        (self.tenant.database_prefix.clone(), suffix)
    }

    fn validate_spares(&self) -> Result<()> {
        let spares = self.tenant.spares;
        if spares == 0 {
            return Ok(());
        }
        if self.base.client != Client::Postgres {
            return Err(Error::config(
                "tenant.spares",
                "warm spares need PostgreSQL (MySQL cannot rename a database; on SQLite a \
                 clone is a file copy, so there is nothing to gain); set it to 0",
            ));
        }
        if !self.tenant.template {
            return Err(Error::config(
                "tenant.spares",
                "warm spares are clones of the template: set tenant.template = true as well",
            ));
        }
        if spares > MAX_SPARES {
            return Err(Error::config(
                "tenant.spares",
                format!("must be at most {MAX_SPARES} (each spare is a database on the server)"),
            ));
        }
        Ok(())
    }

    fn validate_database_name(&self) -> Result<()> {
        const KEY: &str = "tenant.database_name";
        let Some(template) = &self.tenant.database_name else {
            return Ok(());
        };
        if template.matches("{id}").count() != 1 {
            return Err(Error::config(
                KEY,
                "must contain `{id}` exactly once, e.g. \"tenant_{id}.sqlite\"",
            ));
        }
        let (prefix, suffix) = self.database_affixes();
        match self.base.client {
            Client::Sqlite => {
                if template.contains(['/', '\\', '\0']) {
                    return Err(Error::config(KEY, "must be a file name, not a path"));
                }
                Ok(())
            }
            Client::Postgres | Client::Mysql => {
                check_name_part(KEY, &prefix)?;
                check_name_part(KEY, &suffix)
            }
        }
    }

    /// The encryption key, parsed, when one is configured.
    pub fn encryption_key(&self) -> Result<Option<EncryptionKey>> {
        self.secrets
            .key
            .as_ref()
            .map(|k| {
                EncryptionKey::parse(k.expose())
                    .map_err(|e| Error::config("secrets.key / TENORA_KEY", e.to_string()))
            })
            .transpose()
    }

    /// The current key and the old keys ([`KeyRing`]); errors name the setting at fault
    /// (`secrets.old_keys[2] / TENORA_OLD_KEYS`). Old keys need a current key.
    pub fn key_ring(&self) -> Result<KeyRing> {
        let current = self.encryption_key()?;
        let mut old = Vec::with_capacity(self.secrets.old_keys.len());
        for (i, key) in self.secrets.old_keys.iter().enumerate() {
            old.push(EncryptionKey::parse(key.expose()).map_err(|e| {
                Error::config(
                    format!("secrets.old_keys[{i}] / TENORA_OLD_KEYS"),
                    e.to_string(),
                )
            })?);
        }
        if current.is_none() && !old.is_empty() {
            return Err(Error::config(
                "secrets.old_keys / TENORA_OLD_KEYS",
                "old keys only open what they sealed; set secrets.key (or TENORA_KEY) to the \
                 key new passwords are sealed with",
            ));
        }
        Ok(KeyRing::new(current, old))
    }

    /// `path` resolved against [`Config::root`].
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

/// Removes the offending value from serde's "invalid type/value" messages, which would
/// otherwise echo e.g. a password given as a number: "invalid type: integer `1234`, expected a
/// string" becomes "invalid type: integer, expected a string".
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("");
            let expected = rest.find(", expected").map(|i| &rest[i..]).unwrap_or("");
            return format!("{prefix}{kind}{expected}");
        }
    }
    message.to_owned()
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(name, "is not valid UTF-8")),
    }
}

/// The keys of a `TENORA_OLD_KEYS` value: separated by commas and/or whitespace.
fn split_keys(text: &str) -> Vec<SecretString> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(SecretString::new)
        .collect()
}

fn check_name_part(key: &str, value: &str) -> Result<()> {
    if value.len() > 32 {
        return Err(Error::config(key, "must be at most 32 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::config(
            key,
            format!("{value:?} may only contain lowercase letters a-z, digits and `_`"),
        ));
    }
    Ok(())
}

fn check_identifier(key: &str, value: &str) -> Result<()> {
    let ok = value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            key,
            format!(
                "{value:?} is not a valid table name: 1 to 63 characters, lowercase letters, \
                 digits and `_`, not starting with a digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c = Config::from_toml(
            r#"
            [base]
            client = "postgres"
            url = "postgres://admin:s3cret@localhost:5432/app"
            admin_database = "postgres"
            migrations_dir = "migrations/base"
            seeds_dir = "seeds/base"
            [tenant]
            migrations_dir = "migrations/tenants"
            seeds_dir = "seeds/tenants"
            user_prefix = "user_"
            database_prefix = "t_"
            database_dir = "."
            database_suffix = ".sqlite"
            [tenant.pool]
            max_size = 5
            min_idle = 1
            connection_timeout = 3
            idle_timeout = 60
            [registry]
            table = "tenants"
            "#,
        )
        .unwrap();
        assert_eq!(c.base.client, Client::Postgres);
        assert_eq!(c.tenant.pool.max_size, 5);
        assert_eq!(c.tenant.database_prefix, "t_");
        assert_eq!(c.registry.table, "tenants");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("admin:***@localhost"), "{debug}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("[base]\nclient = \"sqlite\"\ndatabase = \"b\"\nfoo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `foo`"), "{e}");
        assert!(e.contains("line 4"), "{e}");

        let e = Config::from_toml("[base]\nclient = \"oracle\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown client `oracle`"), "{e}");

        let e = Config::from_toml("[base]\nclient = \"mssql\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Diesel has no SQL Server backend"), "{e}");

        let e = Config::from_toml(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b\"\n[tenant.pool]\nmax_size = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant.pool.max_size"), "{e}");

        let e = Config::from_toml(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b\"\n[tenant]\nuser_prefix = \"U-\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant.user_prefix"), "{e}");

        let e = Config::from_toml(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b\"\n[registry]\ntable = \"x; drop\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("registry.table"), "{e}");

        let e = Config::from_toml("[base]\nclient = \"sqlite\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("base.database"), "{e}");

        let e = Config::from_toml(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b\"\n[secrets]\nkey = \"short\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TENORA_KEY"), "{e}");
        assert!(!e.contains("short"), "{e}");

        // A broken key in the file is reported even when TENORA_KEY would replace it.
        let file = Config::parse_toml(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b\"\n[secrets]\nkey = \"short\"\n",
            "tenora.toml",
        )
        .unwrap();
        let e = file.check_file_key().unwrap_err().to_string();
        assert!(e.contains("secrets.key") && e.contains("TENORA_KEY"), "{e}");
        assert!(!e.contains("short"), "{e}");
    }

    #[test]
    fn files_resolve_relative_paths_and_env_overrides_win() {
        let dir = std::env::temp_dir().join(format!("tenora-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenora.toml");
        std::fs::write(
            &path,
            "[base]\nclient = \"postgres\"\nurl = \"postgres://a@h/db\"\ndatabase = \"x\"\n",
        )
        .unwrap();
        let mut c = Config::from_path(&path).unwrap();
        assert_eq!(c.root, dir);
        assert_eq!(
            c.resolve(&c.tenant.migrations_dir),
            dir.join("migrations/tenants")
        );
        let key = crate::secret::EncryptionKey::generate().to_base64();
        c.apply_overrides(
            Some("postgres://b@h/other".to_owned()),
            Some(key.expose().to_owned()),
        );
        assert_eq!(
            c.base.url.as_ref().unwrap().expose(),
            "postgres://b@h/other"
        );
        assert!(c.encryption_key().unwrap().is_some());
        let e = Config::from_path(dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the config file"), "{e}");
        assert!(e.contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn old_keys_form_a_key_ring_and_bad_ones_name_their_place() {
        use crate::secret::EncryptionKey;
        let (current, old1, old2) = (
            EncryptionKey::generate(),
            EncryptionKey::generate(),
            EncryptionKey::generate(),
        );
        let toml = format!(
            "[base]\nclient = \"sqlite\"\ndatabase = \"b.sqlite\"\n[secrets]\nkey = \"{}\"\n\
             old_keys = [\"{}\"]\n",
            current.to_base64().expose(),
            old1.to_base64().expose()
        );
        let mut c = Config::from_toml(&toml).unwrap();
        let ring = c.key_ring().unwrap();
        assert_eq!(ring.current().unwrap().id(), current.id());
        assert_eq!(ring.old().len(), 1);
        assert!(
            !format!("{c:?}").contains(old1.to_base64().expose()),
            "never printed"
        );
        // TENORA_OLD_KEYS: commas and/or whitespace.
        let env = format!(
            " {}, {}\n",
            old1.to_base64().expose(),
            old2.to_base64().expose()
        );
        c.secrets.old_keys = split_keys(&env);
        assert_eq!(c.key_ring().unwrap().old().len(), 2);
        c.secrets.old_keys.push(SecretString::new("not-a-key"));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("secrets.old_keys[2]"), "{e}");
        assert!(!e.contains("not-a-key"), "{e}");
        // Old keys without a current key.
        let e = Config::sqlite("b.sqlite")
            .old_keys([old1.to_base64().expose()])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("set secrets.key (or TENORA_KEY)"), "{e}");
    }

    #[test]
    fn database_name_templates() {
        let c = Config::sqlite("b.sqlite").tenant_database_name("tenant_{id}.db");
        c.validate().unwrap();
        assert_eq!(c.database_affixes(), ("tenant_".into(), ".db".into()));
        let c = Config::sqlite("b.sqlite");
        assert_eq!(c.database_affixes(), ("".into(), ".sqlite".into()));
        let e = Config::sqlite("b.sqlite")
            .tenant_database_name("x")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("tenant.database_name"), "{e}");
        let e = Config::sqlite("b.sqlite")
            .tenant_database_name("../{id}")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a path"), "{e}");
        let e = Config::postgres("postgres://u@h/db")
            .tenant_database_name("{id}.db")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("tenant.database_name"), "{e}");
        let pg = Config::postgres("postgres://u@h/db").tenant_database_name("t_{id}_db");
        assert_eq!(pg.database_affixes(), ("t_".into(), "_db".into()));
    }

    #[test]
    fn budget_keys_parse_and_bad_values_name_the_key() {
        let base = "[base]\nclient = \"postgres\"\nurl = \"postgres://u@h/db\"\n";
        let c = Config::from_toml(&format!("{base}[pool_cache]\nreplicas = 3\n")).unwrap();
        assert_eq!(c.pool_cache.replicas, 3);
        assert_eq!(c.pool_cache.max_connections, None, "derived unless set");
        for (key, toml) in [
            ("pool_cache.replicas", "replicas = 0"),
            ("pool_cache.max_connections", "max_connections = 0"),
        ] {
            let e = Config::from_toml(&format!("{base}[pool_cache]\n{toml}\n"))
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn type_errors_do_not_echo_values() {
        let e = Config::from_toml(
            "[base]\nclient = \"postgres\"\nuser = \"u\"\npassword = 987654321\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("invalid type: integer, expected a string"),
            "{e}"
        );
        assert!(e.contains("line 4"), "{e}");
        assert!(!e.contains("987654321"), "{e}");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(
            redact_url("postgres://u:pa/ss?x@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=hunter2&sslmode=off"),
            "postgres://h/db?user=u&password=***&sslmode=off"
        );
        assert_eq!(
            redact_url("host=h user=u password = 'hun ter2' dbname=db"),
            "host=h user=u password = *** dbname=db"
        );
        assert_eq!(redact_url("host=h PASSWORD=x"), "host=h PASSWORD=***");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("base.sqlite"), "base.sqlite");
    }
}
