//! HTTP routes: the admin endpoint and the tenant API.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Json, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tenora::resolver::axum::{Tenant, TenantConn, TenoraLayer};
use tenora::resolver::{Denied, Rejection, Resolver, TenantSource};
use tenora::{Error, Tenora};

use crate::Settings;
use crate::queries::{AppBackend, Project};

/// Header naming the tenant.
pub const TENANT_HEADER: &str = "x-tenant";
/// Header carrying the tenant's API key.
pub const API_KEY_HEADER: &str = "x-api-key";

struct AppState<B: AppBackend> {
    tenora: Tenora<B>,
    settings: Arc<Settings>,
}

impl<B: AppBackend> Clone for AppState<B> {
    fn clone(&self) -> Self {
        AppState {
            tenora: self.tenora.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

/// A JSON error body: `{"error": "..."}`.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Tenant resolution failures as JSON (the layer's default is plain text); the messages are
/// Tenora's public ones, which name no tenant. A busy database (every connection in use)
/// answers 503 with `Retry-After`.
fn tenant_error(e: &Error) -> Response {
    let rejection = Rejection::of(e);
    let status =
        StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = error(status, rejection.public_message());
    if let Some(after) = rejection.retry_after() {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(after.as_secs()),
        );
    }
    response
}

/// A database error inside a handler: logged in full, answered without details.
fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The app's router: `/health`, `/admin/tenants`, and the tenant API behind Tenora's layer.
pub fn router<B: AppBackend>(tenora: Tenora<B>, settings: Settings) -> Router {
    let settings = Arc::new(settings);
    let keys = settings.api_keys.clone();
    let resolver = Resolver::builder(tenora.clone(), TenantSource::header(TENANT_HEADER))
        .authorize(move |id, parts: &Parts| {
            let ok = parts
                .headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|key| keys.check(id, key));
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(Denied::new("missing or wrong x-api-key"))
                }
            }
        })
        .build();
    let tenant_api = Router::new()
        .route("/projects", get(list_projects::<B>).post(add_project::<B>))
        .route("/whoami", get(whoami::<B>))
        // route_layer: only matched routes resolve a tenant (unknown paths stay 404).
        .route_layer(TenoraLayer::new(resolver).on_error(tenant_error));
    let mut router = Router::new();
    if let Some(handle) = settings.metrics.clone() {
        let tenora = tenora.clone();
        router = router.route(
            "/metrics",
            get(move || async move {
                // The pool cache's figures are published on scrape; events as they happen.
                tenora.record_metrics();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }),
        );
    }
    router
        .route("/health", get(|| async { "ok" }))
        .route("/admin/tenants", post(create_tenant::<B>))
        .merge(tenant_api)
        .with_state(AppState { tenora, settings })
}

#[derive(Deserialize)]
struct NewTenant {
    id: String,
}

#[derive(Serialize)]
struct CreatedTenant {
    id: String,
    api_key: String,
}

/// Equal-length strings compared without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn create_tenant<B: AppBackend>(
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    Json(body): Json<NewTenant>,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| same_secret(t, &state.settings.admin_token)) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let id = match state.tenora.tenant_id(&body.id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match state.tenora.create_tenant(&id, None).await {
        Ok(_) => {
            let api_key = state.settings.api_keys.key_of(&id);
            (
                StatusCode::CREATED,
                Json(CreatedTenant {
                    id: id.to_string(),
                    api_key,
                }),
            )
                .into_response()
        }
        Err(e @ Error::TenantExists { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => internal(e),
    }
}

async fn list_projects<B: AppBackend>(mut conn: TenantConn<B>) -> Response {
    match B::list_projects(&mut conn).await {
        Ok(projects) => Json(projects).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct NewProject {
    name: String,
}

/// Takes the connection only once the body has arrived and is valid: a slow upload holds no
/// connection of the shared budget.
async fn add_project<B: AppBackend>(tenant: Tenant<B>, Json(body): Json<NewProject>) -> Response {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return error(
            StatusCode::BAD_REQUEST,
            "name must have 1 to 200 characters",
        );
    }
    let mut conn = match tenant.conn().await {
        Ok(conn) => conn,
        Err(e) => return tenant_error(&e),
    };
    match B::add_project(&mut conn, name.to_owned()).await {
        Ok(project) => (StatusCode::CREATED, Json::<Project>(project)).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Serialize)]
struct WhoAmI {
    tenant: String,
}

/// Needs no database: takes no connection (the tenant was still authorized and looked up).
async fn whoami<B: AppBackend>(tenant: Tenant<B>) -> Json<WhoAmI> {
    Json(WhoAmI {
        tenant: tenant.id().to_string(),
    })
}
