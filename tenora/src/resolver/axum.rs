//! axum / tower integration (cargo feature `axum`): a [`TenoraLayer`] that resolves the tenant
//! of every request, and extractors for handlers.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use diesel_async::RunQueryDsl;
//! use tenora::backend::Sqlite;
//! use tenora::resolver::axum::{TenantConn, TenoraLayer};
//! use tenora::resolver::{Resolver, TenantSource};
//!
//! async fn count(mut conn: TenantConn<Sqlite>) -> String {
//!     // `conn` is a pooled connection to this request's tenant, as the tenant's own user.
//!     let n = diesel::sql_query("SELECT 1").execute(&mut conn).await.unwrap_or(0);
//!     format!("tenant {} says {n}", conn.tenant())
//! }
//!
//! # fn app(tenora: tenora::SqliteTenora) -> Router {
//! let resolver = Resolver::builder(tenora, TenantSource::header("x-tenant")).build();
//! Router::new()
//!     .route("/count", get(count))
//!     .route_layer(TenoraLayer::new(resolver)) // matched routes only: unknown paths stay 404
//! # }
//! ```
//!
//! Failures answer with a status and a short plain-text body that names no tenant (400 no or
//! invalid tenant id, 403 refused by the authorizer, 404 unknown tenant, 503 out of connections
//! or database unreachable, 500 otherwise; see [`Rejection`]). Replace that with
//! [`TenoraLayer::on_error`]. Every failure is logged with `tracing` (the full error, which may
//! name the tenant): 5xx as warnings, 4xx at debug level.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Rejection, RequestParts, Resolved, Resolver};
use crate::backend::Backend;
use crate::error::Error;
use crate::pool::PooledConn;
use crate::tenant_id::TenantId;

impl RequestParts for Parts {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    fn host(&self) -> Option<&str> {
        match self.uri.authority() {
            Some(authority) => Some(authority.as_str()),
            None => self.header("host"),
        }
    }

    fn path(&self) -> &str {
        self.uri.path()
    }
}

type Responder = dyn Fn(&Error) -> Response + Send + Sync;

/// The built-in error response: [`Rejection::of`]'s status and public message, as plain text,
/// with a `Retry-After` header when the tenant's database is only busy.
pub fn default_error_response(error: &Error) -> Response {
    let rejection = Rejection::of(error);
    let status =
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, rejection.public_message()).into_response();
    if let Some(after) = rejection.retry_after() {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(after.as_secs()),
        );
    }
    response
}

fn log_failure(error: &Error) {
    match Rejection::of(error) {
        Rejection::Unavailable | Rejection::Internal => {
            tracing::warn!(error = %error, "tenant request failed");
        }
        // Expected under load: every connection is in use.
        Rejection::Busy => tracing::info!(error = %error, "tenant request turned away: busy"),
        _ => tracing::debug!(error = %error, "tenant request refused"),
    }
}

/// A tower [`Layer`](tower_layer::Layer) that resolves each request's tenant with a
/// [`Resolver`] before the inner service runs; the handlers then use [`TenantConn`] or
/// [`Tenant`]. Requests that do not resolve are answered by the layer.
pub struct TenoraLayer<B: Backend> {
    resolver: Resolver<B, Parts>,
    on_error: Arc<Responder>,
}

impl<B: Backend> Clone for TenoraLayer<B> {
    fn clone(&self) -> Self {
        TenoraLayer {
            resolver: self.resolver.clone(),
            on_error: Arc::clone(&self.on_error),
        }
    }
}

impl<B: Backend> fmt::Debug for TenoraLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenoraLayer")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> TenoraLayer<B> {
    /// A layer resolving tenants with `resolver` and answering failures with
    /// [`default_error_response`].
    pub fn new(resolver: Resolver<B, Parts>) -> Self {
        TenoraLayer {
            resolver,
            on_error: Arc::new(default_error_response),
        }
    }

    /// Replaces the error responses (of the layer and of the [`TenantConn`] extractor).
    /// [`Rejection::of`] tells what kind of failure an error is.
    pub fn on_error<F>(mut self, respond: F) -> Self
    where
        F: Fn(&Error) -> Response + Send + Sync + 'static,
    {
        self.on_error = Arc::new(respond);
        self
    }
}

impl<S, B: Backend> tower_layer::Layer<S> for TenoraLayer<B> {
    type Service = TenoraService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        TenoraService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`TenoraLayer`] wraps around the inner one.
pub struct TenoraService<S, B: Backend> {
    inner: S,
    layer: TenoraLayer<B>,
}

