//! A blocking facade for synchronous Diesel applications (cargo feature `blocking`), in the
//! spirit of `reqwest::blocking`: [`Tenora`] here owns a small Tokio runtime, and its methods
//! wait for the async [`crate::Tenora`] underneath. [`Tenora::tenant_conn`] hands out a
//! [`Conn`], a pooled tenant connection that implements Diesel's synchronous
//! [`diesel::Connection`], so Diesel's own `RunQueryDsl`, `Connection::transaction` and
//! `diesel_migrations` work on it unchanged.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use diesel::RunQueryDsl; // Diesel's synchronous query methods
//! use tenora::{Config, SqliteTenora};
//!
//! let builder = SqliteTenora::builder(Config::sqlite("data/base.sqlite"));
//! let tenora = tenora::blocking::Tenora::connect(builder)?;
//! tenora.migrate_base()?;
//! let acme = tenora.tenant_id("acme")?;
//! tenora.create_tenant(&acme, None)?;
//! let mut conn = tenora.tenant_conn(&acme)?; // pooled, per tenant
//! diesel::sql_query("SELECT 1").execute(&mut conn)?;
//! # Ok(()) }
//! ```
//!
//! How it works: the connections are diesel-async's, driven by the runtime's one I/O thread
//! (SQLite's run their queries on the runtime's blocking-thread pool); each query waits for
//! its future on the calling thread with
//! [`diesel_async::async_connection_wrapper::AsyncConnectionWrapper`] (diesel-async's
//! sync-over-async adapter, here bound to this facade's runtime). The README's "Synchronous
//! Diesel" section has the measured cost per query.
//!
//! When the last handle and the last connection are gone, the runtime shuts down without
//! waiting: pooled connections still open then are cut rather than closed politely (servers
//! may log them as ended without a goodbye).
//!
//! # Panics
//!
//! Like every blocking API over Tokio, these methods and the queries on a [`Conn`] panic when
//! called from inside an async context (a `#[tokio::main]` function or a task): there, use the
//! async [`crate::Tenora`] directly, or call the blocking code through
//! `tokio::task::spawn_blocking`.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fleet::TenantOutcome;
use crate::ownership::Removal;
use crate::pool::PooledConn;
use crate::registry::TenantRecord;
use crate::secret::SecretString;
use crate::tenant_id::TenantId;
use crate::tenora::TenoraBuilder;

/// A pooled tenant (or base) connection for synchronous Diesel: pass it as `&mut conn` to
/// `diesel::RunQueryDsl` methods. Dropping it returns it to its pool.
pub type Conn<B> = AsyncConnectionWrapper<Pooled<B>>;

/// The blocking Tenora handle: cheap to clone, share it across threads. See the
/// [module documentation](self).
pub struct Tenora<B: Backend> {
    /// `None` only while dropped (it is dropped inside the runtime's context).
    inner: Option<crate::Tenora<B>>,
    runtime: Arc<Runtime>,
}

impl<B: Backend> Clone for Tenora<B> {
    fn clone(&self) -> Self {
        Tenora {
            inner: self.inner.clone(),
            runtime: Arc::clone(&self.runtime),
        }
    }
}

impl<B: Backend> Drop for Tenora<B> {
    fn drop(&mut self) {
        // Pools, and the drivers' goodbyes, may spawn on the runtime when they go.
        let _context = self.runtime.enter();
        self.inner.take();
    }
}

impl<B: Backend> std::fmt::Debug for Tenora<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::Tenora")
            .field(self.inner())
            .finish()
    }
}

