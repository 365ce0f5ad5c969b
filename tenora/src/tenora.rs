//! [`Tenora`]: the handle an application keeps — registry, pools, migrations, provisioning.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::backend::{Backend, Server as _, Target};
use crate::budget::plan::BudgetPlan;
use crate::budget::{Budget, Budgeted, Slice};
use crate::config::Config;
use crate::error::{Error, Result, Wait};
use crate::migrate::{self, MigrationOp};
use crate::migrations::{Migrations, Seeds};
use crate::password_provider::PasswordProvider;
use crate::pool::{Idle, ManagedPool, PooledConn};
use crate::pool_cache::{CacheStats, PoolCache};
use crate::registry::{RegistryConnection as _, StoredTenant, TenantRecord, TenantState};
use crate::secret::{self, KeyRing, SecretString};
use crate::servers::{ServerSlot, Servers};
use crate::tenant_id::TenantId;

/// Whether `error` says the server refused a tenant's password.
pub(crate) fn is_auth_failure(error: &Error) -> bool {
    match error {
        Error::Connect { source, .. } => crate::budget::is_auth_failure(source),
        _ => false,
    }
}

/// Tenora's handle: cheap to clone, share it across your app.
///
/// ```no_run
/// # async fn demo() -> tenora::Result<()> {
/// use tenora::{Config, SqliteTenora, TenantId};
/// const TENANT_MIGRATIONS: tenora::Migrations = tenora::Migrations::empty();
///
/// let tenora = SqliteTenora::builder(Config::sqlite("base.sqlite"))
///     .tenant_migrations(TENANT_MIGRATIONS)
///     .connect()
///     .await?;
/// let acme = tenora.tenant_id("acme")?;
/// tenora.create_tenant(&acme, None).await?;
/// let mut conn = tenora.tenant_conn(&acme).await?; // pooled, per tenant
/// # Ok(()) }
/// ```
pub struct Tenora<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Tenora<B> {
    fn clone(&self) -> Self {
        Tenora {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Tenora<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config's secrets: only what identifies this handle.
        f.debug_struct("Tenora")
            .field("base", &self.default_server().describe_base())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner<B: Backend> {
    /// The database servers, the base database's first; each with its own budget.
    servers: Servers<B>,
    config: Config,
    keys: KeyRing,
    base_pool: Arc<ManagedPool<B>>,
    // Pools are shared as one Arc: a cache hit costs a single reference-count increment.
    tenants: Arc<PoolCache<Arc<ManagedPool<B>>>>,
    base_migrations: Migrations,
    base_seeds: Seeds,
    tenant_migrations: Migrations,
    tenant_seeds: Seeds,
    /// Passwords from outside the registry (the builder's provider or
    /// `secrets.password_command`).
    passwords: Option<Arc<PasswordProvider>>,
    /// Tenants this process is creating, dropping or repairing (see `lease`).
    leases: crate::lease::Held,
    /// Tenants recently found unknown (see `unknown`).
    unknown: crate::unknown::UnknownTenants,
}

/// Sets up a [`Tenora`]: the config plus the migrations and seeds to use.
#[must_use]
pub struct TenoraBuilder<B: Backend> {
    config: Config,
    base_migrations: Migrations,
    base_seeds: Seeds,
    tenant_migrations: Migrations,
    tenant_seeds: Seeds,
    passwords: Option<Arc<PasswordProvider>>,
    backend: PhantomData<B>,
}

impl<B: Backend> TenoraBuilder<B> {
    /// Migrations of the base database (usually `base_schema::MIGRATIONS`, which creates the
    /// registry).
    pub fn base_migrations(mut self, migrations: Migrations) -> Self {
        self.base_migrations = migrations;
        self
    }

    /// Seeds of the base database.
    pub fn base_seeds(mut self, seeds: Seeds) -> Self {
        self.base_seeds = seeds;
        self
    }

    /// Migrations of every tenant database.
    pub fn tenant_migrations(mut self, migrations: Migrations) -> Self {
        self.tenant_migrations = migrations;
        self
    }

    /// Seeds run on every new tenant database.
    pub fn tenant_seeds(mut self, seeds: Seeds) -> Self {
        self.tenant_seeds = seeds;
        self
    }

    /// A password provider for apps that keep tenant database passwords outside the registry
    /// (a vault, a secrets manager): every connection Tenora opens as a tenant — pools of
    /// `tenant_conn` and the resolver, migrations, seeds — asks it first; `Ok(None)` falls back
    /// to the password sealed in the registry. Asked when a pool is built or a migration
    /// connects, not per query. Replaces `secrets.password_command`; a resolver's own provider
    /// overrides it per request.
    ///
    /// ```no_run
    /// # async fn demo(config: tenora::Config) -> tenora::Result<()> {
    /// use tenora::{PgTenora, SecretString, TenantId};
    ///
    /// async fn from_vault(id: TenantId) -> Result<Option<SecretString>, std::io::Error> {
    ///     // e.g. read `tenants/<id>` from your secrets manager
    ///     Ok(std::env::var(format!("PW_{id}")).ok().map(SecretString::new))
    /// }
    /// let tenora = PgTenora::builder(config).passwords(from_vault).connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn passwords<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<Option<SecretString>, E>>
            + Send
            + 'static,
        E: Into<crate::error::BoxError>,
    {
        self.passwords = Some(crate::password_provider::boxed(provider));
        self
    }

    /// Validates the config and opens the base pool (checking that the base database answers).
    pub async fn connect(self) -> Result<Tenora<B>> {
        let config = self.config;
        config.validate()?;
        check_client::<B>(&config)?;
        let keys = config.key_ring()?;
        let backend = B::Server::from_config(&config)?;
        if keys.current().is_none() && backend.uses_passwords() {
            if config.secrets.allow_plaintext {
                tracing::warn!(
                    "no encryption key configured: tenant passwords are stored in plain text \
                     (secrets.allow_plaintext); set TENORA_KEY to encrypt them at rest"
                );
            } else {
                tracing::warn!(
                    "no encryption key configured: creating tenants will fail until TENORA_KEY \
                     is set (or secrets.allow_plaintext = true)"
                );
            }
        }
        // Connecting directly first fails fast with the real cause (bad host, password, ...);
        // on that connection, read the server's limit unless the budget is configured.
        let mut first = backend.connect_base().await?;
        backend.learn_server(&mut first).await?;
        let limits = &config.pool_cache;
        // `[servers.default] max_connections`, else `[pool_cache] max_connections`.
        let mut budget_config = config.clone();
        budget_config.pool_cache.max_connections =
            config.placement_of(crate::server_config::DEFAULT_SERVER).2;
        let server = match budget_config.pool_cache.max_connections {
            Some(_) => None,
            None => backend.server_limits(&mut first).await?,
        };
        let plan =
            BudgetPlan::new(&budget_config, B::ADMIN_CONNECTIONS, server).map_err(
                |e| match config.servers.get(crate::server_config::DEFAULT_SERVER) {
                    Some(s) if s.max_connections.is_some() => {
                        e.under_server(crate::server_config::DEFAULT_SERVER)
                    }
                    _ => e,
                },
            )?;
        if plan.raised_to_minimum {
            tracing::warn!("{plan}");
        } else {
            tracing::info!("{plan}");
        }
        let tenants = Arc::new(PoolCache::new(limits.max_cached_tenants));
        let base_manager = backend.base_manager();
        let servers = Servers::build(&config, (backend, plan), &tenants).await?;
        let default = servers.default_slot();
        let permit = default
            .budget
            .acquire(Slice::Base)
            .await
            .map_err(|e| e.busy(crate::backend::Server::<B>::describe_base(&default.server)))?;
        let base_pool = Arc::new(ManagedPool::new(
            &config.base.pool,
            "base.pool",
            base_manager,
            Arc::clone(&default.budget),
            Slice::Base,
            Budgeted::new(first, permit),
        ));
        let passwords = self.passwords.or_else(|| {
            let command = config.secrets.password_command.as_deref()?;
            let timeout = Duration::from_secs(config.secrets.password_command_timeout);
            Some(crate::password_provider::command(command, timeout))
        });
        let idle = Duration::from_secs(limits.pool_idle_timeout);
        let unknown_ttl = Duration::from_secs(limits.unknown_tenant_ttl);
        let tenora = Tenora {
            inner: Arc::new(Inner {
                servers,
                config,
                keys,
                base_pool,
                tenants,
                base_migrations: self.base_migrations,
                base_seeds: self.base_seeds,
                tenant_migrations: self.tenant_migrations,
                tenant_seeds: self.tenant_seeds,
                passwords,
                leases: crate::lease::Held::default(),
                unknown: crate::unknown::UnknownTenants::new(unknown_ttl),
            }),
        };
        if !idle.is_zero() {
            spawn_reaper(Arc::downgrade(&tenora.inner.tenants), idle);
        }
        Ok(tenora)
    }
}

/// Closes tenant pools unused for `idle`, until the Tenora is dropped.
fn spawn_reaper<P: crate::pool_cache::CachedPool>(
    cache: std::sync::Weak<PoolCache<P>>,
    idle: Duration,
) {
    let every = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cache) = cache.upgrade() else { break };
            let closed = cache.reap_idle(idle);
            if closed > 0 {
                tracing::debug!(closed, "closed idle tenant pools");
            }
        }
    });
}