impl<S: Clone, B: Backend> Clone for TenoraService<S, B> {
    fn clone(&self) -> Self {
        TenoraService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, B: Backend> fmt::Debug for TenoraService<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenoraService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// What the layer attaches to a resolved request.
struct Attached<B: Backend> {
    resolved: Resolved<B>,
    on_error: Arc<Responder>,
}

impl<B: Backend> Clone for Attached<B> {
    fn clone(&self) -> Self {
        Attached {
            resolved: self.resolved.clone(),
            on_error: Arc::clone(&self.on_error),
        }
    }
}

impl<S, B, ReqBody> tower_service::Service<Request<ReqBody>> for TenoraService<S, B>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Backend,
    ReqBody: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Call the instance that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match layer.resolver.resolve(&mut parts).await {
                Ok(resolved) => {
                    parts.extensions.insert(Attached {
                        resolved,
                        on_error: layer.on_error,
                    });
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(error) => {
                    log_failure(&error);
                    Ok((layer.on_error)(&error))
                }
            }
        })
    }
}

fn attached<B: Backend>(parts: &Parts) -> Option<Attached<B>> {
    let attached = parts.extensions.get::<Attached<B>>().cloned();
    if attached.is_none() {
        tracing::error!(
            path = parts.uri.path(),
            "a tenant extractor was used on a route without TenoraLayer (or with a layer of \
             another backend): add .route_layer(TenoraLayer::new(resolver)) to the router"
        );
    }
    attached
}

fn no_layer() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Extractor: the request's resolved tenant, taking no connection until
/// [`Resolved::conn`] is called. For handlers that may not need the database.
pub struct Tenant<B: Backend>(pub Resolved<B>);

impl<B: Backend> Clone for Tenant<B> {
    fn clone(&self) -> Self {
        Tenant(self.0.clone())
    }
}

impl<B: Backend> fmt::Debug for Tenant<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tenant").field(&self.0).finish()
    }
}

impl<B: Backend> Deref for Tenant<B> {
    type Target = Resolved<B>;

    fn deref(&self) -> &Resolved<B> {
        &self.0
    }
}

impl<S: Send + Sync, B: Backend> FromRequestParts<S> for Tenant<B> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        attached::<B>(parts)
            .map(|a| Tenant(a.resolved))
            .ok_or_else(no_layer)
    }
}

/// Extractor: a pooled connection to the request's tenant, as the tenant's own user. Use it as
/// a diesel-async connection (`&mut conn`). A connection failure (budget exhausted, database
/// down) answers 503 through the layer's error responses.
///
/// Extractors run in order, so a `TenantConn` before a body extractor holds its connection
/// while the body uploads; for such handlers take [`Tenant`] and call [`Resolved::conn`] after
/// reading the body.
pub struct TenantConn<B: Backend> {
    id: TenantId,
    conn: PooledConn<B>,
}

/// [`TenantConn`] on PostgreSQL.
#[cfg(feature = "postgres")]
pub type PgTenantConn = TenantConn<crate::backend::Postgres>;
/// [`TenantConn`] on MySQL / MariaDB.
#[cfg(feature = "mysql")]
pub type MysqlTenantConn = TenantConn<crate::backend::Mysql>;
/// [`TenantConn`] on SQLite.
#[cfg(feature = "sqlite")]
pub type SqliteTenantConn = TenantConn<crate::backend::Sqlite>;

impl<B: Backend> TenantConn<B> {
    /// The tenant this connection belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.id
    }

    /// The pooled connection itself.
    pub fn into_inner(self) -> PooledConn<B> {
        self.conn
    }
}

impl<B: Backend> fmt::Debug for TenantConn<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConn")
            .field("tenant", &self.id)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Deref for TenantConn<B> {
    type Target = PooledConn<B>;

    fn deref(&self) -> &PooledConn<B> {
        &self.conn
    }
}

impl<B: Backend> DerefMut for TenantConn<B> {
    fn deref_mut(&mut self) -> &mut PooledConn<B> {
        &mut self.conn
    }
}

impl<S: Send + Sync, B: Backend> FromRequestParts<S> for TenantConn<B> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let attached = attached::<B>(parts).ok_or_else(no_layer)?;
        match attached.resolved.conn().await {
            Ok(conn) => Ok(TenantConn {
                id: attached.resolved.id().clone(),
                conn,
            }),
            Err(error) => {
                log_failure(&error);
                Err((attached.on_error)(&error))
            }
        }
    }
}