impl<B: Backend> Tenora<B> {
    /// Starts the facade's runtime (one I/O thread, `tenora-io`) and connects `builder` on it
    /// (see [`TenoraBuilder::connect`]).
    pub fn connect(builder: TenoraBuilder<B>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tenora-io")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                context: "cannot start the blocking facade's Tokio runtime".to_owned(),
                path: std::path::PathBuf::new(),
                source,
            })?;
        let runtime = Runtime(Some(runtime));
        let inner = runtime.block_on(builder.connect())?;
        Ok(Tenora {
            inner: Some(inner),
            runtime: Arc::new(runtime),
        })
    }

    fn inner(&self) -> &crate::Tenora<B> {
        self.inner
            .as_ref()
            .expect("the async handle is only taken while dropped")
    }

    /// The async handle underneath, for anything this facade does not wrap (run it with
    /// [`Tenora::block_on`]). It works only on this facade's runtime: do not keep a clone of it
    /// past this facade, and take connections with [`Tenora::tenant_conn`] /
    /// [`Tenora::base_conn`] (which bind them to the runtime), not out of `block_on`.
    pub fn as_async(&self) -> &crate::Tenora<B> {
        self.inner()
    }

    /// Runs `future` to completion on this facade's runtime and returns its output, e.g.
    /// `tenora.block_on(tenora.as_async().repair_all())`. Return results, not connections (see
    /// [`Tenora::as_async`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Validates an untrusted tenant id ([`crate::Tenora::tenant_id`]).
    pub fn tenant_id(&self, id: &str) -> Result<TenantId> {
        self.inner().tenant_id(id)
    }

    /// A pooled connection to tenant `id`'s database ([`crate::Tenora::tenant_conn`]).
    pub fn tenant_conn(&self, id: &TenantId) -> Result<Conn<B>> {
        let conn = self.block_on(self.inner().tenant_conn(id))?;
        Ok(self.wrap(conn))
    }

    /// A pooled connection to the base database ([`crate::Tenora::base_conn`]).
    pub fn base_conn(&self) -> Result<Conn<B>> {
        let conn = self.block_on(self.inner().base_conn())?;
        Ok(self.wrap(conn))
    }

    /// Creates tenant `id` ([`crate::Tenora::create_tenant`]).
    pub fn create_tenant(
        &self,
        id: &TenantId,
        password: Option<SecretString>,
    ) -> Result<TenantRecord> {
        self.block_on(self.inner().create_tenant(id, password))
    }

    /// Drops tenant `id` ([`crate::Tenora::drop_tenant`]).
    pub fn drop_tenant(&self, id: &TenantId) -> Result<Removal> {
        self.block_on(self.inner().drop_tenant(id))
    }

    /// The tenants in the registry ([`crate::Tenora::list_tenants`]).
    pub fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.block_on(self.inner().list_tenants())
    }

    /// Runs pending base migrations ([`crate::Tenora::migrate_base`]).
    pub fn migrate_base(&self) -> Result<Vec<String>> {
        self.block_on(self.inner().migrate_base())
    }

    /// Runs pending migrations on one tenant ([`crate::Tenora::migrate_tenant`]).
    pub fn migrate_tenant(&self, id: &TenantId) -> Result<Vec<String>> {
        self.block_on(self.inner().migrate_tenant(id))
    }

    /// Runs pending migrations on every tenant ([`crate::Tenora::migrate_all_tenants`]).
    pub fn migrate_all_tenants(&self) -> Result<Vec<TenantOutcome>> {
        self.block_on(self.inner().migrate_all_tenants())
    }

    /// Binds a pooled connection to this runtime: its queries wait on the runtime's handle,
    /// and it goes back to its pool inside the runtime's context.
    fn wrap(&self, conn: PooledConn<B>) -> Conn<B> {
        // diesel-async's wrapper takes the runtime handle current when it is made.
        let _context = self.runtime.enter();
        Conn::from(Pooled {
            conn: Some(conn),
            runtime: Arc::clone(&self.runtime),
        })
    }
}

/// A pooled connection that keeps the runtime driving it alive and is returned to its pool
/// inside that runtime's context (returning one may start a background task). Only seen as
/// the inner type of [`Conn`]; it derefs to the [`PooledConn`].
pub struct Pooled<B: Backend> {
    /// `None` only while dropping.
    conn: Option<PooledConn<B>>,
    runtime: Arc<Runtime>,
}

impl<B: Backend> Deref for Pooled<B> {
    type Target = PooledConn<B>;

    fn deref(&self) -> &PooledConn<B> {
        self.conn
            .as_ref()
            .expect("a Pooled connection is only empty while dropped")
    }
}

impl<B: Backend> DerefMut for Pooled<B> {
    fn deref_mut(&mut self) -> &mut PooledConn<B> {
        self.conn
            .as_mut()
            .expect("a Pooled connection is only empty while dropped")
    }
}

impl<B: Backend> Drop for Pooled<B> {
    fn drop(&mut self) {
        let _context = self.runtime.enter();
        self.conn.take();
    }
}

/// The facade's runtime, shared by the handle and its connections. The last one to go shuts it
/// down without waiting (so dropping never blocks, and never panics inside an async context).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Deref for Runtime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0
            .as_ref()
            .expect("the runtime is only taken while dropped")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
