//! Sorting resolver and connection errors into HTTP answers.

use crate::error::Error;

/// What a request that failed to resolve (or to get a connection) should be answered with.
/// The public messages name no tenant and no database: they are safe to send to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// 400: the request names no tenant, or an invalid one.
    BadRequest,
    /// 403: the authorizer refused the request.
    Forbidden,
    /// 404: no such active tenant.
    NotFound,
    /// 503 with `Retry-After`: every connection is in use ([`Error::Busy`]); retry shortly.
    Busy,
    /// 503: the tenant's database is unreachable or connecting to it timed out; retry later.
    Unavailable,
    /// 500: anything else (a registry or configuration problem); see the server's logs.
    Internal,
}

impl Rejection {
    /// How to answer a request that failed with `error`.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::MissingTenantId { .. } | Error::InvalidTenantId { .. } => Rejection::BadRequest,
            Error::Denied { .. } => Rejection::Forbidden,
            Error::UnknownTenant { .. } => Rejection::NotFound,
            Error::Busy { .. } => Rejection::Busy,
            Error::PoolTimeout { .. } | Error::Connect { .. } | Error::PasswordProvider { .. } => {
                Rejection::Unavailable
            }
            _ => Rejection::Internal,
        }
    }

    /// The rejection's name in snake case (`not_found`), as in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad_request",
            Rejection::Forbidden => "forbidden",
            Rejection::NotFound => "not_found",
            Rejection::Busy => "busy",
            Rejection::Unavailable => "unavailable",
            Rejection::Internal => "internal",
        }
    }

    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Rejection::BadRequest => 400,
            Rejection::Forbidden => 403,
            Rejection::NotFound => 404,
            Rejection::Busy | Rejection::Unavailable => 503,
            Rejection::Internal => 500,
        }
    }

    /// How long a client should wait before retrying (the `Retry-After` header), for
    /// [`Rejection::Busy`]: connections free up as other requests finish.
    pub fn retry_after(self) -> Option<std::time::Duration> {
        match self {
            Rejection::Busy => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    /// A short message for the response body.
    pub fn public_message(self) -> &'static str {
        match self {
            Rejection::BadRequest => "missing or invalid tenant id",
            Rejection::Forbidden => "forbidden",
            Rejection::NotFound => "unknown tenant",
            Rejection::Busy => "tenant database busy, retry shortly",
            Rejection::Unavailable => "tenant database unavailable, retry later",
            Rejection::Internal => "internal error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_id::TenantId;

    #[test]
    fn errors_map_to_statuses_and_messages_name_no_tenant() {
        let id = TenantId::new("acme").unwrap();
        let cases = [
            (
                Error::MissingTenantId {
                    expected: "header `x-tenant`".into(),
                },
                400,
            ),
            (TenantId::new("../etc").unwrap_err(), 400),
            (
                Error::Denied {
                    id: id.clone(),
                    reason: "bad key".into(),
                },
                403,
            ),
            (
                Error::UnknownTenant {
                    id: id.clone(),
                    state: None,
                },
                404,
            ),
            (
                Error::Busy {
                    target: "tenant `acme`".into(),
                    wait: crate::error::Wait::Budget,
                    message: "budget 10 in use".into(),
                },
                503,
            ),
            (
                Error::Connect {
                    target: "tenant `acme`".into(),
                    source: "connection refused".into(),
                },
                503,
            ),
            (Error::Unsupported("x".into()), 500),
        ];
        for (error, status) in cases {
            let rejection = Rejection::of(&error);
            assert_eq!(rejection.status(), status, "{error}");
            assert!(!rejection.public_message().contains("acme"));
            // Only a busy database asks the client to come back shortly.
            assert_eq!(
                rejection.retry_after().is_some(),
                matches!(error, Error::Busy { .. })
            );
        }
    }
}