impl<B: Backend> Tenora<B> {
    /// Starts setting up a Tenora for `config`.
    ///
    /// ```no_run
    /// # async fn demo() -> tenora::Result<()> {
    /// use tenora::{Config, SqliteTenora};
    /// // const BASE: tenora::Migrations = tenora::embed_migrations!("migrations/base");
    /// # const BASE: tenora::Migrations = tenora::Migrations::empty();
    /// # const TENANT: tenora::Migrations = tenora::Migrations::empty();
    /// let tenora = SqliteTenora::builder(Config::sqlite("data/base.sqlite"))
    ///     .base_migrations(BASE)
    ///     .tenant_migrations(TENANT)
    ///     .connect()
    ///     .await?;
    /// tenora.migrate_base().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(config: Config) -> TenoraBuilder<B> {
        TenoraBuilder {
            config,
            base_migrations: Migrations::empty(),
            base_seeds: Seeds::empty(),
            tenant_migrations: Migrations::empty(),
            tenant_seeds: Seeds::empty(),
            passwords: None,
            backend: PhantomData,
        }
    }

    /// Checks `config` as [`connect`](TenoraBuilder::connect) would, for this backend and
    /// every configured server — keys, TLS files, URLs — without connecting to anything.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use tenora::{Config, SqliteTenora};
    /// let err = SqliteTenora::check_config(&Config::postgres("postgres://u@h/db")).unwrap_err();
    /// assert!(err.to_string().contains("base.client"));
    /// # }
    /// ```
    pub fn check_config(config: &Config) -> Result<()> {
        config.validate()?;
        check_client::<B>(config)?;
        for name in config.server_names() {
            B::Server::from_config(&config.for_server(name)?).map_err(|e| match name {
                crate::server_config::DEFAULT_SERVER => e,
                name => e.under_server(name),
            })?;
        }
        Ok(())
    }

    /// Creates the base database of `config` if it does not exist yet (PostgreSQL: `CREATE
    /// DATABASE` from the admin database; SQLite: the file). Returns whether it was created.
    pub async fn create_base_database(config: &Config) -> Result<bool> {
        config.validate()?;
        check_client::<B>(config)?;
        B::Server::from_config(config)?.create_base().await
    }

    /// Builds or refreshes the template database that `create_tenant` clones when
    /// `tenant.template` is on (PostgreSQL). Rebuilt only when the tenant migrations changed.
    /// Returns whether a template is in use.
    pub async fn prepare_template(&self) -> Result<bool> {
        if !self.inner.config.tenant.template {
            return Ok(false);
        }
        // Each server keeps its own template; one that does not answer is skipped (its
        // tenants are created from scratch until it has one).
        let mut any = false;
        let mut last_error = None;
        for slot in self.inner.servers.all() {
            match self.prepare_template_on(slot).await {
                Ok(used) => any |= used,
                Err(e) if self.inner.servers.all().len() > 1 => {
                    tracing::warn!(server = %slot.name, error = %e, "could not prepare the template on this server");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        match last_error {
            Some(e) if !any => Err(e),
            _ => Ok(any),
        }
    }

    async fn prepare_template_on(&self, slot: &Arc<ServerSlot<B>>) -> Result<bool> {
        // Rebuilding a template opens one connection to it: count it against the budget.
        let permit = slot
            .budget
            .acquire(Slice::Work)
            .await
            .map_err(|e| e.busy(format!("the template database on server `{}`", slot.name)))?;
        // On a task of its own: a caller that gives up (a start-up timeout) must not leave the
        // template's lock held half-way through a rebuild.
        let (this, slot) = (self.clone(), Arc::clone(slot));
        let work = async move {
            let _permit = permit;
            let migrations = &this.inner.tenant_migrations;
            slot.server
                .prepare_template(migrations, &migrations.fingerprint())
                .await
        };
        match tokio::spawn(work).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Cancelled {
                what: "the template rebuild".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// How tenant ids map to database and user names (prefixes, length limits, reserved
    /// names), as on the server of the base database.
    pub fn naming(&self) -> &crate::naming::Naming {
        self.default_server().naming()
    }

    /// Whether a database with tenant `id`'s name exists on any configured server (registered
    /// or not): for checks and tests; changes go through `create_tenant` / `drop_tenant`.
    pub async fn tenant_database_exists(&self, id: &TenantId) -> Result<bool> {
        for slot in self.inner.servers.all() {
            if slot.server.database_exists(id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every server tenants can be on — the configured ones (the base database's server,
    /// `default`, first) and any that only registry rows name — with its tenant count, weight,
    /// whether it takes new tenants, its connection budget, and whether it answers now (one
    /// connection each, counted against its budget).
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
    /// for server in tenora.server_status().await? {
    ///     println!("{}: {} tenants, reachable: {}", server.name, server.tenants, server.reachable);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn server_status(&self) -> Result<Vec<crate::servers::ServerStatus>> {
        let mut counts: std::collections::BTreeMap<String, u64> = {
            let mut conn = self.base_conn().await?;
            conn.registry_server_counts(self.table())
                .await
                .map_err(|e| self.registry_error_any(e, "cannot count tenants per server"))?
                .into_iter()
                .map(|c| (c.server, u64::try_from(c.tenants).unwrap_or(0)))
                .collect()
        };
        // In parallel: a server that does not answer costs one connect timeout, not one each.
        let probes: Vec<_> = self
            .inner
            .servers
            .all()
            .iter()
            .map(|slot| {
                let (this, slot) = (self.clone(), Arc::clone(slot));
                tokio::spawn(async move {
                    let probe = this
                        .connect_budgeted(
                            &slot.budget,
                            Slice::Work,
                            || slot.server.describe_base(),
                            async { slot.server.connect_base().await },
                        )
                        .await;
                    probe
                        .err()
                        .map(|e| crate::config::redact_url(&e.to_string()))
                })
            })
            .collect();
        let mut status = Vec::new();
        for (slot, probe) in self.inner.servers.all().iter().zip(probes) {
            let error = match probe.await {
                Ok(error) => error,
                Err(e) => Some(format!("the probe failed: {e}")),
            };
            status.push(crate::servers::ServerStatus {
                name: slot.name.clone(),
                configured: true,
                weight: slot.weight,
                accepts_new_tenants: slot.accepts_new,
                tenants: counts.remove(&slot.name).unwrap_or(0),
                max_connections: slot.budget.max(),
                open_connections: slot.budget.open(),
                reachable: error.is_none(),
                error,
            });
        }
        for (name, tenants) in counts {
            status.push(crate::servers::ServerStatus {
                error: Some(format!(
                    "not configured: registry rows place {tenants} tenant(s) here; add \
                     [servers.{name}]"
                )),
                name,
                configured: false,
                weight: 0,
                accepts_new_tenants: false,
                tenants,
                max_connections: None,
                open_connections: 0,
                reachable: false,
            });
        }
        Ok(status)
    }

    /// The server of the base database (which also takes the tenant leases).
    pub(crate) fn default_server(&self) -> &B::Server {
        &self.inner.servers.default_slot().server
    }

    /// The servers, the default one first.
    pub(crate) fn servers(&self) -> &Servers<B> {
        &self.inner.servers
    }

    /// The server that holds tenant `stored`'s database, as its registry row says.
    pub(crate) fn server_of(&self, stored: &StoredTenant) -> Result<&Arc<ServerSlot<B>>> {
        self.inner.servers.named(&stored.record.server)
    }

    /// Whether tenants get their own database user with a password on this backend.
    pub(crate) fn uses_passwords(&self) -> bool {
        self.default_server().uses_passwords()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The encryption keys: the current one and the old ones accepted for reading.
    pub(crate) fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    pub(crate) fn unknown_tenants(&self) -> &crate::unknown::UnknownTenants {
        &self.inner.unknown
    }

    pub(crate) fn leases(&self) -> &crate::lease::Held {
        &self.inner.leases
    }

    pub(crate) fn table(&self) -> &str {
        &self.inner.config.registry.table
    }

    pub(crate) fn tenant_migrations(&self) -> &Migrations {
        &self.inner.tenant_migrations
    }

    pub(crate) fn tenant_seeds(&self) -> &Seeds {
        &self.inner.tenant_seeds
    }

    /// Validates `id` as a [`TenantId`] and checks that its database and user names fit this
    /// backend and configuration (length after prefixes, reserved names).
    pub fn tenant_id(&self, id: &str) -> Result<TenantId> {
        let id = TenantId::new(id)?;
        self.check_names(&id)?;
        Ok(id)
    }

    /// Checks that `id`'s database and user names fit every server (their limits may differ:
    /// MySQL and MariaDB user names).
    pub(crate) fn check_names(&self, id: &TenantId) -> Result<()> {
        for slot in self.inner.servers.all() {
            slot.server.naming().check(id)?;
        }
        Ok(())
    }

    /// A pooled connection to the base database.
    pub async fn base_conn(&self) -> Result<PooledConn<B>> {
        self.inner
            .base_pool
            .get(|| self.default_server().describe_base())
            .await
    }

    /// A pooled connection to tenant `id`'s database, as the tenant's own user.
    ///
    /// The first call for a tenant looks it up in the registry (it must be `active`, else
    /// [`Error::UnknownTenant`]), opens its password and creates its pool; concurrent first
    /// calls share that work. Later calls take a connection from the cached pool.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_async::RunQueryDsl;
    /// let acme = tenora.tenant_id("acme")?;
    /// let mut conn = tenora.tenant_conn(&acme).await?; // back to the pool when dropped
    /// diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    /// # Ok(()) }
    /// ```
    pub async fn tenant_conn(&self, id: &TenantId) -> Result<PooledConn<B>> {
        // The hit path: an idle connection of a cached pool, taken without waiting.
        match self.inner.tenants.try_hit(id, ManagedPool::take_idle) {
            Some(Idle::Live(conn)) => return Ok(conn),
            Some(Idle::Stale(conn, pool)) => {
                if let Some(conn) = pool.checked(conn).await {
                    return Ok(conn);
                }
            }
            Some(Idle::Broken(conn)) => {
                tracing::debug!(tenant = %id, "closed a pooled connection whose session had ended");
                drop(conn);
            }
            None => {}
        }
        let pool = self.tenant_pool(id, None).await?;
        match self.conn_from(id, &pool).await {
            // The server refused the pool's password: it was rotated (maybe by another
            // process). The pool left the cache; look the password up again, once.
            Err(e) if is_auth_failure(&e) => {
                tracing::debug!(tenant = %id, "password refused; reading it again");
                let pool = self.tenant_pool(id, None).await?;
                self.conn_from(id, &pool).await
            }
            result => result,
        }
    }

    /// A connection from tenant `id`'s `pool`. When connecting failed (the database may have
    /// been dropped, or the password changed, by another process), the pool leaves the cache so
    /// the next call looks the tenant up again.
    pub(crate) async fn conn_from(
        &self,
        id: &TenantId,
        pool: &Arc<ManagedPool<B>>,
    ) -> Result<PooledConn<B>> {
        let result = pool.get(|| pool.target().to_owned()).await;
        if result.is_err() && pool.connect_failed() {
            self.inner
                .tenants
                .evict_if(id, |cached| Arc::ptr_eq(cached, pool));
        }
        result
    }

    /// Tenant `id`'s cached pool, built on a miss (with the password from `passwords` when it
    /// gives one, else from the registry).
    pub(crate) async fn tenant_pool(
        &self,
        id: &TenantId,
        passwords: Option<&PasswordProvider>,
    ) -> Result<Arc<ManagedPool<B>>> {
        self.inner
            .tenants
            .get_or_try_init(id, || {
                self.build_tenant_pool(id, passwords)
                    .instrument(tracing::debug_span!("tenora.tenant_pool", tenant = %id))
            })
            .await
    }

    async fn build_tenant_pool(
        &self,
        id: &TenantId,
        passwords: Option<&PasswordProvider>,
    ) -> Result<Arc<ManagedPool<B>>> {
        let stored = self.active_tenant(id).await?;
        let slot = self.server_of(&stored)?;
        let candidates = self.tenant_passwords(&stored, passwords).await?;
        tracing::debug!(server = %slot.name, "creating tenant pool");
        let (first, password) = self
            .connect_tenant_any(slot, id, candidates, Slice::Pools)
            .await?;
        Ok(Arc::new(
            ManagedPool::new(
                &self.inner.config.tenant.pool,
                "tenant.pool",
                slot.server.tenant_manager(id, password.as_ref()),
                Arc::clone(&slot.budget),
                Slice::Pools,
                first,
            )
            .describing(self.describe_tenant_on(slot, id)),
        ))
    }

    /// One direct connection to tenant `id` with the first of `candidates` the server accepts
    /// (two while a password rotation is in progress; none without passwords); returns it and
    /// the password used.
    pub(crate) async fn connect_tenant_any(
        &self,
        slot: &ServerSlot<B>,
        id: &TenantId,
        candidates: Vec<SecretString>,
        slice: Slice,
    ) -> Result<(Budgeted<B::Connection>, Option<SecretString>)> {
        let mut candidates = candidates.into_iter().peekable();
        loop {
            let password = candidates.next();
            match self
                .connect_tenant_budgeted(slot, id, password.as_ref(), slice)
                .await
            {
                Ok(conn) => return Ok((conn, password)),
                Err(e) if candidates.peek().is_some() && is_auth_failure(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One direct connection to tenant `id`, counted against `slice` of the connection budget
    /// (a pool's first connection: [`Slice::Pools`]; migrations and seeds: [`Slice::Work`]).
    pub(crate) async fn connect_tenant_budgeted(
        &self,
        slot: &ServerSlot<B>,
        id: &TenantId,
        password: Option<&SecretString>,
        slice: Slice,
    ) -> Result<Budgeted<B::Connection>> {
        let label = self.server_label(slot);
        let describe = || self.describe_tenant_on(slot, id);
        self.connect_budgeted(&slot.budget, slice, describe, async {
            slot.server
                .connect_tenant(
                    id,
                    password,
                    if slice == Slice::Pools {
                        crate::backend::server::Route::Traffic
                    } else {
                        crate::backend::server::Route::Direct
                    },
                )
                .await
                .map_err(|e| e.on_server(&label))
        })
        .await
    }

    /// Tenant `id`'s database on `slot`, for messages (no credentials).
    pub(crate) fn describe_tenant_on(&self, slot: &ServerSlot<B>, id: &TenantId) -> String {
        slot.server.describe_tenant(id) + &self.server_label(slot)
    }

    /// ` on server `<name>``, for messages about a tenant's database, once more than one
    /// server is configured (empty otherwise).
    pub(crate) fn server_label(&self, slot: &ServerSlot<B>) -> String {
        if self.inner.servers.all().len() > 1 {
            format!(" on server `{}`", slot.name)
        } else {
            String::new()
        }
    }

    /// Opens a connection with `connect` under a permit of `slice`. A server out of connection
    /// slots makes the budget shrink and the caller get [`Error::Busy`].
    async fn connect_budgeted(
        &self,
        budget: &Arc<Budget>,
        slice: Slice,
        target: impl Fn() -> String,
        connect: impl std::future::Future<Output = Result<B::Connection>>,
    ) -> Result<Budgeted<B::Connection>> {
        let permit = budget.acquire(slice).await.map_err(|e| e.busy(target()))?;
        match connect.await {
            Ok(conn) => Ok(Budgeted::new(conn, permit)),
            Err(Error::Connect { target, source }) => Err(match budget.refusal(&source, permit) {
                Some(message) => Error::Busy {
                    target,
                    wait: Wait::Server,
                    message,
                },
                None => Error::Connect { target, source },
            }),
            Err(e) => Err(e),
        }
    }

    /// Closes tenant `id`'s cached pool (the next `tenant_conn` builds a new one). Returns
    /// whether one was cached.
    pub fn evict(&self, id: &TenantId) -> bool {
        self.inner.tenants.evict(id)
    }

    /// Closes every cached tenant pool.
    pub fn close_all(&self) {
        self.inner.tenants.clear();
    }

    /// Pool cache and connection budget counters.
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.inner.tenants.stats();
        let default = &self.inner.servers.default_slot().budget;
        stats.budget_source = default.plan().source;
        stats.max_connections = Some(0);
        for slot in self.inner.servers.all() {
            let budget = &slot.budget;
            stats.open_connections += budget.open();
            // The sum of the servers' budgets; none when any server has none.
            stats.max_connections = stats.max_connections.zip(budget.max()).map(|(a, b)| a + b);
            let (waits, wait_time) = budget.waits();
            stats.waits += waits;
            stats.wait_time += wait_time;
            stats.busy += budget.busy();
            stats.refused_by_server += budget.refused();
        }
        stats
    }

    /// Publishes the pool cache's figures ([`stats`](Self::stats)) to the installed
    /// [`metrics`] recorder: call it from your exporter's scrape handler, or on a timer for
    /// push-style exporters. Events (creations, drops, migrations, budget waits, resolver
    /// outcomes) are recorded as they happen; the names are listed in the README's
    /// "Observability". Without a recorder it does nothing. The figures are process-wide
    /// series without an instance label: publish them from one `Tenora` per process.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) {
    /// // A push-style exporter: publish every 10 s.
    /// let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    /// loop {
    ///     every.tick().await;
    ///     tenora.record_metrics();
    /// }
    /// # }
    /// ```
    pub fn record_metrics(&self) {
        crate::telemetry::publish(&self.stats());
        for slot in self.inner.servers.all() {
            let budget = &slot.budget;
            crate::telemetry::publish_server(&crate::telemetry::ServerFigures {
                name: &slot.name,
                open: budget.open(),
                max: budget.max(),
                refused: budget.refused(),
                busy: budget.busy(),
            });
        }
    }

    /// `id`, when metrics carry tenant labels (`[metrics] tenant_labels`).
    pub(crate) fn metrics_tenant<'a>(&self, id: &'a TenantId) -> Option<&'a TenantId> {
        self.config().metrics.tenant_labels.then_some(id)
    }

    /// Runs `op` on `target` with the backend and records it (see `telemetry`).
    pub(crate) async fn run_migrations_observed(
        &self,
        server: &B::Server,
        target: Target<'_>,
        conn: B::Connection,
        migrations: crate::migrations::Migrations,
        op: MigrationOp,
        guards: crate::migrate::Guards,
    ) -> std::result::Result<(B::Connection, crate::migrate::Ran), crate::error::BoxError> {
        let started = std::time::Instant::now();
        let (base, tenant) = match target {
            Target::Base => (true, None),
            Target::Tenant(id) => (false, self.metrics_tenant(id)),
        };
        let result =
            crate::migrate::run_locked::<B>(server, target, conn, migrations, op.clone(), guards)
                .await;
        crate::telemetry::migration_run(
            base,
            tenant,
            &op,
            started.elapsed(),
            result.as_ref().ok().map(|(_, ran)| ran.touched.len()),
        );
        result
    }

    /// The connection budget as set up at connect: its size, where it came from (configured,
    /// or derived from the server's limit) and how it is split. Its `Display` is the line
    /// Tenora logs at start. [`stats`](Self::stats) has the size now (it shrinks for a while
    /// when the server refuses connections).
    pub fn budget(&self) -> &BudgetPlan {
        self.inner.servers.default_slot().budget.plan()
    }

    /// The registry row of tenant `id`, if registered (in any state).
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
        let mut conn = self.base_conn().await?;
        Ok(self.registry_get_on(&mut conn, id).await?.map(|s| s.record))
    }

    /// Every registered tenant, ordered by id. Passwords are never returned. Malformed rows
    /// (see [`Tenora::list_registry`]) are left out, with a warning each.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        let (tenants, malformed) = self.list_registry().await?;
        for bad in &malformed {
            tracing::warn!(row = %bad.id, problem = %bad.problem, "skipping a malformed registry row");
        }
        Ok(tenants)
    }

    /// Every registry row, ordered by id: the tenants, and the rows Tenora cannot read as one
    /// ([`MalformedRow`]: an invalid id, an unknown state), which `drop_tenant` or
    /// [`Tenora::forget_malformed_row`] remove.
    ///
    /// [`MalformedRow`]: crate::registry::MalformedRow
    pub async fn list_registry(
        &self,
    ) -> Result<(Vec<TenantRecord>, Vec<crate::registry::MalformedRow>)> {
        let rows = self.registry_rows().await?;
        let mut tenants = Vec::with_capacity(rows.len());
        let mut malformed = Vec::new();
        for row in rows {
            match row.parse() {
                Ok(stored) => tenants.push(stored.record),
                Err(bad) => malformed.push(bad),
            }
        }
        Ok((tenants, malformed))
    }

    /// Every registry row as stored (passwords sealed), ordered by id.
    pub(crate) async fn registry_rows(&self) -> Result<Vec<crate::registry::RawRow>> {
        let mut conn = self.base_conn().await?;
        conn.registry_list(self.table())
            .await
            .map_err(|e| self.registry_error_any(e, "cannot list tenants"))
    }

    /// Deletes the registry row `id` when its id is not a valid tenant id — a row no other call
    /// can name. Touches no database or user (their names cannot be derived from an invalid
    /// id). Returns whether such a row was deleted; a valid id is refused (use `drop_tenant`).
    pub async fn forget_malformed_row(&self, id: &str) -> Result<bool> {
        if TenantId::new(id).is_ok() {
            return Err(Error::Unsupported(format!(
                "`{id}` is a valid tenant id: drop it with drop_tenant (`tenora tenants drop`)"
            )));
        }
        let mut conn = self.base_conn().await?;
        let deleted = conn
            .registry_delete(self.table(), id, None)
            .await
            .map_err(|e| self.registry_error_any(e, "cannot delete a malformed registry row"))?;
        Ok(deleted > 0)
    }

    /// Reads tenant `id`'s row, taking a row whose state is unknown (tampered with, or written
    /// by another tool) as `deleting`, so a drop can still remove it; the flag says whether it
    /// was malformed (such a row proves nothing by name, see `proof_of`).
    pub(crate) async fn registry_get_for_drop(
        &self,
        conn: &mut B::Connection,
        id: &TenantId,
    ) -> Result<Option<(StoredTenant, bool)>> {
        let Some(row) = conn
            .registry_get(self.table(), id)
            .await
            .map_err(|e| self.registry_error(e, id))?
        else {
            return Ok(None);
        };
        let (created_at, updated_at) = (row.created_at, row.updated_at);
        let (password, token) = (row.password.clone(), row.token.clone());
        let server = row.server.clone();
        let (migration_version, migration_fingerprint) = (
            row.migration_version.clone(),
            row.migration_fingerprint.clone(),
        );
        match row.parse() {
            Ok(stored) => Ok(Some((stored, false))),
            Err(bad) => {
                tracing::warn!(tenant = %id, problem = %bad.problem, "dropping a malformed registry row");
                Ok(Some((
                    StoredTenant {
                        record: TenantRecord {
                            id: id.clone(),
                            state: TenantState::Deleting,
                            created_at,
                            updated_at,
                            server,
                            migration_version,
                            migration_fingerprint,
                        },
                        password,
                        token,
                    },
                    true,
                )))
            }
        }
    }

    pub(crate) async fn registry_get_on(
        &self,
        conn: &mut B::Connection,
        id: &TenantId,
    ) -> Result<Option<StoredTenant>> {
        let table = self.table();
        conn.registry_get(table, id)
            .await
            .map_err(|e| self.registry_error(e, id))?
            .map(|row| row.into_stored(table))
            .transpose()
    }

    /// Tenant `id`'s row when it is `active`. A tenant found unknown (or not `active`) is
    /// remembered for `pool_cache.unknown_tenant_ttl`, and asked about again only after that.
    async fn active_tenant(&self, id: &TenantId) -> Result<StoredTenant> {
        if let Some(state) = self.inner.unknown.get(id) {
            return Err(Error::UnknownTenant {
                id: id.clone(),
                state,
            });
        }
        let mut conn = self.base_conn().await?;
        let state = match self.registry_get_on(&mut conn, id).await? {
            Some(t) if t.record.state == TenantState::Active => return Ok(t),
            Some(t) => Some(t.record.state),
            None => None,
        };
        self.inner.unknown.remember(id, state);
        Err(Error::UnknownTenant {
            id: id.clone(),
            state,
        })
    }

    /// The passwords tenant `stored` connects with: from the request's provider (`first`),
    /// else from this Tenora's provider, else from the registry ([`Tenora::passwords_of`]).
    pub(crate) async fn tenant_passwords(
        &self,
        stored: &StoredTenant,
        first: Option<&PasswordProvider>,
    ) -> Result<Vec<SecretString>> {
        if !self.uses_passwords() {
            return Ok(Vec::new());
        }
        let id = &stored.record.id;
        for provider in first.into_iter().chain(self.inner.passwords.as_deref()) {
            if let Some(password) = crate::password_provider::ask(provider, id).await? {
                // The registry's passwords follow as fallbacks (a rotation may have changed
                // the server's before the provider's source was updated).
                let mut candidates = vec![password];
                candidates.extend(self.passwords_of(stored).unwrap_or_default());
                return Ok(candidates);
            }
        }
        self.passwords_of(stored)
    }

    /// The passwords tenant `stored` may connect with, the one to try first first: none
    /// (backends without tenant users), one, or the new and the old while a password rotation
    /// is in progress.
    pub(crate) fn passwords_of(&self, stored: &StoredTenant) -> Result<Vec<SecretString>> {
        if !self.uses_passwords() {
            return Ok(Vec::new());
        }
        let id = &stored.record.id;
        let sealed = stored.password.as_deref().ok_or_else(|| {
            Error::Unsupported(format!(
                "tenant `{id}` has no stored password in the registry; it cannot connect as \
                 its own user"
            ))
        })?;
        let allow_plaintext = self.inner.config.secrets.allow_plaintext;
        Ok(secret::open_candidates(
            self.keys(),
            allow_plaintext,
            id,
            sealed,
        )?)
    }

    pub(crate) fn registry_error(&self, e: crate::registry::RegistryError, id: &TenantId) -> Error {
        self.registry_error_any(e, &format!("registry lookup of tenant `{id}` failed"))
            .with_tenant_exists(id)
    }

    /// A failed registry query as the caller's error: a missing table or column (as the
    /// catalog said) says which migrations to run.
    pub(crate) fn registry_error_any(
        &self,
        e: crate::registry::RegistryError,
        context: &str,
    ) -> Error {
        use crate::registry::RegistryError;
        let table = self.table().to_owned();
        match e {
            RegistryError::MissingTable => Error::RegistryMissing { table },
            RegistryError::MissingColumn(column) => Error::RegistryOutdated {
                table,
                column: column.to_owned(),
            },
            RegistryError::Query(e) => Error::db(context, e),
        }
    }

    // --- migrations and seeds -------------------------------------------------------------

    /// Applies pending base migrations; returns the names applied.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// for name in tenora.migrate_base().await? {
    ///     println!("base migration applied: {name}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn migrate_base(&self) -> Result<Vec<String>> {
        self.run_on_base(MigrationOp::Up).await
    }

    /// Reverts the last `steps` base migrations; returns the names reverted.
    pub async fn rollback_base(&self, steps: usize) -> Result<Vec<String>> {
        self.run_on_base(MigrationOp::Down { steps }).await
    }

    /// What `op` would do to the base database, read from it: the migrations it would apply,
    /// or revert (newest first). Changes nothing (a base database never migrated has none
    /// applied).
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// let pending = tenora.plan_base(tenora::MigrationOp::Up).await?;
    /// println!("{} base migration(s) to apply", pending.len());
    /// # Ok(()) }
    /// ```
    pub async fn plan_base(&self, op: MigrationOp) -> Result<Vec<String>> {
        use crate::registry::RegistryConnection as _;
        let context = "cannot read the base database's migrations";
        let mut conn = self.base_conn().await?;
        // No migration table yet: nothing applied (and nothing made by looking).
        let applied = match conn
            .table_exists("__diesel_schema_migrations")
            .await
            .map_err(|e| self.registry_error_any(e, context))?
        {
            false => Vec::new(),
            true => {
                let mut versions = conn
                    .applied_versions()
                    .await
                    .map_err(|e| self.registry_error_any(e, context))?;
                versions.sort();
                versions
            }
        };
        Ok(migrate::planned(&self.inner.base_migrations, &applied, &op))
    }

    async fn run_on_base(&self, op: MigrationOp) -> Result<Vec<String>> {
        let default = self.inner.servers.default_slot();
        let backend = &default.server;
        let (conn, _permit) = self
            .connect_budgeted(
                &default.budget,
                Slice::Work,
                || backend.describe_base(),
                async { backend.connect_base().await },
            )
            .await?
            .into_parts();
        self.run_migrations_observed(
            backend,
            Target::Base,
            conn,
            self.inner.base_migrations.clone(),
            op,
            crate::migrate::Guards::default(),
        )
        .await
        .map(|(_, ran)| {
            let ahead = self.inner.base_migrations.versions_ahead(&ran.applied);
            if !ahead.is_empty() {
                tracing::warn!(
                    versions = ?ahead,
                    "the base database is ahead of this binary (a newer release migrated it); \
                     nothing applied"
                );
            }
            ran.touched
        })
        .map_err(|source| Error::Migration {
            database: "the base database".to_owned(),
            source,
        })
    }

    /// Runs the base seeds; returns the seed names.
    pub async fn run_base_seeds(&self) -> Result<Vec<String>> {
        let mut conn = self.base_conn().await?;
        migrate::run_seeds(&mut **conn, &self.inner.base_seeds, "the base database").await
    }

    /// Applies pending tenant migrations to tenant `id` (which must be `active`).
    pub async fn migrate_tenant(&self, id: &TenantId) -> Result<Vec<String>> {
        self.run_on_tenant(id, MigrationOp::Up, Default::default())
            .await
            .map(|ran| ran.touched)
    }

    /// Reverts the last `steps` tenant migrations of tenant `id`.
    pub async fn rollback_tenant(&self, id: &TenantId, steps: usize) -> Result<Vec<String>> {
        self.run_on_tenant(id, MigrationOp::Down { steps }, Default::default())
            .await
            .map(|ran| ran.touched)
    }

    /// A direct connection to tenant `id`'s database for administrative work (migrations,
    /// seeds, checks): never through a `[pooler]`, counted against the work slice of the
    /// budget. Keep the permit alive while the connection is open.
    async fn work_conn(
        &self,
        slot: &ServerSlot<B>,
        stored: &StoredTenant,
        id: &TenantId,
    ) -> Result<(B::Connection, crate::budget::Permit)> {
        let candidates = self.tenant_passwords(stored, None).await?;
        Ok(self
            .connect_tenant_any(slot, id, candidates, Slice::Work)
            .await?
            .0
            .into_parts())
    }

    pub(crate) async fn run_on_tenant(
        &self,
        id: &TenantId,
        op: MigrationOp,
        guards: crate::migrate::Guards,
    ) -> Result<crate::migrate::Ran> {
        let stored = self.active_tenant(id).await?;
        let slot = self.server_of(&stored)?;
        let (conn, _permit) = self.work_conn(slot, &stored, id).await?;
        let result = self
            .run_migrations_observed(
                &slot.server,
                Target::Tenant(id),
                conn,
                self.inner.tenant_migrations.clone(),
                op,
                guards,
            )
            .await;
        // The registry records what the run left applied; after a failure, only that the
        // tenant's state is no longer known (its last recorded version stays for reference).
        let applied = result.as_ref().ok().map(|(_, ran)| ran.applied.as_slice());
        self.record_migrations(id, applied, stored.record.migration_version.as_deref())
            .await;
        let ran = result
            .map(|(_, ran)| ran)
            .map_err(|source| Error::Migration {
                database: format!("tenant `{id}`{}", self.server_label(slot)),
                source,
            })?;
        // A newer release migrated this database (a rolling deploy): nothing to apply, and
        // it is served as it is; never rolled back by this binary.
        let ahead = self.inner.tenant_migrations.versions_ahead(&ran.applied);
        if !ahead.is_empty() {
            tracing::warn!(
                tenant = %id,
                versions = ?ahead,
                "the tenant's database is ahead of this binary (a newer release migrated it); \
                 nothing applied, the tenant is served as it is"
            );
        }
        Ok(ran)
    }

    /// What tenant `id`'s database has applied, read from it: Diesel's versions (sorted) and
    /// the ledger (version → checksum).
    pub(crate) async fn inspect_tenant(
        &self,
        id: &TenantId,
    ) -> Result<(Vec<String>, std::collections::HashMap<String, String>)> {
        let stored = self.active_tenant(id).await?;
        let slot = self.server_of(&stored)?;
        let (mut conn, _permit) = self.work_conn(slot, &stored, id).await?;
        let mut versions = conn.applied_versions().await.map_err(|e| {
            self.registry_error_any(e, &format!("cannot read the migrations of tenant `{id}`"))
        })?;
        versions.sort();
        let ledger = conn.applied_checksums().await;
        Ok((versions, ledger))
    }

    /// Records in tenant `id`'s row the latest version and the fingerprint of `applied` (the
    /// versions its database has applied), or, when `None` (a failed run), no fingerprint and
    /// `previous` as the version. A failure to record is logged, not returned: the
    /// migrations ran, and the next run records again.
    pub(crate) async fn record_migrations(
        &self,
        id: &TenantId,
        applied: Option<&[String]>,
        previous: Option<&str>,
    ) {
        let (version, fingerprint) = match applied {
            Some(applied) => (
                applied.last().map(String::as_str),
                Some(self.inner.tenant_migrations.fingerprint_of(applied)),
            ),
            None => (previous, None),
        };
        let recorded = async {
            let mut conn = self.base_conn().await?;
            conn.registry_set_migrations(self.table(), id, version, fingerprint.as_deref())
                .await
                .map_err(|e| self.registry_error(e, id))
        }
        .await;
        if let Err(e) = recorded {
            tracing::warn!(tenant = %id, error = %e, "could not record the tenant's migration state in the registry");
        }
    }

    /// Runs the tenant seeds on tenant `id`; returns the seed names.
    pub async fn run_tenant_seeds(&self, id: &TenantId) -> Result<Vec<String>> {
        let stored = self.active_tenant(id).await?;
        let slot = self.server_of(&stored)?;
        let (mut conn, _permit) = self.work_conn(slot, &stored, id).await?;
        migrate::run_seeds(
            &mut conn,
            &self.inner.tenant_seeds,
            &format!("tenant `{id}`"),
        )
        .await
    }
}

fn check_client<B: Backend>(config: &Config) -> Result<()> {
    if config.base.client == B::CLIENT {
        return Ok(());
    }
    Err(Error::config(
        "base.client",
        format!(
            "is `{}`, but this Tenora is the {} backend; use the matching type \
             (e.g. tenora::PgTenora) and cargo feature",
            config.base.client,
            B::CLIENT
        ),
    ))
}

impl Error {
    fn with_tenant_exists(self, id: &TenantId) -> Self {
        if let Error::Database {
            source:
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ),
            ..
        } = &self
        {
            return Error::TenantExists {
                id: id.clone(),
                what: "it was registered concurrently".to_owned(),
            };
        }
        self
    }
}
