//! Per-request tenant resolution, for any web framework.
//!
//! A [`Resolver`] turns a request into a [`Resolved`] tenant in four steps:
//!
//! 1. **source** ([`TenantSource`]): read the tenant id from the request — a header, the
//!    subdomain, a path segment, or any closure. The text is untrusted: it is validated as a
//!    [`TenantId`] (with the backend's length limits) before anything else sees it.
//! 2. **authorizer** (optional, async): may refuse the request for that tenant. It runs before
//!    any registry lookup or connection, so a refused request costs no database work.
//! 3. **lookup**: the tenant must be registered and `active`. A warm tenant is a cache hit (no
//!    query); a cold one is looked up once and its pool built.
//! 4. **attach** (optional): put whatever the app wants into the request (e.g. a typed
//!    extension with per-tenant settings).
//!
//! [`Resolved`] then hands out connections on demand ([`Resolved::conn`]), so a handler that
//! never touches the database takes none. Errors are [`Error`]s; [`Rejection::of`] maps them to
//! an HTTP status and a short public message that names no tenant.
//!
//! The original tool's resolver options map as: `tenantId` → [`TenantSource`], `authorizer` →
//! [`ResolverBuilder::authorize`], `passwordProvider` → [`ResolverBuilder::passwords`],
//! `attach` → [`ResolverBuilder::attach`] (and, with the `axum` feature, the layer attaches
//! the [`Resolved`] tenant to every request by itself).
//!
//! ```no_run
//! use tenora::resolver::{Denied, Resolver, TenantSource};
//! use tenora::{Config, SqliteTenora};
//!
//! /// Your framework's request, or anything the tenant can be read from.
//! struct Request {
//!     tenant: Option<String>,
//!     api_key: String,
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tenora = SqliteTenora::builder(Config::sqlite("data/base.sqlite")).connect().await?;
//! let resolver = Resolver::builder(
//!     tenora,
//!     TenantSource::from_fn("the `tenant` field", |r: &Request| r.tenant.clone()),
//! )
//! .authorize(|id, r: &Request| {
//!     let ok = r.api_key == format!("key-of-{id}"); // look it up properly in real code
//!     async move { if ok { Ok(()) } else { Err(Denied::new("bad API key")) } }
//! })
//! .build();
//!
//! let mut request = Request { tenant: Some("acme".into()), api_key: "key-of-acme".into() };
//! let tenant = resolver.resolve(&mut request).await?;
//! let mut conn = tenant.conn().await?; // only now is a connection taken
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{BoxError, Error, Result};
use crate::pool::ManagedPool;
use crate::pool::PooledConn;
use crate::secret::SecretString;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

#[cfg(feature = "axum")]
pub mod axum;
mod rejection;
mod source;

pub use rejection::Rejection;
pub use source::{RequestParts, TenantSource};

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

use crate::password_provider::PasswordProvider;

type Authorizer<R> =
    dyn Fn(&TenantId, &R) -> BoxFuture<std::result::Result<(), Denied>> + Send + Sync;

type Attach<R> = dyn Fn(&TenantId, &mut R) + Send + Sync;

/// An authorizer's refusal. The reason goes to logs and to [`Error::Denied`], never into the
/// built-in HTTP responses.
#[derive(Debug, Clone)]
pub struct Denied {
    reason: String,
}

impl Denied {
    /// A refusal with a reason for the logs (e.g. "API key does not match").
    pub fn new(reason: impl Into<String>) -> Self {
        Denied {
            reason: reason.into(),
        }
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Resolves the tenant of a request of type `R`. Cheap to clone (shared inside); build one at
/// startup with [`Resolver::builder`].
pub struct Resolver<B: Backend, R> {
    inner: Arc<Inner<B, R>>,
}

struct Inner<B: Backend, R> {
    tenora: Tenora<B>,
    source: TenantSource<R>,
    authorizer: Option<Box<Authorizer<R>>>,
    passwords: Option<Arc<PasswordProvider>>,
    attach: Option<Box<Attach<R>>>,
}

impl<B: Backend, R> Clone for Resolver<B, R> {
    fn clone(&self) -> Self {
        Resolver {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend, R> fmt::Debug for Resolver<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("source", &self.inner.source)
            .field("authorizer", &self.inner.authorizer.is_some())
            .field("passwords", &self.inner.passwords.is_some())
            .field("attach", &self.inner.attach.is_some())
            .finish()
    }
}

/// Builds a [`Resolver`]; see the [module docs](self).
pub struct ResolverBuilder<B: Backend, R> {
    inner: Inner<B, R>,
}

impl<B: Backend, R: 'static> Resolver<B, R> {
    /// Starts a resolver reading the tenant id with `source`.
    pub fn builder(tenora: Tenora<B>, source: TenantSource<R>) -> ResolverBuilder<B, R> {
        ResolverBuilder {
            inner: Inner {
                tenora,
                source,
                authorizer: None,
                passwords: None,
                attach: None,
            },
        }
    }

    /// The [`Tenora`] this resolver hands out connections from.
    pub fn tenora(&self) -> &Tenora<B> {
        &self.inner.tenora
    }

    /// Resolves the tenant of `request`: reads and validates its id, runs the authorizer,
    /// checks that the tenant is registered and active (building its pool if it is cold), and
    /// runs the attach step. Takes no connection out of the pool (building a cold tenant's
    /// pool opens its first connection, which stays in the pool for `conn()`).
    ///
    /// Errors: [`Error::MissingTenantId`] / [`Error::InvalidTenantId`] (bad request),
    /// [`Error::Denied`] (forbidden), [`Error::UnknownTenant`] (not found), and the errors of
    /// [`Tenora::tenant_conn`] when the database cannot be reached. [`Rejection::of`] sorts
    /// them into HTTP statuses.
    pub async fn resolve(&self, request: &mut R) -> Result<Resolved<B>> {
        let result = self.resolve_request(request).await;
        let (outcome, status) = match &result {
            Ok(_) => ("ok", 200),
            Err(e) => {
                let rejection = Rejection::of(e);
                (rejection.name(), rejection.status())
            }
        };
        crate::telemetry::resolved(outcome, status);
        result
    }

    async fn resolve_request(&self, request: &mut R) -> Result<Resolved<B>> {
        let inner = &*self.inner;
        let raw = inner
            .source
            .read(request)
            .ok_or_else(|| Error::MissingTenantId {
                expected: inner.source.describe().to_owned(),
            })?;
        let id = inner.tenora.tenant_id(raw.as_str())?;
        if let Some(authorize) = &inner.authorizer {
            authorize(&id, request)
                .await
                .map_err(|denied| Error::Denied {
                    id: id.clone(),
                    reason: denied.reason,
                })?;
        }
        let pool = inner
            .tenora
            .tenant_pool(&id, inner.passwords.as_deref())
            .await?;
        if let Some(attach) = &inner.attach {
            attach(&id, request);
        }
        Ok(Resolved {
            tenora: inner.tenora.clone(),
            id,
            pool,
            from_registry: inner.passwords.is_none(),
        })
    }
}

impl<B: Backend, R: 'static> ResolverBuilder<B, R> {
    /// Adds an authorizer: given the validated tenant id and the request, it allows the request
    /// (`Ok(())`) or refuses it with [`Denied`]. Read what you need from the request before the
    /// `async` block (the future must not borrow the request).
    pub fn authorize<F, Fut>(mut self, authorize: F) -> Self
    where
        F: Fn(&TenantId, &R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), Denied>> + Send + 'static,
    {
        self.inner.authorizer = Some(Box::new(move |id, request| {
            Box::pin(authorize(id, request))
        }));
        self
    }

    /// Adds a per-request password provider, for apps that keep tenant database passwords
    /// outside the registry (a vault, a secrets manager). It is asked only when a tenant's pool
    /// is built; returning `Ok(None)` falls back to the Tenora's own provider
    /// ([`TenoraBuilder::passwords`](crate::TenoraBuilder::passwords)), then to the password
    /// sealed in the registry.
    pub fn passwords<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Option<SecretString>, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.inner.passwords = Some(crate::password_provider::boxed(provider));
        self
    }

    /// Adds an attach step, run on the request once the tenant is resolved (e.g. to insert a
    /// typed extension the app's handlers read).
    pub fn attach<F>(mut self, attach: F) -> Self
    where
        F: Fn(&TenantId, &mut R) + Send + Sync + 'static,
    {
        self.inner.attach = Some(Box::new(attach));
        self
    }

    /// Finishes the resolver.
    pub fn build(self) -> Resolver<B, R> {
        Resolver {
            inner: Arc::new(self.inner),
        }
    }
}

/// A request's resolved tenant: its id and a lazy way to a connection. Cheap to clone.
pub struct Resolved<B: Backend> {
    tenora: Tenora<B>,
    id: TenantId,
    pool: Arc<ManagedPool<B>>,
    /// The password came from the registry (not a provider): a refused one is looked up again.
    from_registry: bool,
}

impl<B: Backend> Clone for Resolved<B> {
    fn clone(&self) -> Self {
        Resolved {
            tenora: self.tenora.clone(),
            id: self.id.clone(),
            pool: Arc::clone(&self.pool),
            from_registry: self.from_registry,
        }
    }
}

impl<B: Backend> fmt::Debug for Resolved<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Resolved<B> {
    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// A pooled connection to the tenant's database, as the tenant's own user. Each call takes
    /// one from the tenant's pool (no cache lookup: the pool was found when resolving).
    ///
    /// A password the server refuses (rotated by another process) is read from the registry
    /// again, once, when it came from there.
    pub async fn conn(&self) -> Result<PooledConn<B>> {
        match self.tenora.conn_from(&self.id, &self.pool).await {
            Err(e) if self.from_registry && crate::tenora::is_auth_failure(&e) => {
                self.tenora.tenant_conn(&self.id).await
            }
            result => result,
        }
    }

    /// The [`Tenora`] the tenant belongs to.
    pub fn tenora(&self) -> &Tenora<B> {
        &self.tenora
    }
}
